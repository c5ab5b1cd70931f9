"""Dataset augmentations: variants of the stored solutions, marked in the `variant` column.

- Hierarchical Node Compression (HNC, from HRM): merge two consecutive steps into one. A
  near-free augmentation: the merged step is one node covering both parts, so a reward model also
  learns to score runs of steps. A merged step is correct only when both of its parts are: its
  hard label is the AND of theirs and its soft label the min of theirs.
- Slips: verifier-checked negatives. A solution's copy is cut after one of its good steps, and
  that step's stated result is moved by a little. The copy is kept only when the arith verifier
  calls the moved step invalid, so the new label comes from a label source, as every label does.
  A policy's own pool holds few wrong steps (the arith verifier finds one in 468 of the embedded
  policy's 2,000 pool solutions), and this adds them where a PRM needs them: bench/prm_levers.py measures what they do.
"""

from __future__ import annotations

import random
import re

import polars as pl

from tasks.ids import content_id

SLIP = "slip"
REFERENCE = "reference"
LAST_RESULT = re.compile(r"=\s*(-?\d+)(?!.*=\s*-?\d)")  # the last `= number` of a line

VARIANT = "hnc"
_POSITION = "__merge_position"


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
    originals = frame.filter((pl.col("variant") == "original") & (pl.col("completions").list.len() >= 2))
    positions = [merge_position(solution_id, steps, seed)
                 for solution_id, steps in zip(originals["solution_id"], originals["completions"].list.len())]
    at = pl.col(_POSITION)

    def merged(column: str, combine) -> pl.Expr:  # the column's list with items at and at + 1 combined
        values = pl.col(column)
        return pl.concat_list(values.list.slice(0, at), combine(values.list.get(at), values.list.get(at + 1)),
                              values.list.slice(at + 2)).alias(column)

    return (
        originals.with_columns(pl.Series(_POSITION, positions, dtype=pl.Int64))
        .with_columns(
            pl.format("{}:{}:{}", "solution_id", pl.lit(VARIANT), at).alias("solution_id"),
            merged("completions", lambda a, b: pl.concat_str(a, pl.lit("\n"), b)),
            merged("labels", lambda a, b: a & b),
            merged("soft_labels", lambda a, b: pl.min_horizontal(a, b)),
            merged("node_ids", lambda a, b: b),
            pl.lit(VARIANT).alias("variant"),
        )
        .select(frame.columns)
        .cast(frame.schema)
        .sort("solution_id")
    )


def moved_result(step: str, rng: random.Random) -> str | None:
    """The step's first line with its last stated integer result moved a little, or None when the
    line states none. Later lines (an answer line) are dropped: a slipped solution ends there.

    >>> moved_result("Step 2: 5 * 2 = 10\\nThe answer is 10.", random.Random(0))
    'Step 2: 5 * 2 = 11'
    >>> moved_result("We add the two numbers.", random.Random(0)) is None
    True
    """
    line = step.split("\n")[0]
    match = LAST_RESULT.search(line)
    if not match:
        return None
    value = int(match.group(1))
    deltas = [d for d in ((-10, -2, -1, 1, 2, 10) if abs(value) > 20 else (-3, -2, -1, 1, 2, 3)) if value + d > 0]
    return line[: match.start(1)] + str(value + rng.choice(deltas or [1])) + line[match.end(1) :]


def slip_variants(frame: pl.DataFrame, copies: int, seed: int) -> pl.DataFrame:
    """Up to `copies` slipped copies of each original (or reference) training solution (variants only).

    A copy takes the solution's steps before one of its good ones (a step labelled good with only
    good steps before it), then that step with its result moved (`moved_result`). Its labels are
    the prefix's and False; its soft labels the prefix's and 0.0. It is kept only when the arith
    verifier calls the moved step invalid in the problem's context. Test rows get no copies, so
    held-out figures stay on the policy's own solutions. `solution_id` is "<original
    id>:slip:<copy>", and the moved step's node id is a content id of its parent and text: it is not
    a node of the tree.
    """
    from tasks.verification import load_verifiers, verify_solution

    arith = load_verifiers(["arith"])
    rows = []
    chosen = frame.filter(pl.col("variant").is_in(["original", REFERENCE]) & (pl.col("split") == "train"))
    for row in chosen.iter_rows(named=True):
        good = _good_prefix(row["labels"])
        rng = random.Random(content_id(SLIP, seed, row["solution_id"]))
        for copy in range(copies if good else 0):
            at = rng.choice(range(good))
            moved = moved_result(row["completions"][at], rng)
            if moved is None:
                continue
            steps = [*row["completions"][:at], moved]
            if verify_solution(row["prompt"], steps, arith)[-1][0].verdict != "invalid":
                continue
            rows.append({
                **row,
                "solution_id": f"{row['solution_id']}:{SLIP}:{copy}",
                "completions": steps,
                "labels": [*row["labels"][:at], False],
                "soft_labels": [*row["soft_labels"][:at], 0.0],
                "node_ids": [*row["node_ids"][:at], content_id(SLIP, row["node_ids"][at], moved)],
                "is_correct": False,
                "variant": SLIP,
            })
    return pl.DataFrame(rows, schema=frame.schema, orient="row").sort("solution_id")


def reference_rows(problems: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """One row for each training problem of `frame` whose seed has a worked solution: its reference
    steps, every one labelled good (soft 1.0), `is_correct` True, variant 'reference'.

    Why: the policy's own solutions hold few well-formed long ones (the embedded policy stops or
    repeats after step 6), so a PRM trained on them alone misjudges long right solutions; the seeds'
    own solutions, and their slipped copies, fill that in (bench/prm_levers.py). Test problems get
    none, so held-out figures stay on the policy's own solutions. `solution_id` is
    "reference:<problem id>"; node ids are content ids chained from the problem, not tree nodes.
    """
    train = frame.filter((pl.col("split") == "train") & (pl.col("variant") == "original"))
    wanted = set(train["problem_id"].to_list())
    rows = []
    for problem in problems.filter(pl.col("problem_id").is_in(sorted(wanted))).sort("problem_id").iter_rows(named=True):
        steps = list(problem["reference_steps"] or [])
        if not steps:
            continue
        node_ids, parent = [], problem["problem_id"]
        for step in steps:
            parent = content_id(REFERENCE, parent, step)
            node_ids.append(parent)
        rows.append({
            "solution_id": f"{REFERENCE}:{problem['problem_id']}", "problem_id": problem["problem_id"],
            "split": "train", "prompt": problem["question"], "completions": steps, "labels": [True] * len(steps),
            "soft_labels": [1.0] * len(steps), "node_ids": node_ids, "is_correct": True, "variant": REFERENCE,
        })
    return pl.DataFrame(rows, schema=frame.schema, orient="row")


def _good_prefix(labels: list[bool]) -> int:
    """How many leading steps are labelled good."""
    return next((index for index, good in enumerate(labels) if not good), len(labels))
