"""Statistics over repeats: bootstrap confidence intervals, spread, significance.

Pure functions of plain sequences of numbers (NaN values are dropped); no
pandas, no clock, no I/O. Results carry the unit of their input: medians of
requests/s are requests/s, of milliseconds are milliseconds; a ratio and a
coefficient of variation have no unit. :func:`ratio_figure` is the one rule for
the digits a ratio is written with.

Method. A confidence interval is the bootstrap *percentile* interval (B. Efron
and R. J. Tibshirani, *An Introduction to the Bootstrap*, Chapman & Hall 1993,
ch. 13), computed by :func:`scipy.stats.bootstrap` with
``method="percentile"``: each sample is resampled with replacement
:data:`RESAMPLES` times, the statistic is computed on every resample, and the
interval runs from the 2.5th to the 97.5th percentile of those values. The
percentile interval is used rather than BCa (ch. 14) because BCa's
acceleration comes from a jackknife, which degenerates for the 3 to 5 repeats a
benchmark can afford. It is also transformation-respecting (ch. 13.3): the
interval of ``1 / r`` is the inverse of the interval of ``r``, which
:func:`compare` uses when one side is zero. With few repeats the interval of a
median can only end on measured values; with 3 repeats it is their min-max.
Resampling uses a fixed seed, so the same results always give the same
intervals (and the same report).

Significance. Two samples differ significantly when the 95% interval of the
ratio of their medians excludes 1: an interval that excludes the null value is
a test at about the 5% level (Efron and Tibshirani 1993, ch. 16, on the
duality of intervals and tests). Fewer than 2 values on a side give no
interval, so never a significant difference.

Practical difference. A ratio can be significant and still too small to matter:
three repeats that agree to 0.1% make 1.003x significant. A difference counts
as *practical* only when it is also at least :data:`PRACTICAL_DIFFERENCE` (2%)
away from 1, above the spread between repeats measured on these machines (a
median coefficient of variation of 0.6%, up to 4% in noisy cells). This is the
"smallest effect size of interest" of equivalence testing (D. Lakens, "Equivalence
Tests", Social Psychological and Personality Science 8(4), 2017).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
from numpy.typing import NDArray

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 20240601
PRACTICAL_DIFFERENCE = 0.02
"""A ratio within 2% of 1 is no practical difference, even when significant (see above)."""

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[low, high]`` in the unit of the statistic; ``high`` may be ``inf``."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Comparison:
    """``ratio`` = median(a) / median(b), with a confidence interval of that ratio.

    ``ratio`` is ``inf`` when only b's median is 0 and NaN when both are (or a
    side is empty); ``interval`` is None with fewer than 2 values on a side or
    zeros on both sides.
    """

    ratio: float
    interval: Interval | None

    @property
    def significant(self) -> bool:
        """True when the interval excludes 1 (see the module's docstring)."""
        return self.interval is not None and not self.interval.contains(1.0)

    @property
    def practical(self) -> bool:
        """Significant, and at least :data:`PRACTICAL_DIFFERENCE` away from 1 (see the module's docstring)."""
        return self.significant and abs(self.ratio - 1.0) >= PRACTICAL_DIFFERENCE


def _clean(values: Sequence[float]) -> Floats:
    array = np.asarray(values, dtype=np.float64)
    return array[~np.isnan(array)]


def median(values: Sequence[float]) -> float:
    """The median of the non-NaN values; NaN when there are none.

    >>> median([3.0, 1.0, 2.0])
    2.0
    """
    array = _clean(values)
    return float(np.median(array)) if array.size else math.nan


def _median_of(sample: Floats, axis: int = -1) -> Floats:
    return np.median(sample, axis=axis)


def _ratio_of_medians(a: Floats, b: Floats, axis: int = -1) -> Floats:
    result: Floats = np.median(a, axis=axis) / np.median(b, axis=axis)
    return result


def _percentile_interval(
    samples: tuple[Floats, ...], statistic: object, confidence: float, seed: int
) -> Interval:
    result = scipy.stats.bootstrap(
        samples,
        statistic,
        n_resamples=RESAMPLES,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(float(result.confidence_interval.low), float(result.confidence_interval.high))


def median_interval(
    values: Sequence[float], *, confidence: float = CONFIDENCE, seed: int = SEED
) -> Interval | None:
    """Bootstrap percentile interval of the median; None with fewer than 2 values.

    >>> median_interval([10.0, 12.0, 11.0])
    Interval(low=10.0, high=12.0)
    """
    array = _clean(values)
    if array.size < 2:
        return None
    return _percentile_interval((array,), _median_of, confidence, seed)


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1 in the denominator) over the mean.

    A unitless measure of run-to-run spread (0.05 = 5%). NaN with fewer than 2
    values or a mean of 0.

    >>> round(coefficient_of_variation([90.0, 100.0, 110.0]), 3)
    0.1
    """
    array = _clean(values)
    if array.size < 2:
        return math.nan
    mean = float(np.mean(array))
    if mean == 0:
        return math.nan
    return float(np.std(array, ddof=1)) / abs(mean)


def _ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    if denominator == 0:
        return math.inf if numerator > 0 else math.nan
    return numerator / denominator


def _inverse(value: float) -> float:
    return math.inf if value == 0 else 1.0 / value


def compare(
    a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE, seed: int = SEED
) -> Comparison:
    """Ratio of the medians of two independent samples (a over b), with its bootstrap interval.

    Each sample is resampled on its own (the repeats of two stacks are not
    paired). Values must be non-negative (requests/s, milliseconds). When b
    holds a 0 (a stack that sustained nothing in a repeat) but a does not, the
    interval of b/a is computed and inverted, its upper end possibly ``inf``.

    >>> c = compare([400.0, 410.0, 420.0], [100.0, 105.0, 110.0])
    >>> round(c.ratio, 2), round(c.interval.low, 2), round(c.interval.high, 2), c.significant
    (3.9, 3.64, 4.2, True)
    """
    left, right = _clean(a), _clean(b)
    ratio = _ratio(median(left.tolist()), median(right.tolist()))
    if left.size < 2 or right.size < 2:
        return Comparison(ratio, None)
    if (right > 0).all():
        return Comparison(ratio, _percentile_interval((left, right), _ratio_of_medians, confidence, seed))
    if (left > 0).all():
        inverse = _percentile_interval((right, left), _ratio_of_medians, confidence, seed)
        return Comparison(ratio, Interval(_inverse(inverse.high), _inverse(inverse.low)))
    return Comparison(ratio, None)


def ratio_figure(ratio: float) -> str:
    """The digits a ratio is written with, on every page and in every sentence: ``12.4 -> "12"``,
    ``5.47 -> "5.5"``, ``0.623 -> "0.62"`` (two significant figures under 10); infinity ``∞``.

    The one rule behind :func:`harness.report.formats.format_ratio` (the pages, with a
    multiplication sign) and :func:`harness.claims.ratio_text` (plain ASCII); each adds its own
    sign and its own mark for a missing value.
    """
    if math.isinf(ratio):
        return "\N{INFINITY}"
    if ratio >= 10:
        return f"{ratio:.0f}"
    return f"{ratio:.1f}" if ratio >= 1 else f"{ratio:.2f}"


@dataclass(frozen=True)
class Spread:
    """Median, min and max of one quantity over the rounds."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))
