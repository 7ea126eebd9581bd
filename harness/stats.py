"""Statistics over repeats: confidence intervals, spread, significance.

Pure functions of plain sequences of numbers (NaN values are dropped); no
pandas, no clock, no I/O. Results carry the unit of their input: medians of
requests/s are requests/s, of milliseconds are milliseconds; a ratio and a
coefficient of variation have no unit. :func:`ratio_figure` is the one rule for
the digits a ratio is written with. Every :class:`Interval` says what it is in
:attr:`Interval.method`, words a report prints next to it, and its nominal
coverage in :attr:`Interval.coverage`.

Why not the bootstrap. Until issue 13 both intervals were bootstrap percentile
intervals (Efron and Tibshirani, *An Introduction to the Bootstrap*, 1993,
ch. 13). With the 3 repeats of ``make bench`` a resampled median can only be
one of the 3 values, so the "95%" interval of a median was the min-max of the
repeats (about 75% coverage), and the interval of a ratio was ``[min_a/max_b,
max_a/min_b]``: "significant" meant that the two ranges do not overlap, which
with no real difference happens about 10% of the time, not 5%.

The ratio of two stacks (:func:`compare`), on which verdicts rest. Throughput
noise is multiplicative, so the comparison is made on log values: the point
estimate is the ratio of the geometric means, ``exp(mean(log a) - mean(log
b))``, and its interval is the two-sample Student t-interval of the
difference of the mean logs, transformed back with ``exp`` (the standard
log-transform interval for a ratio of geometric means: D. G. Altman, *Practical
Statistics for Medical Research*, Chapman & Hall 1991, sect. 9.6.3; Student,
"The probable error of a mean", Biometrika 6, 1908). Under lognormal noise its
coverage is exact at any number of repeats, 3 included. The variance is pooled
(2n - 2 degrees of freedom) rather than Welch's ("The generalization of
Student's problem when several different population variances are involved",
Biometrika 34, 1947): with the same number of repeats on both sides the two
have the same standard error and differ only in degrees of freedom, and at 3
repeats Welch's can fall to 2, which costs power: on the same 2,000 trials
as ``tests/test_stats.py`` (3 repeats, 3% lognormal noise) Welch's interval
covers 96.0% and finds a true 10% difference 71.9% of the time, the pooled
interval 94.5% and 81.6%. The price is an
assumption that both stacks' repeats have about the same relative spread; with
3 repeats on each side and a spread 4 times larger on one side, coverage falls
to about 91% (Welch: 94%). Measured on these machines the coefficient of
variation is 0.6% in the median cell and up to 4% in noisy ones.

At the default 3 repeats, 3% noise, 2,000 seeded trials
(``test_the_ratio_interval_means_what_it_says_at_the_default_repeats``): the
95% interval of the ratio covers the true ratio in 94.55% of trials, a
practical difference (below) is found with no real one in 5.25% of them, and a
true 10% difference is found in 81.55%.

A stack that served nothing in a repeat (0 requests/s) has no logarithm. Then
the ratio is that of the medians, and its interval is the range of the ratios
of the repeats, ``[min_a/max_b, max_a/min_b]`` (upper end ``inf`` when b has a
0), labelled as a range with no stated coverage.

One stack's figure (:func:`median_interval`). A report shows the median of the
repeats, and its interval is the distribution-free order-statistic interval
of the median ``[x_(k), x_(n+1-k)]``, whose coverage is exactly ``1 - 2
P(Binomial(n, 1/2) < k)`` for any continuous distribution (W. J. Conover,
*Practical Nonparametric Statistics*, 3rd ed., Wiley 1999, sect. 3.2; M.
Hollander and D. A. Wolfe, *Nonparametric Statistical Methods*, 1999, sect.
3.6). ``k`` is the largest with at least 95% coverage; 6 repeats are needed for
any 95% interval, so with fewer the interval is the min-max of the repeats and
says so with its coverage: 75% for 3 repeats, 88% for 4, 94% for 5.

Significance. Two samples differ significantly when the 95% interval of their
ratio excludes 1: an interval that excludes the null value is a test at the
5% level (the duality of intervals and tests). Fewer than 2 values on a side
give no interval, so never a significant difference.

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
from dataclasses import dataclass, field

import numpy as np
import scipy.stats
from numpy.typing import NDArray

CONFIDENCE = 0.95
PRACTICAL_DIFFERENCE = 0.02
"""A ratio within 2% of 1 is no practical difference, even when significant (see above)."""

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[low, high]`` in the unit of the statistic; ``high`` may be ``inf``.

    ``method`` says what the interval is, in the words a report prints next to it
    (``"95% t-interval of the ratio of geometric means, 3 repeats each"``, ``"min-max of
    3 repeats, 75% coverage of the median"``); ``coverage`` is its nominal coverage (NaN
    when it has none). Neither takes part in equality: two intervals are equal when
    their ends are.
    """

    low: float
    high: float
    method: str = field(default="", compare=False)
    coverage: float = field(default=math.nan, compare=False)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Comparison:
    """``ratio`` = a over b, with a confidence interval of that ratio (:func:`compare`).

    The ratio of the geometric means when every value is above 0, else of the
    medians. ``ratio`` is ``inf`` when only b's median is 0 and NaN when both are
    (or a side is empty); ``interval`` is None with fewer than 2 values on a side
    or zeros on both sides.
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


def _order_statistic_rank(n: int, confidence: float) -> tuple[int, float]:
    """The largest ``k`` whose interval ``[x_(k), x_(n+1-k)]`` covers the median with at least
    ``confidence``, and its exact coverage; ``k`` = 1 (the min-max) when none does."""
    best = (1, 1.0 - 2.0 * float(scipy.stats.binom.cdf(0, n, 0.5)))
    for k in range(2, (n + 1) // 2 + 1):
        coverage = 1.0 - 2.0 * float(scipy.stats.binom.cdf(k - 1, n, 0.5))
        if coverage < confidence:
            break
        best = (k, coverage)
    return best


def median_interval_method(n: int, confidence: float = CONFIDENCE) -> str:
    """What :func:`median_interval` gives for ``n`` values, in words: ``"min-max of 3 repeats,
    75% coverage of the median"``; ``"3rd-8th of 10 ranked repeats, 98% coverage of the median"``.

    For intervals read back from stored results, whose method is a function of ``n`` alone.
    """
    k, coverage = _order_statistic_rank(n, confidence)
    what = f"min\N{EN DASH}max of {n} repeats" if k == 1 else (
        f"{_ordinal(k)}\N{EN DASH}{_ordinal(n + 1 - k)} of {n} ranked repeats"
    )
    return f"{what}, {_percent(coverage)} coverage of the median"


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _percent(fraction: float) -> str:
    text = f"{100 * fraction:.1f}".removesuffix(".0")
    return f"{text}%"


def median_interval(values: Sequence[float], *, confidence: float = CONFIDENCE) -> Interval | None:
    """The order-statistic interval of the median (see the module's docstring); None with fewer than 2 values.

    With fewer than 6 values no interval reaches 95%, and this is the min-max, labelled with
    its true coverage.

    >>> interval = median_interval([10.0, 12.0, 11.0])
    >>> interval.low, interval.high, interval.coverage
    (10.0, 12.0, 0.75)
    """
    array = np.sort(_clean(values))
    if array.size < 2:
        return None
    n = int(array.size)
    k, coverage = _order_statistic_rank(n, confidence)
    return Interval(float(array[k - 1]), float(array[n - k]), median_interval_method(n, confidence), coverage)


def stored_median_interval(low: float, high: float, n: int) -> Interval | None:
    """An interval of :func:`median_interval` over ``n`` values read back from its two ends
    (a summary's ``_ci_low``/``_ci_high``), with its method; None when ``low`` is NaN."""
    if math.isnan(low):
        return None
    return Interval(low, high, median_interval_method(n), _order_statistic_rank(n, CONFIDENCE)[1])


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


SPLIT_MIN_RATIO = 1.5
"""Two groups of repeats are told apart only when the nearest values across the gap are this far
apart (the higher 50% above the lower)."""
SPLIT_MIN_CONTRAST = 4.0
"""... and when that gap (in log terms) is this many times the widest spread inside a group."""


@dataclass(frozen=True)
class Split:
    """Repeats that fall into two groups with a gap between them: the median stands for one."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def gap_ratio(self) -> float:
        """The lowest of the high group over the highest of the low group (> 1)."""
        return self.high[0] / self.low[-1]


def split_repeats(values: Sequence[float]) -> Split | None:
    """The two groups the repeats fall into, or None when they form one (or are too few).

    A rule for a measurement that behaves in two ways from one repeat to the next
    (e.g. 147 and 74 requests/s when one of two workers takes every keep-alive
    connection in some repeats), where a median, an interval and a coefficient of
    variation all describe one spread. The sorted values (3 or more, all > 0) are cut
    at their widest gap in log terms: a split when that gap is at least
    :data:`SPLIT_MIN_RATIO` (a ratio) and at least :data:`SPLIT_MIN_CONTRAST` times the
    widest log range inside either group. The same "largest gap against the spread
    within the groups" idea as the gap statistic of Tibshirani, Walther and Hastie
    (2001) and of Jenks natural breaks, reduced to two groups and small samples.
    With 3 repeats it cannot tell two behaviours from a very noisy one; the
    seeded simulation in the tests measures its rates: in 2,000 trials of 3
    repeats, no split at 3% or 10% lognormal noise (7% at 20%), and 99.9% of
    the mixtures of 74 and 147 requests/s found.

    >>> split_repeats([147.0, 74.0, 149.0])
    Split(low=(74.0,), high=(147.0, 149.0))
    >>> split_repeats([100.0, 103.0, 97.0]) is None
    True
    """
    array = np.sort(_clean(values))
    if array.size < 3 or array[0] <= 0:
        return None
    logs = np.log(array)
    gaps = np.diff(logs)
    cut = int(np.argmax(gaps))
    gap = float(gaps[cut])
    within = max(float(logs[cut] - logs[0]), float(logs[-1] - logs[cut + 1]))
    if gap < math.log(SPLIT_MIN_RATIO) or gap < SPLIT_MIN_CONTRAST * within:
        return None
    return Split(tuple(float(v) for v in array[: cut + 1]), tuple(float(v) for v in array[cut + 1 :]))


def _ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    if denominator == 0:
        return math.inf if numerator > 0 else math.nan
    return numerator / denominator


def _repeats(na: int, nb: int) -> str:
    return f"{na} repeats each" if na == nb else f"{na} and {nb} repeats"


def ratio_interval_method(na: int, nb: int, confidence: float = CONFIDENCE) -> str:
    """What :func:`compare` gives when every value is above 0: ``"95% t-interval of the ratio
    of geometric means, 3 repeats each"``."""
    return f"{_percent(confidence)} t-interval of the ratio of geometric means, {_repeats(na, nb)}"


def _log_t_interval(left: Floats, right: Floats, confidence: float) -> Interval:
    logs_a, logs_b = np.log(left), np.log(right)
    na, nb = int(left.size), int(right.size)
    difference = float(np.mean(logs_a) - np.mean(logs_b))
    freedom = na + nb - 2
    pooled = ((na - 1) * float(np.var(logs_a, ddof=1)) + (nb - 1) * float(np.var(logs_b, ddof=1))) / freedom
    half = float(scipy.stats.t.ppf((1.0 + confidence) / 2.0, freedom)) * math.sqrt(pooled * (1 / na + 1 / nb))
    method = ratio_interval_method(na, nb, confidence)
    return Interval(math.exp(difference - half), math.exp(difference + half), method, confidence)


def compare(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE) -> Comparison:
    """The ratio of two independent samples (a over b) with its interval (see the module's docstring).

    Values must be non-negative (requests/s, milliseconds); the repeats of two
    stacks are not paired. When every value is above 0: the ratio of the
    geometric means and the t-interval of it (log scale). When one side holds a
    0 (a stack that sustained nothing in a repeat) and the other does not: the
    ratio of the medians and the range of the ratios of the repeats, its upper
    end ``inf`` when b holds the 0.

    >>> c = compare([400.0, 410.0, 420.0], [100.0, 105.0, 110.0])
    >>> round(c.ratio, 2), round(c.interval.low, 2), round(c.interval.high, 2), c.significant
    (3.91, 3.59, 4.26, True)
    """
    left, right = _clean(a), _clean(b)
    if left.size and right.size and (left > 0).all() and (right > 0).all():
        ratio = math.exp(float(np.mean(np.log(left)) - np.mean(np.log(right))))
        if left.size < 2 or right.size < 2:
            return Comparison(ratio, None)
        return Comparison(ratio, _log_t_interval(left, right, confidence))
    ratio = _ratio(median(left.tolist()), median(right.tolist()))
    if left.size < 2 or right.size < 2 or not ((left > 0).all() or (right > 0).all()):
        return Comparison(ratio, None)
    repeats = _repeats(int(left.size), int(right.size))
    method = f"range of the ratios of the repeats, no stated coverage ({repeats}; a 0 among them)"
    low = _ratio(float(left.min()), float(right.max()))
    high = _ratio(float(left.max()), float(right.min()))
    return Comparison(ratio, Interval(low, high, method))


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
