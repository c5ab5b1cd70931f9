"""The nightly loop's decisions, as pure functions: which seed comes next, and is the candidate better.

"Better" is measured, not assumed: the candidate's Best-of-N accuracy on each held-out problem of
the newest dataset, against the promoted model's on the same fresh solutions (or, before anything
is promoted, against random choice and the ORM baseline). Only a difference whose 95% paired
bootstrap interval lies above zero promotes; a worse candidate, or a better one whose interval
reaches zero, keeps the promoted model.
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


def promotion_on_evidence(
    candidate: Sequence[float],
    baselines: dict[str, Sequence[float]],
    metric: str,
    draws: int = 2000,
    seed: int = 0,
) -> tuple[str, str, str | None, object | None]:
    """('promote' or 'keep', the reason, the baseline that decided, its paired interval).

    `candidate` and each baseline hold one value per held-out problem, in the same problem order
    (e.g. Best-of-16 accuracy). The candidate is promoted only when, against every baseline, the
    lower end of the 95% paired bootstrap interval of (candidate - baseline) is above zero. The
    baseline that decided is the one with the lowest lower end.

    >>> promotion_on_evidence([1.0, 1.0, 1.0, 0.0], {"promoted v1": [0.0, 0.0, 0.0, 0.0]}, "bon@16")[:3]
    ('promote', 'bon@16 over 4 held-out problems: candidate - promoted v1 = +0.750 [0.250, 1.000] (95% paired bootstrap)', 'promoted v1')
    >>> promotion_on_evidence([0.5, 0.5], {"random": [0.5, 0.5]}, "bon@16")[:2]
    ('keep', 'not better: bon@16 over 2 held-out problems: candidate - random = +0.000 [0.000, 0.000] (95% paired bootstrap)')
    """
    from tasks.prm.stats import paired_difference

    if not baselines:
        raise ValueError("a promotion needs something to compare with")
    if not candidate:
        return "keep", f"no held-out problem to measure {metric} on", None, None
    intervals = {name: paired_difference(candidate, values, draws, seed=seed) for name, values in baselines.items()}
    deciding = min(intervals, key=lambda name: intervals[name].low)
    interval = intervals[deciding]
    measured = "; ".join(
        f"candidate - {name} = {value.estimate:+.3f} [{value.low:.3f}, {value.high:.3f}]" for name, value in intervals.items()
    )
    reason = f"{metric} over {len(candidate)} held-out problems: {measured} (95% paired bootstrap)"
    if interval.low > 0:
        return "promote", reason, deciding, interval
    if interval.estimate <= 0:
        return "keep", f"not better: {reason}", deciding, interval
    return "keep", f"better but not significantly (the interval reaches 0): {reason}", deciding, interval
