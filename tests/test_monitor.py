"""The monitor reads real CPU time and memory of a real process tree."""

from __future__ import annotations

import subprocess
import sys
import time

from harness.monitor import TreeMonitor, sample_tree
from harness.timeseries import COLUMNS, memory_slope, rows_from, to_csv
from harness.types import MIB, TimedSample

BURN = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"
PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', {burn!r}])\n"
    "data = bytearray(60 * 2**20)\n"
    "child.wait(); time.sleep(5)\n"
)


def test_cpu_of_a_busy_child_and_memory_of_the_tree_are_counted() -> None:
    script = PARENT.format(burn=BURN.format(s=1.0))
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        time.sleep(0.3)
        monitor = TreeMonitor(proc.pid, interval_s=0.1)
        monitor.begin()
        time.sleep(1.2)
        stats = monitor.end()
    finally:
        proc.kill()
        proc.wait()
    # The child burned about 0.7-1.0 s of CPU inside the window, then exited:
    # its CPU time must still be counted (last value seen).
    assert 0.5 <= stats.cpu_s <= 1.3, stats
    assert 40 <= stats.cpu_percent <= 110
    assert stats.rss_peak_bytes >= 60 * MIB
    assert stats.pss_peak_bytes is not None and stats.pss_peak_bytes >= 55 * MIB


def test_a_vanished_process_samples_as_empty() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert sample_tree(proc.pid).cpu_s_by_pid == {}


LEAK = (
    "import time\n"
    "kept = []\n"
    "end = time.time() + {s}\n"
    "while time.time() < end:\n"
    "    kept.append(bytearray(b'x' * (256 * 1024)))\n"
    "    time.sleep(0.05)\n"
    "time.sleep(30)\n"
)
STEADY = "import time\ndata = bytearray(b'x' * (20 * 2**20))\ntime.sleep(30)\n"


def _watch(script: str, seconds: float) -> list[TimedSample]:
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        time.sleep(0.3)
        monitor = TreeMonitor(proc.pid, interval_s=0.1)
        monitor.begin()
        time.sleep(seconds)
        monitor.end()
        return monitor.samples
    finally:
        proc.kill()
        proc.wait()


def test_a_leaking_process_shows_a_memory_slope_and_a_steady_one_none() -> None:
    # 256 KiB every 50 ms: about 5 MiB/s, 300 MiB/min (less the loop's own time).
    leaking = rows_from(_watch(LEAK.format(s=10), 3.0))
    steady = rows_from(_watch(STEADY, 3.0))
    assert len(leaking) >= 20 and leaking[0].t_s == 0.0 and leaking[-1].t_s >= 2.9
    grow = memory_slope([r.t_s for r in leaking], [r.server_pss_mib or 0.0 for r in leaking], min_window_s=2)
    flat = memory_slope([r.t_s for r in steady], [r.server_pss_mib or 0.0 for r in steady], min_window_s=2)
    # Over less than a minute, by default, there is no trend to speak of.
    assert memory_slope([r.t_s for r in leaking], [r.server_pss_mib or 0.0 for r in leaking]) is None
    assert grow is not None and flat is not None
    assert 150 <= grow.mib_per_min <= 330, grow
    assert grow.low > 100
    assert abs(flat.mib_per_min) < 5, flat
    assert flat.low <= 0 <= flat.high or abs(flat.mib_per_min) < 1
    # The CSV round trip keeps every sample and marks unknown figures as empty.
    path_text = to_csv(leaking)
    assert path_text.splitlines()[0] == ",".join(COLUMNS)
    assert path_text.splitlines()[1].split(",")[1] == ""  # no CPU figure before a second sample


def test_a_mark_splits_cpu_time_between_windows_without_a_gap() -> None:
    # Busy for 1 s, then idle: the first window gets the CPU, the second almost none.
    script = BURN.format(s=1.0) + "time.sleep(30)\n"
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        monitor = TreeMonitor(proc.pid, interval_s=0.1)
        monitor.begin()
        time.sleep(0.8)
        busy = monitor.mark()
        time.sleep(0.6)
        idle = monitor.mark()
        time.sleep(0.3)
        last = monitor.end()
        samples = monitor.samples
    finally:
        proc.kill()
        proc.wait()
    assert busy.cpu_percent >= 70, busy
    assert idle.cpu_percent <= 45, idle  # at most the 0.2 s of burning left after the mark
    assert last.cpu_percent <= 10, last
    assert 0.7 <= busy.wall_s <= 1.0 and 0.5 <= idle.wall_s <= 0.8
    # The samples run across the marks, their CPU figure cumulative from begin.
    assert samples[-1].t_s >= 1.6
    cumulative = [s.cpu_s for s in samples]
    assert cumulative == sorted(cumulative)
    assert abs(cumulative[-1] - (busy.cpu_s + idle.cpu_s + last.cpu_s)) < 0.05


def test_a_flat_series_whose_last_sample_repeats_its_time_has_a_zero_trend() -> None:
    # The monitor's final sample can land at the time of the one before it; with every value
    # equal, scipy's tie correction for that repeated time made the interval's variance negative.
    times = [round(i * 0.103, 3) for i in range(30)]
    times.append(times[-1])
    flat = memory_slope(times, [26.301] * len(times), min_window_s=2)
    assert flat is not None and (flat.mib_per_min, flat.low, flat.high) == (0.0, 0.0, 0.0)
    rising = memory_slope(times, [26.0 + 0.1 * t for t in times], min_window_s=2)
    assert rising is not None and rising.low <= 6.0 <= rising.high and rising.mib_per_min == 6.0
