"""HdrHistograms of latencies in microseconds: record, encode, merge, summarise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from harness.model import LatencyMs

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3


def _empty() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def _text(histogram: HdrHistogram) -> str:
    encoded = histogram.encode()
    return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)


def encode(latencies_us: Iterable[int]) -> str:
    """Record latencies (µs) into an HdrHistogram (1 µs to 1 h, 3 significant digits); base64 text.

    Values below 1 µs are recorded as 1 µs. Equal values are recorded once with
    their count, which keeps this fast for the millions of values of a long run.
    """
    return encode_counts(Counter(latencies_us).items())


def encode_counts(distribution: Iterable[tuple[int, int]]) -> str:
    """``(latency_us, count)`` pairs into the encoding of :func:`encode` (values below 1 µs as 1 µs).

    For drivers that report a distribution rather than each latency (wrk, Locust).
    """
    histogram = _empty()
    for value, count in distribution:
        histogram.record_value(max(value, LOWEST_US), count)
    return _text(histogram)


def decode(encoded: str) -> HdrHistogram:
    """Decode the base64 ``HISTFAAA...`` form written by the drivers."""
    return HdrHistogram.decode(encoded.encode("ascii"))


def merge(encoded: Iterable[str]) -> str:
    """One histogram holding every value of the given encoded histograms (HdrHistogram.add).

    Empty histograms are skipped: hdrh's ``add`` takes the minimum of an empty
    histogram as 0, which would make the merged minimum 0.
    """
    merged: HdrHistogram | None = None
    for text in encoded:
        histogram = decode(text)
        if histogram.get_total_count() == 0:
            continue
        if merged is None:
            merged = histogram
        else:
            merged.add(histogram)
    return _text(merged if merged is not None else _empty())


def latency_summary(encoded: str) -> LatencyMs | None:
    """Percentiles, mean, stdev, min and max in ms of an encoded µs histogram; None if empty."""
    histogram = decode(encoded)
    if histogram.get_total_count() == 0:
        return None

    def ms(value_us: float) -> float:
        return round(value_us / 1000.0, 4)

    return LatencyMs(
        min=ms(histogram.get_min_value()),
        mean=ms(histogram.get_mean_value()),
        stdev=ms(histogram.get_stddev()),
        p50=ms(histogram.get_value_at_percentile(50.0)),
        p90=ms(histogram.get_value_at_percentile(90.0)),
        p99=ms(histogram.get_value_at_percentile(99.0)),
        p999=ms(histogram.get_value_at_percentile(99.9)),
        max=ms(histogram.get_max_value()),
    )
