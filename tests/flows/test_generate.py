"""End to end: the real generate flow, the real embedded model, a real DuckLake warehouse."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from flows.generate import generate_flow
from schemas.config import GenerateConfig
from tasks.gates import GateFailed
from warehouse.connection import connect

TINY = GenerateConfig(problems=3, samples=2, rollouts=2, seed=5, max_new_tokens=96)
DATA_TABLES = ("problems", "nodes", "rollouts", "step_labels", "datasets", "quarantine")


def counts(warehouse_config) -> dict[str, int]:
    connection = connect(warehouse_config, read_only=True)
    try:
        return {t: connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DATA_TABLES + ("runs",)}
    finally:
        connection.close()


def snapshots(warehouse_config) -> list[tuple]:
    connection = connect(warehouse_config, read_only=True)
    try:
        return connection.execute("SELECT snapshot_id, commit_message FROM lake.snapshots() ORDER BY 1").fetchall()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def first_run(prefect_harness, tmp_path_factory):
    from schemas.config import WarehouseConfig

    warehouse = WarehouseConfig(data_dir=tmp_path_factory.mktemp("e2e") / "warehouse", catalog="sqlite")
    return warehouse, generate_flow(TINY, warehouse)


def test_generate_labels_every_step_and_publishes_a_dataset(first_run):
    warehouse, summary = first_run
    assert summary.status == "completed"
    assert summary.solutions == 6
    found = counts(warehouse)
    assert found["problems"] == 3
    assert found["nodes"] == summary.new_nodes > 0
    assert found["step_labels"] == found["nodes"]  # every step has its mc label
    assert found["datasets"] == 1
    connection = connect(warehouse, read_only=True)
    # Every non-final step has exactly k rollouts; q is the share of them that were correct.
    mismatched = connection.execute("""
        SELECT count(*) FROM step_labels l
        LEFT JOIN (SELECT node_id, count(*) AS n, sum(is_correct::INT) AS ok FROM rollouts GROUP BY node_id) r USING (node_id)
        WHERE l.n > 0 AND (r.n != l.n OR r.ok != l.n_correct OR abs(l.q - r.ok / r.n) > 1e-9)
    """).fetchone()[0]
    assert mismatched == 0
    assert connection.execute("SELECT count(*) FROM step_labels WHERE n > 0 AND n != 2").fetchone()[0] == 0
    labelled = connection.execute("SELECT count(*) FROM labeled_steps").fetchone()[0]
    assert labelled == found["nodes"]
    version, snapshot, path = connection.execute("SELECT version, snapshot_id, path FROM datasets").fetchone()
    pairs = connection.execute("SELECT pair_id, prompt, chosen, rejected FROM preference_pairs ORDER BY 1").fetchall()
    connection.close()
    assert (version, snapshot) == (1, summary.snapshot_id)
    assert snapshots(warehouse)[-1] == (summary.snapshot_id, f"run {summary.run_id}: generate")
    exported = pl.concat([pl.read_parquet(f"{path}/train.parquet"), pl.read_parquet(f"{path}/test.parquet")])
    assert {"prompt", "completions", "labels", "soft_labels", "node_ids"} <= set(exported.columns)
    assert exported.height == summary.dataset_rows > 0
    assert (exported["completions"].list.len() == exported["labels"].list.len()).all()
    assert exported.group_by("problem_id").agg(pl.col("split").n_unique())["split"].max() == 1
    # Whatever the model writes: one HNC variant per original of two or more steps, marked as such,
    # and the preference pairs of the table are exactly those of pairs.parquet (no file when none).
    originals = exported.filter(pl.col("variant") == "original")
    assert set(exported["variant"]) <= {"original", "hnc"}
    assert exported.filter(pl.col("variant") == "hnc").height == (originals["completions"].list.len() >= 2).sum()
    assert summary.new_pairs == len(pairs)
    if pairs:
        exported_pairs = pl.read_parquet(f"{path}/pairs.parquet").sort("pair_id")
        assert exported_pairs.columns[:3] == ["prompt", "chosen", "rejected"]
        assert exported_pairs.select("pair_id", "prompt", "chosen", "rejected").rows() == pairs
    else:
        assert not (Path(path) / "pairs.parquet").exists()


def test_rerun_with_the_same_inputs_adds_nothing(first_run):
    warehouse, summary = first_run
    before_counts, before_snapshots = counts(warehouse), snapshots(warehouse)
    again = generate_flow(TINY, warehouse)
    assert again.status == "already done"
    assert again.run_id == summary.run_id
    assert counts(warehouse) == before_counts
    assert snapshots(warehouse) == before_snapshots


def test_a_failing_gate_commits_nothing(prefect_harness, warehouse_config, monkeypatch):
    import tasks.labelers.mc as mc

    monkeypatch.setattr(mc, "mc_estimate", lambda n_correct, n: (1.5, True))  # q outside [0, 1]
    with pytest.raises(GateFailed, match="q_in_unit_interval"):
        generate_flow(TINY.model_copy(update={"problems": 1}), warehouse_config)
    found = counts(warehouse_config)
    assert {table: found[table] for table in DATA_TABLES} == dict.fromkeys(DATA_TABLES, 0)
    connection = connect(warehouse_config, read_only=True)
    failed = connection.execute(
        "SELECT expectation FROM dq_results WHERE NOT success ORDER BY expectation"
    ).fetchall()
    status = connection.execute("SELECT status FROM runs").fetchall()
    connection.close()
    assert failed == [("q_in_unit_interval",)]
    assert status == [("failed",)]
