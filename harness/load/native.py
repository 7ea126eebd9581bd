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
(status < 400) is kept, errors are counted by kind and never mixed into
latency. Latencies are buffered during the window and recorded into an
HdrHistogram (microseconds, 3 significant digits) after it closes, so the
histogram's own cost does not load the generator while it measures.

Being a closed model, this driver does not correct for coordinated omission:
a stalled server slows the senders down and the stall is under-reported.
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

from harness.load import histogram
from harness.load.connection import Connection, clock
from harness.load.requests import HttpRequest, Picker
from harness.load.result import LoadResult

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
    if allow_remote:
        return
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
    if remote or not addresses:
        raise UnsafeTargetError(
            f"refusing to send load to {host!r}"
            + (f" ({', '.join(remote)})" if remote and remote != [literal] else "")
            + ": only loopback addresses (127.0.0.0/8, ::1) are allowed; pass --allow-remote to override"
        )


@dataclass(frozen=True)
class ClosedLoad:
    """A closed-model load: ``concurrency`` connections for ``warmup_s`` + ``duration_s`` seconds.

    ``timeout_s`` bounds each request (connect included); a request that takes
    longer counts as a ``timeout`` error and its connection is closed. Besides
    its duration, the load is bounded by ``max_requests`` requests sent.
    ``requests``, when given, replaces ``GET path`` with a weighted mix (``path``
    is then only its label).
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

    def request_bytes(self) -> bytes:
        return request_bytes(self.host, self.port, self.path)

    def picker(self) -> Picker:
        """What the connections send: ``requests`` (a weighted mix drawn with ``seed``), else GET ``path``."""
        return Picker(self.requests or (HttpRequest(self.path),), self.host, self.port, self.seed)

    def split(self, parts: int) -> list[ClosedLoad]:
        """Up to ``parts`` loads that together offer this one: connections and max_requests divided.

        Fewer than ``parts`` when there are fewer connections than parts.
        """
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
    next_request: Callable[[], bytes]
    latencies_us: array[int] = field(default_factory=lambda: array("q"))
    errors: dict[str, int] = field(default_factory=error_counts)
    error_statuses: dict[int, int] = field(default_factory=dict)
    connections_opened: int = 0
    sent: int = 0

    def counts(self, now_ns: int) -> bool:
        return self.window_start_ns <= now_ns <= self.window_end_ns

    def may_send(self, now_ns: int) -> bool:
        return now_ns < self.window_end_ns and self.sent < self.load.max_requests


class _ClosedConnection(Connection):
    __slots__ = ("run",)

    def __init__(self, run: _ClosedRun) -> None:
        super().__init__(run.loop, int(run.load.timeout_s * 1e9))
        self.run = run

    def on_message_complete(self) -> None:
        now = clock()
        run = self.run
        parser = self.parser
        if run.window_start_ns <= now <= run.window_end_ns:
            status = parser.get_status_code()
            if status < 400:
                run.latencies_us.append((now - self.start_ns) // 1000)
            else:
                run.errors["status"] += 1
                run.error_statuses[status] = run.error_statuses.get(status, 0) + 1
        if parser.should_keep_alive() and now < run.window_end_ns and run.sent < run.load.max_requests:
            run.sent += 1
            self.send(run.next_request(), now)
        else:
            self.start_ns = 0
            self.close()

    def failed(self, kind: str, start_ns: int, now_ns: int) -> None:
        if self.run.counts(now_ns):
            self.run.errors[kind] += 1


async def _keep_connected(run: _ClosedRun) -> None:
    """One of the C connections: connect, let the protocol send until it closes, reconnect."""
    load = run.load
    connection: _ClosedConnection | None = None
    try:
        while True:
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
            connection.send(run.next_request(), start)
            await connection.finished
            connection = None
    finally:
        if connection is not None:
            connection.abandon()


async def _run_closed(load: ClosedLoad, on_window: Callable[[str], None], begin_ns: int | None) -> LoadResult:
    if begin_ns is not None:
        await sleep_until(begin_ns)
    begin = clock() if begin_ns is None else begin_ns
    window_start = begin + int(load.warmup_s * 1e9)
    run = _ClosedRun(
        load=load,
        loop=asyncio.get_running_loop(),
        window_start_ns=window_start,
        window_end_ns=window_start + int(load.duration_s * 1e9),
        next_request=load.picker().next,
    )
    tasks = [asyncio.create_task(_keep_connected(run)) for _ in range(load.concurrency)]
    try:
        await sleep_until(run.window_start_ns)
        on_window("start")
        cpu_start = time.process_time()
        wall_start = clock()
        await sleep_until(run.window_end_ns)
        cpu_end = time.process_time()
        wall_end = clock()
        on_window("end")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return LoadResult(
        duration_s=(wall_end - wall_start) / 1e9,
        ok=len(run.latencies_us),
        errors=dict(run.errors),
        error_statuses=dict(run.error_statuses),
        connections_opened=run.connections_opened,
        generator_cpu_s=cpu_end - cpu_start,
        histogram=histogram.encode(run.latencies_us),
        connections_peak=load.concurrency,
    )


def run_closed(
    load: ClosedLoad, on_window: Callable[[str], None] = lambda _: None, *, begin_ns: int | None = None
) -> LoadResult:
    """Drive ``load`` in this process on a fresh uvloop event loop; blocks until done.

    ``on_window`` is called with ``"start"`` and ``"end"`` as the measured
    window opens and closes (so a monitor can align its samples). ``begin_ns``
    (``time.monotonic_ns()`` time, the same in every process) is when the load
    starts, warm-up first; processes given the same one measure the same window.
    None starts at once. Raises UnsafeTargetError for a non-loopback host
    unless ``load.allow_remote``.
    """
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    return uvloop.run(_run_closed(load, on_window, begin_ns))
