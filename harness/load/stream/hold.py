"""Idle connections held open: how many a server keeps, so its memory per connection can be read.

K connections are opened, at most ``open_concurrency`` at a time: plain HTTP
(one ``GET /health`` each, then idle on keep-alive) or WebSockets. Once every
one has been tried, ``on_held`` lets the caller sample the server; then they
are held for ``hold_s`` seconds, a connection sending a request (HTTP) or a
ping (WebSocket) only after ``refresh_s`` of silence, to stay within the
server's idle timeout; then reset at once (a closing handshake per connection
would only keep the server busy). Every count covers the whole run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

import httptools
import uvloop
from websockets.uri import WebSocketURI, parse_uri

from harness.load.connection import clock
from harness.load.native import ensure_loopback, request_bytes
from harness.load.stream.link import Link, Tally, finish, open_file_limit, open_link, stream_error_counts
from harness.load.stream.websocket import WsLink

HoldKind = Literal["http", "ws"]

HTTP_REFRESH_S = 1.5
"""``refresh_s="auto"`` for HTTP: under Gunicorn's default keep-alive (2 s), the shortest of our servers'."""


@dataclass(frozen=True)
class HoldLoad:
    """Open ``connections`` connections, hold them ``hold_s`` seconds, close them.

    ``kind="http"``: each sends ``GET http_path`` and, answered 200, stays
    idle on keep-alive; ``kind="ws"``: a WebSocket to ``ws_path``.
    ``refresh_s``: after that much silence a connection sends a request (HTTP)
    or a ping (WebSocket); None: never; ``"auto"``: HTTP_REFRESH_S for HTTP,
    never for WebSockets (servers keep them open; their pings are answered).
    Each connection must open, and each refresh be answered, within
    ``timeout_s``; opening stops after ``open_timeout_s``, or once no connection
    has opened for ``stall_s`` (None: never) while tries went on: the server
    accepts no more. The tries in flight then stop too, each closed and counted
    as a ``timeout`` (with a ``stall_s`` of at least ``timeout_s``, one of them
    would have had to open after a wait in which none did).
    """

    host: str
    port: int
    connections: int
    hold_s: float
    kind: HoldKind = "http"
    refresh_s: float | Literal["auto"] | None = "auto"
    timeout_s: float = 10.0
    open_concurrency: int = 256
    open_timeout_s: float = 120.0
    stall_s: float | None = None
    http_path: str = "/health"
    ws_path: str = "/ws/echo"
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError(f"connections must be >= 1, got {self.connections}")
        if self.kind not in ("http", "ws"):
            raise ValueError(f"kind must be 'http' or 'ws', got {self.kind!r}")
        if self.refresh_s not in ("auto", None) and not cast(float, self.refresh_s) > 0:
            raise ValueError(f"refresh_s must be > 0 s, 'auto' or None, got {self.refresh_s}")

    def refresh_interval_s(self) -> float | None:
        if self.refresh_s == "auto":
            return HTTP_REFRESH_S if self.kind == "http" else None
        return self.refresh_s


@dataclass(frozen=True)
class HoldResult:
    """How many of ``connections_requested`` opened, failed, and were still open when the hold ended.

    ``errors`` gives, by kind, why each connection that did not open failed,
    or why one that opened dropped: the five kinds of every streaming load,
    and ``closed``, the server closed an idle connection. ``refreshes`` counts
    the requests or pings sent to keep connections open. ``open_s``: how long
    opening took; ``held_s``: from just before ``on_held`` to the end of the hold (s).
    ``unsupported``: a WebSocket upgrade was answered 501 (not an error;
    opening then stops). ``connections_open_peak``: the most that were open at
    once (a stack killed during the hold held that many before it).
    """

    kind: HoldKind
    connections_requested: int
    connections_opened: int
    connections_failed: int
    connections_open_at_end: int
    errors: dict[str, int]
    error_statuses: dict[int, int]
    refreshes: int
    open_s: float
    held_s: float
    unsupported: bool = False
    connections_open_peak: int = 0

    @property
    def connections_dropped(self) -> int:
        return self.connections_opened - self.connections_open_at_end


@dataclass
class _HoldTally(Tally):
    errors: dict[str, int] = field(default_factory=lambda: {**stream_error_counts(), "closed": 0})
    held: set[Link] = field(default_factory=set)
    """Connections opened and not dropped."""
    refreshes: int = 0
    unsupported: bool = False
    peak_held: int = 0
    """The most connections open at once."""


class _Holder:
    """What both kinds of held connection share: the outcome of opening, the refresh timer."""

    def __init__(self, link: Link, tally: _HoldTally, refresh_s: float | None, timeout_ns: int) -> None:
        self.link = link
        self.tally = tally
        self.refresh_ns = int(refresh_s * 1e9) if refresh_s else 0
        self.timeout_ns = timeout_ns
        self.outcome: asyncio.Future[tuple[str, int] | None] = link.loop.create_future()
        self.timer: asyncio.TimerHandle | None = None

    def settle(self, kind: str | None, status: int = 0) -> None:
        """Opening succeeded (``kind`` None) or failed; once open, a failure is a drop."""
        if not self.outcome.done():
            self.outcome.set_result(None if kind is None else (kind, status))
            if kind is None:
                self.tally.held.add(self.link)
                self.tally.peak_held = max(self.tally.peak_held, len(self.tally.held))
        elif kind is not None and self.link in self.tally.held:
            self.tally.held.discard(self.link)
            self.tally.error(kind, clock(), status)

    def schedule(self, refresh: Callable[[], None]) -> None:
        if self.refresh_ns and self.timer is None:
            self.timer = self.link.loop.call_later(self.refresh_ns / 1e9, refresh)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _HeldHttp(Link):
    def __init__(self, tally: _HoldTally, request: bytes, refresh_s: float | None, timeout_ns: int) -> None:
        super().__init__(tally)
        self.holder = _Holder(self, tally, refresh_s, timeout_ns)
        self.request = request
        self.parser = httptools.HttpResponseParser(self)
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ask()

    def ask(self) -> None:
        assert self.transport is not None
        self.waiting = True
        self.transport.write(self.request)
        self.expect_by(clock() + self.holder.timeout_ns)

    def refresh(self) -> None:
        self.holder.timer = None
        if not self.closed:
            self.holder.tally.refreshes += 1
            self.ask()

    def fail(self, kind: str, status: int = 0) -> None:
        self.close()
        self.holder.settle(kind, status)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail("read")

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        self.waiting = False
        self.deadline_ns = 0
        if status != 200:
            self.fail("status", status)
            return
        self.holder.settle(None)
        if self.parser.should_keep_alive():
            self.holder.schedule(self.refresh)
        # Otherwise the server closes the connection, and ``lost`` counts it ``closed``.

    def lost(self) -> None:
        self.holder.settle("read" if self.waiting else "closed")

    def expired(self) -> None:
        self.fail("timeout")

    def _release(self) -> None:
        self.holder.cancel()
        super()._release()


class _HeldWs(WsLink):
    def __init__(
        self, tally: _HoldTally, uri: WebSocketURI, refresh_s: float | None, timeout_ns: int
    ) -> None:
        super().__init__(tally, uri)
        self.holder = _Holder(self, tally, refresh_s, timeout_ns)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.expect_by(clock() + self.holder.timeout_ns)

    def opened(self) -> None:
        self.deadline_ns = 0
        self.holder.settle(None)
        self.holder.schedule(self.refresh)

    def refresh(self) -> None:
        self.holder.timer = None
        if not self.closed and not self.closing:
            self.holder.tally.refreshes += 1
            self.protocol.send_ping(b"gwbench")
            self.flush()
            self.expect_by(clock() + self.holder.timeout_ns)

    def ponged(self) -> None:
        self.deadline_ns = 0
        self.holder.schedule(self.refresh)

    def message(self, data: bytes) -> None:
        pass  # nothing was sent, so nothing is checked

    def rejected(self, status: int) -> None:
        self.closing = True
        self.close()
        if status == 501:
            self.holder.tally.unsupported = True
            self.holder.settle("unsupported")
        else:
            self.holder.settle("status", status)

    def broken(self, kind: str) -> None:
        self.closing = True
        self.close()
        self.holder.settle("closed" if kind == "read" and self.holder.outcome.done() else kind)

    def _release(self) -> None:
        self.holder.cancel()
        super()._release()


async def _open_all(tally: _HoldTally, load: HoldLoad) -> tuple[int, int]:
    """Try every connection, ``open_concurrency`` at a time, until ``open_timeout_s``; (opened, failed)."""
    refresh_s = load.refresh_interval_s()
    timeout_ns = int(load.timeout_s * 1e9)
    request = request_bytes(load.host, load.port, load.http_path)
    uri = parse_uri(f"ws://{load.host}:{load.port}{load.ws_path}")
    stop_ns = clock() + int(load.open_timeout_s * 1e9)
    stall_ns = None if load.stall_s is None else int(load.stall_s * 1e9)
    started = opened = failed = 0
    last_open_ns = clock()

    def factory() -> _HeldHttp | _HeldWs:
        if load.kind == "ws":
            return _HeldWs(tally, uri, refresh_s, timeout_ns)
        return _HeldHttp(tally, request, refresh_s, timeout_ns)

    async def one() -> None:
        nonlocal opened, failed, last_open_ns
        try:
            link = await open_link(factory, load.host, load.port, load.timeout_s)
        except (OSError, TimeoutError):
            tally.error("connect", clock())
            failed += 1
            return
        except asyncio.CancelledError:  # opening stopped
            tally.error("timeout", clock())
            failed += 1
            raise
        tally.connections_opened += 1
        try:
            outcome = await link.holder.outcome
        except asyncio.CancelledError:  # opening stopped: this one will not be waited for
            link.abort()
            tally.error("timeout", clock())
            failed += 1
            raise
        if outcome is None:
            opened += 1
            last_open_ns = clock()
        else:
            failed += 1
            if outcome[0] != "unsupported":  # a clean answer, reported as HoldResult.unsupported
                tally.error(outcome[0], clock(), outcome[1])

    async def opener() -> None:
        nonlocal started

        def stalled(now: int) -> bool:
            return stall_ns is not None and now - last_open_ns > stall_ns

        while started < load.connections and (now := clock()) < stop_ns and not stalled(now):
            if tally.unsupported:
                break
            started += 1
            await one()

    openers = [asyncio.create_task(opener()) for _ in range(min(load.open_concurrency, load.connections))]
    everyone = asyncio.gather(*openers, return_exceptions=True)
    while not everyone.done():
        await asyncio.wait([everyone], timeout=0.1)
        now = clock()
        stalled = stall_ns is not None and now - last_open_ns > stall_ns
        if not everyone.done() and (now >= stop_ns or stalled):
            for task in openers:
                task.cancel()
            await everyone
    never_tried = 0 if tally.unsupported else load.connections - started
    tally.errors["timeout"] += never_tried
    return opened, failed + never_tried


async def drive_hold(
    load: HoldLoad, on_held: Callable[[], None] = lambda: None, released: Callable[[], bool] = lambda: False
) -> HoldResult:
    """The coroutine ``hold_connections`` runs, for a caller with its own event loop; nothing outlives it."""
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    with open_file_limit(load.connections):
        begin = clock()
        tally = _HoldTally(begin, begin + 10**18)  # the whole run counts
        try:
            opened, failed = await _open_all(tally, load)
            open_s = (clock() - begin) / 1e9
            # The hold counts from before ``on_held`` (which may wait on a busy machine): a caller
            # that notes the time there and reads until the release finds the hold covers it.
            held_from = clock()
            on_held()
            hold_end = held_from + int(load.hold_s * 1e9)
            while (left := hold_end - clock()) > 0 and tally.held and not released():
                await asyncio.sleep(min(0.1, left / 1e9))
            held_s = (clock() - held_from) / 1e9
            open_at_end = len(tally.held)
            tally.held.clear()  # what closes from here on is our doing
            for link in list(tally.live):
                link.abort()  # at once: a server's closing handshakes are no part of the hold
        finally:
            await finish([], tally)
    return HoldResult(
        kind=load.kind,
        connections_requested=load.connections,
        connections_opened=opened,
        connections_failed=failed,
        connections_open_at_end=open_at_end,
        errors=dict(tally.errors),
        error_statuses=dict(tally.error_statuses),
        refreshes=tally.refreshes,
        open_s=open_s,
        held_s=held_s,
        unsupported=tally.unsupported,
        connections_open_peak=tally.peak_held,
    )


def hold_connections(
    load: HoldLoad, on_held: Callable[[], None] = lambda: None, released: Callable[[], bool] = lambda: False
) -> HoldResult:
    """Open, hold and close ``load.connections`` connections on a fresh uvloop event loop; blocks.

    ``on_held`` is called once, inside the event loop, when every connection
    has been tried and before the hold starts: sample the server there,
    briefly. ``released``, polled every 0.1 s during the hold, ends it early
    when it returns True (the caller has sampled what it needed). Wall time:
    opening (at most ``open_timeout_s`` + ``timeout_s``), ``hold_s`` (less if
    every connection dropped or it was released), and up to CLOSE_WAIT_S to
    close. Raises UnsafeTargetError for a non-loopback host unless
    ``load.allow_remote``, FileLimitError when the connections cannot fit.
    """
    return uvloop.run(drive_hold(load, on_held, released))
