"""generate with the adaptive labeller, end to end: the real flow (Prefect), a real DuckLake
warehouse, on the simulated policy without recovery (its ground truth is exact)."""

from __future__ import annotations

import json

import polars as pl
from typer.testing import CliRunner

from flows.cli import app
from flows.generate import generate_flow
from schemas.config import GenerateConfig, WarehouseConfig
from tasks.policies.simulated import first_error_index
from warehouse.connection import connect

TINY = GenerateConfig(problems=5, samples=4, rollouts=4, seed=2, policy="simulated:error_rate=0.3,recovery_rate=0.0,seed=2")


def test_the_cli_offers_the_adaptive_labeller_and_its_budget():
    shown = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "200"}).output
    assert "mc, search, adaptive, progress or judge" in shown
    assert "--adaptive-budget" in shown


def test_generate_with_the_adaptive_labeller_stores_labels_verdicts_and_costs(prefect_harness, tmp_path):
    rollouts_of = {}
    for labeler in ("mc", "adaptive"):
        generate_flow(TINY.model_copy(update={"labeler": labeler, "adaptive_budget": 16}),
                      WarehouseConfig(data_dir=tmp_path / labeler))
        connection = connect(WarehouseConfig(data_dir=tmp_path / labeler), read_only=True)
        try:
            rollouts_of[labeler] = connection.execute(
                "SELECT count(*) FROM rollouts WHERE labeler = ?", [labeler]).fetchone()[0]
            if labeler != "adaptive":
                continue
            nodes = connection.execute("SELECT count(*) FROM nodes").fetchone()[0]
            labels = connection.execute("SELECT count(*) FROM step_labels WHERE labeler = 'adaptive'").fetchone()[0]
            costs = connection.execute(
                "SELECT labels, rollouts, prompts, generated_tokens FROM label_costs WHERE labeler = 'adaptive'"
            ).fetchone()
            verdicts = dict(connection.execute("SELECT verifier, count(*) FROM verdicts GROUP BY 1").fetchall())
            invalid_but_positive = connection.execute(
                "SELECT count(*) FROM verdicts v JOIN step_labels l USING (node_id) "
                "WHERE v.verdict = 'invalid' AND l.labeler = 'adaptive' AND l.hard"
            ).fetchone()[0]
            out_of_budget = connection.execute(
                "SELECT count(*) FROM step_labels WHERE labeler = 'adaptive' AND reason LIKE '%out of budget%'"
            ).fetchone()[0]
            decided_by_verdict = connection.execute(
                "SELECT count(*) FROM step_labels WHERE labeler = 'adaptive' AND reason LIKE 'adaptive: verifier:%'"
            ).fetchone()[0]
            config = json.loads(connection.execute("SELECT config_json FROM runs").fetchone()[0])
            dataset_labeler, path = connection.execute("SELECT labeler, path FROM datasets").fetchone()
            questions = dict(connection.execute("SELECT problem_id, question FROM problems").fetchall())
        finally:
            connection.close()

    assert (config["labeler"], config["adaptive_budget"], config["verifiers"]) == ("adaptive", 16, [])
    assert labels == nodes > 0  # every step has its adaptive label
    assert verdicts == {"arith": nodes, "z3": nodes}  # the verifiers it ran first are stored too
    assert costs[0] == labels and costs[1] == rollouts_of["adaptive"] and costs[2] > 0 and costs[3] > 0
    assert 0 < rollouts_of["adaptive"] < rollouts_of["mc"] / 3
    assert decided_by_verdict > 0 and invalid_but_positive == 0

    # No recovery: a wrong prefix never reaches the answer, so a probe cannot move the first error
    # past the true one; a right solution has no error and is positive throughout, for free. (A
    # search stopped by its budget would guess a later step: 16 rollouts, 4 probes, stop none here.)
    assert out_of_budget == 0
    assert dataset_labeler == "adaptive"
    exported = pl.concat([pl.read_parquet(f"{path}/train.parquet"), pl.read_parquet(f"{path}/test.parquet")])
    originals = exported.filter(pl.col("variant") == "original")
    assert originals.height > 0
    for row in originals.iter_rows(named=True):
        truth = first_error_index(questions[row["problem_id"]], row["completions"])
        predicted = row["labels"].index(False) if False in row["labels"] else -1
        if truth == -1:
            assert predicted == -1
        else:
            assert 0 <= predicted <= truth
