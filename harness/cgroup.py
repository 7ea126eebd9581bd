"""Reading control groups: the machine's layout, the group a process is in, and a group's
CPU time, memory, OOM kills, throttling and limits (the bottom layer: imports nothing of the
harness). Making, limiting and removing groups is :mod:`harness.launch.cgroup`'s.

The kernel has two layouts (Documentation/admin-guide/cgroup-v2.rst and cgroup-v1/):

- v2: one hierarchy; a group is one directory with ``cpu.max``, ``cpuset.cpus``,
  ``memory.max``, ``cpu.stat`` (``usage_usec``), ``memory.peak`` and ``memory.events``
  (``oom_kill``).
- v1: one hierarchy per controller (``cpu``, ``cpuacct``, ``cpuset``, ``memory``; some may be
  mounted together); a group is a directory in each, with ``cpu.cfs_quota_us``,
  ``cpuset.cpus``, ``memory.limit_in_bytes``, ``cpuacct.usage`` (ns),
  ``memory.max_usage_in_bytes`` and ``memory.oom_control`` (``oom_kill``).

:func:`detect` tells which one the machine has, :func:`cgroup_of` finds the group a process
is in (a container's init process, say), and :class:`Cgroup` reads a group's counters. The
one write here is part of measuring: restarting a group's memory peak for a window
(:class:`PeakWindow`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# The kernel's default CFS period, and Docker's: a quota of 0.5 CPU is 50 ms of every 100 ms.
CPU_PERIOD_US = 100_000
# cgroup v1 reports "no limit" as the largest page-aligned 64-bit value.
_V1_UNLIMITED = 2**62
_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")


@dataclass(frozen=True)
class CgroupUsage:
    """A group's counters at one moment; None where this kernel or layout has no such file.

    ``cpu_s`` is user + system CPU seconds of every process that ever ran in the group,
    since it was made. ``memory_bytes`` is all memory charged to the group now (process
    memory, page cache, kernel memory), ``memory_peak_bytes`` its maximum since the group
    was made (or last reset). ``oom_kills`` counts processes the kernel killed for going
    over the memory limit. ``throttled_periods`` counts CPU periods in which the group used
    its whole quota and had to wait; ``throttled_s`` is the total time it waited.
    """

    cpu_s: float | None
    memory_bytes: int | None
    memory_peak_bytes: int | None
    oom_kills: int | None
    throttled_periods: int | None
    throttled_s: float | None


@dataclass(frozen=True)
class AppliedLimits:
    """The limits a group really has, read back from its files; None means unlimited.

    ``cpuset`` is empty when the group may use every CPU (or has no cpuset controller).
    """

    cpus: float | None
    cpuset: tuple[int, ...]
    memory_bytes: int | None


@dataclass(frozen=True)
class Mount:
    """Where a cgroup hierarchy is mounted (``point``) and the mount's ``root`` inside the
    hierarchy: ``"/"`` unless seen from a namespace (a container)."""

    point: Path
    root: str


@dataclass(frozen=True)
class Hierarchy:
    """The machine's cgroup layout: ``version`` 1 or 2, and where each controller is mounted.

    Under v2 every controller maps to the one mount.
    """

    version: Literal[1, 2]
    mounts: Mapping[str, Mount]


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Cgroup mounts of ``/proc/<pid>/mountinfo`` as (mount point, root, fstype, super options).

    ``36 25 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu`` ->
    ``("/sys/fs/cgroup/cpu", "/", "cgroup", ("rw", "cpu"))``.
    """
    found = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        found.append((_unescape(fields[4]), _unescape(fields[3]), rest[0], tuple(rest[2].split(","))))
    return found


def detect(mountinfo: Path = Path("/proc/self/mountinfo")) -> Hierarchy | None:
    """The cgroup layout that can limit CPU and memory here, or None.

    A v2 hierarchy counts only when its root offers the ``cpu`` and ``memory``
    controllers (on a hybrid machine, ``/sys/fs/cgroup/unified`` usually offers
    neither: those are then v1's).
    """
    try:
        mounts = parse_mountinfo(mountinfo.read_text())
    except OSError:
        return None
    for point, root, fstype, _options in mounts:
        if fstype != "cgroup2":
            continue
        try:
            offered = set((Path(point) / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        if {"cpu", "memory"} <= offered:
            mount = Mount(Path(point), root)
            return Hierarchy(2, {c: mount for c in _CONTROLLERS})
    v1: dict[str, Mount] = {}
    for point, root, fstype, options in mounts:
        if fstype == "cgroup":
            for controller in _CONTROLLERS:
                if controller in options:
                    v1.setdefault(controller, Mount(Path(point), root))
    if {"cpu", "cpuacct", "memory"} <= set(v1):
        return Hierarchy(1, v1)
    return None


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {controller: path}; the v2 line's controller is ``""``.

    ``"4:memory:/docker/ab\\n0::/"`` -> ``{"memory": "/docker/ab", "": "/"}``.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = parts[2]
    return paths


def group_directory(mount: Mount, path: str) -> Path | None:
    """Where the group ``path`` (as ``/proc/<pid>/cgroup`` names it) lies under ``mount``."""
    root = mount.root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None
    relative = path[len(root) :].lstrip("/")
    return mount.point / relative if relative else mount.point


def cgroup_of(pid: int, hierarchy: Hierarchy | None = None) -> Cgroup | None:
    """The group process ``pid`` is in, or None (no such process, no usable layout).

    Works for any process this machine can see, e.g. a container's init process: its
    group, and so its counters, are the container's.
    """
    hierarchy = hierarchy or detect()
    if hierarchy is None:
        return None
    try:
        paths = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    except OSError:
        return None
    dirs: dict[str, Path] = {}
    for controller, mount in hierarchy.mounts.items():
        path = paths.get("" if hierarchy.version == 2 else controller)
        directory = None if path is None else group_directory(mount, path)
        if directory is not None and directory.is_dir():
            dirs[controller] = directory
    if not {"cpuacct", "memory"} <= set(dirs):
        return None
    return Cgroup(hierarchy.version, dirs)


def _keyed(text: str | None) -> dict[str, int]:
    """``"usage_usec 12\\nnr_throttled 0"`` -> ``{"usage_usec": 12, "nr_throttled": 0}``."""
    values: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """A kernel CPU list as sorted CPU numbers: ``"0-2,5"`` -> ``(0, 1, 2, 5)``; ``""`` -> ``()``."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return tuple(sorted(cpus))


def format_cpu_list(cpus: Collection[int]) -> str:
    """``{0, 1, 3}`` -> ``"0,1,3"`` (the kernel and Docker both accept it)."""
    return ",".join(str(c) for c in sorted(cpus))


@dataclass(frozen=True)
class Cgroup:
    """One control group, read: its directory per controller (under v2, one directory for all).

    Every reader returns None when the file is missing or the group is gone. The group a
    launcher made, which it can also add processes to and remove, is
    :class:`harness.launch.cgroup.ManagedCgroup`.
    """

    version: Literal[1, 2]
    dirs: Mapping[str, Path]

    def _read(self, controller: str, name: str) -> str | None:
        directory = self.dirs.get(controller)
        if directory is None:
            return None
        try:
            return (directory / name).read_text()
        except (OSError, ValueError):
            return None

    def _int(self, controller: str, name: str) -> int | None:
        text = self._read(controller, name)
        try:
            return None if text is None else int(text)
        except ValueError:
            return None  # "max"

    def cpu_s(self) -> float | None:
        """User + system CPU seconds used by the group since it was made."""
        if self.version == 2:
            usec = _keyed(self._read("cpu", "cpu.stat")).get("usage_usec")
            return None if usec is None else usec / 1e6
        ns = self._int("cpuacct", "cpuacct.usage")
        return None if ns is None else ns / 1e9

    def memory_bytes(self) -> int | None:
        """Memory charged to the group now, in bytes."""
        return self._int("memory", "memory.current" if self.version == 2 else "memory.usage_in_bytes")

    def memory_peak_bytes(self) -> int | None:
        """The most memory the group held since it was made, in bytes (v2 needs Linux 5.19)."""
        return self._int("memory", "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")

    def oom_kills(self) -> int | None:
        """Processes of the group the kernel killed for going over its memory limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        return _keyed(self._read("memory", name)).get("oom_kill")

    def throttling(self) -> tuple[int | None, float | None]:
        """(periods in which the group hit its CPU quota, seconds it waited for the next period)."""
        stat = _keyed(self._read("cpu", "cpu.stat"))
        if self.version == 2:
            usec = stat.get("throttled_usec")
            return stat.get("nr_throttled"), None if usec is None else usec / 1e6
        ns = stat.get("throttled_time")
        return stat.get("nr_throttled"), None if ns is None else ns / 1e9

    def usage(self) -> CgroupUsage:
        """Every counter at once."""
        periods, waited = self.throttling()
        return CgroupUsage(
            cpu_s=self.cpu_s(),
            memory_bytes=self.memory_bytes(),
            memory_peak_bytes=self.memory_peak_bytes(),
            oom_kills=self.oom_kills(),
            throttled_periods=periods,
            throttled_s=waited,
        )

    def reset_memory_peak(self) -> bool:
        """Restart the peak from the current usage, for a per-window peak; False if not possible.

        Only v1 can (``memory.max_usage_in_bytes``); a v2 ``memory.peak`` is reset per open
        file (Linux 6.12), which :class:`PeakWindow` does.
        """
        directory = self.dirs.get("memory")
        if self.version != 1 or directory is None:
            return False
        try:
            (directory / "memory.max_usage_in_bytes").write_text("0")
        except OSError:
            return False
        return True

    def limits(self) -> AppliedLimits:
        """The limits the group has, read back from its files."""
        cpus: float | None = None
        if self.version == 2:
            quota, _, period = (self._read("cpu", "cpu.max") or "max").partition(" ")
            if quota != "max":
                cpus = int(quota) / int(period or CPU_PERIOD_US)
            memory = self._int("memory", "memory.max")
            cpuset_text = self._read("cpuset", "cpuset.cpus") or ""
        else:
            quota_us = self._int("cpu", "cpu.cfs_quota_us")
            if quota_us is not None and quota_us > 0:
                cpus = quota_us / (self._int("cpu", "cpu.cfs_period_us") or CPU_PERIOD_US)
            memory = self._int("memory", "memory.limit_in_bytes")
            memory = None if memory is None or memory >= _V1_UNLIMITED else memory
            cpuset_text = self._read("cpuset", "cpuset.cpus") or ""
        try:
            cpuset = parse_cpu_list(cpuset_text)
        except ValueError:
            cpuset = ()
        if cpuset == parse_cpu_list(_all_cpus()):
            cpuset = ()
        return AppliedLimits(cpus=cpus, cpuset=cpuset, memory_bytes=memory)

    def pids(self) -> list[int]:
        """Processes in the group now."""
        text = self._read("memory", "cgroup.procs") or ""
        return [int(p) for p in text.split()]


class PeakWindow:
    """The memory peak of a group over a window: from :meth:`open` to :meth:`read`.

    v1 resets ``memory.max_usage_in_bytes``. v2 (Linux 6.12 and later) resets
    ``memory.peak`` for one open file, which is kept open for the window. Where neither
    works, :meth:`read` returns None and a caller samples ``memory_bytes`` instead.
    """

    def __init__(self, cgroup: Cgroup) -> None:
        self.cgroup = cgroup
        self._fd: int | None = None
        self._v1 = False

    def open(self) -> bool:
        """Start the window; False when this kernel cannot give a window's peak."""
        self.close()
        if self.cgroup.version == 1:
            self._v1 = self.cgroup.reset_memory_peak()
            return self._v1
        directory = self.cgroup.dirs.get("memory")
        if directory is None:
            return False
        try:
            fd = os.open(directory / "memory.peak", os.O_RDWR)
        except OSError:
            return False
        try:
            os.write(fd, b"reset\n")
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def read(self) -> int | None:
        """The peak in bytes since :meth:`open`, or None."""
        if self._v1:
            return self.cgroup.memory_peak_bytes()
        if self._fd is None:
            return None
        try:
            return int(os.pread(self._fd, 64, 0))
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._v1 = False


def _all_cpus() -> str:
    try:
        return Path("/sys/devices/system/cpu/online").read_text().strip()
    except OSError:
        return ""
