"""Step-level preference pairs (Step-DPO / Tree-PLV style) from sibling steps in the rollout tree.

Siblings continue the same prefix: the same parent node, or both first steps of the same problem.
Two siblings whose q (from one labeller) differs by at least `min_margin` make a pair: the prompt
is the question plus the shared prefix steps, the chosen step the one with the higher q, the
rejected step the other. Siblings with equal q make no pair, whatever the margin.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import polars as pl

from schemas.tables import PREFERENCE_PAIRS
from tasks.ids import content_id
from tasks.text_format import prefix_for

PUBLIC_COLUMNS = ("prompt", "chosen", "rejected")


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

    Nodes without a `labeler` label take part in no pair. `run_id` is left null for the caller.
    """
    if not min_margin >= 0:
        raise ValueError(f"min_margin must be a number >= 0, got {min_margin}")
    questions = dict(zip(problems_frame["problem_id"], problems_frame["question"], strict=True))
    chosen_labels = labels_frame.filter(pl.col("labeler") == labeler)
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
