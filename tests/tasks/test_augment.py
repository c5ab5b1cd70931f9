import doctest

import polars as pl

import tasks.augment
from tasks.augment import hnc_variants, merge_position

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
    assert doctest.testmod(tasks.augment) == doctest.TestResults(failed=0, attempted=3)  # every example ran
