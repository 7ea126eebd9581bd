"""A cell's server samples over time: ``results/<run_id>/timeseries/<cell_id>.csv``.

One row per monitor sample (every 0.5 s by default) from the start of the
measured window to its end: ``t_s`` (seconds since the window opened),
``server_cpu_percent`` (the process tree's CPU since the previous row, percent
of one core), ``server_rss_mib`` and ``server_pss_mib`` (the tree's memory, MiB),
``cgroup_memory_mib`` (all memory charged to the target's control group, MiB;
empty where the target had none). Empty fields are unknown, not zero.

A leak shows as memory that keeps growing over a long window: :func:`memory_slope`
fits it robustly (Theil-Sen) so one garbage-collection spike does not make one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.types import MIB, TimedSample

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("t_s", "server_cpu_percent", "server_rss_mib", "server_pss_mib", "cgroup_memory_mib")
MIN_SLOPE_SAMPLES = 10
"""Fewer samples than this give no slope."""
MIN_SLOPE_WINDOW_S = 60.0
"""A window shorter than this (s) gives no slope: over a few seconds memory still moves with
warm-up, garbage collection and allocator arenas (slopes of -13 to +37 MiB/min were seen over
5-second windows of the default suite), which says nothing about a leak."""
MAX_SLOPE_SAMPLES = 2000
"""Longer series are thinned to this many evenly spaced samples (the estimator is O(n^2))."""


@dataclass(frozen=True)
class Row:
    """One sample of the server, as stored; units as in the module docstring."""

    t_s: float
    server_cpu_percent: float | None
    server_rss_mib: float
    server_pss_mib: float | None
    cgroup_memory_mib: float | None


@dataclass(frozen=True)
class Slope:
    """Memory growth in MiB per minute, with its 95% confidence interval (Theil-Sen)."""

    mib_per_min: float
    low: float
    high: float


def rows_from(tree: Sequence[TimedSample], cgroup: Sequence[tuple[float, int]] = ()) -> list[Row]:
    """Rows from a :class:`~harness.monitor.TreeMonitor`'s samples and a cgroup monitor's readings.

    Each row takes the latest cgroup reading at or before its time (None before the first).
    """
    rows: list[Row] = []
    readings = sorted(cgroup)
    index = 0
    previous: TimedSample | None = None
    for sample in tree:
        while index < len(readings) and readings[index][0] <= sample.t_s + 1e-3:
            index += 1
        group = readings[index - 1][1] if index else None
        cpu = None
        if previous is not None and sample.t_s > previous.t_s:
            cpu = round(100.0 * (sample.cpu_s - previous.cpu_s) / (sample.t_s - previous.t_s), 2)
        rows.append(
            Row(
                t_s=round(sample.t_s, 3),
                server_cpu_percent=cpu,
                server_rss_mib=round(sample.rss_bytes / MIB, 3),
                server_pss_mib=None if sample.pss_bytes is None else round(sample.pss_bytes / MIB, 3),
                cgroup_memory_mib=None if group is None else round(group / MIB, 3),
            )
        )
        previous = sample
    return rows


def to_csv(rows: Sequence[Row]) -> str:
    """The rows as CSV text with a header of :data:`COLUMNS`; None as an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if getattr(row, c) is None else getattr(row, c) for c in COLUMNS])
    return out.getvalue()


def read(path: Path) -> pd.DataFrame:
    """A stored time series as a frame with :data:`COLUMNS` (NaN where unknown).

    Series stored before results schema 3 have their ``_mb`` columns renamed
    (:data:`harness.model.TIMESERIES_COLUMNS_RENAMED_IN_3`). Raises OSError when the file
    cannot be read, ValueError when its header is not ours.
    """
    import pandas as pd  # lazily: the runner imports this module and needs no pandas

    from harness.model import TIMESERIES_COLUMNS_RENAMED_IN_3

    frame = pd.read_csv(path).rename(columns=TIMESERIES_COLUMNS_RENAMED_IN_3)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a time series (missing columns {', '.join(missing)})")
    return frame


def memory_column(frame: pd.DataFrame) -> str:
    """The memory column to read from a stored series (:func:`read`): ``server_pss_mib`` where
    every sample has PSS, else ``server_rss_mib`` (which counts shared pages once per process)."""
    pss = frame["server_pss_mib"]
    return "server_pss_mib" if len(pss) and not pss.isna().any() else "server_rss_mib"


def memory_slope(
    t_s: Sequence[float], memory_mib: Sequence[float], *, min_window_s: float = MIN_SLOPE_WINDOW_S
) -> Slope | None:
    """The trend of memory over time in MiB per minute; None with too few samples or too short a span.

    ``t_s`` in seconds, ``memory_mib`` in MiB (NaN samples are skipped); the
    samples must span at least ``min_window_s`` seconds.

    Theil-Sen estimator (the median of the slopes between all pairs of samples;
    H. Theil 1950, P. K. Sen 1968) with its 95% interval, as computed by
    ``scipy.stats.theilslopes``: robust to the spikes garbage collection and
    allocator arenas make, which a least-squares fit would follow.
    """
    by_time: dict[float, float] = {}
    for t, m in zip(t_s, memory_mib, strict=True):
        if m == m:  # NaN != NaN
            by_time.setdefault(t, m)  # a repeated time (a final sample) makes the ties' variance < 0
    pairs = sorted(by_time.items())
    if len(pairs) < MIN_SLOPE_SAMPLES or pairs[-1][0] - pairs[0][0] < max(min_window_s, 1e-9):
        return None
    if len(pairs) > MAX_SLOPE_SAMPLES:
        step = len(pairs) / MAX_SLOPE_SAMPLES
        pairs = [pairs[int(i * step)] for i in range(MAX_SLOPE_SAMPLES)]
    times, values = zip(*pairs, strict=True)
    if min(values) == max(values):
        return Slope(mib_per_min=0.0, low=0.0, high=0.0)  # flat: every pairwise slope is 0
    from scipy import stats  # lazily: 0.3 s to import, needed only here

    fit = stats.theilslopes(values, times, alpha=0.95)
    return Slope(
        mib_per_min=round(float(fit.slope) * 60, 4),
        low=round(float(fit.low_slope) * 60, 4),
        high=round(float(fit.high_slope) * 60, 4),
    )
