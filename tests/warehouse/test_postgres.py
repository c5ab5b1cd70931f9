"""The DuckLake catalog on a real PostgreSQL server: the warehouse basics, and many writers at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from schemas.config import GenerateConfig, WarehouseConfig
from schemas.tables import NODES, PROBLEMS, STEP_LABELS
from tasks.dataset import stepwise_rows
from warehouse.connection import WarehouseError, commit, connect, current_snapshot
from warehouse.fingerprint import duplicate_keys, table_fingerprints
from warehouse.lock import catalog_lock
from warehouse.migrations import pending_statements
from warehouse.sql import QueryRefused, run_query
from warehouse.writes import insert_new, read_table

PRMFORGE = str(Path(sys.executable).parent / "prmforge")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def warehouse(fresh_postgres_dsn, tmp_path) -> WarehouseConfig:
    return WarehouseConfig(data_dir=tmp_path / "local", catalog=f"postgres:{fresh_postgres_dsn}",
                           data_path=f"{tmp_path / 'shared'}/")


def add_problems(connection, names: list[str], message: str) -> None:
    connection.execute("BEGIN")
    insert_new(connection, PROBLEMS, PROBLEMS.frame([
        {"problem_id": name, "question": f"{name}?", "answer": "1", "reference_steps": []} for name in names
    ]))
    commit(connection, message)


def test_migration_runs_once_and_snapshots_carry_the_message(warehouse):
    connection = connect(warehouse)
    migrated = current_snapshot(connection)
    assert pending_statements(connection) == []
    connection.close()
    connection = connect(warehouse)
    assert current_snapshot(connection) == migrated
    add_problems(connection, ["p1", "p2"], "run test: two problems")
    assert current_snapshot(connection) == migrated + 1
    message = connection.execute(
        "SELECT commit_message FROM lake.snapshots() ORDER BY snapshot_id DESC LIMIT 1").fetchone()[0]
    assert message == "run test: two problems"
    connection.close()


def test_inserts_land_once_and_time_travel_reads_old_snapshots(warehouse):
    connection = connect(warehouse)
    before = current_snapshot(connection)
    add_problems(connection, ["p1", "p2"], "first")
    frame = PROBLEMS.frame([{"problem_id": name, "question": "q", "answer": "1", "reference_steps": []}
                            for name in ("p2", "p3")])
    connection.execute("BEGIN")
    assert insert_new(connection, PROBLEMS, frame) == 1
    # Enough rows that DuckLake writes a Parquet file instead of inlining them into the catalog.
    insert_new(connection, NODES, NODES.frame([
        {"node_id": f"n{i}", "problem_id": "p3", "parent_id": None, "depth": 1, "step_text": f"Step {i}",
         "is_terminal": False} for i in range(50)
    ]))
    commit(connection, "second")
    assert connection.execute("SELECT count(*) FROM problems").fetchone()[0] == 3
    assert connection.execute(f"SELECT count(*) FROM problems AT (VERSION => {before})").fetchone()[0] == 0
    assert connection.execute(f"SELECT count(*) FROM problems AT (VERSION => {before + 1})").fetchone()[0] == 2
    connection.close()
    assert list((Path(warehouse.lake_path)).rglob("*.parquet")), "Parquet files belong on the shared DATA_PATH"
    assert not list(warehouse.data_dir.rglob("*.parquet"))


def test_readers_get_the_last_commit_and_cannot_write(warehouse):
    writer = connect(warehouse)
    add_problems(writer, ["p1"], "committed")
    writer.execute("BEGIN")
    insert_new(writer, PROBLEMS, PROBLEMS.frame([{"problem_id": "p2", "question": "q", "answer": "1",
                                                   "reference_steps": []}]))
    # The writer's transaction is open: a reader sees the last commit, and never waits on a lock.
    assert run_query(warehouse, "SELECT problem_id FROM problems") == (["problem_id"], [("p1",)])
    with pytest.raises(QueryRefused, match="only read-only queries"):
        run_query(warehouse, "DELETE FROM problems")
    reader = connect(warehouse, read_only=True)
    with pytest.raises(duckdb.Error, match="(?i)read.only"):
        reader.execute("INSERT INTO problems (problem_id, question, answer) VALUES ('x', 'q', 'a')")
    reader.close()
    commit(writer, "second")
    writer.close()
    assert run_query(warehouse, "SELECT count(*) FROM problems") == (["count_star()"], [(2,)])


def test_a_different_data_path_is_refused_with_the_fix(warehouse):
    connect(warehouse).close()
    elsewhere = warehouse.model_copy(update={"data_path": f"{warehouse.data_dir / 'elsewhere'}/"})
    with pytest.raises(WarehouseError, match="does not match existing data path.*PRMFORGE_DATA_PATH"):
        connect(elsewhere)


def run_at_once(count: int, work) -> list[BaseException]:
    """Run work(i) in `count` threads released together; the errors they raised."""
    barrier, errors = threading.Barrier(count), []

    def worker(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_writers_opening_a_fresh_catalog_at_once_all_succeed(warehouse):
    assert run_at_once(3, lambda _: connect(warehouse).close()) == []
    connection = connect(warehouse, read_only=True)
    changes = [row[0] for row in connection.execute("SELECT changes FROM lake.snapshots()").fetchall()]
    assert pending_statements(connection) == []
    connection.close()
    # One opener created the tables. (One that read the empty catalog just before may still
    # replace the views with the same definitions: its CREATE TABLE IF NOT EXISTS are no-ops.)
    assert sum("tables_created" in change for change in changes) == 1


def test_concurrent_commits_are_retried_not_lost(warehouse):
    connect(warehouse).close()
    commits = 8

    def writer(index: int) -> None:
        connection = connect(warehouse)
        for number in range(commits):
            names = [f"w{index}-{number}-{row}" for row in range(3)]
            add_problems(connection, names, f"writer {index} commit {number}")
        connection.close()

    assert run_at_once(3, writer) == []
    connection = connect(warehouse, read_only=True)
    assert connection.execute("SELECT count(*), count(DISTINCT problem_id) FROM problems").fetchone() == (72, 72)
    writer_commits = "SELECT count(*) FROM lake.snapshots() WHERE commit_message LIKE 'writer %'"
    assert connection.execute(writer_commits).fetchone()[0] == 24
    connection.close()


def generate_shard(shard: str, worker_dir: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [PRMFORGE, "generate", "--shard", shard, "--no-dataset", "--policy", "simulated:error_rate=0.2",
         "--problems", "12", "--samples", "3", "--rollouts", "4", "--seed", "5", "--data-dir", str(worker_dir)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, f"{process.args[2:5]} exited {process.returncode}:\n{out}\n{err[-3000:]}"
    return out


def warehouse_env(base: dict, dsn: str, shared: Path) -> dict:
    return {**base, "PRMFORGE_CATALOG": f"postgres:{dsn}", "PRMFORGE_DATA_PATH": f"{shared}/"}


def fingerprints(dsn: str, shared: Path, local: Path) -> tuple[dict, dict]:
    connection = connect(WarehouseConfig(data_dir=local, catalog=f"postgres:{dsn}", data_path=f"{shared}/"),
                         read_only=True)
    try:
        return table_fingerprints(connection), duplicate_keys(connection)
    finally:
        connection.close()


@pytest.mark.slow
def test_two_shard_workers_at_once_equal_a_sequential_run(prefect_server_env, postgres_server, postgres_dsn, tmp_path):
    # Each worker has its own --data-dir (local scratch); both share the catalog and DATA_PATH.
    concurrent_shared, sequential_shared = tmp_path / "shared-concurrent", tmp_path / "shared-sequential"
    env = warehouse_env(prefect_server_env, postgres_dsn, concurrent_shared)
    workers = [generate_shard(f"{i}/2", tmp_path / f"worker{i}", env) for i in range(2)]
    outputs = [finished(worker) for worker in workers]
    assert all("snapshot" in output for output in outputs)

    sequential_dsn = postgres_server.create_database("prmforge_sequential")
    sequential_env = warehouse_env(prefect_server_env, sequential_dsn, sequential_shared)
    for i in range(2):
        finished(generate_shard(f"{i}/2", tmp_path / f"sequential{i}", sequential_env))

    concurrent, concurrent_duplicates = fingerprints(postgres_dsn, concurrent_shared, tmp_path / "reader")
    sequential, _ = fingerprints(sequential_dsn, sequential_shared, tmp_path / "reader")
    assert concurrent["nodes"][0] > 0 and concurrent["step_labels"][0] > 0
    assert concurrent == sequential
    assert not any(concurrent_duplicates.values()), concurrent_duplicates
    # The workers' own folders are scratch: every Parquet file went to the shared DATA_PATH.
    assert list(concurrent_shared.rglob("*.parquet"))
    assert not [path for i in range(2) for path in (tmp_path / f"worker{i}").rglob("*.parquet")]

    build = subprocess.run([PRMFORGE, "dataset", "build", "--data-dir", str(tmp_path / "builder")],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    assert build.stdout.startswith("dataset version 1:")
    assert (tmp_path / "builder" / "datasets" / "v1" / "train.parquet").exists()


# Holds a named catalog lock until killed, in a process of its own.
HOLD_LOCK = """
import sys, time
from warehouse.lock import catalog_lock
with catalog_lock(sys.argv[1], sys.argv[2], "testing"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_catalog_lock_refuses_a_second_holder_and_dies_with_its_process(fresh_postgres_dsn):
    catalog = f"postgres:{fresh_postgres_dsn}"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, catalog, "run r1"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        began = time.monotonic()
        with pytest.raises(WarehouseError) as refused, catalog_lock(catalog, "run r1", "writing run r1",
                                                                    wait_seconds=1.0):
            pass
        assert time.monotonic() - began >= 1.0  # it waited, then refused
        assert str(refused.value) == (
            f"another prmforge run (prmforge {socket.gethostname()} pid {holder.pid}) is writing run r1 "
            "on the PostgreSQL catalog; wait for it to finish"
        )
        with catalog_lock(catalog, "run r2", "writing run r2"):  # a different name is free
            pass
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL ends the holder's session, and the server drops its lock with it.
    with catalog_lock(catalog, "run r1", "writing run r1", wait_seconds=30):
        pass


def test_an_unreachable_catalog_server_is_one_line_with_the_password_hidden(postgres_server):
    with pytest.raises(WarehouseError) as refused, catalog_lock(
            "postgres:host=127.0.0.1 port=1 dbname=prmforge user=postgres password=s3cret", "run r1", "x"):
        pass
    message = str(refused.value)
    assert message.startswith("cannot reach the PostgreSQL catalog (host=127.0.0.1 port=1 dbname=prmforge "
                              "user=postgres password=...): ")
    assert "Connection refused" in message and "s3cret" not in message and "\n" not in message


def generate_same_run(data_dir: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [PRMFORGE, "generate", "--policy", "simulated:error_rate=0.2", "--problems", "8", "--samples", "3",
         "--rollouts", "4", "--seed", "9", "--data-dir", str(data_dir)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.slow
def test_two_identical_runs_at_once_write_once_and_the_second_refuses(prefect_server_env, fresh_postgres_dsn,
                                                                       tmp_path):
    # Same run id, different machines (own --data-dir each): only the catalog can tell them apart.
    shared = tmp_path / "shared"
    env = warehouse_env(prefect_server_env, fresh_postgres_dsn, shared)
    runs = [generate_same_run(tmp_path / f"machine{i}", env) for i in range(2)]
    outcomes = [(run.returncode, out, err) for run in runs for out, err in [run.communicate(timeout=300)]]
    succeeded = [out for code, out, _ in outcomes if code == 0]
    refused = [err for code, _, err in outcomes if code != 0]
    assert len(succeeded) == 1 and len(refused) == 1, outcomes
    errors = [line for line in refused[0].splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in refused[0], refused[0][-3000:]
    assert errors[0].startswith("error: another prmforge run (prmforge ") and " is writing run " in errors[0]

    connection = connect(WarehouseConfig(data_dir=tmp_path / "reader", catalog=f"postgres:{fresh_postgres_dsn}",
                                         data_path=f"{shared}/"), read_only=True)
    try:
        assert not any(duplicate_keys(connection).values()), duplicate_keys(connection)
        assert connection.execute("SELECT count(*), count(DISTINCT run_id) FROM runs").fetchone() == (1, 1)
        assert connection.execute("SELECT count(*) FROM nodes").fetchone()[0] > 0
        assert connection.execute("SELECT count(*), max(version) FROM datasets").fetchone() == (1, 1)
    finally:
        connection.close()


@pytest.mark.slow
def test_two_dataset_builds_at_once_take_turns_for_the_version_number(prefect_server_env, fresh_postgres_dsn,
                                                                      tmp_path):
    shared = tmp_path / "shared"
    env = warehouse_env(prefect_server_env, fresh_postgres_dsn, shared)
    finished(generate_shard("0/1", tmp_path / "worker", env))
    builds = [subprocess.Popen([PRMFORGE, "dataset", "build", "--data-dir", str(tmp_path / f"builder{i}")],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for i in range(2)]
    outputs = [finished(build) for build in builds]
    assert sorted(output.split(":")[0] for output in outputs) == ["dataset version 1", "dataset version 2"]
    connection = connect(WarehouseConfig(data_dir=tmp_path / "reader", catalog=f"postgres:{fresh_postgres_dsn}",
                                         data_path=f"{shared}/"), read_only=True)
    try:
        assert connection.execute("SELECT version FROM datasets ORDER BY version").fetchall() == [(1,), (2,)]
    finally:
        connection.close()


def test_reading_an_empty_catalog_says_there_is_no_warehouse_yet(fresh_postgres_dsn, tmp_path):
    empty = WarehouseConfig(data_dir=tmp_path / "local", catalog=f"postgres:{fresh_postgres_dsn}",
                            data_path=f"{tmp_path / 'shared'}/")
    with pytest.raises(WarehouseError, match=r"^no warehouse in the catalog \(postgres:.*\) yet: run `prmforge generate`"):
        connect(empty, read_only=True)


def dataset_originals(frame: pl.DataFrame) -> pl.DataFrame:
    """A dataset's original solutions (no derived variants), in a fixed order, with the columns a
    reproduction must match."""
    columns = ["problem_id", "split", "prompt", "completions", "labels", "node_ids"]
    return frame.filter(pl.col("variant") == "original").select(columns).sort("problem_id", "node_ids")


@pytest.mark.slow
def test_a_dataset_pins_the_snapshot_it_read_while_another_worker_commits(prefect_harness, warehouse, tmp_path,
                                                                         monkeypatch):
    import flows.generate as generate
    import flows.publish as publish
    from prefect.settings import PREFECT_API_URL

    # Another machine's shard worker (a real process on the same catalog) commits in the window
    # between this run's commit of its rows and its dataset build.
    env = warehouse_env({**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
                        warehouse.catalog.removeprefix("postgres:"), Path(warehouse.data_path.rstrip("/")))
    windows = []

    def another_worker_commits(snapshot_id: int) -> None:
        windows.append(snapshot_id)
        finished(generate_shard("1/2", tmp_path / "worker1", env))

    monkeypatch.setattr(publish, "_after_rows_committed", another_worker_commits)
    config = GenerateConfig(policy="simulated:error_rate=0.2", problems=12, samples=3, rollouts=4, seed=5, shard="0/2")
    summary = generate.generate_flow(config, warehouse)  # no internal error: it finishes
    assert summary.status == "completed" and summary.dataset_version == 1
    assert windows == [summary.snapshot_id]

    connection = connect(warehouse.model_copy(update={"data_dir": tmp_path / "reader"}), read_only=True)
    try:
        pinned, path = connection.execute("SELECT snapshot_id, path FROM datasets WHERE version = 1").fetchone()
        assert pinned == summary.snapshot_id
        messages = dict(connection.execute(
            "SELECT snapshot_id, coalesce(commit_message, '') FROM lake.snapshots()").fetchall())
        other = next(snapshot for snapshot, message in messages.items()
                     if message.startswith("run ") and message.endswith(": generate") and summary.run_id not in message)
        dataset_commit = max(messages)
        assert pinned < other < dataset_commit  # the other worker did commit in between
        assert messages[pinned] == f"run {summary.run_id}: generate"
        assert messages[dataset_commit] == f"run {summary.run_id}: generate dataset v1 from snapshot {pinned}"

        exported = pl.concat([pl.read_parquet(f"{path}/{split}.parquet") for split in ("train", "test")])
        at_pinned = {table.name: read_table(connection, table, at_snapshot=pinned)
                     for table in (PROBLEMS, NODES, STEP_LABELS)}
        every_problem = {row[0] for row in connection.execute("SELECT problem_id FROM problems").fetchall()}
        rebuilt, _ = stepwise_rows(at_pinned["problems"], at_pinned["nodes"], at_pinned["step_labels"],
                                   config.dataset_config().labeler, config.test_fraction)
    finally:
        connection.close()
    # The other worker's problems are in the warehouse now, and in neither the pinned snapshot nor the export.
    assert len(every_problem) == 12
    exported_problems = set(exported["problem_id"])
    assert exported_problems == set(at_pinned["problems"]["problem_id"]) < every_problem
    assert set(exported["node_ids"].explode()) == set(at_pinned["nodes"]["node_id"])
    # `AT (VERSION => datasets.snapshot_id)` reproduces the exported solutions exactly.
    assert dataset_originals(rebuilt).equals(dataset_originals(exported))


class KilledBetweenCommits(Exception):
    """Stands in for a machine that dies after committing a run's rows, before its dataset."""


@pytest.mark.slow
def test_a_run_stopped_between_its_two_commits_builds_its_dataset_when_rerun(prefect_harness, warehouse, monkeypatch):
    import flows.generate as generate
    import flows.publish as publish

    def die(snapshot_id: int) -> None:
        raise KilledBetweenCommits(snapshot_id)

    config = GenerateConfig(policy="simulated:error_rate=0.2", problems=4, samples=2, rollouts=2, seed=3)
    monkeypatch.setattr(publish, "_after_rows_committed", die)
    with pytest.raises(KilledBetweenCommits) as stopped:
        generate.generate_flow(config, warehouse)
    monkeypatch.undo()
    summary = generate.generate_flow(config, warehouse)
    assert summary.status == "completed" and summary.dataset_version == 1
    connection = connect(warehouse, read_only=True)
    try:
        # The rerun added no rows, so the dataset is pinned to the snapshot the first attempt committed.
        assert connection.execute("SELECT snapshot_id FROM datasets").fetchall() == [(stopped.value.args[0],)]
        assert connection.execute("SELECT status FROM runs").fetchall() == [("completed",)]
        assert not any(duplicate_keys(connection).values())
    finally:
        connection.close()


def test_two_registrations_at_once_take_versions_one_and_two(warehouse, tmp_path):
    from flows.train import register
    from tasks.prm.config import PRMTrainConfig
    from tasks.prm.registry import DatasetRef

    connect(warehouse).close()
    config = PRMTrainConfig(dataset_version=1)
    dataset = DatasetRef("dataset-1", 1, 1, str(tmp_path / "dataset"), "mc", 0.2)

    def registration(index: int) -> None:
        machine = warehouse.model_copy(update={"data_dir": tmp_path / f"machine{index}"})  # a writer lock each
        trained = machine.data_dir / "models" / ".train" / "model"
        trained.mkdir(parents=True)
        (trained / "config.json").write_text("{}")
        register.fn(machine, config, f"model-{index}", f"run-{index}", trained, tmp_path / "base", dataset, {},
                    time.perf_counter())

    assert run_at_once(2, registration) == []
    connection = connect(warehouse, read_only=True)
    try:
        versions = connection.execute("SELECT version FROM models ORDER BY version").fetchall()
    finally:
        connection.close()
    assert versions == [(1,), (2,)]


def test_two_promotions_at_once_leave_exactly_one_promoted_model(warehouse, tmp_path):
    from flows.nightly import record
    from tasks.prm.registry import ModelRef, register_model

    connection = connect(warehouse)
    connection.execute("BEGIN")
    for index in (1, 2):
        register_model(connection, ModelRef(model_id=f"model-{index}", version=index, path=f"/models/v{index}"), "train")
    commit(connection, "two models")
    connection.close()

    def promotion(index: int) -> None:
        machine = warehouse.model_copy(update={"data_dir": tmp_path / f"machine{index}"})
        record.fn(machine, f"night-{index + 1}", [("promote", "promote", "better")], promote_model=f"model-{index + 1}")

    assert run_at_once(2, promotion) == []
    connection = connect(warehouse, read_only=True)
    try:
        promoted = connection.execute("SELECT model_id FROM models WHERE promoted").fetchall()
        decisions = connection.execute("SELECT run_id FROM decisions ORDER BY run_id").fetchall()
    finally:
        connection.close()
    assert len(promoted) == 1 and decisions == [("night-1",), ("night-2",)]
