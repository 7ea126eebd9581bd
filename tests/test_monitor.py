"""The monitor reads real CPU time and memory of a real process tree."""

from __future__ import annotations

import subprocess
import sys
import time

from harness.monitor import MIB, TreeMonitor, sample_tree

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
