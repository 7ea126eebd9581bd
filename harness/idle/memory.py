"""Reading a stack's memory (PSS, its anonymous part, USS, the control group's charge) and waiting
until it is idle; the CPU time for that is :func:`harness.monitor.sample_tree`'s."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from harness.cgroup import Cgroup
from harness.idle.method import (
    QUIET_CPU_PERCENT,
    QUIET_TIMEOUT_S,
    QUIET_WINDOW_S,
    SAMPLE_INTERVAL_S,
    SAMPLES,
    IdleError,
)
from harness.monitor import sample_tree

KIB = 1024

Reading = Literal["pss", "pss_anon", "uss", "cgroup"]
READINGS: tuple[Reading, ...] = ("pss", "pss_anon", "uss", "cgroup")


@dataclass(frozen=True)
class MemoryReading:
    """A process tree's memory in bytes, each the highest of a few samples; ``pids`` are its processes.

    PSS shares each page among every process mapping it, machine-wide: a process elsewhere that maps
    the same libraries lowers it, so on a shared machine it moves by itself. ``pss_anon_bytes``, the
    anonymous part (None before Linux 5.3), leaves those file pages out. USS counts the pages only
    the tree's processes map; a page copied on write in a forked worker counts twice (the worker's
    copy and the master's, both private now). ``cgroup_bytes`` (None without a control group) counts
    each page once and adds the kernel memory the kernel charges to the group.
    """

    pss_bytes: int
    pss_anon_bytes: int | None
    uss_bytes: int
    rss_bytes: int
    cgroup_bytes: int | None
    pids: tuple[int, ...]

    def bytes_of(self, reading: Reading) -> int | None:
        value: int | None = getattr(self, f"{reading}_bytes")
        return value


def kib_per_connection(before: int | None, held: int | None, connections: int) -> float | None:
    """(held - before) / connections, bytes in, KiB out; None if a reading is missing or none was held.

    ``kib_per_connection(10 * 2**20, 30 * 2**20, 1000)`` -> 20.48.
    """
    if before is None or held is None or connections <= 0:
        return None
    return (held - before) / connections / KIB


def anonymous_pss_bytes(smaps_rollup: str) -> int | None:
    """``Pss_Anon`` of a ``/proc/<pid>/smaps_rollup`` text, in bytes; None when the kernel gives none.

    ``anonymous_pss_bytes("Pss:  254 kB\\nPss_Anon:  112 kB\\n")`` -> 114688.
    """
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss_Anon:"):
            return int(line.split()[1]) * KIB
    return None


def sample_memory(root_pid: int, group: Cgroup | None) -> MemoryReading:
    """The tree's memory now (psutil, ``smaps_rollup``, the group's charge); IdleError if unreadable."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        raise IdleError("the server exited while its memory was read") from None
    pss = uss = rss = 0
    anon: int | None = 0
    pids = []
    for proc in procs:
        try:
            full = proc.memory_full_info()
            rollup = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
        except (psutil.NoSuchProcess, ProcessLookupError, FileNotFoundError):
            continue  # a process that just exited: the changed pids fail the round
        except (psutil.AccessDenied, PermissionError) as exc:
            raise IdleError(f"cannot read the memory of process {proc.pid}: {exc}") from None
        pss, uss, rss = pss + full.pss, uss + full.uss, rss + full.rss
        proc_anon = anonymous_pss_bytes(rollup)
        anon = None if anon is None or proc_anon is None else anon + proc_anon
        pids.append(proc.pid)
    charged = None if group is None else group.memory_bytes()
    return MemoryReading(pss, anon, uss, rss, charged, tuple(sorted(pids)))


def peak_of(readings: Sequence[MemoryReading]) -> MemoryReading:
    """The highest value of each field (None if any reading lacks it), the last reading's pids."""

    def most(values: Iterable[int | None]) -> int | None:
        present = list(values)
        return None if None in present else max(v for v in present if v is not None)

    return MemoryReading(
        pss_bytes=max(r.pss_bytes for r in readings),
        pss_anon_bytes=most(r.pss_anon_bytes for r in readings),
        uss_bytes=max(r.uss_bytes for r in readings),
        rss_bytes=max(r.rss_bytes for r in readings),
        cgroup_bytes=most(r.cgroup_bytes for r in readings),
        pids=readings[-1].pids,
    )


def read_memory(root_pid: int, group: Cgroup | None) -> MemoryReading:
    """The peak of SAMPLES samples SAMPLE_INTERVAL_S apart."""
    readings = []
    for index in range(SAMPLES):
        if index:
            time.sleep(SAMPLE_INTERVAL_S)
        readings.append(sample_memory(root_pid, group))
    return peak_of(readings)


def wait_quiet(root_pid: int, *, timeout_s: float = QUIET_TIMEOUT_S) -> float:
    """Wait until the tree uses <= QUIET_CPU_PERCENT of a core over QUIET_WINDOW_S; return that share.

    Raises IdleError when it is still busier than that after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    last = sample_tree(root_pid, with_memory=False).cpu_s_by_pid
    while True:
        time.sleep(QUIET_WINDOW_S)
        now = sample_tree(root_pid, with_memory=False).cpu_s_by_pid
        percent = 100 * sum(now[pid] - last.get(pid, 0.0) for pid in now) / QUIET_WINDOW_S
        if percent <= QUIET_CPU_PERCENT:
            return percent
        if time.monotonic() > deadline:
            raise IdleError(f"not idle: {percent:.0f}% of a core after {timeout_s:.0f} s with no load")
        last = now
