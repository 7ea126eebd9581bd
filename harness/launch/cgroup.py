"""Control groups: one per local target, with CPU and memory limits, and the readers both
launchers use for a group's CPU time, memory and OOM kills.

The kernel has two layouts (Documentation/admin-guide/cgroup-v2.rst and cgroup-v1/):

- v2: one hierarchy; a group is one directory with ``cpu.max``, ``cpuset.cpus``,
  ``memory.max``, ``cpu.stat`` (``usage_usec``), ``memory.peak`` and ``memory.events``
  (``oom_kill``).
- v1: one hierarchy per controller (``cpu``, ``cpuacct``, ``cpuset``, ``memory``; some may be
  mounted together); a group is a directory in each, with ``cpu.cfs_quota_us``,
  ``cpuset.cpus``, ``memory.limit_in_bytes``, ``cpuacct.usage`` (ns),
  ``memory.max_usage_in_bytes`` and ``memory.oom_control`` (``oom_kill``).

:func:`detect` tells which one the machine has, :func:`cgroup_of` finds the group a process
is in (a container's init process, say), and :func:`create` makes a group for a target.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import signal
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

MIB = 2**20
# The kernel's default CFS period, and Docker's: a quota of 0.5 CPU is 50 ms of every 100 ms.
CPU_PERIOD_US = 100_000
PARENT = "gwbench"
# cgroup v1 reports "no limit" as the largest page-aligned 64-bit value.
_V1_UNLIMITED = 2**62
_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")
_counter = itertools.count()


class CgroupUnavailable(Exception):
    """No control group could be made or used; the message is one line saying why."""


@dataclass(frozen=True)
class Limits:
    """A target's resource budget; None means unlimited.

    ``cpus`` is a CPU-time quota in cores (0.5: half of one core's time, per 100 ms
    period), ``memory_mb`` a memory limit in MiB with no swap beyond it. Which CPUs the
    target may run on is given separately, as the launchers' ``cpus``.
    """

    cpus: float | None = None
    memory_mb: int | None = None

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory_mb is None else self.memory_mb * MIB


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
class _Mount:
    point: Path
    root: str  # the mount's root inside the hierarchy: "/" unless seen from a namespace


@dataclass(frozen=True)
class Hierarchy:
    """The machine's cgroup layout: ``version`` 1 or 2, and where each controller is mounted.

    Under v2 every controller maps to the one mount.
    """

    version: Literal[1, 2]
    mounts: Mapping[str, _Mount]


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
            mount = _Mount(Path(point), root)
            return Hierarchy(2, {c: mount for c in _CONTROLLERS})
    v1: dict[str, _Mount] = {}
    for point, root, fstype, options in mounts:
        if fstype == "cgroup":
            for controller in _CONTROLLERS:
                if controller in options:
                    v1.setdefault(controller, _Mount(Path(point), root))
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


def _directory(mount: _Mount, path: str) -> Path | None:
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
        directory = None if path is None else _directory(mount, path)
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
    """One control group: its directory per controller (under v2, one directory for all).

    Every reader returns None when the file is missing or the group is gone.
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

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` file of each distinct directory: write a pid there to move it in."""
        return [str(d / "cgroup.procs") for d in sorted(set(self.dirs.values()))]

    def pids(self) -> list[int]:
        """Processes in the group now."""
        text = self._read("memory", "cgroup.procs") or ""
        return [int(p) for p in text.split()]

    def add(self, pid: int) -> None:
        """Move process ``pid`` (0: the caller) into the group. Raises OSError."""
        for path in self.procs_files():
            with open(path, "w") as handle:
                handle.write(str(pid))

    def kill(self) -> None:
        """SIGKILL every process in the group, including any that left its process group."""
        directory = self.dirs.get("memory")
        if self.version == 2 and directory is not None and (directory / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (directory / "cgroup.kill").write_text("1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, timeout_s: float = 5.0) -> bool:
        """Kill what is left in the group and delete it (and its parent, once empty).

        Returns False if it could not be deleted within ``timeout_s`` seconds. Safe to call twice.
        """
        deadline = time.monotonic() + timeout_s
        directories = sorted(set(self.dirs.values()))
        while True:
            self.kill()
            left = []
            for directory in directories:
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:
                    left.append(directory)
            if not left:
                break
            if time.monotonic() > deadline:
                return False
            directories = left
            time.sleep(0.02)
        for directory in sorted(set(self.dirs.values())):
            if directory.parent.name == PARENT:
                with contextlib.suppress(OSError):
                    directory.parent.rmdir()  # fails while another target's group is in it
        return True


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


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        hint = " (not root?)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
        reason = exc.strerror or str(exc)
        raise CgroupUnavailable(f"cannot write {value!r} to {path}: {reason}{hint}") from exc


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        hint = " (not root?)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
        reason = exc.strerror or str(exc)
        raise CgroupUnavailable(f"cannot create {path}: {reason}{hint}") from exc


def _enable(directory: Path, controllers: Collection[str]) -> None:
    """Let ``directory``'s children use ``controllers`` (v2 ``cgroup.subtree_control``)."""
    enabled = set((directory / "cgroup.subtree_control").read_text().split())
    missing = [c for c in controllers if c not in enabled]
    if missing:
        _write(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _parents(hierarchy: Hierarchy) -> dict[str, Path]:
    """The ``gwbench`` parent group's directory per controller.

    v2: at the hierarchy's root, the one place (besides a leaf) where a group may hold
    processes and still give its children controllers. v1: inside the harness's own
    group, so targets stay within whatever limits and accounting the harness runs under.
    """
    if hierarchy.version == 2:
        mount = next(iter(hierarchy.mounts.values()))
        return {c: mount.point / PARENT for c in hierarchy.mounts}
    own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    parents = {}
    for controller, mount in hierarchy.mounts.items():
        directory = _directory(mount, own.get(controller, "/"))
        parents[controller] = (directory or mount.point) / PARENT
    return parents


def _owner_alive(name: str) -> bool:
    # Group names end in ".<pid of the harness that made it>.<n>".
    match = re.search(r"\.(\d+)\.\d+$", name)
    return match is None or psutil.pid_exists(int(match.group(1)))


def remove_stale(hierarchy: Hierarchy | None = None) -> list[str]:
    """Delete groups left by a harness that died (processes in them are killed); their names."""
    hierarchy = hierarchy or detect()
    if hierarchy is None:
        return []
    try:
        parents = _parents(hierarchy)
    except OSError:
        return []
    names: set[str] = set()
    for parent in set(parents.values()):
        with contextlib.suppress(OSError):
            names.update(p.name for p in parent.iterdir() if p.is_dir() and not _owner_alive(p.name))
    removed = []
    for name in sorted(names):
        stale = Cgroup(hierarchy.version, {c: p / name for c, p in parents.items() if (p / name).is_dir()})
        if stale.remove(timeout_s=2.0):
            removed.append(name)
    return removed


def create(
    name: str,
    limits: Limits,
    *,
    cpuset: Collection[int] = (),
    hierarchy: Hierarchy | None = None,
) -> Cgroup:
    """Make a group for one target with ``limits`` and the CPU set ``cpuset`` (empty: any CPU).

    Its directory is ``<parent>/gwbench/<name>.<pid>.<n>``. Groups left by a harness
    that died are removed first. Raises CgroupUnavailable, with one line saying why
    (no usable layout, not root, read-only, a controller that cannot be enabled); nothing
    is left behind then.
    """
    hierarchy = hierarchy or detect()
    if hierarchy is None:
        raise CgroupUnavailable("no cgroup hierarchy with the cpu and memory controllers is mounted")
    remove_stale(hierarchy)
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", name) or "target"
    leaf = f"{label}.{os.getpid()}.{next(_counter)}"
    made: list[Path] = []
    try:
        try:
            parents = _parents(hierarchy)
        except OSError as exc:
            raise CgroupUnavailable(f"cannot read this process's cgroup: {exc}") from exc
        dirs = {c: parent / leaf for c, parent in parents.items()}
        group = Cgroup(hierarchy.version, dirs)
        if hierarchy.version == 2:
            _setup_v2(parents, dirs, limits, cpuset, made)
        else:
            _setup_v1(parents, dirs, limits, cpuset, made)
    except CgroupUnavailable:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    except OSError as exc:  # a file that should be there is not, or cannot be read
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise CgroupUnavailable(f"cgroup v{hierarchy.version}: {exc}") from exc
    return group


def _made(path: Path, made: list[Path]) -> None:
    existed = path.is_dir()
    _mkdir(path)
    if not existed:
        made.append(path)


def _setup_v2(
    parents: Mapping[str, Path],
    dirs: Mapping[str, Path],
    limits: Limits,
    cpuset: Collection[int],
    made: list[Path],
) -> None:
    parent = next(iter(parents.values()))
    leaf = next(iter(dirs.values()))
    root = parent.parent
    offered = set((root / "cgroup.controllers").read_text().split())
    wanted = [c for c in ("cpu", "cpuset", "memory") if c in offered and (c != "cpuset" or cpuset)]
    _enable(root, wanted)
    _made(parent, made)
    _enable(parent, wanted)
    _made(leaf, made)
    if limits.cpus is not None:
        _write(leaf / "cpu.max", f"{max(round(limits.cpus * CPU_PERIOD_US), 1000)} {CPU_PERIOD_US}")
    if cpuset and "cpuset" in wanted:
        _write(leaf / "cpuset.cpus", format_cpu_list(cpuset))
    if limits.memory_bytes is not None:
        _write(leaf / "memory.max", str(limits.memory_bytes))
        if (leaf / "memory.swap.max").exists():
            _write(leaf / "memory.swap.max", "0")


def _setup_v1(
    parents: Mapping[str, Path],
    dirs: Mapping[str, Path],
    limits: Limits,
    cpuset: Collection[int],
    made: list[Path],
) -> None:
    for controller, parent in parents.items():
        _made(parent, made)
        if controller == "cpuset":
            # A new v1 cpuset group starts with no CPUs and no memory nodes: copy its parent's.
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not (parent / name).read_text().strip():
                    _write(parent / name, (parent.parent / name).read_text().strip())
        _made(dirs[controller], made)
    if limits.cpus is not None:
        cpu = dirs["cpu"]
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(max(round(limits.cpus * CPU_PERIOD_US), 1000)))
    if "cpuset" in dirs:
        directory = dirs["cpuset"]
        _write(directory / "cpuset.mems", (directory.parent / "cpuset.mems").read_text().strip())
        cpus = format_cpu_list(cpuset) if cpuset else (directory.parent / "cpuset.cpus").read_text().strip()
        _write(directory / "cpuset.cpus", cpus)
    if limits.memory_bytes is not None:
        memory = dirs["memory"]
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
