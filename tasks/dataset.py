"""Build a dataset version in TRL's stepwise-supervision form: prompt, completions, labels.

One row per sampled solution (a path from a first step to a terminal step). Soft labels and ids
ride alongside. The split is decided per problem by a hash, so a problem never lands in both
splits and never changes split as the warehouse grows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

STEPWISE_COLUMNS = ("prompt", "completions", "labels")
# A dataset version's rows, one per solution (variants included: tasks/augment.py).
STEPWISE_SCHEMA = {
    "solution_id": pl.String, "problem_id": pl.String, "split": pl.String, "prompt": pl.String,
    "completions": pl.List(pl.String), "labels": pl.List(pl.Boolean),
    "soft_labels": pl.List(pl.Float64), "node_ids": pl.List(pl.String),
    "is_correct": pl.Boolean, "variant": pl.String,
}
VERIFIER_PREFIX = "verifier:"  # a dataset labelled by one verifier alone: `verifier:arith`


@dataclass(frozen=True)
class SkippedSolution:
    solution_id: str
    reason: str


def split_of(problem_id: str, test_fraction: float) -> str:
    """'test' or 'train', fixed for a problem by its id.

    >>> split_of("abc", 0.0)
    'train'
    >>> split_of("abc", 0.999999)
    'test'
    """
    bucket = int(hashlib.sha256(problem_id.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    return "test" if bucket < test_fraction else "train"


def stepwise_rows(
    problems: pl.DataFrame,
    nodes: pl.DataFrame,
    labels: pl.DataFrame,
    labeler: str,
    test_fraction: float,
) -> tuple[pl.DataFrame, list[SkippedSolution]]:
    """The dataset rows, plus the solutions left out and why (a step without a label)."""
    questions = dict(zip(problems["problem_id"], problems["question"], strict=True))
    chosen = labels.filter(pl.col("labeler") == labeler)
    label_of = {
        node: (bool(hard), float(q))
        for node, hard, q in zip(chosen["node_id"], chosen["hard"], chosen["q"], strict=True)
    }
    parent_of = dict(zip(nodes["node_id"], nodes["parent_id"], strict=True))
    text_of = dict(zip(nodes["node_id"], nodes["step_text"], strict=True))
    columns: dict[str, list] = {name: [] for name in STEPWISE_SCHEMA}  # built column by column
    skipped: list[SkippedSolution] = []
    terminal = nodes.filter(pl.col("is_terminal"))
    for leaf, problem_id, is_correct in zip(
        terminal["node_id"], terminal["problem_id"], terminal["is_correct"], strict=True
    ):
        path: list[str] = []
        current: str | None = leaf
        while current is not None:
            path.append(current)
            current = parent_of.get(current)
        path.reverse()
        path, missing = labelled_through_first_error(path, label_of)
        if missing:
            skipped.append(SkippedSolution(leaf, f"{missing} step(s) have no {labeler} label"))
            continue
        row = {
            "solution_id": leaf,
            "problem_id": problem_id,
            "split": split_of(problem_id, test_fraction),
            "prompt": questions[problem_id],
            "completions": [text_of[node] for node in path],
            "labels": [label_of[node][0] for node in path],
            "soft_labels": [label_of[node][1] for node in path],
            "node_ids": path,
            "is_correct": bool(is_correct),
            "variant": "original",
        }
        for name, value in row.items():
            columns[name].append(value)
    frame = pl.DataFrame(columns, schema=STEPWISE_SCHEMA).sort("solution_id")
    return frame, skipped


def labelled_through_first_error(path: list[str], label_of: dict) -> tuple[list[str], int]:
    """The path up to its first negative step, and how many steps before that lack a label.

    Steps after the first negative one may be unlabelled (a labeller that only vouches for the
    first error): the solution is then kept up to and including that step.

    >>> labelled_through_first_error(["a", "b", "c"], {"a": (True, 1.0), "b": (False, 0.0)})
    (['a', 'b'], 0)
    >>> labelled_through_first_error(["a", "b"], {"b": (True, 1.0)})
    (['a', 'b'], 1)
    >>> labelled_through_first_error(["a", "b"], {"a": (False, 0.0), "b": (False, 0.0)})
    (['a', 'b'], 0)
    """
    kept: list[str] = []
    for node in path:
        if node not in label_of:
            if any(not label_of[step][0] for step in kept):
                break
            return path, sum(1 for step in path if step not in label_of)
        kept.append(node)
    return kept, 0


def with_check_columns(dataset: pl.DataFrame) -> pl.DataFrame:
    """Derived columns the dataset expectations read: list lengths and splits per problem."""
    return dataset.with_columns(
        n_completions=pl.col("completions").list.len(),
        n_labels=pl.col("labels").list.len(),
        n_soft_labels=pl.col("soft_labels").list.len(),
        splits_of_problem=pl.col("split").n_unique().over("problem_id"),
    ).select("solution_id", "problem_id", "split", "n_completions", "n_labels", "n_soft_labels", "splits_of_problem")


def verifier_labels(nodes: pl.DataFrame, verdicts: pl.DataFrame, labeler: str) -> pl.DataFrame:
    """Step labels from one verifier's verdicts, for `labeler` = `verifier:<name>`.

    A step is good while no step of its prefix (itself included) was judged invalid, the way a
    Monte Carlo label reads ("this prefix can still reach the answer"); a step the verifier did
    not judge (unknown, or no verdict) counts as not invalid. q is 1.0 or 0.0, with no rollouts.

    >>> nodes = pl.DataFrame({"node_id": ["a", "b", "c"], "parent_id": [None, "a", "b"]})
    >>> verdicts = pl.DataFrame({"node_id": ["a", "b", "c"], "verifier": ["arith"] * 3,
    ...                          "verdict": ["valid", "invalid", "valid"]})
    >>> verifier_labels(nodes, verdicts, "verifier:arith").sort("node_id")["hard"].to_list()
    [True, False, False]
    """
    from schemas.tables import STEP_LABELS
    from tasks.ids import content_id

    name = labeler.removeprefix(VERIFIER_PREFIX)
    invalid = set(verdicts.filter((pl.col("verifier") == name) & (pl.col("verdict") == "invalid"))["node_id"])
    parent_of = dict(zip(nodes["node_id"], nodes["parent_id"], strict=True))
    bad: dict[str, bool] = {}

    def is_bad(node: str) -> bool:
        chain = []
        while node is not None and node not in bad:
            chain.append(node)
            node = parent_of.get(node)
        known = bad.get(node, False) if node is not None else False
        for step in reversed(chain):
            known = known or step in invalid
            bad[step] = known
        return bad[chain[0]] if chain else known

    rows = [
        {"label_id": content_id("label", node, labeler), "node_id": node, "labeler": labeler,
         "q": 0.0 if is_bad(node) else 1.0, "hard": not is_bad(node), "n": 0, "n_correct": 0}
        for node in nodes["node_id"]
    ]
    return STEP_LABELS.frame(rows)
