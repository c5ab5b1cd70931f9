"""generate with verifiers and consensus, end to end on the simulated policy (exact ground truth)."""

from __future__ import annotations

import polars as pl

from flows.generate import generate_flow
from schemas.config import GenerateConfig
from tasks.policies.simulated import first_error_index
from warehouse.connection import connect

CONFIG = GenerateConfig(
    problems=5, samples=4, rollouts=4, seed=2, policy="simulated:error_rate=0.3,recovery_rate=0.0,seed=2",
    verifiers=("arith", "z3", "code"), consensus="default",
)


def test_verifiers_and_consensus_publish_verdicts_decisions_and_a_consensus_dataset(prefect_harness, warehouse_config):
    summary = generate_flow(CONFIG, warehouse_config)
    connection = connect(warehouse_config, read_only=True)
    try:
        nodes = connection.execute("SELECT count(*) FROM nodes").fetchone()[0]
        distinct_solutions = connection.execute("SELECT count(*) FROM nodes WHERE is_terminal").fetchone()[0]
        verdicts = dict(connection.execute("SELECT verifier, count(*) FROM verdicts GROUP BY 1").fetchall())
        code_unknown = connection.execute(
            "SELECT bool_and(verdict = 'unknown' AND reason IS NOT NULL) FROM verdicts WHERE verifier = 'code'"
        ).fetchone()[0]
        decisions = connection.execute("SELECT kept, disagreeing, reason FROM consensus").fetchall()
        dataset_labeler, path = connection.execute("SELECT labeler, path FROM datasets").fetchone()
        questions = dict(connection.execute("SELECT problem_id, question FROM problems").fetchall())
    finally:
        connection.close()
    assert verdicts == {"arith": nodes, "z3": nodes, "code": nodes}
    assert code_unknown  # no Python in these steps: unknown with a reason, never invalid
    assert len(decisions) == distinct_solutions  # identical samples share their terminal node
    assert all(kept or disagreeing for kept, disagreeing, _ in decisions)  # a drop names who disagreed
    assert summary.consensus_kept == sum(kept for kept, _, _ in decisions) > 0
    assert dataset_labeler == "consensus:default"
    exported = pl.concat([pl.read_parquet(f"{path}/train.parquet"), pl.read_parquet(f"{path}/test.parquet")])
    originals = exported.filter(pl.col("variant") == "original")
    assert originals.height == summary.consensus_kept
    # With no recovery, the simulated policy's ground truth is exact: consensus labels must match it.
    for row in originals.iter_rows(named=True):
        truth = first_error_index(questions[row["problem_id"]], row["completions"])
        predicted = row["labels"].index(False) if False in row["labels"] else -1
        assert predicted == truth


def test_search_labeller_end_to_end_spends_fewer_rollouts_and_records_its_cost(prefect_harness, tmp_path):
    from schemas.config import WarehouseConfig

    base = GenerateConfig(problems=6, samples=4, rollouts=4, seed=3, policy="simulated:error_rate=0.3,seed=3")
    costs = {}
    for labeler in ("mc", "search"):
        warehouse = WarehouseConfig(data_dir=tmp_path / labeler)
        summary = generate_flow(base.model_copy(update={"labeler": labeler}), warehouse)
        connection = connect(warehouse, read_only=True)
        try:
            labelled = connection.execute("SELECT count(*) FROM step_labels WHERE labeler = ?", [labeler]).fetchone()[0]
            usage = connection.execute(
                "SELECT labels, rollouts, prompts, generated_tokens FROM label_costs WHERE labeler = ?", [labeler]
            ).fetchone()
            rollouts = connection.execute("SELECT count(*) FROM rollouts WHERE labeler = ?", [labeler]).fetchone()[0]
        finally:
            connection.close()
        assert summary.dataset_version == 1
        assert labelled == summary.new_nodes  # every step of the tree gets a label
        assert usage[0] == labelled and usage[1] == rollouts and usage[2] > 0 and usage[3] > 0
        costs[labeler] = rollouts
    assert 0 < costs["search"] < costs["mc"]
