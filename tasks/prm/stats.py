"""Confidence intervals for evaluation figures: the percentile bootstrap over held-out units.

The unit resampled is what was drawn independently: a held-out problem for Best-of-N (its
solutions are not independent of each other), a row for first-error identification. A paired
comparison resamples the same units for both sides, so the spread of the difference counts only
what differs between them, not which problems happened to be drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

Unit = TypeVar("Unit")
LEVEL = 0.95
DRAWS = 2000


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap interval at `level`, over `units` resampled units."""

    estimate: float
    low: float
    high: float
    units: int
    level: float = LEVEL

    def shown(self, digits: int = 3) -> str:
        """
        >>> Interval(0.5, 0.25, 0.75, 10).shown()
        '0.500 [0.250, 0.750]'
        """
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    @property
    def excludes_zero_from_above(self) -> bool:
        """The whole interval is above zero: a difference that holds at this level."""
        return self.low > 0


def _quantiles(values: Sequence[float], level: float) -> tuple[float, float]:
    import numpy

    tail = (1 - level) / 2
    low, high = numpy.quantile(numpy.asarray(values, dtype=float), [tail, 1 - tail], method="inverted_cdf")
    return float(low), float(high)


def bootstrap(
    units: Sequence[Unit],
    statistic: Callable[[Sequence[Unit]], float],
    draws: int = DRAWS,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """`statistic` on the units, with the percentile interval of `draws` resamples with replacement.

    A resample on which the statistic is undefined (it returns None, e.g. an F1 with no erroneous
    row drawn) is left out of the interval.

    >>> bootstrap([2.0, 2.0, 2.0], lambda xs: sum(xs) / len(xs))
    Interval(estimate=2.0, low=2.0, high=2.0, units=3, level=0.95)
    """
    import numpy

    if not units:
        raise ValueError("a bootstrap needs at least one unit")
    rng = numpy.random.default_rng(seed)
    picks = rng.integers(0, len(units), size=(draws, len(units)))
    estimates = [value for row in picks if (value := statistic([units[index] for index in row])) is not None]
    estimate = statistic(units)
    if estimate is None or not estimates:
        raise ValueError("the statistic is undefined on these units")
    low, high = _quantiles(estimates, level)
    return Interval(float(estimate), low, high, len(units), level)


def mean_interval(values: Sequence[float], draws: int = DRAWS, level: float = LEVEL, seed: int = 0) -> Interval:
    """The mean of per-unit values, with its bootstrap interval.

    Two units, 0 and 1: a resample's mean is 0, 0.5 or 1 (chances 1/4, 1/2, 1/4), so the 95%
    interval runs from 0 to 1.

    >>> mean_interval([0.0, 1.0])
    Interval(estimate=0.5, low=0.0, high=1.0, units=2, level=0.95)
    """
    import numpy

    array = numpy.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("a bootstrap needs at least one unit")
    rng = numpy.random.default_rng(seed)
    means = array[rng.integers(0, array.size, size=(draws, array.size))].mean(axis=1)
    low, high = _quantiles(means, level)
    return Interval(float(array.mean()), low, high, int(array.size), level)


def paired_difference(
    first: Sequence[float], second: Sequence[float], draws: int = DRAWS, level: float = LEVEL, seed: int = 0
) -> Interval:
    """mean(first - second) over the same units, with the interval of the paired bootstrap.

    >>> paired_difference([1.0, 1.0, 0.5], [0.5, 0.5, 0.0])
    Interval(estimate=0.5, low=0.5, high=0.5, units=3, level=0.95)
    """
    if len(first) != len(second):
        raise ValueError(f"a paired comparison needs the same units on both sides, got {len(first)} and {len(second)}")
    return mean_interval([a - b for a, b in zip(first, second, strict=True)], draws, level, seed)
