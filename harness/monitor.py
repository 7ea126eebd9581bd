"""Sample a process tree's CPU time and memory (psutil) in a background thread.

CPU time is cumulative user + system seconds per process; a process that exits
keeps the last value seen, so a worker recycled mid-window is not lost (up to
one sampling interval of its work). Memory is summed over the tree: RSS, and
PSS (proportional set size: shared pages divided among the processes sharing
them, from /proc/<pid>/smaps_rollup) which does not double-count the pages
that forked workers share with their master.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

MIB = 2**20


@dataclass(frozen=True)
class TreeSample:
    """One sample of a process tree. Memory in bytes; ``pss_bytes`` None when unreadable."""

    cpu_s_by_pid: dict[int, float]
    rss_bytes: int
    pss_bytes: int | None


def sample_tree(root_pid: int, *, with_memory: bool = True) -> TreeSample:
    """Sample the process ``root_pid`` and all its descendants right now.

    Processes that vanish while being read are skipped. Raises nothing.
    """
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return TreeSample({}, 0, None)
    cpu: dict[int, float] = {}
    rss = 0
    pss: int | None = 0 if with_memory else None
    for proc in procs:
        try:
            times = proc.cpu_times()
            cpu[proc.pid] = times.user + times.system
            if with_memory:
                try:
                    full = proc.memory_full_info()
                    rss += full.rss
                    if pss is not None:
                        pss += full.pss
                except psutil.AccessDenied:
                    rss += proc.memory_info().rss
                    pss = None
        except psutil.NoSuchProcess:
            continue
    return TreeSample(cpu, rss, pss)


@dataclass(frozen=True)
class WindowStats:
    """A process tree over one window: CPU in seconds and percent of one core, memory peaks in bytes.

    ``vanished`` lists the pids seen during the window that were gone at its end
    (a crashed or recycled worker, or the whole tree).
    """

    wall_s: float
    cpu_s: float
    rss_peak_bytes: int
    pss_peak_bytes: int | None
    processes: int
    vanished: tuple[int, ...] = ()

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class TreeMonitor:
    """Samples one process tree every ``interval_s`` seconds between :meth:`begin` and :meth:`end`.

    ``clock`` returns seconds (monotonic) and is injectable for tests.
    """

    def __init__(
        self,
        root_pid: int,
        *,
        interval_s: float = 0.5,
        with_memory: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.with_memory = with_memory
        self.clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_cpu: dict[int, float] = {}
        self._last_cpu: dict[int, float] = {}
        self._rss_peak = 0
        self._pss_peak: int | None = 0
        self._started_at = 0.0

    def _absorb(self, sample: TreeSample) -> None:
        with self._lock:
            self._last_cpu.update(sample.cpu_s_by_pid)
            self._rss_peak = max(self._rss_peak, sample.rss_bytes)
            if sample.pss_bytes is None or self._pss_peak is None:
                self._pss_peak = None
            else:
                self._pss_peak = max(self._pss_peak, sample.pss_bytes)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._absorb(sample_tree(self.root_pid, with_memory=self.with_memory))

    def begin(self) -> None:
        """Open the window: take a first sample and start the sampling thread."""
        first = sample_tree(self.root_pid, with_memory=self.with_memory)
        with self._lock:
            self._start_cpu = dict(first.cpu_s_by_pid)
            self._last_cpu = dict(first.cpu_s_by_pid)
            self._rss_peak = 0
            self._pss_peak = 0
        self._absorb(first)
        self._started_at = self.clock()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="gwbench-monitor", daemon=True)
        self._thread.start()

    def end(self) -> WindowStats:
        """Close the window: take a last sample, stop the thread, return the window's figures."""
        last = sample_tree(self.root_pid, with_memory=self.with_memory)
        wall = self.clock() - self._started_at
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._absorb(last)
        with self._lock:
            cpu = sum(v - self._start_cpu.get(pid, 0.0) for pid, v in self._last_cpu.items())
            return WindowStats(
                wall_s=wall,
                cpu_s=max(cpu, 0.0),
                rss_peak_bytes=self._rss_peak,
                pss_peak_bytes=self._pss_peak,
                processes=len(last.cpu_s_by_pid),
                vanished=tuple(sorted(set(self._last_cpu) - set(last.cpu_s_by_pid))),
            )
