from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

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
    for _ in range(200):
        sample = rng.exponential(size=25).tolist()
        interval = stats.median_interval(sample)
        assert interval is not None
        assert interval.low <= stats.median(sample) <= interval.high
        covered += interval.contains(true_median)
    # The 8th-18th of 25 ranked values: exact coverage 95.7%; leave room for chance (binomial sd ~3 of 200).
    assert 0.85 * 200 <= covered <= 200


def test_the_interval_of_the_median_says_what_it_is_and_its_coverage() -> None:
    # Coverage of [x_(k), x_(n+1-k)] is 1 - 2 P(Binomial(n, 1/2) <= k - 1), worked by hand here.
    three = stats.median_interval([12.0, 10.0, 11.0])
    assert three == Interval(10.0, 12.0)
    assert three is not None and three.coverage == 1 - 2 * 0.5**3  # 75%: no 95% interval from 3 values
    assert three.method == "min\N{EN DASH}max of 3 repeats, 75% coverage of the median"
    six = stats.median_interval([6.0, 1.0, 5.0, 2.0, 4.0, 3.0])
    assert six == Interval(1.0, 6.0) and six is not None and six.coverage == 1 - 2 * 0.5**6
    # Ten values: k = 2 gives 1 - 2 (1 + 10) / 1024 = 97.9%; k = 3 only 1 - 2 * 56 / 1024 = 89.1%.
    ten = stats.median_interval([float(v) for v in range(10, 0, -1)])
    assert ten == Interval(2.0, 9.0) and ten is not None
    assert ten.coverage == pytest.approx(1 - 2 * 11 / 1024)
    assert ten.method.startswith("2nd\N{EN DASH}9th of 10 ranked repeats")
    assert stats.stored_median_interval(10.0, 12.0, 3) == three
    assert stats.stored_median_interval(math.nan, math.nan, 1) is None


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
    assert comparison.ratio == pytest.approx(4100.0 / 100.0, rel=0.01)
    assert comparison.interval is not None
    assert comparison.interval.low <= comparison.ratio <= comparison.interval.high
    # The ratio of geometric means, and Student's t-interval of the difference of mean logs,
    # computed here by scipy's two-sample t-test (equal variances) on the logs.
    a, b = np.log([4100.0, 4000.0, 4200.0]), np.log([100.0, 98.0, 103.0])
    assert comparison.ratio == pytest.approx(math.exp(a.mean() - b.mean()))
    expected = scipy.stats.ttest_ind(a, b, equal_var=True).confidence_interval(0.95)
    assert comparison.interval.low == pytest.approx(math.exp(expected.low))
    assert comparison.interval.high == pytest.approx(math.exp(expected.high))
    assert comparison.interval.method == "95% t-interval of the ratio of geometric means, 3 repeats each"
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
    assert comparison.interval.low == pytest.approx(20.0)  # 400 / 20: the range of the repeats' ratios
    assert comparison.interval.method.startswith("range of the ratios of the repeats, no stated coverage")
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


def test_the_ratio_interval_means_what_it_says_at_the_default_repeats() -> None:
    """2,000 seeded trials of two stacks at the default repeats with 3% lognormal noise.

    Got (seed 13, 3 repeats): coverage of the 95% interval of the ratio 94.55% (1,891 of
    2,000); a practical difference (interval excludes 1, ratio 2% or more from 1) found with
    none there 5.25% (105); a true 10% difference found 81.55% of the time (1,631). The
    audit found 75.7% coverage and 8.7-11.3% false positives with the old bootstrap.
    """
    repeats = int(tomllib.loads(Path("scenarios/default.toml").read_text())["repeats"])
    rng = np.random.default_rng(13)
    trials = 2000
    covered = false_positives = detected = 0
    for _ in range(trials):
        b = 1000.0 * np.exp(0.03 * rng.standard_normal(repeats))
        same = 1000.0 * np.exp(0.03 * rng.standard_normal(repeats))
        faster = 1100.0 * np.exp(0.03 * rng.standard_normal(repeats))
        null = compare(same.tolist(), b.tolist())
        assert null.interval is not None
        covered += null.interval.contains(1.0)
        false_positives += null.practical
        detected += compare(faster.tolist(), b.tolist()).practical
    assert 0.93 <= covered / trials <= 0.97
    assert 0.03 <= false_positives / trials <= 0.07
    assert detected / trials >= 0.80


TRIALS = 2000


@pytest.mark.parametrize("noise", [0.03, 0.10])
def test_repeats_of_one_behaviour_are_not_split_at_the_default_repeats(noise: float) -> None:
    """Seeded: 3 repeats with lognormal noise (3%, and a noisy 10%) almost never look like two groups."""
    rng = np.random.default_rng(20261202)
    split = sum(
        stats.split_repeats(list(100.0 * np.exp(rng.normal(0.0, noise, 3)))) is not None
        for _ in range(TRIALS)
    )
    assert split / TRIALS <= 0.01, split


@pytest.mark.parametrize("repeats", [3, 5])
def test_repeats_of_two_behaviours_are_split(repeats: int) -> None:
    """Seeded: each repeat at 74 or 147 requests/s (3% noise each), both present: the two groups are found."""
    rng = np.random.default_rng(7)
    found = mixed = 0
    for _ in range(TRIALS):
        modes = rng.integers(0, 2, repeats)
        if modes.min() == modes.max():
            continue
        values = np.where(modes == 1, 147.0, 74.0) * np.exp(rng.normal(0.0, 0.03, repeats))
        mixed += 1
        split = stats.split_repeats(list(values))
        if split is not None:
            found += 1
            assert len(split.low) == int((modes == 0).sum()) and max(split.low) < min(split.high)
    assert found / mixed >= 0.99, (found, mixed)


def test_a_split_names_its_two_groups_and_needs_three_positive_values() -> None:
    split = stats.split_repeats([147.0, 74.0, 149.0])
    assert split is not None and split.low == (74.0,) and split.high == (147.0, 149.0)
    assert split.gap_ratio == pytest.approx(147.0 / 74.0)
    assert stats.split_repeats([147.0, 74.0]) is None
    assert stats.split_repeats([0.0, 100.0, 101.0]) is None
    assert stats.split_repeats([100.0, 130.0, 131.0]) is None  # 30% apart: within what noise does
