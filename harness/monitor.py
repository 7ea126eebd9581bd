"""Sample a process tree's CPU time and memory (psutil) in a background thread.

CPU time is cumulative user + system seconds per process; a process that exits
keeps the last value seen, so a worker recycled mid-window is not lost (up to
one sampling interval of its work). Memory is summed over the tree: RSS, and
PSS (proportional set size: shared pages divided among the processes sharing
them, from /proc/<pid>/smaps_rollup) which does not double-count the pages
that forked workers share with their master.

:class:`CgroupMonitor` reads the same window from a control group's counters
(:mod:`harness.cgroup`): CPU time, memory peak, OOM kills and throttling.

Both keep every sample they take (:attr:`TreeMonitor.samples`,
:attr:`CgroupMonitor.samples`), timed from :meth:`begin`, for memory over time
(a soak's leak shows as a slope), and both can split their window at a
:meth:`mark` (one window per stage of a staged scenario) without a gap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from harness.cgroup import Cgroup, CgroupUsage, PeakWindow
from harness.types import TimedSample


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

    :meth:`mark` closes the current window and opens the next at once (stages).
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
        self._window_at = 0.0
        self._cpu_done = 0.0
        self._sampling = False
        self._samples: list[TimedSample] = []

    @property
    def samples(self) -> list[TimedSample]:
        """Every sample since :meth:`begin`, in time order (a copy)."""
        with self._lock:
            return list(self._samples)

    def _absorb(self, sample: TreeSample) -> None:
        now = self.clock()
        with self._lock:
            self._last_cpu.update(sample.cpu_s_by_pid)
            self._rss_peak = max(self._rss_peak, sample.rss_bytes)
            if sample.pss_bytes is None or self._pss_peak is None:
                self._pss_peak = None
            else:
                self._pss_peak = max(self._pss_peak, sample.pss_bytes)
            if self._sampling:
                used = sum(v - self._start_cpu.get(pid, 0.0) for pid, v in self._last_cpu.items())
                self._samples.append(
                    TimedSample(
                        now - self._started_at,
                        self._cpu_done + max(used, 0.0),
                        sample.rss_bytes,
                        sample.pss_bytes,
                    )
                )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._absorb(sample_tree(self.root_pid, with_memory=self.with_memory))

    def begin(self) -> None:
        """Open the window: take a first sample and start the sampling thread."""
        first = sample_tree(self.root_pid, with_memory=self.with_memory)
        with self._lock:
            self._start_cpu = dict(first.cpu_s_by_pid)
            self._cpu_done = 0.0
            self._last_cpu = dict(first.cpu_s_by_pid)
            self._rss_peak = 0
            self._pss_peak = 0
            self._samples = []
            self._started_at = self._window_at = self.clock()
            self._sampling = True
        self._absorb(first)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="gwbench-monitor", daemon=True)
        self._thread.start()

    def _close_window(self, last: TreeSample, now: float) -> WindowStats:
        self._absorb(last)
        with self._lock:
            cpu = sum(v - self._start_cpu.get(pid, 0.0) for pid, v in self._last_cpu.items())
            stats = WindowStats(
                wall_s=now - self._window_at,
                cpu_s=max(cpu, 0.0),
                rss_peak_bytes=self._rss_peak,
                pss_peak_bytes=self._pss_peak,
                processes=len(last.cpu_s_by_pid),
                vanished=tuple(sorted(set(self._last_cpu) - set(last.cpu_s_by_pid))),
            )
            self._window_at = now
        return stats

    def mark(self) -> WindowStats:
        """Close the current window and open the next at the same sample; sampling goes on.

        Returns the closed window's figures, as :meth:`end` does. Peaks restart
        from the mark's sample; processes that vanished stay counted in the
        window they vanished in.
        """
        last = sample_tree(self.root_pid, with_memory=self.with_memory)
        stats = self._close_window(last, self.clock())
        with self._lock:
            self._cpu_done += stats.cpu_s
            self._start_cpu = dict(last.cpu_s_by_pid)
            self._last_cpu = dict(last.cpu_s_by_pid)
            self._rss_peak = last.rss_bytes
            self._pss_peak = last.pss_bytes
        return stats

    def end(self) -> WindowStats:
        """Close the window: take a last sample, stop the thread, return the window's figures."""
        last = sample_tree(self.root_pid, with_memory=self.with_memory)
        now = self.clock()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self._close_window(last, now)


@dataclass(frozen=True)
class CgroupWindowStats:
    """A control group over one window; None where the kernel has no such counter or the group went away.

    ``cpu_s`` is the group's user + system CPU seconds in the window (every process,
    including ones that came and went). ``memory_peak_bytes`` is the most memory charged to
    the group in the window (process memory, page cache and kernel memory: more than RSS).
    ``oom_kills`` and ``throttled_periods`` / ``throttled_s`` count what happened in the
    window: processes killed for going over the memory limit, and CPU periods in which the
    group used up its quota and the seconds it then waited.
    """

    wall_s: float
    cpu_s: float | None
    memory_peak_bytes: int | None
    oom_kills: int | None
    throttled_periods: int | None
    throttled_s: float | None

    @property
    def cpu_percent(self) -> float | None:
        if self.cpu_s is None:
            return None
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def _delta(end: float | None, start: float | None) -> float | None:
    return None if end is None or start is None else max(end - start, 0)


class CgroupMonitor:
    """A control group's counters between :meth:`begin` and :meth:`end`, as :class:`TreeMonitor` does
    for a process tree.

    CPU time and event counts are differences of the group's counters. The memory peak is
    the kernel's own for the window where it can give one (cgroup v1; v2 from Linux 6.12),
    and at least the highest of samples taken every ``interval_s`` seconds.
    ``clock`` returns seconds (monotonic) and is injectable for tests.
    """

    def __init__(
        self, cgroup: Cgroup, *, interval_s: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cgroup = cgroup
        self.interval_s = interval_s
        self.clock = clock
        self._peak = PeakWindow(cgroup)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = CgroupUsage(None, None, None, None, None, None)
        self._sampled_peak: int | None = None
        self._started_at = 0.0
        self._window_at = 0.0
        self._samples: list[tuple[float, int]] = []

    @property
    def samples(self) -> list[tuple[float, int]]:
        """Every memory reading since :meth:`begin`: (seconds after begin, bytes charged), in order."""
        with self._lock:
            return list(self._samples)

    def _sample(self) -> None:
        current = self.cgroup.memory_bytes()
        now = self.clock()
        if current is not None:
            with self._lock:
                self._sampled_peak = max(self._sampled_peak or 0, current)
                self._samples.append((now - self._started_at, current))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def begin(self) -> None:
        """Open the window: reset the peak where possible, read the counters, start sampling."""
        self._peak.open()
        self._start = self.cgroup.usage()
        with self._lock:
            self._sampled_peak = None
            self._samples = []
            self._started_at = self._window_at = self.clock()
        self._sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="gwbench-cgroup-monitor", daemon=True)
        self._thread.start()

    def mark(self) -> CgroupWindowStats:
        """Close the current window and open the next at once (stages); sampling goes on.

        The kernel's peak is read and reset back to back, so at most the
        microseconds between the two are not covered by it.
        """
        self._sample()
        last = self.cgroup.usage()
        now = self.clock()
        exact = self._peak.read()
        self._peak.open()
        stats = self._window(last, now, exact)
        with self._lock:
            self._sampled_peak = self._samples[-1][1] if self._samples else None
        self._start = last
        self._window_at = now
        return stats

    def end(self) -> CgroupWindowStats:
        """Close the window and return its figures."""
        self._sample()
        last = self.cgroup.usage()
        now = self.clock()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        exact = self._peak.read()
        self._peak.close()
        return self._window(last, now, exact)

    def _window(self, last: CgroupUsage, now: float, exact: int | None) -> CgroupWindowStats:
        with self._lock:
            sampled = self._sampled_peak
        wall = now - self._window_at
        peaks = [p for p in (exact, sampled) if p is not None]
        oom = _delta(last.oom_kills, self._start.oom_kills)
        periods = _delta(last.throttled_periods, self._start.throttled_periods)
        return CgroupWindowStats(
            wall_s=wall,
            cpu_s=_delta(last.cpu_s, self._start.cpu_s),
            memory_peak_bytes=max(peaks) if peaks else None,
            oom_kills=None if oom is None else int(oom),
            throttled_periods=None if periods is None else int(periods),
            throttled_s=_delta(last.throttled_s, self._start.throttled_s),
        )
