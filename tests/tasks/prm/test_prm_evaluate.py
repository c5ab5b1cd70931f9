import math
import random
from collections import Counter

import pytest

from tasks.prm.data import StepwiseExample, processbench_rows, targets
from tasks.prm.evaluate import (
    Candidate, best_of_n, best_of_n_sizes, calibration, calibration_split, choose_threshold, clear_of_errors,
    expected_calibration_error, first_error_result, label_distribution, majority_pick, min_on_last_share, subsets,
)


def test_first_error_counts_exact_indices_and_minus_one():
    labels = [0, 2, -1, -1, 1]
    scores = [[0.2, 0.9], [0.9, 0.1, 0.1], [0.8, 0.7], [0.8, 0.3], [0.9, 0.95]]
    result = first_error_result(labels, scores, threshold=0.5)
    # predicted: 0 (right), 1 (early: wrong), -1 (right), 1 (wrong), -1 (missed)
    assert (result.erroneous, result.erroneous_exact, result.correct, result.correct_exact) == (3, 1, 2, 1)
    assert result.accuracy_erroneous == pytest.approx(1 / 3)
    assert result.accuracy_correct == 0.5
    assert result.f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))


def test_f1_is_undefined_with_one_kind_of_row_and_the_threshold_falls_back():
    assert first_error_result([-1], [[0.9]], 0.5).f1 is None
    assert choose_threshold([-1, -1], [[0.9], [0.2]], fallback=0.42) == 0.42


def test_chosen_threshold_is_as_good_as_the_best_on_a_fine_grid():
    rng = random.Random(7)
    labels, scores = [], []
    for _ in range(60):
        steps = rng.randint(1, 5)
        label = rng.choice([-1] + list(range(steps)))
        labels.append(label)
        scores.append([round(rng.random(), 3) for _ in range(steps)])
    chosen = choose_threshold(labels, scores)
    best_on_grid = max(first_error_result(labels, scores, t / 1000).f1 for t in range(1001))
    assert first_error_result(labels, scores, chosen).f1 == pytest.approx(best_on_grid)


def test_threshold_ties_take_the_middle_of_the_best_interval():
    # One erroneous row (error at step 1) and one correct row; any t in (0.2, 0.7] is perfect.
    assert choose_threshold([1, -1], [[0.9, 0.2], [0.8, 0.7]]) == 0.45


def test_calibration_split_is_fixed_by_id_and_disjoint():
    ids = [f"row-{i}" for i in range(40)]
    choose, measure = calibration_split(ids, 0.5)
    assert sorted(choose + measure) == list(range(40))
    assert calibration_split(list(reversed(ids)), 0.5)[0] == sorted(39 - i for i in choose)
    assert 10 < len(choose) < 30


def test_best_of_n_hand_computed():
    a = Candidate("7", True, {"prm": 0.9})
    b = Candidate("8", False, {"prm": 0.95})
    c = Candidate("7", True, {"prm": 0.1})
    curves = best_of_n([[a, b, c]], ["prm"], [1, 2, 3])
    accuracy = {method: [round(point.accuracy, 6) for point in points] for method, points in curves.items()}
    assert accuracy == {
        "prm": [round(2 / 3, 6), round(1 / 3, 6), 0.0],  # picks b whenever b is there
        "majority": [round(2 / 3, 6), round(2 / 3, 6), 1.0],  # ties go to the first: {a,b} a, {a,c} a, {b,c} b
        "random": [round(2 / 3, 6), round(2 / 3, 6), round(2 / 3, 6)],
        "oracle": [round(2 / 3, 6), 1.0, 1.0],
    }
    assert [point.problems for point in curves["prm"]] == [1, 1, 1]


def test_weighted_vote_hand_computed():
    # Two confident wrong solutions agree on 8; three hesitant right ones on 7.
    group = [
        Candidate("8", False, {"prm": 0.9}), Candidate("8", False, {"prm": 0.8}),
        Candidate("7", True, {"prm": 0.3}), Candidate("7", True, {"prm": 0.3}), Candidate("7", True, {"prm": 0.3}),
    ]
    curves = best_of_n([group], ["prm"], [5], weighted_votes={"vote": "prm"})
    accuracy = {method: points[0].accuracy for method, points in curves.items()}
    assert accuracy["majority"] == 1.0  # three votes to two
    assert accuracy["vote"] == 0.0  # 1.7 against 0.9
    assert accuracy["prm"] == 0.0
    unread = [Candidate("8", False, {"prm": -math.inf}), Candidate("7", True, {"prm": 0.1})]
    assert best_of_n([unread], [], [2], weighted_votes={"vote": "prm"})["vote"][0].accuracy == 1.0


def weighted_pick(group: list[Candidate], chosen: tuple[int, ...]) -> int:
    totals: Counter[str] = Counter()
    for i in chosen:
        totals[group[i].answer] += group[i].scores["prm"]
    return next(i for i in chosen if totals[group[i].answer] == max(totals.values()))


def test_exact_expectations_match_brute_force_over_every_subset():
    import itertools

    rng = random.Random(3)
    group = [Candidate(str(rng.randint(1, 3)), rng.random() < 0.4, {"prm": rng.choice([0.1, 0.5, 0.5, 0.9])}) for _ in range(7)]
    for n in (1, 2, 4, 7):
        chosen_sets = list(itertools.combinations(range(7), n))
        by_score = sum(group[max(chosen, key=lambda i: (group[i].scores["prm"], -i))].is_correct for chosen in chosen_sets)
        oracle = sum(any(group[i].is_correct for i in chosen) for chosen in chosen_sets)
        majority = sum(group[chosen[majority_pick([group[i] for i in chosen])]].is_correct for chosen in chosen_sets)
        voted = sum(group[weighted_pick(group, chosen)].is_correct for chosen in chosen_sets)
        curves = best_of_n([group], ["prm"], [n], draws=1000, weighted_votes={"vote": "prm"})  # 1000 > C(7, n)
        assert curves["prm"][0].accuracy == pytest.approx(by_score / len(chosen_sets))
        assert curves["oracle"][0].accuracy == pytest.approx(oracle / len(chosen_sets))
        assert curves["majority"][0].accuracy == pytest.approx(majority / len(chosen_sets))
        assert curves["vote"][0].accuracy == pytest.approx(voted / len(chosen_sets))
        assert curves["random"][0].accuracy == pytest.approx(sum(c.is_correct for c in group) / 7)


def test_problems_with_fewer_solutions_sit_out_larger_n():
    small = [Candidate("1", True, {"prm": 0.5})]
    large = [Candidate("1", False, {"prm": 0.5}), Candidate("2", True, {"prm": 0.6})]
    curves = best_of_n([small, large], ["prm"], [1, 2])
    assert [(point.n, point.problems, point.accuracy) for point in curves["prm"]] == [(1, 2, 0.75), (2, 1, 1.0)]


def test_a_solution_no_model_could_read_ranks_last_and_still_counts_towards_n():
    # flows/evaluate.py scores an unreadable solution (no steps, or too long) -inf: it keeps its place.
    right, wrong = Candidate("14", True, {"prm": 0.3}), Candidate("15", False, {"prm": 0.9})
    unread = Candidate(None, False, {"prm": -math.inf})
    curves = best_of_n([[right, wrong, unread, unread]], ["prm"], best_of_n_sizes(4))
    assert [(point.n, point.problems) for point in curves["prm"]] == [(1, 1), (2, 1), (4, 1)]
    # N=2: `right` is the pick only with an unread partner, 2 of the 6 pairs.
    assert [point.accuracy for point in curves["prm"]] == [0.25, pytest.approx(1 / 3), 0.0]
    assert [point.accuracy for point in curves["oracle"]] == [0.25, pytest.approx(1 / 2), 1.0]
    assert curves["majority"][-1].accuracy == 1.0  # the unread ones cast no vote; the tie goes to the first


def test_subsets_are_sampled_when_there_are_too_many():
    drawn = subsets(16, 8, 5, random.Random(0))
    assert len(drawn) == 5
    assert all(len(set(chosen)) == 8 and list(chosen) == sorted(chosen) for chosen in drawn)
    assert len(subsets(4, 2, 64, random.Random(0))) == 6
    assert best_of_n_sizes(16) == [1, 2, 4, 8, 16] and best_of_n_sizes(5) == [1, 2, 4]


def test_the_filtered_vote_drops_what_the_prm_flags_and_falls_back_to_majority():
    # A policy that repeats a wrong fact: three samples reach 9 through a step the PRM scores low.
    repeated = [Candidate("9", False, {"clear": clear_of_errors([0.9, 0.2], 0.5)}) for _ in range(3)]
    right = [Candidate("8", True, {"clear": clear_of_errors([0.9, 0.7], 0.5)}) for _ in range(2)]
    curves = best_of_n([repeated + right], [], [5], weighted_votes={"filtered": "clear"})
    assert (curves["majority"][0].accuracy, curves["filtered"][0].accuracy) == (0.0, 1.0)
    flagged = [Candidate("8", True, {"clear": 0.0}), *[Candidate("7", False, {"clear": 0.0})] * 2]
    assert majority_pick(flagged, weight="clear") == majority_pick(flagged) == 1  # nothing clear: plain majority


def test_majority_ignores_solutions_without_an_answer():
    assert majority_pick([Candidate(None, False, {}), Candidate(" 4", True, {}), Candidate("4 ", True, {})]) == 1


def test_min_on_last_counts_strict_minima_on_multi_step_solutions():
    share, eligible = min_on_last_share([[0.9, 0.1], [0.9, 0.8, 0.2], [0.1, 0.1], [0.5, 0.9], [0.2]])
    assert (share, eligible) == (0.5, 4)
    assert min_on_last_share([[0.3]]) == (None, 0)


def test_calibration_bins_and_error():
    bins = calibration([0.05, 0.15, 0.95, 0.99, 1.0], [False, True, True, True, False], bins=10)
    filled = [(b.lower, b.count, b.observed) for b in bins if b.count]
    assert filled == [(0.0, 1, 0.0), (0.1, 1, 1.0), (0.9, 3, pytest.approx(2 / 3))]
    assert len(bins) == 10
    # |0.05-0| + |0.15-1| + 3 * |0.98-2/3|, over 5
    assert expected_calibration_error(bins) == pytest.approx((0.05 + 0.85 + 3 * abs(0.98 - 2 / 3)) / 5)


def example(name, labels, q, correct=False, variant="original"):
    return StepwiseExample(name, "p", "Q", tuple(f"s{i}" for i in range(len(labels))), tuple(labels), tuple(q), correct, variant)


def test_label_distribution_by_step_index_uses_originals_only():
    rows = [
        example("a", [True, False], [0.5, 0.0]),
        example("b", [True, True, True], [1.0, 1.0, 1.0], True),
        example("c", [False], [0.0], variant="hnc"),
    ]
    shares = [(s.step, s.count, s.positive_share, s.mean_q) for s in label_distribution(rows)]
    assert shares == [(1, 2, 1.0, 0.75), (2, 2, 0.5, 0.5), (3, 1, 1.0, 1.0)]


def test_dataset_rows_in_processbench_form():
    rows = processbench_rows([
        example("a", [True, False, True], [1, 0, 1]),
        example("b", [True, True], [1, 1], True),
        example("c", [False], [0.0], variant="hnc"),
    ])
    assert [(row.id, row.label, row.steps) for row in rows] == [("a", 1, ("s0", "s1", "s2")), ("b", -1, ("s0", "s1"))]


def test_orm_targets_only_the_outcome():
    row = example("a", [True, True, False], [1.0, 0.5, 0.0], correct=True)
    assert targets(row, "orm", "hard") == [None, None, 1.0]
    assert targets(row, "prm", "soft") == [1.0, 0.5, 0.0]
