import doctest

import polars as pl

import tasks.augment
from tasks.augment import hnc_variants, merge_position, slip_variants

SCHEMA = {
    "solution_id": pl.String, "problem_id": pl.String, "split": pl.String, "prompt": pl.String,
    "completions": pl.List(pl.String), "labels": pl.List(pl.Boolean),
    "soft_labels": pl.List(pl.Float64), "node_ids": pl.List(pl.String),
    "is_correct": pl.Boolean, "variant": pl.String,
}


def row(solution_id, completions, labels, soft, variant="original"):
    return {
        "solution_id": solution_id, "problem_id": "p", "split": "train", "prompt": "Q?",
        "completions": completions, "labels": labels, "soft_labels": soft,
        "node_ids": [f"{solution_id}-n{i}" for i in range(len(completions))],
        "is_correct": False, "variant": variant,
    }


FRAME = pl.DataFrame(
    [
        row("s1", ["a", "b", "c"], [True, False, False], [0.5, 0.0, 0.0]),  # merges at 0 for seed 0
        row("s2", ["d", "e", "f"], [True, True, False], [1.0, 0.75, 0.0]),  # merges at 1 for seed 0
        row("s3", ["g"], [True], [1.0]),  # one step: no variant
        row("s4:hnc:0", ["h\ni", "j"], [True, True], [0.5, 0.5], variant="hnc"),  # never merged again
    ],
    schema=SCHEMA,
    orient="row",
)


def test_merge_position_is_seeded_and_in_range():
    assert [merge_position(s, 3, seed=0) for s in ("s1", "s2", "s3")] == [0, 1, 1]
    assert [merge_position(s, 4, seed=7) for s in ("s1", "s2", "s3")] == [2, 0, 0]


def test_hnc_variants_merge_one_pair_per_solution():
    variants = hnc_variants(FRAME, seed=0)
    assert variants.schema == FRAME.schema
    assert variants.to_dicts() == [
        {
            "solution_id": "s1:hnc:0", "problem_id": "p", "split": "train", "prompt": "Q?",
            "completions": ["a\nb", "c"], "labels": [False, False], "soft_labels": [0.0, 0.0],
            "node_ids": ["s1-n1", "s1-n2"], "is_correct": False, "variant": "hnc",
        },
        {
            "solution_id": "s2:hnc:1", "problem_id": "p", "split": "train", "prompt": "Q?",
            "completions": ["d", "e\nf"], "labels": [True, False], "soft_labels": [1.0, 0.0],
            "node_ids": ["s2-n0", "s2-n2"], "is_correct": False, "variant": "hnc",
        },
    ]


def test_hnc_variants_are_deterministic_and_independent_of_row_order():
    assert hnc_variants(FRAME.reverse(), seed=0).equals(hnc_variants(FRAME, seed=0))
    assert hnc_variants(FRAME, seed=1)["solution_id"].to_list() != hnc_variants(FRAME, seed=0)["solution_id"].to_list()


def test_merged_step_is_positive_only_when_both_parts_are():
    frame = pl.DataFrame([row("s1", ["a", "b"], [True, True], [0.75, 0.25])], schema=SCHEMA, orient="row")
    variant = hnc_variants(frame, seed=0).row(0, named=True)
    assert (variant["labels"], variant["soft_labels"]) == ([True], [0.25])


def test_no_rows_gives_an_empty_frame_with_the_schema():
    empty = hnc_variants(FRAME.clear(), seed=0)
    assert empty.is_empty() and empty.schema == FRAME.schema


def test_docstring_examples():
    assert doctest.testmod(tasks.augment) == doctest.TestResults(failed=0, attempted=4)  # every example ran


QUESTION = "Mia has 14 apples. She gets 7 more. She gives away 3. How many apples does Mia have now?"


def slip_frame():
    right = ["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18\nThe answer is 18."]
    rows = [
        {**row("r1", right, [True, True], [1.0, 0.75]), "prompt": QUESTION},
        {**row("r2", ["Step 1: 14 + 7 = 22", "Step 2: 22 - 3 = 19"], [False, False], [0.0, 0.0]), "prompt": QUESTION},
        {**row("r3", ["We add the apples she gets.", "Step 2: 21 - 3 = 18"], [True, True], [1.0, 1.0]), "prompt": QUESTION},
        {**row("t1", right, [True, True], [1.0, 1.0]), "prompt": QUESTION, "split": "test"},
    ]
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def test_slip_variants_cut_after_a_moved_result_the_verifier_calls_invalid():
    variants = slip_variants(slip_frame(), copies=3, seed=0)
    assert variants.schema == SCHEMA
    assert variants["variant"].unique().to_list() == ["slip"]
    # r2 has no good step; t1 is a test row; r3's first step states no result, its second can be moved
    assert sorted({sid.split(":")[0] for sid in variants["solution_id"]}) == ["r1", "r3"]
    for variant in variants.iter_rows(named=True):
        original = next(r for r in slip_frame().iter_rows(named=True) if r["solution_id"] == variant["solution_id"].split(":")[0])
        at = len(variant["completions"]) - 1
        assert variant["completions"][:at] == original["completions"][:at]
        assert variant["labels"] == [True] * at + [False]
        assert variant["soft_labels"] == original["soft_labels"][:at] + [0.0]
        assert variant["node_ids"][:at] == original["node_ids"][:at] and variant["node_ids"][at] not in original["node_ids"]
        assert variant["is_correct"] is False and "\n" not in variant["completions"][at]
        stated, moved = original["completions"][at].split("\n")[0], variant["completions"][at]
        assert moved != stated and moved.rsplit("=", 1)[0] == stated.rsplit("=", 1)[0]


def test_slip_variants_keep_only_what_the_verifier_rejects():
    # a step whose stated result the verifier cannot check (a name bound, not arithmetic) gives no copy
    unchecked = pl.DataFrame([{**row("b1", ["Let x = 5.", "Then y = 7."], [True, True], [1.0, 1.0]), "prompt": QUESTION}],
                             schema=SCHEMA, orient="row")
    assert slip_variants(unchecked, copies=3, seed=0).is_empty()


def test_slip_variants_are_seeded():
    assert slip_variants(slip_frame(), 2, seed=0).equals(slip_variants(slip_frame().reverse(), 2, seed=0))
    assert slip_variants(slip_frame(), 0, seed=0).is_empty()
