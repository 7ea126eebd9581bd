from __future__ import annotations

import math

import numpy as np
import pytest

from harness import stats
from harness.report.formats import format_comparison
from harness.stats import Interval, compare


def test_median_ignores_nan_and_is_nan_when_empty() -> None:
    assert stats.median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(stats.median([]))


def test_the_interval_of_the_median_covers_the_true_median_in_most_samples() -> None:
    # Exponential(1) has median ln 2; 200 samples of 25 values each.
    rng = np.random.default_rng(1)
    true_median = math.log(2)
    covered = 0
    for index in range(200):
        sample = rng.exponential(size=25).tolist()
        interval = stats.median_interval(sample, seed=index)
        assert interval is not None
        assert interval.low <= stats.median(sample) <= interval.high
        covered += interval.contains(true_median)
    # Nominal 95%; leave room for chance (binomial sd ~3 samples of 200).
    assert 0.85 * 200 <= covered <= 200


def test_the_interval_narrows_as_repeats_agree() -> None:
    wide = stats.median_interval([80.0, 100.0, 120.0, 90.0, 110.0])
    narrow = stats.median_interval([99.0, 100.0, 101.0, 99.5, 100.5])
    assert wide is not None and narrow is not None
    assert narrow.high - narrow.low < (wide.high - wide.low) / 10


def test_intervals_need_two_values_and_are_reproducible() -> None:
    assert stats.median_interval([100.0]) is None
    assert stats.median_interval([]) is None
    assert stats.median_interval([5.0, 5.0, 5.0]) == Interval(5.0, 5.0)
    values = [1.0, 4.0, 2.0, 8.0, 5.0, 7.0]
    assert stats.median_interval(values) == stats.median_interval(values)


def test_coefficient_of_variation_is_sample_stdev_over_mean() -> None:
    assert stats.coefficient_of_variation([90.0, 100.0, 110.0]) == pytest.approx(0.1)
    assert stats.coefficient_of_variation([100.0, 100.0]) == 0.0
    values = [3.0, 5.0, 10.0, 2.0]
    assert stats.coefficient_of_variation(values) == pytest.approx(np.std(values, ddof=1) / np.mean(values))
    assert math.isnan(stats.coefficient_of_variation([100.0]))
    assert math.isnan(stats.coefficient_of_variation([0.0, 0.0]))


def test_a_clear_difference_is_significant_and_its_interval_holds_the_ratio() -> None:
    comparison = stats.compare([4100.0, 4000.0, 4200.0], [100.0, 98.0, 103.0])
    assert comparison.ratio == pytest.approx(4100.0 / 100.0)
    assert comparison.interval is not None
    assert comparison.interval.low <= comparison.ratio <= comparison.interval.high
    # With 3 repeats each side the interval spans the extreme ratios of the repeats.
    assert comparison.interval.low == pytest.approx(4000.0 / 103.0)
    assert comparison.interval.high == pytest.approx(4200.0 / 98.0)
    assert comparison.significant
    # The other way round: the same conclusion, below 1.
    reverse = stats.compare([100.0, 98.0, 103.0], [4100.0, 4000.0, 4200.0])
    assert reverse.significant and reverse.ratio < 1


def test_overlapping_repeats_are_not_significant() -> None:
    comparison = stats.compare([1000.0, 1100.0, 950.0], [1020.0, 980.0, 1060.0])
    assert comparison.interval is not None
    assert comparison.interval.contains(1.0)
    assert not comparison.significant


def test_significance_detects_a_small_shift_only_with_enough_repeats() -> None:
    rng = np.random.default_rng(7)
    a = (1000 * (1 + 0.02 * rng.standard_normal(20))).tolist()
    b = (1000 * (1.1 + 0.02 * rng.standard_normal(20))).tolist()
    assert stats.compare(b, a).significant
    assert not stats.compare(b[:1], a[:1]).significant  # one repeat each: no interval, so never


def test_a_side_that_sustained_nothing_gives_an_unbounded_interval() -> None:
    comparison = stats.compare([400.0, 410.0, 420.0], [0.0, 20.0, 20.0])
    assert comparison.ratio == pytest.approx(20.5)
    assert comparison.interval is not None
    assert comparison.interval.high == math.inf
    assert comparison.interval.low == pytest.approx(20.0)
    assert comparison.significant
    assert stats.compare([0.0, 0.0], [0.0, 0.0]).interval is None
    assert math.isnan(stats.compare([0.0, 0.0], [0.0, 0.0]).ratio)


def test_a_significant_ratio_within_two_percent_is_no_practical_difference() -> None:
    # Repeats that agree to 0.05%: 1.003x is significant, and too small to matter.
    tiny = compare([76.82, 76.81, 76.82], [76.58, 76.59, 76.58])
    assert tiny.significant and not tiny.practical
    assert format_comparison(tiny).endswith("significant but under 2%: no practical difference")
    clear = compare([80.1, 80.0, 80.2], [76.6, 76.5, 76.6])
    assert clear.significant and clear.practical
    assert format_comparison(clear).endswith(", significant")
    unsettled = compare([80.0, 70.0, 90.0], [79.0, 69.0, 91.0])
    assert not unsettled.significant and not unsettled.practical
