"""Hierarchical Node Compression (HNC, from HRM): merge two consecutive steps into one.

A near-free augmentation: the merged step is one node covering both parts, so a reward model also
learns to score runs of steps. A merged step is correct only when both of its parts are: its hard
label is the AND of theirs and its soft label the min of theirs.
"""

from __future__ import annotations

import polars as pl

from tasks.ids import content_id

VARIANT = "hnc"


def merge_position(solution_id: str, steps: int, seed: int) -> int:
    """Which pair (position i merges steps i and i+1) a solution of `steps` steps gets.

    A hash of seed and solution id, so the choice depends on neither row order nor other rows.

    >>> merge_position("s1", 2, seed=0)
    0
    >>> merge_position("s1", 5, seed=0) == merge_position("s1", 5, seed=0)
    True
    """
    if steps < 2:
        raise ValueError(f"merging needs at least 2 steps, got {steps}")
    return int(content_id("hnc", seed, solution_id), 16) % (steps - 1)


def merge_steps(values: list, position: int, combine) -> list:
    """`values` with items `position` and `position + 1` replaced by `combine(a, b)`.

    >>> merge_steps(["a", "b", "c"], 1, lambda a, b: a + b)
    ['a', 'bc']
    """
    return values[:position] + [combine(values[position], values[position + 1])] + values[position + 2 :]


def hnc_variants(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """One merged-step variant per original solution with at least 2 steps (variants only).

    `frame` has the columns of tasks.dataset.stepwise_rows; so does the result, with `variant`
    "hnc" and `solution_id` "<original id>:hnc:<position>". Only rows whose variant is "original"
    are merged (a variant is never merged again); solutions with one step have no variant. The
    merged step's text is the two steps joined by a newline, its label the AND of theirs, its soft
    label the min, and its node id the second part's: the prefix after the merged step ends at
    that node. Split, prompt, problem and is_correct are the original's. Concatenate the result
    with `frame` to publish both.
    """
    rows = []
    originals = frame.filter((pl.col("variant") == "original") & (pl.col("completions").list.len() >= 2))
    for row in originals.iter_rows(named=True):
        position = merge_position(row["solution_id"], len(row["completions"]), seed)
        rows.append(
            {
                **row,
                "solution_id": f"{row['solution_id']}:{VARIANT}:{position}",
                "completions": merge_steps(row["completions"], position, lambda a, b: f"{a}\n{b}"),
                "labels": merge_steps(row["labels"], position, lambda a, b: a and b),
                "soft_labels": merge_steps(row["soft_labels"], position, min),
                "node_ids": merge_steps(row["node_ids"], position, lambda a, b: b),
                "variant": VARIANT,
            }
        )
    return pl.DataFrame(rows, schema=frame.schema, orient="row").sort("solution_id")
