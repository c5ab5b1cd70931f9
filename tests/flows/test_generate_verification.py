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
        pairs_stored = connection.execute(
            "SELECT p.pair_id, p.prompt, p.chosen, p.rejected, p.chosen_q - p.rejected_q, p.labeler, "
            "c.parent_id IS NOT DISTINCT FROM r.parent_id FROM preference_pairs p "
            "JOIN nodes c ON c.node_id = p.chosen_node_id JOIN nodes r ON r.node_id = p.rejected_node_id ORDER BY 1"
        ).fetchall()
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

    # HNC variants are in the export, marked, one per kept solution of two or more steps; a merged
    # step joins its parts, and it is correct only when both parts are.
    by_id = {row["solution_id"]: row for row in originals.iter_rows(named=True)}
    variants = exported.filter(pl.col("variant") == "hnc")
    assert variants.height == sum(len(row["completions"]) >= 2 for row in by_id.values()) > 0
    for row in variants.iter_rows(named=True):
        source_id, _, position = row["solution_id"].rpartition(":hnc:")
        source, at = by_id[source_id], int(position)
        assert row["completions"][at] == source["completions"][at] + "\n" + source["completions"][at + 1]
        assert row["labels"][at] == (source["labels"][at] and source["labels"][at + 1])
        assert (row["split"], len(row["labels"])) == (source["split"], len(source["labels"]) - 1)

    # Preference pairs (ordered by the run's labeller, mc) are in the warehouse and in pairs.parquet.
    assert summary.new_pairs == len(pairs_stored) > 0
    assert all(margin >= CONFIG.pair_margin and labeler == "mc" and siblings
               for *_, margin, labeler, siblings in pairs_stored)
    pairs_file = pl.read_parquet(f"{path}/pairs.parquet").sort("pair_id")
    assert pairs_file.columns[:3] == ["prompt", "chosen", "rejected"]
    assert pairs_file.select("pair_id", "prompt", "chosen", "rejected").rows() == [row[:4] for row in pairs_stored]


def test_stored_labels_of_another_labeller_vote_in_a_later_runs_consensus(prefect_harness, warehouse_config):
    """mc labels a tree; a later search run over the same tree takes mc's stored labels as a source."""
    first = generate_flow(CONFIG.model_copy(update={"verifiers": (), "consensus": None}), warehouse_config)
    later = generate_flow(CONFIG.model_copy(update={"verifiers": (), "labeler": "search"}), warehouse_config)
    connection = connect(warehouse_config, read_only=True)
    try:
        considered = connection.execute(
            "SELECT list_sort(agreeing || disagreeing || unavailable), source_views FROM consensus WHERE run_id = ?",
            [later.run_id],
        ).fetchall()
        retention = connection.execute(
            "SELECT source_a, source_b, decisions, kept, retention, both_available, agreeing "
            "FROM consensus_retention WHERE rule = 'default' ORDER BY source_a NULLS FIRST"
        ).fetchall()
    finally:
        connection.close()
    assert first.consensus_kept is None and later.new_nodes == 0  # the same tree, labelled again
    assert len(considered) == later.consensus_decided > 0
    assert all(sources == ["mc", "search"] for sources, _ in considered)
    assert all([view.split("=")[0] for view in views] == ["search", "mc"] for _, views in considered)
    (_, _, decisions, kept, share, _, _), (a, b, pair_decisions, _, pair_share, both, agreeing) = retention
    assert (a, b, pair_decisions) == ("mc", "search", decisions)
    assert kept == later.consensus_kept and share == pair_share == kept / decisions
    assert 0 < agreeing <= both <= decisions


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
            path = connection.execute("SELECT path FROM datasets").fetchone()[0]
            # A search label with n = 0 on a step that states no answer is inferred: it orders no pair.
            unmeasured_pairs = connection.execute(
                "SELECT count(*) FROM preference_pairs p JOIN step_labels l "
                "ON l.labeler = p.labeler AND l.node_id IN (p.chosen_node_id, p.rejected_node_id) "
                "JOIN nodes USING (node_id) WHERE l.n = 0 AND nodes.final_answer IS NULL"
            ).fetchone()[0]
        finally:
            connection.close()
        assert summary.dataset_version == 1
        assert labelled == summary.new_nodes  # every step of the tree gets a label
        assert usage[0] == labelled and usage[1] == rollouts and usage[2] > 0 and usage[3] > 0
        costs[labeler] = rollouts
        if labeler == "search":
            _assert_balanced_with_exclusions(path, unmeasured_pairs)
    assert 0 < costs["search"] < costs["mc"]


def _assert_balanced_with_exclusions(path: str, unmeasured_pairs: int) -> None:
    """OmegaPRM balancing: as many solutions with an error as without; the rest in excluded.parquet."""
    kept = pl.concat([pl.read_parquet(f"{path}/train.parquet"), pl.read_parquet(f"{path}/test.parquet")])
    kept = kept.filter(pl.col("variant") == "original")
    excluded = pl.read_parquet(f"{path}/excluded.parquet")
    negative = kept["labels"].list.eval(pl.element().not_()).list.any()
    assert negative.sum() == (~negative).sum() > 0
    assert excluded.height > 0 and not set(excluded["solution_id"]) & set(kept["solution_id"])
    assert excluded["reason"].str.starts_with("balance: ").all()
    assert unmeasured_pairs == 0


def test_slip_variants_are_verifier_checked_negatives_in_the_train_split(prefect_harness, warehouse_config):
    """--slips adds copies cut after a good step whose result moved, each rejected by the arith verifier."""
    from tasks.verification import load_verifiers, verify_solution

    config = GenerateConfig(problems=6, samples=2, rollouts=2, seed=5, slips=2,
                            policy="simulated:error_rate=0.2,recovery_rate=0.0,seed=5")
    generate_flow(config, warehouse_config)
    connection = connect(warehouse_config, read_only=True)
    try:
        path = connection.execute("SELECT path FROM datasets").fetchone()[0]
    finally:
        connection.close()
    train, test = pl.read_parquet(f"{path}/train.parquet"), pl.read_parquet(f"{path}/test.parquet")
    assert test.filter(pl.col("variant") == "slip").is_empty()
    by_id = {row["solution_id"]: row for row in train.filter(pl.col("variant") == "original").iter_rows(named=True)}
    slips = train.filter(pl.col("variant") == "slip")
    assert 0 < slips.height <= 2 * len(by_id)
    arith = load_verifiers(["arith"])
    for row in slips.iter_rows(named=True):
        source = by_id[row["solution_id"].rpartition(":slip:")[0]]
        at = len(row["completions"]) - 1
        assert row["completions"][:at] == source["completions"][:at] and all(source["labels"][: at + 1])
        assert row["labels"] == [True] * at + [False] and row["is_correct"] is False
        assert verify_solution(row["prompt"], row["completions"], arith)[-1][0].verdict == "invalid"
        assert verify_solution(source["prompt"], source["completions"][: at + 1], arith)[-1][0].verdict != "invalid"


def test_references_add_the_training_problems_worked_solutions_and_their_slips(prefect_harness, warehouse_config):
    """references=True adds each training problem's reference steps as an all-good row; slips apply to them."""
    config = GenerateConfig(problems=8, samples=2, rollouts=2, seed=6, slips=1, references=True, test_fraction=0.25,
                            policy="simulated:error_rate=0.2,recovery_rate=0.0,seed=6")
    generate_flow(config, warehouse_config)
    connection = connect(warehouse_config, read_only=True)
    try:
        path = connection.execute("SELECT path FROM datasets").fetchone()[0]
        worked = dict(connection.execute("SELECT problem_id, reference_steps FROM problems").fetchall())
    finally:
        connection.close()
    train, test = pl.read_parquet(f"{path}/train.parquet"), pl.read_parquet(f"{path}/test.parquet")
    assert test.filter(pl.col("variant").is_in(["reference", "slip"])).is_empty()
    references = train.filter(pl.col("variant") == "reference")
    expected = set(train.filter(pl.col("variant") == "original")["problem_id"].to_list())
    assert set(references["problem_id"].to_list()) == expected and references.height == len(expected)
    for row in references.iter_rows(named=True):
        assert row["completions"] == list(worked[row["problem_id"]]) and row["solution_id"] == f"reference:{row['problem_id']}"
        assert row["labels"] == [True] * len(row["completions"]) and row["is_correct"] is True
    slipped = train.filter(pl.col("variant") == "slip")["solution_id"].to_list()
    assert any(solution.startswith("reference:") for solution in slipped)


def test_dataset_ids_stay_as_they_were_without_references():
    from schemas.config import DatasetConfig, identity_json

    assert '"references"' not in identity_json(DatasetConfig())
    assert identity_json(DatasetConfig()) != identity_json(DatasetConfig(references=True))


def test_dataset_build_refuses_an_out_of_range_slips_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    prmforge = str(Path(sys.executable).parent / "prmforge")
    result = subprocess.run([prmforge, "dataset", "build", "--slips", "9", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["error: invalid option slips: Input should be less than or equal to 8"]
