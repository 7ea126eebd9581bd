"""HdrHistograms of latencies in microseconds: record, encode, decode, merge (the bottom layer:
imports nothing of the harness; :mod:`harness.load.summary` turns one into the model's ``LatencyMs``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

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
