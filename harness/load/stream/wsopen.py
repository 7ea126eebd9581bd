"""WebSocket echo in the open model: messages arrive at a rate, whatever the server does.

The driver first opens ``connections`` WebSockets (waiting at most ``timeout_s`` for all of
them). Then messages arrive on the HTTP open model's schedule (:func:`~harness.load.arrivals.intended_times`:
``uniform`` gaps of 1/rate s or seeded ``poisson`` ones, warm-up first), each offered at its
*intended send time* by :class:`~harness.load.open.Dispatcher` (a timerfd alarm, to the
microsecond) and sent at once on the next open connection, round-robin. Several messages may
be in flight on one connection: a WebSocket echoes in order, so each connection keeps a FIFO
of its messages (intended and actual send time, payload) and checks each echo against the
oldest. Every message differs (it starts with a sequence number), so an echo of another is caught.

The round trip is timed from the message's intended send time to the echo's arrival, so it
is corrected for coordinated omission: a server that stalls delays every message due in the
stall, as it would every user arriving then (the closed model sends nothing while its one
message per connection waits, and so records one slow round trip per connection). It is
also kept from the actual send (uncorrected), and the driver's own lateness (the offer
against the intended time) as the HTTP open model keeps it. A message due when no connection
is open (none opened, or every one broken and reopening) is not sent: it is ``dropped``.
Once sent, a message has ``timeout_s`` for its echo; past it the connection is given up
(``timeout``), each message in flight on a broken connection fails with the connection's
error kind, and the connection is reopened.

Counting is the HTTP open model's (:mod:`harness.load.open`): a message counts in the window
by its intended send time; after the window closes, messages in flight are awaited (each up
to its timeout); ``answered_in_window`` counts the echoes that *arrived* in the window (the
throughput). A 501 answer to the upgrade (the contract's answer of a WSGI stack) makes the
result ``unsupported`` and stops the load at once. The result is a
:class:`~harness.load.result.LoadResult` of model ``open`` whose ``stream`` is of kind ``websocket``.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import deque
from dataclasses import dataclass, field, replace

import uvloop
from websockets.uri import WebSocketURI, parse_uri

from harness import histogram
from harness.load.arrivals import Arrival, OpenLoad, intended_times
from harness.load.connection import clock
from harness.load.native import ensure_loopback
from harness.load.open import Dispatcher
from harness.load.result import LoadResult, StreamCounts
from harness.load.stream.link import Tally, connect, finish, open_file_limit
from harness.load.stream.websocket import WsLink
from harness.types import WindowCallback

DRAIN_MARGIN_S = 1.0
"""How long past ``timeout_s`` the driver waits, after the window, for the echoes still due (s)."""


@dataclass(frozen=True)
class WsOpenLoad:
    """WebSocket echo in the open model: ``rate`` messages/s of ``message_bytes`` bytes over ``connections``.

    ``arrival`` is ``uniform`` (gaps of 1/rate s) or ``poisson`` (exponential gaps drawn from
    ``random.Random(seed)``), over ``warmup_s`` + ``duration_s`` s once the connections are
    open. ``timeout_s`` bounds the opening of the connections (all of them together), each
    connect and handshake, and each message's wait for its echo. Besides its duration, the
    load is bounded by ``max_messages`` messages scheduled. Raises ValueError for a rate <= 0,
    fewer than one connection, or a message size outside 1 byte to 16 MiB.
    """

    host: str
    port: int
    rate: float
    connections: int
    message_bytes: int
    warmup_s: float
    duration_s: float
    arrival: Arrival = "poisson"
    timeout_s: float = 10.0
    max_messages: int = 100_000_000
    seed: int | None = None
    path: str = "/ws/echo"
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0 messages/s, got {self.rate}")
        if self.connections < 1:
            raise ValueError(f"connections must be >= 1, got {self.connections}")
        if not 1 <= self.message_bytes <= 16 << 20:
            raise ValueError(f"message_bytes must be between 1 and 16 MiB, got {self.message_bytes}")

    def uri(self) -> WebSocketURI:
        return parse_uri(f"ws://{self.host}:{self.port}{self.path}")

    def schedule(self) -> OpenLoad:
        """The arrival process as the HTTP open model's load, for :func:`intended_times`."""
        return OpenLoad(
            host=self.host,
            port=self.port,
            path=self.path,
            rate=self.rate,
            warmup_s=self.warmup_s,
            duration_s=self.duration_s,
            arrival=self.arrival,
            max_connections=self.connections,
            timeout_s=self.timeout_s,
            allow_remote=self.allow_remote,
            max_requests=self.max_messages,
            seed=self.seed,
        )

    def split(self, parts: int) -> list[WsOpenLoad]:
        """Up to ``parts`` loads (no more than the connections) that together offer this one: the
        connections divided, each part's rate and message bound in proportion, seeds made distinct."""
        parts = max(1, min(parts, self.connections))
        if parts == 1:
            return [self]
        base, extra = divmod(self.connections, parts)
        shares = [base + (1 if index < extra else 0) for index in range(parts)]
        return [
            replace(
                self,
                connections=share,
                rate=self.rate * share / self.connections,
                max_messages=max(1, self.max_messages * share // self.connections),
                seed=None if self.seed is None else self.seed * 1000 + index,
            )
            for index, share in enumerate(shares)
        ]


@dataclass
class _OpenWsTally(Tally):
    """A run's counts. Messages count by intended send time in [window_start_ns, window_end_ns)."""

    corrected_us: array[int] = field(default_factory=lambda: array("q"))
    uncorrected_us: array[int] = field(default_factory=lambda: array("q"))
    late_us: array[int] = field(default_factory=lambda: array("q"))
    scheduled: int = 0
    dropped: int = 0
    answered_in_window: int = 0
    connections_peak: int = 0
    unsupported: bool = False

    def in_window(self, intended_ns: int) -> bool:
        return self.window_start_ns <= intended_ns < self.window_end_ns

    def fail(self, intended_ns: int, kind: str, status: int = 0) -> None:
        """A message scheduled at ``intended_ns`` failed (``status``: the HTTP status of a status error)."""
        if self.in_window(intended_ns):
            self.errors[kind] += 1
            if status:
                self.error_statuses[status] = self.error_statuses.get(status, 0) + 1


class _Sender(WsLink):
    """One connection of the open model: sends what the driver hands it, matches echoes in order."""

    def __init__(self, driver: _Driver, uri: WebSocketURI) -> None:
        super().__init__(driver.tally, uri, max(len(driver.filler), 1 << 20))
        self.driver = driver
        # (intended send time, actual send time, payload) of each message in flight, oldest first.
        self.fifo: deque[tuple[int, int, bytes]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.expect_by(clock() + self.driver.timeout_ns)

    def opened(self) -> None:
        self.deadline_ns = 0
        self.driver.opened(self)

    def send(self, intended_ns: int, now_ns: int, sequence: int) -> None:
        filler = self.driver.filler
        payload = (b"%d " % sequence + filler)[: len(filler)]
        self.protocol.send_text(payload)
        self.flush()
        if not self.fifo:
            self.expect_by(now_ns + self.driver.timeout_ns)
        self.fifo.append((intended_ns, now_ns, payload))

    def message(self, data: bytes) -> None:
        now = clock()
        if not self.fifo or data != self.fifo[0][2]:
            self.broken("malformed")
            return
        intended, sent, _ = self.fifo.popleft()
        self.expect_by(self.fifo[0][1] + self.driver.timeout_ns if self.fifo else 0)
        self.driver.echoed(intended, sent, now)

    def rejected(self, status: int) -> None:
        if status == 501:
            self.closing = True
            self.close()
            self.driver.refused()
        else:
            self.broken("status", status)

    def broken(self, kind: str, status: int = 0) -> None:
        self.closing = True
        self.close()
        self.driver.broke(self, kind, status)

    def goodbye(self) -> None:
        self.driver.forget(self)
        super().goodbye()


class _Driver:
    """Keeps the connections open, hands each arriving message to the next one, and counts."""

    def __init__(self, load: WsOpenLoad, tally: _OpenWsTally, loop: asyncio.AbstractEventLoop) -> None:
        self.load = load
        self.tally = tally
        self.loop = loop
        self.filler = (b"gwbench-echo-" * (load.message_bytes // 13 + 1))[: load.message_bytes]
        self.timeout_ns = int(load.timeout_s * 1e9)
        self.open: list[_Sender] = []
        self.turn = 0
        self.sent = 0
        self.in_flight = 0
        self.dispatching = True
        self.stopping = False
        self.all_open: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()
        self.stopped: asyncio.Future[None] = loop.create_future()
        """Done when the server answered an upgrade with 501: the load stops at once."""

    async def keep_open(self) -> None:
        """One connection: open it, hold it until it closes, open it again while the load runs."""
        uri = self.load.uri()
        while not self.stopping and not self.tally.unsupported:
            link = await connect(
                self.tally, lambda: _Sender(self, uri), self.load.host, self.load.port, self.load.timeout_s
            )
            if link is not None:
                await link.finished

    def opened(self, link: _Sender) -> None:
        if self.stopping:
            link.goodbye()
            return
        self.open.append(link)
        self.tally.connections_peak = max(self.tally.connections_peak, len(self.open))
        if len(self.open) >= self.load.connections:
            _settle(self.all_open)

    def forget(self, link: _Sender) -> None:
        """``link`` takes no more messages."""
        if link in self.open:
            self.open.remove(link)

    def offer(self, intended_ns: int, now_ns: int) -> None:
        """A message is due: send it on the next open connection, or drop it when none is open."""
        tally = self.tally
        counted = tally.in_window(intended_ns)
        if counted:
            tally.scheduled += 1
            tally.late_us.append((now_ns - intended_ns) // 1000)
        if not self.open or tally.unsupported:
            if counted:
                tally.dropped += 1
            return
        self.turn = (self.turn + 1) % len(self.open)
        self.sent += 1
        self.in_flight += 1
        self.open[self.turn].send(intended_ns, now_ns, self.sent)

    def echoed(self, intended_ns: int, sent_ns: int, now_ns: int) -> None:
        tally = self.tally
        self.in_flight -= 1
        if tally.window_start_ns <= now_ns < tally.window_end_ns:
            tally.answered_in_window += 1
        if tally.in_window(intended_ns):
            tally.corrected_us.append((now_ns - intended_ns) // 1000)
            tally.uncorrected_us.append((now_ns - sent_ns) // 1000)
        self._maybe_drained()

    def broke(self, link: _Sender, kind: str, status: int) -> None:
        """``link`` failed: each message in flight on it fails with ``kind`` (or, with none, the
        connection counts once, when it failed)."""
        self.forget(link)
        if not link.fifo:
            self.tally.error(kind, clock(), status)
        for intended, _, _ in link.fifo:
            self.tally.fail(intended, kind, status)
        self.in_flight -= len(link.fifo)
        link.fifo.clear()
        self._maybe_drained()

    def refused(self) -> None:
        """The server answered an upgrade with 501: no WebSocket support; stop everything."""
        self.tally.unsupported = True
        for future in (self.all_open, self.stopped, self.drained):
            _settle(future)

    def stop_dispatching(self) -> None:
        """No more arrivals: ``drained`` is done once every message sent is echoed or failed."""
        self.dispatching = False
        self._maybe_drained()

    def _maybe_drained(self) -> None:
        if not self.dispatching and self.in_flight <= 0:
            _settle(self.drained)

    async def until(self, at_ns: int) -> bool:
        """Wait until the clock reads ``at_ns``; False at once if the server refused WebSockets."""
        while (delay := at_ns - clock()) > 0 and not self.stopped.done():
            await asyncio.wait([self.stopped], timeout=delay / 1e9)
        return not self.stopped.done()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _result(load: WsOpenLoad, tally: _OpenWsTally, wall_s: float, cpu_s: float) -> LoadResult:
    unsupported = tally.unsupported
    return LoadResult(
        duration_s=0.0 if unsupported else wall_s,
        ok=0 if unsupported else len(tally.corrected_us),
        errors=dict(tally.errors),
        error_statuses=dict(sorted(tally.error_statuses.items())),
        connections_opened=tally.connections_opened,
        generator_cpu_s=cpu_s,
        histogram=histogram.encode(array("q") if unsupported else tally.corrected_us),
        model="open",
        intended_rate=load.rate,
        scheduled=0 if unsupported else tally.scheduled,
        dropped=0 if unsupported else tally.dropped,
        histogram_uncorrected=histogram.encode(array("q") if unsupported else tally.uncorrected_us),
        connections_peak=tally.connections_peak,
        answered_in_window=0 if unsupported else tally.answered_in_window,
        histogram_lateness=histogram.encode(array("q") if unsupported else tally.late_us),
        stream=StreamCounts(kind="websocket", unsupported=unsupported),
    )


async def drive_ws_open(load: WsOpenLoad, on_window: WindowCallback = lambda _: None) -> LoadResult:
    """The coroutine ``run_ws_open`` runs, for a caller with its own event loop; nothing outlives it."""
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    loop = asyncio.get_running_loop()
    with open_file_limit(load.connections):
        tally = _OpenWsTally(window_start_ns=0, window_end_ns=0)
        driver = _Driver(load, tally, loop)
        tasks = [loop.create_task(driver.keep_open()) for _ in range(load.connections)]
        dispatcher: Dispatcher | None = None
        wall_s = cpu_s = 0.0
        try:
            await asyncio.wait([driver.all_open], timeout=load.timeout_s)
            begin = clock()
            tally.window_start_ns = begin + int(load.warmup_s * 1e9)
            tally.window_end_ns = tally.window_start_ns + int(load.duration_s * 1e9)
            if not tally.unsupported:
                dispatcher = Dispatcher(loop, driver.offer, intended_times(load.schedule(), begin))
                dispatcher.dispatch()
            running = await driver.until(tally.window_start_ns)
            on_window("start")
            cpu_start, wall_start = time.process_time_ns(), clock()
            if running:
                await driver.until(tally.window_end_ns)
            cpu_s, wall_s = (time.process_time_ns() - cpu_start) / 1e9, (clock() - wall_start) / 1e9
            on_window("end")
            if dispatcher is not None:
                dispatcher.stop()
            driver.stop_dispatching()
            # Each message in flight has its timeout for the echo; its connection's deadline ends the wait.
            await asyncio.wait([driver.drained], timeout=load.timeout_s + DRAIN_MARGIN_S)
        finally:
            if dispatcher is not None:
                dispatcher.stop()
            driver.stopping = True
            await finish(tasks, tally)
    return _result(load, tally, wall_s, cpu_s)


def run_ws_open(load: WsOpenLoad, on_window: WindowCallback = lambda _: None) -> LoadResult:
    """Drive ``load`` on a fresh uvloop event loop; blocks while the connections open (at most
    ``timeout_s``), for warm-up + window, then up to ``timeout_s`` + 1 s for the echoes still due.

    ``on_window`` is called with ``"start"`` and ``"end"`` (both at once when the server does
    not support WebSockets). Raises UnsafeTargetError for a non-loopback host unless
    ``load.allow_remote``, FileLimitError when the connections cannot fit.
    """
    return uvloop.run(drive_ws_open(load, on_window))
