"""Bootstrap intervals on fixtures whose resampling distribution is known exactly."""

import math

import pytest

from tasks.prm.stats import Interval, bootstrap, mean_interval, paired_difference


def test_one_success_in_four_gives_the_binomial_quantiles():
    # A resample's mean is k/4 with k ~ Binomial(4, 1/4): P(k=0) = 0.316 > 2.5%, so the low end is
    # 0; P(k<=2) = 0.949 < 97.5% <= P(k<=3) = 0.996, so the high end is 3/4.
    assert mean_interval([0.0, 0.0, 0.0, 1.0]) == Interval(0.25, 0.0, 0.75, 4)


def test_constant_units_give_a_point_interval():
    assert mean_interval([0.7] * 5) == Interval(0.7, 0.7, 0.7, 5)
    assert paired_difference([1.0, 0.5], [0.5, 0.0]) == Interval(0.5, 0.5, 0.5, 2)


def test_the_interval_of_a_large_sample_matches_the_normal_approximation():
    values = [1.0, 0.0] * 100  # mean 0.5, standard error sqrt(0.25 / 200)
    interval = mean_interval(values)
    half_width = 1.96 * math.sqrt(0.25 / 200)
    assert interval.estimate == 0.5
    assert interval.low == pytest.approx(0.5 - half_width, abs=0.01)
    assert interval.high == pytest.approx(0.5 + half_width, abs=0.01)


def test_pairing_removes_what_both_sides_share():
    # Problem difficulty varies a lot, but the first side is always 0.1 better: the paired
    # interval is the point 0.1, the unpaired spread of either side is wide.
    second = [0.0, 0.9, 0.2, 0.8, 0.1, 0.7]
    first = [value + 0.1 for value in second]
    paired = paired_difference(first, second)
    assert paired.estimate == pytest.approx(0.1) and paired.high - paired.low == pytest.approx(0.0, abs=1e-12)
    assert mean_interval(second).high - mean_interval(second).low > 0.4


def test_resamples_where_the_statistic_is_undefined_are_left_out():
    # The share of ones among the units that are not None; a resample of only Nones is undefined.
    def share(sample):
        known = [unit for unit in sample if unit is not None]
        return sum(known) / len(known) if known else None

    interval = bootstrap([1, None, None, None], share, draws=500)
    assert interval == Interval(1.0, 1.0, 1.0, 4)
    with pytest.raises(ValueError, match="undefined"):
        bootstrap([None, None], share)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one unit"):
        mean_interval([])
    with pytest.raises(ValueError, match="same units on both sides, got 2 and 3"):
        paired_difference([1.0, 0.0], [1.0, 0.0, 1.0])


def test_the_same_seed_gives_the_same_interval():
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert mean_interval(values, seed=3) == mean_interval(values, seed=3)
