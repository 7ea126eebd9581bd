"""The native closed-model driver: HTTP/1.1 over raw asyncio protocols on uvloop.

Each of C connections sends its next request as soon as the previous response
has arrived (closed model). Responses are parsed with httptools; no HTTP client
library sits in the hot path. A connection the server closes (``Connection:
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import cast

import httptools
import uvloop
from hdrh.histogram import HdrHistogram

HISTOGRAM_LOWEST_US = 1
HISTOGRAM_HIGHEST_US = 3_600_000_000
HISTOGRAM_SIGNIFICANT_DIGITS = 3
_CONNECT_RETRY_S = 0.01


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

    def request_bytes(self) -> bytes:
        return request_bytes(self.host, self.port, self.path)

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
            )
            for index in range(parts)
        ]


def request_bytes(host: str, port: int, path: str) -> bytes:
    """The GET request every driver sends, as bytes (HTTP/1.1, keep-alive by default)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: gwbench\r\nAccept: */*\r\n\r\n"
    ).encode("ascii")


def encode_histogram(latencies_us: Iterable[int]) -> str:
    """Record latencies (µs) into an HdrHistogram (1 µs to 1 h, 3 significant digits); base64 text.

    Values below 1 µs are recorded as 1 µs.
    """
    histogram = HdrHistogram(HISTOGRAM_LOWEST_US, HISTOGRAM_HIGHEST_US, HISTOGRAM_SIGNIFICANT_DIGITS)
    for value in latencies_us:
        histogram.record_value(max(value, HISTOGRAM_LOWEST_US))
    encoded = histogram.encode()
    return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)


@dataclass
class LoadResult:
    """What one load run measured inside its window.

    ``error_statuses`` counts the ``status`` errors by HTTP status code.
    ``histogram`` is the base64 HdrHistogram encoding of successful-response
    latencies in microseconds. ``generator_cpu_s`` is this process's CPU time
    (user + system) during the window; ``duration_s`` is the window's wall time.

    Open model only (closed-model defaults in brackets): ``intended_rate`` is
    the scheduled arrival rate in requests/s [None]; ``scheduled`` counts the
    requests whose intended send time fell in the window [0]; ``dropped``
    counts those of them that were never sent (no connection free within
    ``timeout_s`` of their intended time, or still queued when the window
    closed) [0]; ``histogram`` then holds latencies measured from the intended
    send time (corrected for coordinated omission) and ``histogram_uncorrected``
    from the actual send time [None]. ``connections_peak`` is the most
    connections open at once. ``processes`` is how many driver processes
    (event loops) were merged into this result.
    """

    duration_s: float
    ok: int
    errors: dict[str, int]
    error_statuses: dict[int, int]
    connections_opened: int
    generator_cpu_s: float
    histogram: str
    model: str = "closed"
    intended_rate: float | None = None
    scheduled: int = 0
    dropped: int = 0
    histogram_uncorrected: str | None = None
    connections_peak: int = 0
    processes: int = 1

    @property
    def requests(self) -> int:
        """Requests that finished (with a response or an error) inside the window."""
        return self.ok + sum(self.errors.values())

    @property
    def achieved_rate(self) -> float:
        """Requests/s actually sent: open model, scheduled minus dropped; closed, finished requests."""
        if not self.duration_s:
            return 0.0
        sent = self.scheduled - self.dropped if self.model == "open" else self.requests
        return sent / self.duration_s


class _Protocol(asyncio.Protocol):
    """One HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP response: {exc}"))
            self.close()

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), self.parser.should_keep_alive()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[tuple[int, bool]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


@dataclass
class _Tally:
    window_start_ns: int
    window_end_ns: int
    latencies_us: array[int] = field(default_factory=lambda: array("q"))
    errors: dict[str, int] = field(
        default_factory=lambda: {"status": 0, "connect": 0, "read": 0, "timeout": 0}
    )
    error_statuses: dict[int, int] = field(default_factory=dict)
    connections_opened: int = 0
    sent: int = 0

    def counts(self, now_ns: int) -> bool:
        return self.window_start_ns <= now_ns <= self.window_end_ns


async def _exchange(
    loop: asyncio.AbstractEventLoop, proto: _Protocol, request: bytes, start_ns: int, timeout_s: float
) -> tuple[str, int, bool]:
    """Send one request, await its response: (error kind or "", status, keep-alive)."""
    waiter: asyncio.Future[tuple[int, bool]] = loop.create_future()
    proto.waiter = waiter
    assert proto.transport is not None
    proto.transport.write(request)
    remaining = timeout_s - (time.perf_counter_ns() - start_ns) / 1e9
    timer = loop.call_later(max(remaining, 0.0), _expire, waiter)
    try:
        status, keep_alive = await waiter
    except TimeoutError:
        return "timeout", 0, False
    except ConnectionError:
        return "read", 0, False
    finally:
        timer.cancel()
        proto.waiter = None
    return "", status, keep_alive


async def _connection_loop(load: ClosedLoad, tally: _Tally, stop_ns: int) -> None:
    loop = asyncio.get_running_loop()
    request = load.request_bytes()
    clock = time.perf_counter_ns
    proto: _Protocol | None = None
    timeout_s = load.timeout_s
    try:
        while True:
            start = clock()
            if start >= stop_ns or tally.sent >= load.max_requests:
                return
            if proto is None or proto.closed:
                try:
                    _, opened = await asyncio.wait_for(
                        loop.create_connection(_Protocol, load.host, load.port), timeout_s
                    )
                except (OSError, TimeoutError):
                    proto = None
                    if tally.counts(clock()):
                        tally.errors["connect"] += 1
                    await asyncio.sleep(_CONNECT_RETRY_S)
                    continue
                proto = opened
                tally.connections_opened += 1
            tally.sent += 1
            kind, status, keep_alive = await _exchange(loop, proto, request, start, timeout_s)
            end = clock()
            if kind or not keep_alive:
                proto.close()
                proto = None
            if not tally.counts(end):
                continue
            if kind:
                tally.errors[kind] += 1
            elif status >= 400:
                tally.errors["status"] += 1
                tally.error_statuses[status] = tally.error_statuses.get(status, 0) + 1
            else:
                tally.latencies_us.append((end - start) // 1000)
    finally:
        if proto is not None:
            proto.close()


async def _run_closed(load: ClosedLoad, on_window: Callable[[str], None]) -> LoadResult:
    clock = time.perf_counter_ns
    begin = clock()
    window_start = begin + int(load.warmup_s * 1e9)
    window_end = window_start + int(load.duration_s * 1e9)
    tally = _Tally(window_start_ns=window_start, window_end_ns=window_end)
    tasks = [asyncio.create_task(_connection_loop(load, tally, window_end)) for _ in range(load.concurrency)]
    try:
        await asyncio.sleep(max(window_start - clock(), 0) / 1e9)
        on_window("start")
        cpu_start = time.process_time()
        wall_start = clock()
        await asyncio.sleep(max(window_end - clock(), 0) / 1e9)
        cpu_end = time.process_time()
        wall_end = clock()
        on_window("end")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return LoadResult(
        duration_s=(wall_end - wall_start) / 1e9,
        ok=len(tally.latencies_us),
        errors=dict(tally.errors),
        error_statuses=dict(tally.error_statuses),
        connections_opened=tally.connections_opened,
        generator_cpu_s=cpu_end - cpu_start,
        histogram=encode_histogram(tally.latencies_us),
        connections_peak=load.concurrency,
    )


def run_closed(load: ClosedLoad, on_window: Callable[[str], None] = lambda _: None) -> LoadResult:
    """Drive ``load`` in this process on a fresh uvloop event loop; blocks until done.

    ``on_window`` is called with ``"start"`` and ``"end"`` as the measured
    window opens and closes (so a monitor can align its samples). Raises
    UnsafeTargetError for a non-loopback host unless ``load.allow_remote``.
    """
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    return uvloop.run(_run_closed(load, on_window))
