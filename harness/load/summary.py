"""An encoded latency histogram summarised as the result model's ``LatencyMs``.

Kept out of :mod:`harness.histogram` (the bottom layer, which knows no model): the
load layer may import both the codec and the model, and the run layer that builds
measurements imports this one-way.
"""

from __future__ import annotations

from harness.histogram import decode
from harness.model import LatencyMs


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
