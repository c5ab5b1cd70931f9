"""Step-level preference pairs (Step-DPO / Tree-PLV style) from sibling steps in the rollout tree.

Siblings continue the same prefix: the same parent node, or both first steps of the same problem.
Two siblings whose q (from one labeller) differs by at least `min_margin` make a pair: the prompt
is the question plus the shared prefix steps, the chosen step the one with the higher q, the
rejected step the other. Siblings with equal q make no pair, whatever the margin.

Only a measured q orders a pair. For the labellers whose q estimates the chance of reaching the
answer (mc, search, adaptive, progress) a q is measured when rollouts were spent on the step (n > 0) or the
step states the final answer (q is then exactly 0 or 1). A label with n = 0 on any other step is
inferred, not measured: search copies an unprobed step's q from the nearest probe, and gives q = 1
to a step on a correct solution; ordering siblings by such a q would make pairs out of the
search's bookkeeping. Those steps take part in no pair. Judge and consensus labels are verdicts,
not estimates, and order pairs as they are.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import polars as pl

from schemas.tables import PREFERENCE_PAIRS
from tasks.ids import content_id
from tasks.text_format import prefix_for

PUBLIC_COLUMNS = ("prompt", "chosen", "rejected")
ESTIMATING_LABELERS = ("mc", "search", "adaptive", "progress")  # q is a Monte Carlo estimate; n counts its rollouts


def pair_id(labeler: str, chosen_node_id: str, rejected_node_id: str) -> str:
    return content_id("pair", labeler, chosen_node_id, rejected_node_id)


def preference_pairs(
    problems_frame: pl.DataFrame,
    nodes_frame: pl.DataFrame,
    labels_frame: pl.DataFrame,
    labeler: str,
    min_margin: float,
) -> pl.DataFrame:
    """Every sibling pair whose q differs by at least `min_margin`, as PREFERENCE_PAIRS rows.

    Nodes without a `labeler` label, or with an inferred one (see the module docstring), take
    part in no pair. `run_id` is left null for the caller.
    """
    if not min_margin >= 0:
        raise ValueError(f"min_margin must be a number >= 0, got {min_margin}")
    questions = dict(zip(problems_frame["problem_id"], problems_frame["question"], strict=True))
    chosen_labels = labels_frame.filter(pl.col("labeler") == labeler)
    if labeler in ESTIMATING_LABELERS:
        chosen_labels = measured_labels(chosen_labels, nodes_frame)
    q_of = dict(zip(chosen_labels["node_id"], chosen_labels["q"], strict=True))
    parent_of = dict(zip(nodes_frame["node_id"], nodes_frame["parent_id"], strict=True))
    text_of = dict(zip(nodes_frame["node_id"], nodes_frame["step_text"], strict=True))
    siblings: dict[tuple[str, str | None], list[str]] = {}
    for node, problem in zip(nodes_frame["node_id"], nodes_frame["problem_id"], strict=True):
        if q_of.get(node) is not None:
            siblings.setdefault((problem, parent_of[node]), []).append(node)
    rows = []
    for (problem, parent), group in sorted(siblings.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        prompt = prefix_for(questions[problem], _steps_through(parent, parent_of, text_of))
        for first, second in combinations(sorted(group), 2):
            if q_of[first] == q_of[second] or abs(q_of[first] - q_of[second]) < min_margin:
                continue
            better, worse = (first, second) if q_of[first] > q_of[second] else (second, first)
            rows.append(
                {
                    "pair_id": pair_id(labeler, better, worse),
                    "problem_id": problem,
                    "parent_id": parent,
                    "prompt": prompt,
                    "chosen": text_of[better],
                    "rejected": text_of[worse],
                    "chosen_node_id": better,
                    "rejected_node_id": worse,
                    "chosen_q": q_of[better],
                    "rejected_q": q_of[worse],
                    "labeler": labeler,
                    "run_id": None,
                }
            )
    return PREFERENCE_PAIRS.frame(rows).sort("pair_id")


def measured_labels(labels_frame: pl.DataFrame, nodes_frame: pl.DataFrame) -> pl.DataFrame:
    """The labels whose q was measured: rollouts spent on the step (n > 0), or a step that states
    the final answer (its q is the answer's correctness). Drops search's inferred labels."""
    answered = nodes_frame.filter(pl.col("final_answer").is_not_null())["node_id"]
    return labels_frame.filter((pl.col("n") > 0) | pl.col("node_id").is_in(answered.implode()))


def _steps_through(node: str | None, parent_of: dict, text_of: dict) -> list[str]:
    steps: list[str] = []
    while node is not None:
        steps.append(text_of[node])
        node = parent_of[node]
    return steps[::-1]


def export_pairs(frame: pl.DataFrame, path: Path) -> Path:
    """Write the pairs as Parquet: `prompt`, `chosen`, `rejected` first, the other columns after."""
    missing = [column for column in PUBLIC_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"the pairs frame lacks {', '.join(missing)}: build it with preference_pairs")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extras = [column for column in frame.columns if column not in PUBLIC_COLUMNS]
    frame.select(*PUBLIC_COLUMNS, *extras).write_parquet(path)
    return path
