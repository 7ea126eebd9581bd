"""What a harness leaves behind when it is killed (SIGKILL, a crash), found and removed by the next one.

A harness that is torn down stops what it started. One that is killed cannot: its stacks
are reaped through their cgroups (:func:`harness.launch.cgroup.remove_stale`), but the
upstream, PostgreSQL, and any stack where cgroups cannot be made, are in none. So every
process group the harness starts, and every folder it makes for one, is recorded in a
small file in :data:`STATE_DIR` while it runs (``<harness pid>.<name>.<n>.json``), and
forgotten when it is stopped. :func:`reap` (called when a launcher or PostgreSQL starts)
reads the records whose harness is gone, kills what is left of each process group and
removes each folder.

A process is known by its pid and its start time (psutil's ``create_time``), so a pid the
system gave again to another process is never taken for the one recorded.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

STATE_DIR = Path(tempfile.gettempdir()) / "gwbench-leftovers"
"""Where the records are: one JSON file per process group or folder a living harness owns."""

_SAME_START_S = 0.05
"""Two start times within this many seconds are the same process's (both read from /proc)."""

_numbers = itertools.count()


def _started(pid: int) -> float | None:
    """The start time (s since the epoch) of process ``pid``, or None when there is none."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _is(pid: int, started: float) -> bool:
    """Whether process ``pid`` is the one that started at ``started``."""
    now = _started(pid)
    return now is not None and abs(now - started) < _SAME_START_S


def record(name: str, pid: int | None = None, folder: Path | None = None) -> Path | None:
    """Record a process group (led by ``pid``, as ``start_new_session`` makes) or a folder, or both.

    Returns the record's path, for :func:`forget` (and to record the same service again with
    more, e.g. a folder then its server); None when the record cannot be written (nothing
    is reaped for it then, as before this module).
    """
    return rerecord(STATE_DIR / f"{os.getpid()}.{name}.{next(_numbers)}.json", name, pid, folder)


def rerecord(path: Path | None, name: str, pid: int | None, folder: Path | None) -> Path | None:
    """Write (or rewrite) the record at ``path``; see :func:`record`."""
    owner_started = _started(os.getpid())
    if path is None or owner_started is None:
        return None
    data = {
        "name": name,
        "owner_pid": os.getpid(),
        "owner_started": owner_started,
        "pid": pid,
        "started": None if pid is None else _started(pid),
        "folder": None if folder is None else str(folder),
    }
    try:
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(data))
        partial.replace(path)
    except OSError:
        return None
    return path


def forget(path: Path | None) -> None:
    """Remove a record: what it names was stopped and removed by its owner."""
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _records() -> Iterator[tuple[Path, dict[str, Any], int, bool]]:
    """Each readable record: its path, its data, its owner's pid and whether that owner is alive."""
    try:
        paths = sorted(STATE_DIR.glob("*.json"))
    except OSError:
        return
    for path in paths:
        try:
            data = json.loads(path.read_text())
            owner, owner_started = int(data["owner_pid"]), float(data["owner_started"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        yield path, data, owner, _is(owner, owner_started)


def reap() -> list[str]:
    """Kill and remove what dead harnesses recorded; the names of what was reaped.

    For each record whose owner is gone: every process of the recorded group that
    started no earlier than its leader is sent SIGKILL (the leader itself only if it is
    still the recorded process), the folder is removed, and so is the record. Records
    of living harnesses, and unreadable ones, stay.
    """
    reaped = []
    for path, data, _, alive in _records():
        if alive:
            continue
        pid, started = data.get("pid"), data.get("started")
        if isinstance(pid, int) and isinstance(started, int | float):
            _kill_group(pid, float(started))
        folder = data.get("folder")
        if isinstance(folder, str) and folder:
            shutil.rmtree(folder, ignore_errors=True)
        forget(path)
        reaped.append(str(data.get("name", path.stem)))
    return reaped


def _kill_group(leader: int, started: float) -> None:
    """SIGKILL the processes of group ``leader`` that started with or after it (not a reused pid's)."""
    for process in psutil.process_iter(["pid", "create_time"]):
        try:
            if os.getpgid(process.pid) != leader:
                continue
            if process.pid == leader and not _is(leader, started):
                continue
            if process.info["create_time"] + _SAME_START_S < started:
                continue
            process.send_signal(signal.SIGKILL)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue


def other_harnesses() -> list[int]:
    """The process ids of other living harnesses that have something running now (from their records)."""
    return sorted({owner for _, _, owner, alive in _records() if alive and owner != os.getpid()})
