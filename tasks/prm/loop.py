"""The nightly loop's decisions, as pure functions: which seed comes next, and is the candidate better.

"Better" is ProcessBench-style F1 of first-error identification on the newest dataset's held-out
problems, both models measured on the same rows with the same threshold procedure. Only a strictly
higher F1 promotes; a tie, or an F1 that cannot be computed, keeps the promoted model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence


def seeds_of_generate_runs(config_jsons: Iterable[str | None]) -> list[int]:
    """The seeds synthetic generate runs used (runs from a seed file draw no synthetic problems).

    >>> seeds_of_generate_runs(['{"seed": 3, "seeds_file": null}', '{"seed": 9, "seeds_file": "a.jsonl"}', None])
    [3]
    """
    seeds = []
    for text in config_jsons:
        if not text:
            continue
        config = json.loads(text)
        if config.get("seeds_file") is None and isinstance(config.get("seed"), int):
            seeds.append(config["seed"])
    return sorted(set(seeds))


def next_seed(
    used: Sequence[int],
    first_seed: int,
    known_problems: set[str],
    problem_ids_for: Callable[[int], list[str]],
    tries: int = 1000,
) -> tuple[int, str]:
    """The first seed after every used one whose problems are all new to the warehouse, with why.

    >>> next_seed([0, 4], 1, set(), lambda seed: [f"p{seed}"])
    (5, 'seed 5: after the 2 seed(s) earlier generate runs used (up to 4); all 1 of its problems are new')
    >>> next_seed([], 1, {"p1"}, lambda seed: [f"p{seed}"])
    (2, 'seed 2: no generate run recorded yet; all 1 of its problems are new (skipped 1 seed(s) whose problems were already used)')
    """
    candidate = max(max(used) + 1, first_seed) if used else first_seed
    context = (
        f"after the {len(used)} seed(s) earlier generate runs used (up to {max(used)})" if used
        else "no generate run recorded yet"
    )
    for skipped in range(tries):
        problems = problem_ids_for(candidate)
        if not any(problem in known_problems for problem in problems):
            note = f" (skipped {skipped} seed(s) whose problems were already used)" if skipped else ""
            return candidate, f"seed {candidate}: {context}; all {len(problems)} of its problems are new{note}"
        candidate += 1
    raise RuntimeError(f"no seed within {tries} of {candidate - tries} gives only new problems")


def promotion(candidate_f1: float | None, promoted_f1: float | None, has_promoted: bool) -> tuple[str, str]:
    """('promote' or 'keep', the reason with the numbers).

    >>> promotion(0.5, None, has_promoted=False)
    ('promote', 'no model is promoted yet')
    >>> promotion(0.6, 0.5, has_promoted=True)
    ('promote', 'candidate F1 0.6000 > promoted F1 0.5000')
    >>> promotion(0.5, 0.5, has_promoted=True)
    ('keep', 'candidate F1 0.5000 <= promoted F1 0.5000 (a tie keeps the promoted model)')
    >>> promotion(None, 0.5, has_promoted=True)
    ('keep', 'F1 undefined on the held-out set (it needs both erroneous and correct solutions)')
    """
    if not has_promoted:
        return "promote", "no model is promoted yet"
    if candidate_f1 is None:
        return "keep", "F1 undefined on the held-out set (it needs both erroneous and correct solutions)"
    if promoted_f1 is None or candidate_f1 > promoted_f1:
        shown = "undefined" if promoted_f1 is None else f"{promoted_f1:.4f}"
        return "promote", f"candidate F1 {candidate_f1:.4f} > promoted F1 {shown}"
    return "keep", f"candidate F1 {candidate_f1:.4f} <= promoted F1 {promoted_f1:.4f} (a tie keeps the promoted model)"
