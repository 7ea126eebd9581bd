"""One idle-connections cell: hold K connections on a running stack and read its memory before and during.

On a running stack (launched and checked by the run), a spawned driver process, pinned to
the generator CPUs, opens and closes a few warm-up connections (so that lazy imports and
first-request caches are not charged to the connections); once the stack answers its
ready path quickly and uses no CPU, its memory is read (``before``); the driver opens K
connections (HTTP keep-alive or WebSocket, at most ``open_concurrency`` at a time) and,
when every one has been tried, says so; ``settle_s`` later the memory is read again
(``held``), and the server's own count of its connections is taken; then they close. An
HTTP connection sends a request only after HTTP_REFRESH_S of silence, a WebSocket never:
nothing is served while the memory is read.

Memory per connection = (held - before) / connections open at the end of the hold, in KiB,
for PSS, its anonymous part, USS (psutil, ``smaps_rollup``) and the control group's charge
(what each includes: :class:`~harness.idle.memory.MemoryReading`). The method is the one of
``make bench-idle`` before it became a scenario.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace

import psutil

from harness.cgroup import Cgroup
from harness.idle.driver import driver_process, expect
from harness.idle.memory import (
    MemoryReading,
    Reading,
    kib_per_connection,
    read_memory,
    sample_memory,
    wait_quiet,
)
from harness.idle.method import (
    CONNECT_TIMEOUT_S,
    HTTP_REFRESH_S,
    OPEN_TIMEOUT_S,
    QUIET_TIMEOUT_S,
    SAMPLE_INTERVAL_S,
    SAMPLES,
    SPAWN_TIMEOUT_S,
    WARMUP_CONNECTIONS,
    IdleError,
)
from harness.launch import RunningTarget, wait_until_idle
from harness.load.stream import HoldKind, HoldLoad, HoldResult
from harness.load.stream.link import CLOSE_WAIT_S

READ_MARGIN_S = 2.0
"""The hold lasts at least the settling time, the samples and this much more (s), so that the
memory is read while every connection is still open on a busy machine."""


@dataclass(frozen=True)
class IdleHold:
    """What one idle-connections cell saw: the driver's counts, the two memory readings, and
    ``server_connections``, the established TCP connections on the stack's listening ports owned
    by its processes when ``held`` was read (the connections the stack itself holds: a sync
    worker holds only those it accepted; the rest wait in the kernel's accept queue)."""

    hold: HoldResult
    before: MemoryReading
    held: MemoryReading | None
    server_connections: int | None
    oom_kills: int = 0
    """Processes of the stack the kernel killed for going over its memory limit during the hold
    (its control group's count; 0 without one). Then ``held`` may be None (the stack was gone when
    its memory was read) and memory per connection is not measured."""
    driver_cpu_percent: float | None = None
    """The driver process's CPU while it held the connections (from every one tried to the memory
    read), % of one core: what holding them costs the generator. None when unreadable."""

    def per_connection_kib(self, reading: Reading) -> float | None:
        """(held - before) / connections open at the end, KiB; None if a reading is missing or the
        stack was killed out of memory."""
        if self.held is None or self.oom_kills:
            return None
        before, held = self.before.bytes_of(reading), self.held.bytes_of(reading)
        return kib_per_connection(before, held, self.hold.connections_open_at_end)


def _cpu_s(pid: int | None) -> float:
    """A process's CPU time (user + system), s; NaN when it cannot be read."""
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.Error, ValueError):
        return math.nan
    return float(times.user + times.system)


def _oom_kills(group: Cgroup | None) -> int:
    """The group's count of processes killed for going over its memory limit (0 without one)."""
    return (group.oom_kills() or 0) if group is not None else 0


def server_connections(root_pid: int) -> int | None:
    """Established TCP connections to the tree's listening ports, counted by the tree's processes.

    A connection shared by a forked master and its worker counts once (by its remote
    address). None when the tree cannot be read (its processes belong to another user).
    Source of the counts: psutil's ``Process.net_connections`` (``/proc/<pid>/net/tcp``
    and the processes' file descriptors).
    """
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    sockets = []
    for proc in procs:
        try:
            sockets.extend(proc.net_connections(kind="tcp"))
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            return None
    listening = {s.laddr.port for s in sockets if s.status == psutil.CONN_LISTEN}
    return len(
        {
            (s.laddr, s.raddr)
            for s in sockets
            if s.status == psutil.CONN_ESTABLISHED and s.raddr and s.laddr.port in listening
        }
    )


def hold_and_read(
    running: RunningTarget,
    group: Cgroup | None,
    *,
    kind: HoldKind,
    connections: int,
    path: str,
    ready_path: str,
    settle_s: float,
    hold_s: float,
    cpus: tuple[int, ...] | list[int],
    timeout_s: float = CONNECT_TIMEOUT_S,
    allow_remote: bool = False,
) -> IdleHold:
    """Hold ``connections`` idle connections of ``kind`` on ``running`` (``path``: the HTTP request
    each sends, or the WebSocket's path) and read its memory before and ``settle_s`` after
    every one was tried; the hold ends once the memory has been read, and lasts at most ``hold_s``
    (s), at least long enough for the readings.
    Each connection must open (and an HTTP one be answered) within ``timeout_s``, and opening
    stops once no connection opened for ``timeout_s`` (the stack accepts no more), or after
    OPEN_TIMEOUT_S: a stack that held fewer says which by its ``open_s``, and its ``timeout``
    errors count the rest.

    Raises IdleError when the stack cannot be measured (the warm-up opened nothing, it did not
    go quiet, its processes changed, the machine was too slow to read within the hold), and
    what :class:`~harness.load.stream.HoldLoad` raises. A WebSocket upgrade answered 501 is no
    error: the warm-up's result says ``unsupported`` and nothing else is measured (then
    ``before`` is ``held``). Nor is a stack killed for going over its memory limit while
    connections opened or were held (its control group's ``oom_kills`` grew): that is how many
    it could hold, and the result says so (``oom_kills``, the hold's ``connections_open_peak``).
    """
    settle_s = max(settle_s, 0.1)
    hold_s = max(hold_s, settle_s + SAMPLES * SAMPLE_INTERVAL_S + READ_MARGIN_S)
    load = HoldLoad(
        running.host, running.port, connections, hold_s, kind,
        refresh_s=HTTP_REFRESH_S if kind == "http" else None,
        timeout_s=timeout_s, open_timeout_s=OPEN_TIMEOUT_S, stall_s=timeout_s,
        http_path=path, ws_path=path, allow_remote=allow_remote,
    )  # fmt: skip
    warmup = replace(load, connections=min(WARMUP_CONNECTIONS, connections), hold_s=0.1)
    with driver_process(warmup, load, cpus) as (conn, driver_pid):
        warmed: HoldResult = expect(conn, "warmed", SPAWN_TIMEOUT_S + OPEN_TIMEOUT_S)
        if warmed.unsupported:
            conn.send("stop")
            reading = sample_memory(running.pid, group)
            return IdleHold(warmed, reading, reading, None)
        if warmed.connections_opened == 0:
            errors = ", ".join(f"{k} {n}" for k, n in warmed.errors.items() if n) or "no errors"
            tried = warmed.connections_requested
            raise IdleError(f"the warm-up opened none of {tried} connections ({errors})")
        if wait_until_idle(running, ready_path, timeout_s=QUIET_TIMEOUT_S) is None:
            within = f"within {QUIET_TIMEOUT_S:.0f} s after the warm-up"
            raise IdleError(f"{ready_path} not answered quickly {within}")
        wait_quiet(running.pid)
        before = read_memory(running.pid, group)
        kills_before = _oom_kills(group)
        conn.send("go")
        held_at: float = expect(conn, "held", load.open_timeout_s + timeout_s + 15)
        driver_from = _cpu_s(driver_pid)
        time.sleep(max(held_at + settle_s - time.monotonic(), 0.0))
        counted = server_connections(running.pid)
        held: MemoryReading | None
        try:
            held = read_memory(running.pid, group)
        except IdleError:
            held = None  # the stack is gone: killed out of memory, or the error below
        read_until = time.monotonic()
        driver_cpu_s = _cpu_s(driver_pid) - driver_from
        with contextlib.suppress(OSError):  # a hold that lost every connection has ended already
            conn.send("release")
        result: HoldResult = expect(conn, "result", hold_s + CLOSE_WAIT_S + 15)
    killed = _oom_kills(group) - kills_before
    holding = max(read_until - held_at, 1e-3)
    driver_percent = 100 * driver_cpu_s / holding if math.isfinite(driver_cpu_s) else None
    if killed > 0:
        return IdleHold(result, before, held, counted, oom_kills=killed, driver_cpu_percent=driver_percent)
    if held is None:
        raise IdleError("the server exited while its memory was read")
    if result.connections_open_at_end and read_until > held_at + result.held_s:
        raise IdleError(
            f"the memory was read until {read_until - held_at:.1f} s into a hold of {result.held_s:.1f} s: "
            "the machine is too busy for these figures"
        )
    if set(held.pids) != set(before.pids):
        raise IdleError(f"the server's processes changed during the hold: {before.pids} -> {held.pids}")
    return IdleHold(result, before, held, counted, driver_cpu_percent=driver_percent)
