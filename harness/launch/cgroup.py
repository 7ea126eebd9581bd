"""Control groups for local targets: made with CPU and memory limits, processes moved in,
killed and removed (stale ones too). Reading a group (the layout, its counters and limits) is
:mod:`harness.cgroup`'s.

v2 groups go under ``gwbench`` at the hierarchy's root, v1 groups under ``gwbench`` inside the
harness's own group per controller (:func:`create`); :func:`remove_stale` deletes the groups
of a harness that died.
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

import psutil

from harness.cgroup import (
    CPU_PERIOD_US,
    Cgroup,
    Hierarchy,
    detect,
    format_cpu_list,
    group_directory,
    parse_proc_cgroup,
)
from harness.types import MIB

PARENT = "gwbench"
_counter = itertools.count()


class CgroupUnavailable(Exception):
    """No control group could be made or used; the message is one line saying why."""


@dataclass(frozen=True)
class Limits:
    """A target's resource budget; None means unlimited.

    ``cpus`` is a CPU-time quota in cores (0.5: half of one core's time, per 100 ms
    period), ``memory_mib`` a memory limit in MiB with no swap beyond it. Which CPUs the
    target may run on is given separately, as the launchers' ``cpus``.
    """

    cpus: float | None = None
    memory_mib: int | None = None

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory_mib is None else self.memory_mib * MIB


class ManagedCgroup(Cgroup):
    """A group the harness made (:func:`create`): read as any :class:`~harness.cgroup.Cgroup`,
    and also joined (:meth:`procs_files`, :meth:`add`), killed and removed."""

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` file of each distinct directory: write a pid there to move it in."""
        return [str(d / "cgroup.procs") for d in sorted(set(self.dirs.values()))]

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
        directory = group_directory(mount, own.get(controller, "/"))
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
        stale = ManagedCgroup(
            hierarchy.version, {c: p / name for c, p in parents.items() if (p / name).is_dir()}
        )
        if stale.remove(timeout_s=2.0):
            removed.append(name)
    return removed


def create(
    name: str,
    limits: Limits,
    *,
    cpuset: Collection[int] = (),
    hierarchy: Hierarchy | None = None,
) -> ManagedCgroup:
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
        group = ManagedCgroup(hierarchy.version, dirs)
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
