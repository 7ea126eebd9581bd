"""The native closed-model driver: HTTP/1.1 over raw asyncio protocols on uvloop.

Each of C connections sends its next request as soon as the previous response
has arrived (closed model). Responses are parsed with httptools; no HTTP client
library sits in the hot path, and the next request is written from the parser's
callback (see ``connection.py``). A connection the server closes (``Connection:
close``, as Gunicorn's sync workers do) is reopened for the next request, and
the connect time counts in that request's latency, because a client of that
server pays it too.

Timeline: warm-up (not counted), then the measured window. A request counts in
the window when it *finishes* inside it; latency of successful responses
(any 2xx, or the one status the request declares) is kept; every other status
(1xx, 3xx, 4xx, 5xx) is a ``status`` error, counted by code; errors are counted
by kind and never mixed into latency. Latencies are buffered during the window and recorded into an
HdrHistogram (microseconds, 3 significant digits) after it closes, so the
histogram's own cost does not load the generator while it measures.

Being a closed model, this driver does not correct for coordinated omission:
a stalled server slows the senders down and the stall is under-reported.

With a ``profile`` (``profile.py``) the number of connections varies: the
warm-up holds the first segment's start level, then the driver re-evaluates
the level at every segment boundary and every 100 ms inside a ramp, rounded
to whole connections. Growing opens connections at once; shrinking retires
connections as their request in flight completes, so no request is cut off.
Each stage gets its own result; a request counts in the stage in which it
finishes, as read when the driver passes the stage's boundary.

``connections_peak`` is measured, not configured: the most connections
established at once (TCP connected, from ``connection_made`` until closed by
either side) inside the window or stage. A server that caps or refuses
connections, or leaves them unanswered past its listen backlog, therefore shows
a peak below the concurrency asked for. With a profile, a connection retiring
after the level fell (it finishes its request in flight first) is not counted:
a stage's peak counts at most the connections the profile asked for at the time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import uvloop

from harness import histogram
from harness.load.connection import Connection, clock
from harness.load.profile import (
    Segment,
    connection_steps,
    connections_share,
    planned_connections,
    stage_bounds,
    validate,
)
from harness.load.requests import HttpRequest, Pick, Picker
from harness.load.result import LoadResult
from harness.types import WindowCallback

CONNECT_RETRY_S = 0.01
"""Pause after a failed connect before the next attempt (s)."""


class UnsafeTargetError(ValueError):
    """The load target is not a loopback address and remote load was not allowed."""


def ensure_loopback(host: str, *, allow_remote: bool = False) -> None:
    """Refuse any target host but loopback addresses (127.0.0.0/8, ::1).

    A host name is resolved, and every address it resolves to must be loopback,
    so ``localhost`` passes and a name pointing elsewhere does not. Raises
    UnsafeTargetError unless ``allow_remote`` is true.
    """
    if not allow_remote:
        checked_address(host)


def checked_address(host: str, *, allow_remote: bool = False) -> str:
    """The address to send load to for ``host``: resolved once, and checked as :func:`ensure_loopback` does.

    Connecting to this address rather than to the name means that a name which
    resolves elsewhere later (DNS rebinding: 127.0.0.1 when checked, another
    machine for the connections) cannot take the load away from what was checked.
    An address is returned as given (without IPv6 brackets); of a name's addresses,
    the first one. Raises UnsafeTargetError for a name that does not resolve, and,
    unless ``allow_remote``, for any address that is not loopback.
    """
    literal = host.strip("[]")
    try:
        addresses = [ipaddress.ip_address(literal)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(literal, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise UnsafeTargetError(
                f"refusing to send load to {host!r}: it does not resolve ({exc})"
            ) from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    remote = sorted({str(a) for a in addresses if not a.is_loopback})
    if not addresses or (remote and not allow_remote):
        raise UnsafeTargetError(
            f"refusing to send load to {host!r}"
            + (f" ({', '.join(remote)})" if remote and remote != [literal] else "")
            + ": only loopback addresses (127.0.0.0/8, ::1) are allowed; pass --allow-remote to override"
        )
    return str(addresses[0])


@dataclass(frozen=True)
class ClosedLoad:
    """A closed-model load: ``concurrency`` connections for ``warmup_s`` + ``duration_s`` seconds.

    ``timeout_s`` bounds each request (connect included); a request that takes
    longer counts as a ``timeout`` error and its connection is closed. Besides
    its duration, the load is bounded by ``max_requests`` requests sent.
    ``requests``, when given, replaces ``GET path`` with a weighted mix (``path``
    is then only its label).

    ``profile``, when given, replaces ``concurrency``: the warm-up holds the
    first segment's ``start`` connections, then the window (``duration_s``,
    which must equal the profile's length) follows the profile, levels in
    connections; the result then has one ``stages`` entry per stage.
    ``profile_share`` = ``(index, parts)`` makes this load one of ``parts``
    processes sharing the profile's connections (see :meth:`split`). Raises
    ValueError for a profile that does not last ``duration_s`` or a bad share.
    """

    host: str
    port: int
    path: str
    concurrency: int
    warmup_s: float
    duration_s: float
    timeout_s: float = 10.0
    allow_remote: bool = False
    max_requests: int = 100_000_000
    requests: tuple[HttpRequest, ...] = ()
    seed: int | None = None
    profile: tuple[Segment, ...] = ()
    profile_share: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        validate(self.profile, self.duration_s, open_model=False)
        index, parts = self.profile_share
        if not 0 <= index < parts:
            raise ValueError(
                f"profile_share must be (index, parts) with 0 <= index < parts, got {self.profile_share}"
            )

    def connections_at(self, level: float) -> int:
        """This load's connections when the profile's level is ``level`` (its share, rounded half up)."""
        return connections_share(level, *self.profile_share)

    def request_bytes(self) -> bytes:
        return request_bytes(self.host, self.port, self.path)

    def picker(self) -> Picker:
        """What the connections send: ``requests`` (a weighted mix drawn with ``seed``), else GET ``path``."""
        return Picker(self.requests or (HttpRequest(self.path),), self.host, self.port, self.seed)

    def split(self, parts: int) -> list[ClosedLoad]:
        """Up to ``parts`` loads that together offer this one: connections and max_requests divided.

        Fewer than ``parts`` when there are fewer connections than parts (with a
        profile, than its peak). With a profile every part follows the whole
        profile and takes its ``profile_share`` of the rounded level at every
        moment, so the parts always add up to it exactly. Raises ValueError
        when splitting a load that is already a share.
        """
        if self.profile:
            if parts > 1 and self.profile_share != (0, 1):
                raise ValueError(f"cannot split a load that is already share {self.profile_share}")
            peak = max(self.connections_at(level) for s in self.profile for level in (s.start, s.end))
            parts = max(1, min(parts, peak))
            return [
                replace(
                    self,
                    concurrency=connections_share(peak, index, parts),
                    profile_share=(index, parts),
                    max_requests=max(1, self.max_requests // parts),
                    seed=None if self.seed is None else self.seed * 1000 + index,
                )
                for index in range(parts)
            ]
        parts = max(1, min(parts, self.concurrency))
        base, extra = divmod(self.concurrency, parts)
        return [
            replace(
                self,
                concurrency=base + (1 if index < extra else 0),
                max_requests=max(1, self.max_requests // parts),
                seed=None if self.seed is None else self.seed * 1000 + index,
            )
            for index in range(parts)
        ]


def request_bytes(host: str, port: int, path: str) -> bytes:
    """The GET request every driver sends, as bytes (HTTP/1.1, keep-alive by default)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: gwbench\r\nAccept: */*\r\n\r\n"
    ).encode("ascii")


def error_counts() -> dict[str, int]:
    """Error counters by kind, all zero: every driver reports these four kinds."""
    return {"status": 0, "connect": 0, "read": 0, "timeout": 0}


async def sleep_until(at_ns: int) -> None:
    """Sleep until the driver clock reads ``at_ns`` or later.

    uvloop's timers have 1 ms resolution and may fire a little early by this clock.
    """
    while (delay := at_ns - clock()) > 0:
        await asyncio.sleep(delay / 1e9)


@dataclass
class _ClosedRun:
    """The state all connections of one closed-model run share."""

    load: ClosedLoad
    loop: asyncio.AbstractEventLoop
    window_start_ns: int
    window_end_ns: int
    next_request: Callable[[], Pick]
    latencies_us: array[int] = field(default_factory=lambda: array("q"))
    errors: dict[str, int] = field(default_factory=error_counts)
    error_statuses: dict[int, int] = field(default_factory=dict)
    connections_opened: int = 0
    connections_open: int = 0
    peak_since_reading: int = 0
    sent: int = 0
    target: int = 0
    workers: int = 0
    last_answer_ns: int = 0
    longest_silence_ns: int = 0

    def answered(self, now_ns: int) -> None:
        """A response arrived inside the window: the silence before it may be the longest yet."""
        silence = now_ns - max(self.last_answer_ns, self.window_start_ns)
        if silence > self.longest_silence_ns:
            self.longest_silence_ns = silence
        self.last_answer_ns = now_ns

    def longest_silence_s(self) -> float:
        """The longest time inside the window with no response (s), its ends included."""
        tail = self.window_end_ns - max(self.last_answer_ns, self.window_start_ns)
        return max(self.longest_silence_ns, tail) / 1e9

    def counts(self, now_ns: int) -> bool:
        return self.window_start_ns <= now_ns <= self.window_end_ns

    def may_send(self, now_ns: int) -> bool:
        return now_ns < self.window_end_ns and self.sent < self.load.max_requests

    def established_now(self) -> int:
        """Connections established now, at most as many as asked for (retiring ones are not)."""
        return min(self.connections_open, self.target)


class _ClosedConnection(Connection):
    __slots__ = ("established", "retired", "run")

    def __init__(self, run: _ClosedRun) -> None:
        super().__init__(run.loop, int(run.load.timeout_s * 1e9))
        self.run = run
        self.retired = False
        self.established = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        run = self.run
        self.established = True
        run.connections_open += 1
        now = run.established_now()
        if now > run.peak_since_reading:
            run.peak_since_reading = now

    def _release(self) -> None:
        if self.established:  # closed by either side: no longer established
            self.established = False
            self.run.connections_open -= 1
        super()._release()

    def on_message_complete(self) -> None:
        now = clock()
        run = self.run
        parser = self.parser
        if run.window_start_ns <= now <= run.window_end_ns:
            run.answered(now)
            status = parser.get_status_code()
            if self.ok_from <= status < self.ok_to:
                run.latencies_us.append((now - self.start_ns) // 1000)
            else:
                run.errors["status"] += 1
                run.error_statuses[status] = run.error_statuses.get(status, 0) + 1
        if (
            parser.should_keep_alive()
            and now < run.window_end_ns
            and run.sent < run.load.max_requests
            and run.workers <= run.target
        ):
            run.sent += 1
            self.send_pick(run.next_request(), now)
        else:
            if run.workers > run.target:  # the profile shrank: this connection retires
                run.workers -= 1
                self.retired = True
            self.start_ns = 0
            self.close()

    def failed(self, kind: str, start_ns: int, now_ns: int) -> None:
        if self.run.counts(now_ns):
            self.run.errors[kind] += 1


async def _keep_connected(run: _ClosedRun) -> None:
    """One of the C connections: connect, let the protocol send until it closes, reconnect.

    Returns when the window is over, or when there are more connections than
    the profile asks for (the connection retired, or it was between two).
    """
    load = run.load
    connection: _ClosedConnection | None = None
    try:
        while True:
            if run.workers > run.target:
                run.workers -= 1
                return
            start = clock()
            if not run.may_send(start):
                return
            try:
                async with asyncio.timeout(load.timeout_s):
                    _, connection = await run.loop.create_connection(
                        lambda: _ClosedConnection(run), load.host, load.port
                    )
            except (OSError, TimeoutError):
                if run.counts(clock()):
                    run.errors["connect"] += 1
                await asyncio.sleep(CONNECT_RETRY_S)
                continue
            run.connections_opened += 1
            run.sent += 1
            connection.send_pick(run.next_request(), start)
            await connection.finished
            retired, connection = connection.retired, None
            if retired:
                return
    finally:
        if connection is not None:
            connection.abandon()


@dataclass(frozen=True)
class _Reading:
    """What the run had counted by the clock when it passed a window or stage boundary."""

    wall_ns: int
    cpu_s: float
    ok: int
    errors: dict[str, int]
    error_statuses: dict[int, int]
    connections_opened: int
    connections_peak: int
    """The most connections established at once since the reading before (see the module)."""


def _read(run: _ClosedRun) -> _Reading:
    """Read the counts; the peak starts again from the connections established now."""
    reading = _Reading(
        clock(),
        time.process_time(),
        len(run.latencies_us),
        dict(run.errors),
        dict(run.error_statuses),
        run.connections_opened,
        run.peak_since_reading,
    )
    run.peak_since_reading = run.established_now()
    return reading


async def _run_closed(load: ClosedLoad, on_window: WindowCallback, begin_ns: int | None) -> LoadResult:
    if begin_ns is not None:
        await sleep_until(begin_ns)
    begin = clock() if begin_ns is None else begin_ns
    window_start = begin + int(load.warmup_s * 1e9)
    run = _ClosedRun(
        load=load,
        loop=asyncio.get_running_loop(),
        window_start_ns=window_start,
        window_end_ns=window_start + int(load.duration_s * 1e9),
        next_request=load.picker().pick,
    )
    tasks: set[asyncio.Task[None]] = set()

    def resize(target: int) -> None:
        """Ask for ``target`` connections: open the missing ones now; extra ones retire by themselves."""
        run.target = target
        while run.workers < target:
            run.workers += 1
            task = asyncio.create_task(_keep_connected(run))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    steps = connection_steps(load.profile)
    resize(load.connections_at(load.profile[0].start) if load.profile else load.concurrency)
    try:
        await sleep_until(run.window_start_ns)
        on_window("start")
        # Counting starts at the window's start, before this reading: the first stage counts from zero.
        readings = [replace(_read(run), ok=0, errors=error_counts(), error_statuses={})]
        stage = 0
        for offset_s, level, step_stage in steps:
            await sleep_until(window_start + int(offset_s * 1e9))
            marks = step_stage != stage
            if marks:
                stage = step_stage
                readings.append(_read(run))
                on_window("mark")
            resize(load.connections_at(level))
            if marks:  # the new stage's peak starts from the open connections it still asks for
                run.peak_since_reading = run.established_now()
        await sleep_until(run.window_end_ns)
        readings.append(_read(run))
        on_window("end")
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    whole = replace(
        _result(run.latencies_us, readings[0], readings[-1], run.connections_opened),
        connections_peak=max(reading.connections_peak for reading in readings[1:]),
        longest_silence_s=round(run.longest_silence_s(), 4),
    )
    if not load.profile:
        return whole
    bounds = stage_bounds(load.profile)
    stages = []
    for index in range(len(bounds) - 1):
        first, last = readings[index], readings[index + 1]
        _, mean = planned_connections(steps, load.profile_share, bounds[index], bounds[index + 1])
        opened = last.connections_opened - first.connections_opened
        stage_result = _result(run.latencies_us[first.ok : last.ok], first, last, opened)
        stages.append(replace(stage_result, connections_peak=last.connections_peak, connections_mean=mean))
    _, mean = planned_connections(steps, load.profile_share, bounds[0], bounds[-1])
    return replace(whole, connections_mean=mean, stages=tuple(stages))


def _result(latencies_us: array[int], first: _Reading, last: _Reading, connections_opened: int) -> LoadResult:
    """What was counted between two readings; ``latencies_us`` are the successes between them."""
    return LoadResult(
        duration_s=(last.wall_ns - first.wall_ns) / 1e9,
        ok=len(latencies_us),
        errors={kind: count - first.errors.get(kind, 0) for kind, count in last.errors.items()},
        error_statuses={
            status: count - first.error_statuses.get(status, 0)
            for status, count in last.error_statuses.items()
            if count > first.error_statuses.get(status, 0)
        },
        connections_opened=connections_opened,
        generator_cpu_s=last.cpu_s - first.cpu_s,
        histogram=histogram.encode(latencies_us),
    )


def run_closed(
    load: ClosedLoad, on_window: WindowCallback = lambda _: None, *, begin_ns: int | None = None
) -> LoadResult:
    """Drive ``load`` in this process on a fresh uvloop event loop; blocks until done.

    ``on_window`` is called with ``"start"`` and ``"end"`` as the measured
    window opens and closes (so a monitor can align its samples) and, with a
    profile, ``"mark"`` at each boundary between stages (stage count - 1
    times). ``begin_ns`` (``time.monotonic_ns()`` time, the same in every
    process) is when the load starts, warm-up first; processes given the same
    one measure the same window.
    None starts at once. Raises UnsafeTargetError for a non-loopback host
    unless ``load.allow_remote``.
    """
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    return uvloop.run(_run_closed(load, on_window, begin_ns))
