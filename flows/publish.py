"""Publishing a generate run: its rows, its dataset version and its run row, committed after every
gate has passed, in DuckLake snapshots whose messages name the run. One snapshot on a local
catalog; on a PostgreSQL catalog, where other machines commit meanwhile, the rows first and then
the dataset read from exactly their snapshot. Also `prmforge dataset build`, and the locks that
keep writers of the same run, and dataset version numbers, apart.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.progress import announce
from schemas import expectations
from schemas.config import DatasetConfig, GenerateConfig, WarehouseConfig, identity_json
from schemas.tables import (
    CONSENSUS, DATASETS, DQ_RESULTS, NODES, POLICY_USAGE, PREFERENCE_PAIRS, PROBLEMS, QUARANTINE, ROLLOUTS,
    RUNS, STEP_LABELS, VERDICTS,
)
from tasks import frames
from tasks.augment import hnc_variants, reference_rows, slip_variants
from tasks.dataset import VERIFIER_PREFIX, stepwise_rows, verifier_labels, with_check_columns
from tasks.exports import export_openrlhf
from tasks.gates import GateResult, enforce, run_suite
from tasks.ids import content_id
from tasks.labelers.search import balance_solutions
from tasks.preferences import export_pairs, preference_pairs
from warehouse.connection import LAKE, commit, connect, current_snapshot, rollback
from warehouse.lock import catalog_lock, writer_lock
from warehouse.writes import insert_new, read_table


@dataclass
class GenerateSummary:
    run_id: str
    status: str  # "completed", "already done" or "failed"
    problems: int = 0
    quarantined: int = 0
    solutions: int = 0
    solved: int = 0
    new_nodes: int = 0
    new_labels: int = 0
    new_rollouts: int = 0
    snapshot_id: int | None = None
    dataset_version: int | None = None
    dataset_path: str | None = None
    dataset_rows: int = 0
    skipped_solutions: int = 0
    new_verdicts: int = 0
    consensus_kept: int | None = None
    consensus_decided: int = 0
    new_pairs: int = 0
    policy_seconds: float = 0.0
    generated_tokens: int = 0
    wall_seconds: float = 0.0

    @property
    def solve_rate(self) -> float:
        return self.solved / self.solutions if self.solutions else 0.0


def _forget_failed_attempt(connection, run_id: str) -> None:
    """A rerun that succeeds replaces the failed attempt's run row. Deleting only when there is
    one keeps a normal publish insert-only, so concurrent shard workers never conflict."""
    failed = connection.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
    if failed:
        connection.execute("DELETE FROM runs WHERE run_id = ?", [run_id])


def record_failure(connection, run_id: str, config: GenerateConfig, results: list[GateResult]) -> None:
    """Keep the gate results and a failed run row; no data of the run is published."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    connection.execute("BEGIN")
    insert_new(connection, DQ_RESULTS, DQ_RESULTS.frame(frames.gate_rows(results, run_id, now)))
    _forget_failed_attempt(connection, run_id)
    insert_new(connection, RUNS, RUNS.frame([{
        "run_id": run_id, "flow": "generate", "config_json": config.model_dump_json(),
        "policy": config.policy, "finished_at": now, "status": "failed",
    }]))
    commit(connection, f"run {run_id}: generate failed its quality gates")


def _insert_rows(connection, new: dict[str, pl.DataFrame], summary: GenerateSummary) -> int:
    """Insert the run's rows that the warehouse lacks; returns how many problems were new."""
    summary.new_nodes = insert_new(connection, NODES, new["nodes"])
    summary.new_labels = insert_new(connection, STEP_LABELS, new["step_labels"])
    summary.new_rollouts = insert_new(connection, ROLLOUTS, new["rollouts"])
    summary.new_verdicts = insert_new(connection, VERDICTS, new["verdicts"])
    insert_new(connection, CONSENSUS, new["consensus"])
    insert_new(connection, POLICY_USAGE, new["policy_usage"])
    new_problems = insert_new(connection, PROBLEMS, new["problems"])
    insert_new(connection, QUARANTINE, new["quarantine"])
    return new_problems


def _stored_by_earlier_attempt(connection, run_id: str) -> bool:
    """Whether this run's rows are already stored: on a PostgreSQL catalog they commit before its
    dataset, so a run killed in between finds them on its rerun and still builds its dataset."""
    return any(
        connection.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [run_id]).fetchone()[0]
        for table in ("problems", "nodes", "step_labels")
    )


def _snapshot_of(connection, message: str) -> int:
    """The committed snapshot with this commit message; the latest, should a resumed run repeat it.
    Only the run's holder of the run lock commits messages that name the run."""
    found = connection.execute(
        f"SELECT max(snapshot_id) FROM {LAKE}.snapshots() WHERE commit_message = ?", [message]
    ).fetchone()[0]
    if found is None:
        raise RuntimeError(f"no snapshot with the commit message {message!r}")
    return int(found)


def _after_rows_committed(snapshot_id: int) -> None:
    """Runs between the two commits of a dataset run on a PostgreSQL catalog, where another machine
    may commit; tests put another worker's commit here."""


class _Transaction:
    """An open transaction and the dataset export staged in it: the export moves into place just
    before the commit, and is removed if the transaction rolls back."""

    def __init__(self, connection):
        self.connection = connection
        self.staged: tuple[Path, Path] | None = None  # (staging folder, final folder)

    def commit(self, message: str) -> None:
        if self.staged is not None:
            staged, final = self.staged
            if final.exists():
                shutil.rmtree(final)  # left by a run that died before its commit
            staged.rename(final)
        commit(self.connection, message)

    def discard(self) -> None:
        if self.staged is not None and self.staged[0].exists():
            shutil.rmtree(self.staged[0])


@contextlib.contextmanager
def _transaction(connection) -> Iterator[_Transaction]:
    """BEGIN; the block ends with `.commit(message)`; an error rolls back and drops the staged export."""
    transaction = _Transaction(connection)
    connection.execute("BEGIN")
    try:
        yield transaction
    except BaseException:
        rollback(connection)
        transaction.discard()
        raise


def _record_completion(connection, run_id: str, run_row: dict, gate_results: list[GateResult],
                       summary: GenerateSummary) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    insert_new(connection, DQ_RESULTS, DQ_RESULTS.frame(frames.gate_rows(gate_results, run_id, now)))
    _forget_failed_attempt(connection, run_id)
    insert_new(connection, RUNS, RUNS.frame([{**run_row, "finished_at": now, "status": "completed",
                                               "n_nodes": summary.new_nodes, "n_labels": summary.new_labels}]))


@task(name="publish", cache_policy=NO_CACHE)
def publish(
    connection,
    warehouse: WarehouseConfig,
    config: GenerateConfig,
    run_id: str,
    new: dict[str, pl.DataFrame],
    gate_results: list[GateResult],
    run_row: dict,
    summary: GenerateSummary,
) -> None:
    """Insert the run's rows, build and gate the dataset, and commit. The dataset is pinned to the
    snapshot it was read from, so `AT (VERSION => snapshot_id)` reproduces it exactly.

    A local catalog's writer lock keeps every other writer out, so there it all commits as one
    snapshot (the one after the current) and the dataset reads the transaction's own view. On a
    PostgreSQL catalog another machine may commit at any moment, so a commit cannot know its
    snapshot in advance: the rows commit first, the dataset is read from exactly their snapshot
    and commits in a second one with the run's row (the run is completed only then). The dataset
    is built and gated in the rows' transaction too, so that a dataset gate the run's rows fail
    publishes nothing; only rows other machines commit in between can fail it after that.
    """
    announce("publish")
    concurrent = warehouse.catalog.startswith("postgres:")
    rows_message = f"run {run_id}: generate"
    with _transaction(connection) as transaction:
        snapshot_id = current_snapshot(connection) + 1  # the snapshot this commit creates on a local catalog
        new_problems = _insert_rows(connection, new, summary)
        building = config.publish_dataset and bool(
            summary.new_nodes or summary.new_labels or new_problems or _stored_by_earlier_attempt(connection, run_id)
        )
        built = _BuiltDataset(None, [])
        if building:
            built = _build_dataset(connection, warehouse, config.dataset_config(), run_id, snapshot_id, summary,
                                   export=not concurrent)
            transaction.staged = built.staged
            enforce(built.gates)
        two_commits = concurrent and built.rows > 0
        if not two_commits:
            _record_completion(connection, run_id, run_row, gate_results + built.gates, summary)
        transaction.commit(rows_message)
    summary.snapshot_id = _snapshot_of(connection, rows_message)
    if not two_commits:
        if summary.dataset_version is not None and summary.snapshot_id != snapshot_id:
            raise RuntimeError(f"dataset pinned to snapshot {snapshot_id}, but the run committed {summary.snapshot_id}")
        return
    snapshot_id = summary.snapshot_id
    _after_rows_committed(snapshot_id)
    with _transaction(connection) as transaction:
        built = _build_dataset(connection, warehouse, config.dataset_config(), run_id, snapshot_id, summary,
                               read_at=snapshot_id)
        transaction.staged = built.staged
        enforce(built.gates)
        _record_completion(connection, run_id, run_row, gate_results + built.gates, summary)
        version = f" v{summary.dataset_version}" if summary.dataset_version is not None else ""
        transaction.commit(f"run {run_id}: generate dataset{version} from snapshot {snapshot_id}")


@dataclass
class _BuiltDataset:
    staged: tuple[Path, Path] | None  # (staging folder, final folder) of the Parquet export
    gates: list[GateResult]
    rows: int = 0  # solutions it exports (a trial build stages nothing, but counts them)


def _build_dataset(connection, warehouse: WarehouseConfig, config: DatasetConfig, run_id: str,
                   snapshot_id: int, summary: GenerateSummary, read_at: int | None = None,
                   export: bool = True) -> _BuiltDataset:
    """Read the warehouse (at snapshot `read_at`, or as the open transaction sees it), gate the
    dataset, and unless `export` is False (a trial build, only for its gates) stage its Parquet
    export and its row, pinned to `snapshot_id`."""
    announce("dataset build" if export else "dataset build (a trial, for its gates)")
    problems = read_table(connection, PROBLEMS, at_snapshot=read_at)
    nodes = read_table(connection, NODES, at_snapshot=read_at)
    labels = read_table(connection, STEP_LABELS, at_snapshot=read_at)
    if config.labeler.startswith(VERIFIER_PREFIX):  # one verifier's verdicts as the labels
        verdicts = read_table(connection, VERDICTS, at_snapshot=read_at)
        labels = pl.concat([labels, verifier_labels(nodes, verdicts, config.labeler)])
    dataset, skipped = stepwise_rows(problems, nodes, labels, config.labeler, config.test_fraction)
    as_gated = dataset
    # Gate the rows as built before anything is derived from them, then the final export again.
    base_results = run_suite("dataset", with_check_columns(dataset), expectations.dataset_suite())
    if not all(result.success for result in base_results):
        return _BuiltDataset(None, base_results)
    excluded = dataset.clear().with_columns(reason=pl.lit(None, pl.String))
    if config.labeler == "search" and config.balance:
        selection = balance_solutions(dataset, config.seed)
        dataset, excluded = selection.kept, selection.rejected
    if config.hnc:
        dataset = pl.concat([dataset, hnc_variants(dataset, config.seed)])
    if config.references:
        dataset = pl.concat([dataset, reference_rows(problems, dataset)])
    if config.slips:
        dataset = pl.concat([dataset, slip_variants(dataset, config.slips, config.seed)])
    pairs = preference_pairs(problems, nodes, labels, config.pair_labeler, config.pair_margin).with_columns(
        run_id=pl.lit(run_id)
    )
    if dataset is as_gated:  # nothing derived: the export is the frame just gated, so are its results
        results = [replace(result, suite="dataset_export") for result in base_results]
    else:
        results = run_suite("dataset_export", with_check_columns(dataset), expectations.dataset_suite())
    if dataset.is_empty() or not all(result.success for result in results):
        return _BuiltDataset(None, results)
    if not export:
        return _BuiltDataset(None, results, dataset.height)
    version = int(connection.execute("SELECT count(*) FROM datasets").fetchone()[0]) + 1
    final = warehouse.datasets_dir / f"v{version}"
    staged = warehouse.datasets_dir / f".v{version}.staging"
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    for split in ("train", "test"):
        dataset.filter(pl.col("split") == split).write_parquet(staged / f"{split}.parquet")
    if not excluded.is_empty():
        excluded.write_parquet(staged / "excluded.parquet")  # left out by balancing, with the reason
    if not pairs.is_empty():
        export_pairs(pairs, staged / "pairs.parquet")
    export_openrlhf(dataset, staged / "openrlhf")  # OpenRLHF's process-reward form, beside TRL's
    summary.new_pairs = insert_new(connection, PREFERENCE_PAIRS, pairs)
    row = {
        "dataset_id": content_id("dataset", snapshot_id, identity_json(config)),
        "version": version, "snapshot_id": snapshot_id, "labeler": config.labeler, "path": str(final),
        "n_train": dataset.filter(pl.col("split") == "train").height,
        "n_test": dataset.filter(pl.col("split") == "test").height,
        "n_steps": int(dataset["completions"].list.len().sum()),
        "test_fraction": config.test_fraction,
        "created_at": datetime.now(timezone.utc).replace(tzinfo=None), "run_id": run_id,
    }
    insert_new(connection, DATASETS, DATASETS.frame([row]))
    summary.dataset_version, summary.dataset_path, summary.dataset_rows = version, str(final), dataset.height
    summary.skipped_solutions = len(skipped)
    return _BuiltDataset((staged, final), results, dataset.height)


def exclusive_writer(warehouse: WarehouseConfig, run_id: str):
    """Local catalogs take one writer at a time (a second refuses at once). A PostgreSQL catalog
    takes concurrent writers with different run ids: DuckLake commits them optimistically, and
    shard workers only insert. Two writers of the same run would both find its rows missing and
    both insert them, so there the second refuses at once, through an advisory lock on the
    catalog's server that is held for the run."""
    if warehouse.catalog.startswith("postgres:"):
        return catalog_lock(warehouse.catalog, f"run {run_id}", activity=f"writing run {run_id}")
    return writer_lock(warehouse.data_dir)


# Building and gating a dataset version takes seconds to minutes; a build waits this long for another.
DATASET_LOCK_WAIT_S = 900.0


def dataset_version_lock(warehouse: WarehouseConfig, building: bool = True):
    """A dataset version's number counts the versions before it. Writers on different machines
    could count at once and take the same number, so on a PostgreSQL catalog the builds take
    turns (a local catalog's writer lock already makes them). Taken before the transaction
    begins, so that it reads the version committed by the build before it."""
    if not (building and warehouse.catalog.startswith("postgres:")):
        return contextlib.nullcontext()
    return catalog_lock(warehouse.catalog, "dataset version", activity="building a dataset version",
                        wait_seconds=DATASET_LOCK_WAIT_S)


@flow(name="prmforge-dataset-build", log_prints=False)
def build_dataset_flow(config: DatasetConfig, warehouse: WarehouseConfig) -> GenerateSummary:
    """A dataset version from the warehouse's last committed snapshot (e.g. after shard workers
    finished), read at that snapshot: what other machines commit meanwhile stays out of it."""
    run_id = content_id("run", "dataset", config.model_dump_json(), datetime.now(timezone.utc).isoformat())
    summary = GenerateSummary(run_id, "completed")
    with exclusive_writer(warehouse, run_id), dataset_version_lock(warehouse):
        connection = connect(warehouse)
        try:
            snapshot_id = current_snapshot(connection)  # outside a transaction: the last committed one
            with _transaction(connection) as transaction:
                built = _build_dataset(connection, warehouse, config, run_id, snapshot_id, summary,
                                       read_at=snapshot_id)
                transaction.staged = built.staged
                enforce(built.gates)
                transaction.commit(f"run {run_id}: dataset build from snapshot {snapshot_id}")
            summary.snapshot_id = snapshot_id
        finally:
            connection.close()
    return summary
