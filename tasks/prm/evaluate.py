"""How good is a PRM: first-error identification, Best-of-N, calibration, where its minimum falls.

All pure functions of scores and labels; the flow (flows/evaluate.py) scores and stores.

First-error identification follows ProcessBench: the predicted first error is the first step whose
score is below the threshold (-1 if none); accuracy on erroneous solutions counts exact indices,
accuracy on correct ones counts -1 predictions, F1 is their harmonic mean.

Best-of-N picks one of N solutions per problem and reports the share of problems whose pick is
correct, in expectation over the problem's N-subsets of solutions: exact where there is a closed
form, over sampled subsets for majority vote and score-weighted vote (weighted self-consistency,
as OmegaPRM reports it: each answer collects the scores of the solutions that reach it).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tasks.prm.data import StepwiseExample, originals
from tasks.processbench import processbench_f1
from tasks.prm.stats import mean_interval

MAJORITY, RANDOM, ORACLE = "majority", "random", "oracle"
PRM_VOTE = "prm_vote"  # majority vote weighted by the PRM's min score
# Majority vote among the solutions in which the PRM finds no first error (every step at or above
# the first-error threshold); plain majority when it finds one in all of them. A policy that
# repeats a learnt wrong fact leads many samples to one wrong answer: majority vote follows them,
# the filter drops them (bench/bon_headroom.py: with the arith verifier as the filter, +0.033 over
# majority at Best-of-16 on 5-8-step problems; ranking by its minimum, +0.014).
PRM_FILTERED_VOTE = "prm_filtered_vote"
CLEAR = "clear"  # the candidate score the filtered vote reads: 1.0 when no step is below the threshold


def clear_of_errors(per_step: Sequence[float] | None, threshold: float | None) -> float:
    """1.0 when the PRM finds no first error in a solution (no step below `threshold`), else 0.0.

    >>> clear_of_errors([0.9, 0.6], 0.5), clear_of_errors([0.9, 0.4], 0.5), clear_of_errors(None, 0.5)
    (1.0, 0.0, 0.0)
    """
    if per_step is None or threshold is None:
        return 0.0
    return float(predicted_first_error(per_step, threshold) == -1)


# --- first-error identification -------------------------------------------------------------


@dataclass(frozen=True)
class FirstErrorResult:
    threshold: float
    rows: int
    erroneous: int
    erroneous_exact: int
    correct: int
    correct_exact: int
    accuracy_erroneous: float | None
    accuracy_correct: float | None
    f1: float | None  # None when the rows hold only one of the two kinds


def predicted_first_error(per_step: Sequence[float], threshold: float) -> int:
    """The first step scored below `threshold`, -1 if none.

    >>> predicted_first_error([0.9, 0.4, 0.2], 0.5), predicted_first_error([0.9, 0.8], 0.5)
    (1, -1)
    """
    return next((index for index, score in enumerate(per_step) if score < threshold), -1)


def first_error_result(labels: Sequence[int], scores: Sequence[Sequence[float]], threshold: float) -> FirstErrorResult:
    """ProcessBench's numbers for one threshold; `labels[r]` is row r's first wrong step or -1.

    >>> result = first_error_result([1, -1, 0], [[0.9, 0.1], [0.8, 0.7], [0.6]], threshold=0.5)
    >>> result.erroneous_exact, result.correct_exact, result.f1
    (1, 1, 0.6666666666666666)
    """
    erroneous = erroneous_exact = correct = correct_exact = 0
    for label, per_step in zip(labels, scores, strict=True):
        predicted = predicted_first_error(per_step, threshold)
        if label == -1:
            correct += 1
            correct_exact += predicted == -1
        else:
            erroneous += 1
            erroneous_exact += predicted == label
    accuracy_erroneous = erroneous_exact / erroneous if erroneous else None
    accuracy_correct = correct_exact / correct if correct else None
    f1 = None
    if accuracy_erroneous is not None and accuracy_correct is not None:
        f1 = processbench_f1(accuracy_erroneous, accuracy_correct)
    return FirstErrorResult(
        threshold, len(labels), erroneous, erroneous_exact, correct, correct_exact,
        accuracy_erroneous, accuracy_correct, f1,
    )


def choose_threshold(labels: Sequence[int], scores: Sequence[Sequence[float]], fallback: float = 0.5) -> float:
    """The threshold with the best F1 on these rows (the middle one of equally good ones).

    A row is right for an interval of thresholds: with prefix minima m, an erroneous row with
    label L is right for m[L] < t <= m[L-1], a correct row for t <= m[last]. Counting intervals
    with bisection makes this fast on ProcessBench-sized files. Rows of only one kind give no F1:
    then `fallback`.

    >>> choose_threshold([1, -1], [[0.9, 0.2], [0.8, 0.7]])
    0.45
    """
    low_ends: list[float] = []  # erroneous rows: right when low < t <= high
    high_ends: list[float] = []
    correct_ends: list[float] = []  # correct rows: right when t <= end
    for label, per_step in zip(labels, scores, strict=True):
        minima = list(itertools.accumulate(per_step, min))
        if label == -1:
            correct_ends.append(minima[-1])
        else:
            low_ends.append(minima[label])
            high_ends.append(minima[label - 1] if label > 0 else math.inf)
    if not low_ends or not correct_ends:
        return fallback
    for values in (low_ends, high_ends, correct_ends):
        values.sort()
    points = sorted({value for value in low_ends + high_ends + correct_ends if math.isfinite(value)})
    candidates = [points[0] / 2] + [(a + b) / 2 for a, b in itertools.pairwise(points)] + [(points[-1] + 1) / 2]
    best: list[float] = []
    best_f1 = -1.0
    for threshold in candidates:
        right_erroneous = bisect.bisect_left(low_ends, threshold) - bisect.bisect_left(high_ends, threshold)
        right_correct = len(correct_ends) - bisect.bisect_left(correct_ends, threshold)
        f1 = processbench_f1(right_erroneous / len(low_ends), right_correct / len(correct_ends))
        if f1 > best_f1 + 1e-12:
            best, best_f1 = [threshold], f1
        elif abs(f1 - best_f1) <= 1e-12:
            best.append(threshold)
    return round(best[len(best) // 2], 6)


def calibration_split(ids: Sequence[str], fraction: float) -> tuple[list[int], list[int]]:
    """Row indices for choosing the threshold and for measuring with it, fixed by each row's id.

    >>> calibration_split(["a", "b", "c", "d"], 0.5)
    ([2], [0, 1, 3])
    """
    choose, measure = [], []
    for index, identifier in enumerate(ids):
        bucket = int(hashlib.sha256(f"calibration:{identifier}".encode()).hexdigest()[:8], 16) / 0x1_0000_0000
        (choose if bucket < fraction else measure).append(index)
    return choose, measure


# --- Best-of-N --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One solution of a problem as Best-of-N sees it."""

    answer: str | None
    is_correct: bool
    scores: dict[str, float]  # selector name (prm_min, orm, ...) -> score; higher is better


@dataclass(frozen=True)
class BestOfNPoint:
    """Accuracy at N over the problems that took part, with its 95% bootstrap interval (problems
    resampled) and each problem's own expected accuracy, in problem order, for paired comparisons."""

    n: int
    accuracy: float
    problems: int
    low: float | None = None
    high: float | None = None
    values: tuple[float, ...] = field(default=(), repr=False, compare=False)


def best_of_n_sizes(largest: int) -> list[int]:
    """1, 2, 4, ... up to `largest`.

    >>> best_of_n_sizes(16), best_of_n_sizes(6), best_of_n_sizes(0)
    ([1, 2, 4, 8, 16], [1, 2, 4], [])
    """
    sizes, n = [], 1
    while n <= largest:
        sizes.append(n)
        n *= 2
    return sizes


def subsets(count: int, n: int, draws: int, rng: random.Random) -> list[tuple[int, ...]]:
    """Every n-subset of range(count) when there are at most `draws`, else `draws` random ones.

    >>> subsets(3, 2, 10, random.Random(0))
    [(0, 1), (0, 2), (1, 2)]
    """
    if math.comb(count, n) <= draws:
        return list(itertools.combinations(range(count), n))
    return [tuple(sorted(rng.sample(range(count), n))) for _ in range(draws)]


def majority_pick(candidates: Sequence[Candidate], weight: str | None = None) -> int:
    """The first candidate giving the answer with the most votes; solutions without an answer do not vote.

    A vote counts 1, or with `weight` the candidate's score of that name (a score below zero, or
    -inf for a solution the model could not read, counts 0). When every weighted vote counts 0,
    the plain majority decides.

    >>> majority_pick([Candidate("3", False, {}), Candidate("5", True, {}), Candidate("5", True, {})])
    1
    >>> majority_pick([Candidate(None, False, {}), Candidate(None, True, {})])
    0
    >>> two_weak = [Candidate("5", True, {"prm": 0.3}), Candidate("5", True, {"prm": 0.3})]
    >>> majority_pick([Candidate("3", False, {"prm": 0.9}), *two_weak], weight="prm")
    0
    >>> none_clear = [Candidate("3", False, {"clear": 0.0}), *[Candidate("5", True, {"clear": 0.0})] * 2]
    >>> majority_pick(none_clear, weight="clear")
    1
    """
    votes: Counter[str] = Counter()
    for candidate in candidates:
        if candidate.answer is not None:
            votes[candidate.answer.strip()] += 1.0 if weight is None else max(candidate.scores[weight], 0.0)
    if not votes:
        return 0
    if weight is not None and not any(votes.values()):
        return majority_pick(candidates)
    top = max(votes.values())
    for index, candidate in enumerate(candidates):
        if candidate.answer is not None and votes[candidate.answer.strip()] == top:
            return index
    return 0


def _exact_selector(group: Sequence[Candidate], method: str, n: int) -> float:
    """Expected accuracy of picking the best-scored of a uniform n-subset, over all subsets, exactly.

    Ordered by score (ties: the earlier candidate), the candidate in place r is the pick of a subset
    when it is in it and none of the r before it is: C(M-1-r, n-1) of the C(M, n) subsets.
    """
    order = sorted(range(len(group)), key=lambda index: (-group[index].scores[method], index))
    total = math.comb(len(group), n)
    return sum(
        math.comb(len(group) - 1 - place, n - 1) for place, index in enumerate(order) if group[index].is_correct
    ) / total


def _exact_oracle(group: Sequence[Candidate], n: int) -> float:
    """pass@n: the chance that a uniform n-subset holds at least one correct solution."""
    wrong = sum(not candidate.is_correct for candidate in group)
    return 1.0 - math.comb(wrong, n) / math.comb(len(group), n)


def _vote(group: Sequence[Candidate], n: int, draws: int, rng: random.Random, weight: str | None) -> float:
    chosen_sets = subsets(len(group), n, draws, rng)
    return sum(
        group[chosen[majority_pick([group[index] for index in chosen], weight)]].is_correct
        for chosen in chosen_sets
    ) / len(chosen_sets)


def best_of_n(
    groups: Sequence[Sequence[Candidate]],
    selectors: Sequence[str],
    sizes: Sequence[int],
    draws: int = 256,
    seed: int = 0,
    weighted_votes: dict[str, str] | None = None,
) -> dict[str, list[BestOfNPoint]]:
    """Accuracy against N for each selector, majority vote, random choice and oracle pass@N.

    `weighted_votes` adds score-weighted votes: curve name -> the score each vote carries.
    Score selectors, random choice and the oracle are exact expectations over all N-subsets of a
    problem's solutions. Votes have no closed form: they run over every subset when there are at
    most `draws`, else over `draws` seeded random ones (the same subsets for every vote). Problems
    with fewer than N solutions sit out that N (each point says how many took part).

    >>> right, wrong = Candidate("5", True, {"prm": 0.2}), Candidate("4", False, {"prm": 0.9})
    >>> curves = best_of_n([[right, wrong]], ["prm"], [1, 2])
    >>> [(point.n, point.accuracy) for point in curves["prm"]], [p.accuracy for p in curves["oracle"]]
    ([(1, 0.5), (2, 0.0)], [0.5, 1.0])
    """
    weighted = weighted_votes or {}
    methods = [*selectors, *weighted, MAJORITY, RANDOM, ORACLE]
    curves: dict[str, list[BestOfNPoint]] = {method: [] for method in methods}
    for n in sizes:
        values: dict[str, list[float]] = {method: [] for method in methods}
        for problem_index, group in enumerate(groups):
            if len(group) < n:
                continue
            for selector in selectors:
                values[selector].append(_exact_selector(group, selector, n))
            for name, weight in [*weighted.items(), (MAJORITY, None)]:
                values[name].append(_vote(group, n, draws, random.Random(f"{seed}:{problem_index}:{n}"), weight))
            values[RANDOM].append(sum(candidate.is_correct for candidate in group) / len(group))
            values[ORACLE].append(_exact_oracle(group, n))
        if values[ORACLE]:
            for method in methods:
                interval = mean_interval(values[method], seed=seed)
                curves[method].append(BestOfNPoint(
                    n, interval.estimate, interval.units, interval.low, interval.high, tuple(values[method])
                ))
    return curves


# --- where the minimum falls, calibration, labels by step ------------------------------------


def min_on_last_share(scores: Sequence[Sequence[float]]) -> tuple[float | None, int]:
    """Share of solutions (2+ steps) whose lowest score is on the last step, strictly; and how many.

    "The Lessons of Developing PRMs" saw PRMs whose minimum sits on the final step: outcome judges.

    >>> min_on_last_share([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.3]])
    (0.3333333333333333, 3)
    """
    eligible = [per_step for per_step in scores if len(per_step) >= 2]
    if not eligible:
        return None, 0
    on_last = sum(per_step[-1] < min(per_step[:-1]) for per_step in eligible)
    return on_last / len(eligible), len(eligible)


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed: float | None  # share of steps labelled fine


def calibration(predictions: Sequence[float], outcomes: Sequence[bool], bins: int = 10) -> list[CalibrationBin]:
    """Equal-width bins of predicted P(step is fine) with the observed share of fine steps.

    >>> [(b.count, b.observed) for b in calibration([0.1, 0.15, 0.9], [False, True, True], bins=2)]
    [(2, 0.5), (1, 1.0)]
    """
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for predicted, outcome in zip(predictions, outcomes, strict=True):
        members[min(int(predicted * bins), bins - 1)].append((predicted, outcome))
    result = []
    for index, inside in enumerate(members):
        count = len(inside)
        result.append(CalibrationBin(
            index / bins, (index + 1) / bins, count,
            sum(p for p, _ in inside) / count if count else None,
            sum(o for _, o in inside) / count if count else None,
        ))
    return result


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float | None:
    """Count-weighted mean gap between predicted and observed, over non-empty bins.

    >>> expected_calibration_error(calibration([0.1, 0.15, 0.9], [False, True, True], bins=2))
    0.283333333333
    """
    total = sum(b.count for b in bins)
    if not total:
        return None
    return round(sum(b.count * abs(b.mean_predicted - b.observed) for b in bins if b.count) / total, 12)


@dataclass(frozen=True)
class StepLabelShare:
    step: int  # 1-based
    count: int
    positive_share: float
    mean_q: float


def label_distribution(examples: Sequence[StepwiseExample]) -> list[StepLabelShare]:
    """Per step index: how many steps, the share labelled fine and the mean soft label (originals only).

    >>> a = StepwiseExample("a", "p", "Q", ("x", "y"), (True, False), (1.0, 0.0), False)
    >>> b = StepwiseExample("b", "p", "Q", ("x",), (True,), (0.5,), True)
    >>> label_distribution([a, b])
    [StepLabelShare(step=1, count=2, positive_share=1.0, mean_q=0.75), StepLabelShare(step=2, count=1, positive_share=0.0, mean_q=0.0)]
    """
    counts: dict[int, list[tuple[bool, float]]] = {}
    for example in originals(examples):
        for index, (label, q) in enumerate(zip(example.labels, example.soft_labels, strict=True), start=1):
            counts.setdefault(index, []).append((label, q))
    return [
        StepLabelShare(step, len(values), sum(v for v, _ in values) / len(values), sum(q for _, q in values) / len(values))
        for step, values in sorted(counts.items())
    ]
