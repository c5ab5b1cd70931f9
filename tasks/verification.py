"""Run step verifiers over solutions: one verdict per step and verifier, and the verdicts table rows.

A step is judged in the context of the problem and the steps before it on its own path, so a
node of the rollout tree has exactly one verdict per verifier, whichever solution reached it:
`verify_tree` verifies each node once. A per-solution time budget bounds the total: once spent,
the remaining checks of that solution are `unknown` with the reason, never skipped silently.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import polars as pl

from schemas.records import Node, Verdict
from schemas.tables import VERDICTS
from tasks.ids import content_id
from tasks.verifiers import VERIFIER_NAMES, StepContext, Verifier, get_verifier
from tasks.verifiers.base import UNKNOWN


def parse_verifier_names(text: str) -> tuple[str, ...]:
    """The verifier names of a comma-separated option, checked, in the given order, once each.

    >>> parse_verifier_names("arith, z3,arith")
    ('arith', 'z3')
    >>> parse_verifier_names("")
    ()
    >>> parse_verifier_names("arith,sympy")
    Traceback (most recent call last):
    ...
    ValueError: unknown verifier 'sympy'; choose from: arith, z3, lean, code
    """
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if name not in VERIFIER_NAMES:
            raise ValueError(f"unknown verifier {name!r}; choose from: {', '.join(VERIFIER_NAMES)}")
        if name not in names:
            names.append(name)
    return tuple(names)


def load_verifiers(names: Iterable[str]) -> list[Verifier]:
    return [get_verifier(name) for name in names]


def budget_spent(verifier: str, budget_ms: float) -> Verdict:
    return Verdict(verifier, UNKNOWN, reason=f"not checked: the solution's budget of {budget_ms:g} ms was spent")


def verify_solution(
    problem_text: str,
    steps: Sequence[str],
    verifiers: Sequence[Verifier],
    budget_ms: float | None = None,
) -> list[list[Verdict]]:
    """Verdicts per step, per verifier (in the order given).

    Each verifier keeps its own hard timeout per step; `budget_ms` caps the whole solution.
    """
    return _verify_path(problem_text, steps, verifiers, budget_ms, [None] * len(steps))


def _verify_path(
    problem_text: str,
    steps: Sequence[str],
    verifiers: Sequence[Verifier],
    budget_ms: float | None,
    known: Sequence[Sequence[Verdict] | None],
) -> list[list[Verdict]]:
    """Like verify_solution, reusing `known[i]` (a step already verified) where it is not None."""
    began = time.perf_counter()
    verdicts: list[list[Verdict]] = []
    for index, step in enumerate(steps):
        if known[index] is not None:
            verdicts.append(list(known[index]))
            continue
        context = StepContext(problem_text, tuple(steps[:index]))
        row = []
        for verifier in verifiers:
            spent_ms = (time.perf_counter() - began) * 1000.0
            if budget_ms is not None and spent_ms >= budget_ms:
                row.append(budget_spent(verifier.name, budget_ms))
            else:
                row.append(verifier.verify(step, context))
        verdicts.append(row)
    return verdicts


def solution_paths(nodes_by_id: Mapping[str, Node]) -> dict[str, list[Node]]:
    """Every solution of a tree: terminal node id -> its nodes, first step first."""
    paths = {}
    for node in nodes_by_id.values():
        if node.is_terminal:
            path = [node]
            while path[-1].parent_id is not None:
                path.append(nodes_by_id[path[-1].parent_id])
            paths[node.node_id] = path[::-1]
    return dict(sorted(paths.items()))


def verify_tree(
    nodes_by_id: Mapping[str, Node],
    questions: Mapping[str, str],
    verifiers: Sequence[Verifier],
    budget_ms: float | None = None,
) -> dict[str, list[Verdict]]:
    """node id -> its verdicts (one per verifier), each node verified once, solution by solution.

    `questions` maps problem id to question. A node shared by several solutions is verified for
    the first of them (in terminal-id order) and reused by the rest; the budget counts new work.
    """
    verdicts: dict[str, list[Verdict]] = {}
    for path in solution_paths(nodes_by_id).values():
        question = questions[path[0].problem_id]
        steps = [node.step_text for node in path]
        known = [verdicts.get(node.node_id) for node in path]
        for node, row in zip(path, _verify_path(question, steps, verifiers, budget_ms, known), strict=True):
            verdicts.setdefault(node.node_id, row)
    return verdicts


def verdict_id(node_id: str, verifier: str) -> str:
    return content_id("verdict", node_id, verifier)


def verdicts_frame(verdicts_by_node: Mapping[str, Sequence[Verdict]], run_id: str) -> pl.DataFrame:
    """Rows of the VERDICTS table, one per node and verifier."""
    rows = [
        {
            "verdict_id": verdict_id(node_id, verdict.verifier),
            "node_id": node_id,
            "verifier": verdict.verifier,
            "verdict": verdict.verdict,
            "evidence": verdict.evidence,
            "reason": verdict.reason,
            "ms": verdict.ms,
            "run_id": run_id,
        }
        for node_id, row in verdicts_by_node.items()
        for verdict in row
    ]
    return VERDICTS.frame(rows)
