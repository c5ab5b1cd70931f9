import polars as pl
import pytest

from schemas.tables import PREFERENCE_PAIRS
from tasks.ids import content_id
from tasks.preferences import export_pairs, preference_pairs

PROBLEMS = pl.DataFrame({"problem_id": ["p1", "p2"], "question": ["Q1?", "Q2?"]})
# p1:  r1 -> {a (q .75), b (q .25), c (q .5), d (no mc label)};  r2 is another first step.
# p2:  a single first step s: no siblings.
NODES = pl.DataFrame(
    {
        "node_id": ["r1", "r2", "a", "b", "c", "d", "s"],
        "problem_id": ["p1", "p1", "p1", "p1", "p1", "p1", "p2"],
        "parent_id": [None, None, "r1", "r1", "r1", "r1", None],
        "step_text": ["Step 1: R1", "Step 1: R2", "Step 2: A", "Step 2: B", "Step 2: C", "Step 2: D", "Step 1: S"],
        "final_answer": [None] * 7,
    }
)
LABELS = pl.DataFrame(
    {
        "node_id": ["r1", "r2", "a", "b", "c", "s", "d"],
        "labeler": ["mc", "mc", "mc", "mc", "mc", "mc", "search"],
        "q": [0.5, 0.5, 0.75, 0.25, 0.5, 1.0, 0.0],
        "n": [4, 4, 4, 4, 4, 4, 4],
    }
)


def pairs(min_margin: float) -> list[tuple]:
    frame = preference_pairs(PROBLEMS, NODES, LABELS, "mc", min_margin)
    return sorted(zip(frame["chosen_node_id"], frame["rejected_node_id"], frame["chosen_q"], frame["rejected_q"]))


def test_siblings_with_different_q_make_pairs_above_the_margin():
    assert pairs(0.0) == [("a", "b", 0.75, 0.25), ("a", "c", 0.75, 0.5), ("c", "b", 0.5, 0.25)]
    assert pairs(0.3) == [("a", "b", 0.75, 0.25)]
    assert pairs(0.6) == []


def test_pair_rows_carry_the_prompt_steps_and_ids():
    frame = preference_pairs(PROBLEMS, NODES, LABELS, "mc", 0.3)
    assert frame.schema == PREFERENCE_PAIRS.polars_schema()
    row = frame.row(0, named=True)
    assert row == {
        "pair_id": content_id("pair", "mc", "a", "b"),
        "problem_id": "p1",
        "parent_id": "r1",
        "prompt": "Question: Q1?\nAnswer:\nStep 1: R1\n",
        "chosen": "Step 2: A",
        "rejected": "Step 2: B",
        "chosen_node_id": "a",
        "rejected_node_id": "b",
        "chosen_q": 0.75,
        "rejected_q": 0.25,
        "labeler": "mc",
        "run_id": None,
    }


def test_first_steps_of_a_problem_are_siblings():
    labels = LABELS.with_columns(q=pl.when(pl.col("node_id") == "r2").then(0.0).otherwise(pl.col("q")))
    frame = preference_pairs(PROBLEMS, NODES, labels, "mc", 0.4)
    root_pairs = frame.filter(pl.col("parent_id").is_null())
    assert root_pairs.select("chosen_node_id", "rejected_node_id", "prompt").rows() == [
        ("r1", "r2", "Question: Q1?\nAnswer:\n")
    ]


def test_only_the_named_labelers_q_counts():
    frame = preference_pairs(PROBLEMS, NODES, LABELS, "search", 0.0)
    assert frame.is_empty()  # d has a search label but no sibling does


def test_inferred_search_labels_order_no_pair():
    # Under r1, search probed a (q .75, n 4) and b (q 0, n 4); c's q .5 is copied from a probe
    # elsewhere (n 0), and d (n 0) states the final answer, so its q 0 is exact.
    nodes = NODES.with_columns(final_answer=pl.when(pl.col("node_id") == "d").then(pl.lit("7")))
    labels = pl.DataFrame(
        {
            "node_id": ["a", "b", "c", "d"],
            "labeler": ["search"] * 4,
            "q": [0.75, 0.0, 0.5, 0.0],
            "n": [4, 4, 0, 0],
        }
    )
    frame = preference_pairs(PROBLEMS, nodes, labels, "search", 0.25)
    assert sorted(zip(frame["chosen_node_id"], frame["rejected_node_id"])) == [("a", "b"), ("a", "d")]
    # The same numbers from a judge are verdicts, not estimates: every sibling with a different q pairs.
    judged = preference_pairs(PROBLEMS, nodes, labels.with_columns(labeler=pl.lit("judge")), "judge", 0.25)
    assert sorted(zip(judged["chosen_node_id"], judged["rejected_node_id"])) == [
        ("a", "b"), ("a", "c"), ("a", "d"), ("c", "b"), ("c", "d"),
    ]


def test_negative_margin_is_refused():
    with pytest.raises(ValueError, match="min_margin"):
        preference_pairs(PROBLEMS, NODES, LABELS, "mc", -0.1)


def test_export_puts_the_public_columns_first(tmp_path):
    frame = preference_pairs(PROBLEMS, NODES, LABELS, "mc", 0.0)
    path = export_pairs(frame, tmp_path / "pairs" / "train.parquet")
    written = pl.read_parquet(path)
    assert written.columns[:3] == ["prompt", "chosen", "rejected"]
    assert set(written.columns) == set(PREFERENCE_PAIRS.column_names)
    assert written.height == 3
    with pytest.raises(ValueError, match="rejected"):
        export_pairs(frame.drop("rejected"), tmp_path / "bad.parquet")
