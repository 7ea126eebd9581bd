"""WebSocket echo load: closed model, one text message in flight per connection.

Each of ``connections`` WebSockets sends a text message, waits for its echo,
and sends the next one from the callback that received the echo. The round
trip runs from the send to the last byte of the echo. Every message differs
(it starts with a sequence number), so an echo of an older one is caught. A
501 answer to the upgrade (the contract's answer of a WSGI stack) makes the
result ``unsupported`` and stops the load: a clean result, not an error.

The WebSocket protocol is websockets' sans-I/O ``ClientProtocol`` (no
compression offered), fed from the asyncio protocol's callbacks. Client CPU
per round trip, measured against uvicorn's echo on one pinned core, the client
on another, 8 connections, 3 s: 14.5 µs for 16 bytes and 16.5 µs for 4 KiB
with this design; 25 and 34 µs with wsproto on the same raw protocol (its
masking and event machinery are pure Python); 20 and 18 µs with websockets'
own asyncio client, which also needs a task per connection.
"""

from __future__ import annotations

import asyncio
from array import array
from dataclasses import dataclass, field

import uvloop
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

from harness import histogram
from harness.load.connection import clock
from harness.load.native import ensure_loopback
from harness.load.stream.link import CLOSE_WAIT_S, Link, Tally, connect, finish, measure, open_file_limit
from harness.types import WindowCallback


class WsLink(Link):
    """A WebSocket client connection: opening handshake, whole text messages, closing handshake.

    Pings are answered by the protocol. Subclasses implement ``opened``,
    ``rejected`` (the server answered the upgrade with ``status``),
    ``message`` (a whole text message) and ``broken`` (the connection is
    unusable, for a reason of ``kind``), and may implement ``ponged``.
    """

    def __init__(self, tally: Tally, uri: WebSocketURI, max_size: int = 1 << 20) -> None:
        super().__init__(tally)
        self.protocol = ClientProtocol(uri, max_size=max_size)
        self.closing = False
        self._fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.protocol.send_request(self.protocol.connect())
        self.flush()

    def flush(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._handle()

    def connection_lost(self, exc: Exception | None) -> None:
        # An answer to the upgrade with no length ends with the connection.
        if not self.closed and self.protocol.state is State.CONNECTING:
            self.protocol.receive_eof()
            self._handle()
        super().connection_lost(exc)

    def _handle(self) -> None:
        protocol = self.protocol
        for event in protocol.events_received():
            if self.closed:
                return
            if isinstance(event, Response):
                if event.status_code == 101 and protocol.handshake_exc is None:
                    self.opened()
                elif event.status_code == 101:
                    self.broken("malformed")
                else:
                    self.rejected(event.status_code)
            elif isinstance(event, Frame):
                self._frame(event)
        if protocol.parser_exc is not None and not self.closing:
            self.broken("read")
        self.flush()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT and frame.fin:
            self.message(bytes(frame.data))
        elif opcode is Opcode.TEXT or (opcode is Opcode.CONT and self._fragments):
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                whole, self._fragments = b"".join(self._fragments), []
                self.message(whole)
        elif opcode is Opcode.PONG:
            self.ponged()
        elif opcode is Opcode.CLOSE:
            if not self.closing:
                self.broken("read")
        elif opcode is not Opcode.PING:
            self.broken("malformed")

    def goodbye(self) -> None:
        """Start the closing handshake; the server then closes the TCP connection."""
        if self.closed or self.closing:
            return
        self.closing = True
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self.flush()
            self.expect_by(clock() + int(CLOSE_WAIT_S * 1e9))
        else:
            self.close()

    def lost(self) -> None:
        if not self.closing:
            self.broken("read")

    def expired(self) -> None:
        if self.closing:
            self.abort()
        else:
            self.broken("timeout")

    def opened(self) -> None:
        raise NotImplementedError

    def rejected(self, status: int) -> None:
        raise NotImplementedError

    def message(self, data: bytes) -> None:
        raise NotImplementedError

    def ponged(self) -> None:
        pass

    def broken(self, kind: str) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class WsLoad:
    """``connections`` WebSockets echoing ``message_bytes``-byte text messages (closed model).

    ``timeout_s`` bounds the connect, the opening handshake and each round
    trip. Besides its duration, the load is bounded by ``max_messages``
    messages sent; when all are answered, the window ends early.
    """

    host: str
    port: int
    connections: int
    message_bytes: int
    warmup_s: float
    duration_s: float
    timeout_s: float = 10.0
    max_messages: int = 100_000_000
    path: str = "/ws/echo"
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError(f"connections must be >= 1, got {self.connections}")
        if not 1 <= self.message_bytes <= 16 << 20:
            raise ValueError(f"message_bytes must be between 1 and 16 MiB, got {self.message_bytes}")

    def uri(self) -> WebSocketURI:
        return parse_uri(f"ws://{self.host}:{self.port}{self.path}")


@dataclass(frozen=True)
class WsResult:
    """What a WebSocket echo load measured in its window.

    ``messages`` counts the echoes received intact; ``histogram`` is the
    HdrHistogram (µs, as ``histogram.encode``; ``latency_summary`` gives ms) of
    their round trips. ``unsupported``: the server answered the upgrade with
    501; the load then stopped at once and measured nothing.
    ``generator_cpu_s`` is this process's CPU time and ``duration_s`` the
    window's wall time (s).
    """

    duration_s: float
    messages: int
    errors: dict[str, int]
    error_statuses: dict[int, int]
    connections_opened: int
    generator_cpu_s: float
    histogram: str
    unsupported: bool = False

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.duration_s if self.duration_s else 0.0


@dataclass
class _WsTally(Tally):
    load: WsLoad | None = None
    round_trips_us: array[int] = field(default_factory=lambda: array("q"))
    sent: int = 0
    unsupported: bool = False

    def may_send(self, now_ns: int) -> bool:
        assert self.load is not None
        return now_ns < self.window_end_ns and self.sent < self.load.max_messages and not self.unsupported


class _WsEcho(WsLink):
    def __init__(self, tally: _WsTally, uri: WebSocketURI, filler: bytes, timeout_ns: int) -> None:
        super().__init__(tally, uri, max(len(filler), 1 << 20))
        self.tally = tally
        self.filler = filler
        self.timeout_ns = timeout_ns
        self.sent_ns = 0
        self.payload = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.expect_by(clock() + self.timeout_ns)

    def opened(self) -> None:
        self.deadline_ns = 0
        self.send_next(clock())

    def send_next(self, now_ns: int) -> None:
        tally = self.tally
        if not tally.may_send(now_ns):
            self.goodbye()
            return
        tally.sent += 1
        self.payload = (b"%d " % tally.sent + self.filler)[: len(self.filler)]
        self.sent_ns = now_ns
        self.protocol.send_text(self.payload)
        self.flush()
        self.expect_by(now_ns + self.timeout_ns)

    def message(self, data: bytes) -> None:
        now = clock()
        if not self.sent_ns or data != self.payload:
            self.broken("malformed")
            return
        if self.tally.counts(now):
            self.tally.round_trips_us.append((now - self.sent_ns) // 1000)
        self.sent_ns = 0
        self.send_next(now)

    def rejected(self, status: int) -> None:
        if status == 501:
            self.tally.unsupported = True
            self.closing = True
            self.close()
        else:
            self.broken("status", status)

    def broken(self, kind: str, status: int = 0) -> None:
        self.closing = True
        self.close()
        self.tally.error(kind, clock(), status)


async def _keep_echoing(tally: _WsTally, load: WsLoad) -> None:
    """One of the connections: connect, echo until the connection closes, reconnect."""
    uri = load.uri()
    filler = (b"gwbench-echo-" * (load.message_bytes // 13 + 1))[: load.message_bytes]
    timeout_ns = int(load.timeout_s * 1e9)

    def factory() -> _WsEcho:
        return _WsEcho(tally, uri, filler, timeout_ns)

    while tally.may_send(clock()):
        link = await connect(tally, factory, load.host, load.port, load.timeout_s)
        if link is not None:
            await link.finished


async def drive_ws(load: WsLoad, on_window: WindowCallback = lambda _: None) -> WsResult:
    """The coroutine ``run_ws`` runs, for a caller with its own event loop; nothing outlives it."""
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    with open_file_limit(load.connections):
        window_start = clock() + int(load.warmup_s * 1e9)
        tally = _WsTally(window_start, window_start + int(load.duration_s * 1e9), load=load)
        tasks = [asyncio.create_task(_keep_echoing(tally, load)) for _ in range(load.connections)]
        try:
            duration_s, cpu_s = await measure(tally, tasks, on_window)
        finally:
            await finish(tasks, tally)
    return WsResult(
        duration_s=0.0 if tally.unsupported else duration_s,
        messages=len(tally.round_trips_us),
        errors=dict(tally.errors),
        error_statuses=dict(tally.error_statuses),
        connections_opened=tally.connections_opened,
        generator_cpu_s=cpu_s,
        histogram=histogram.encode(tally.round_trips_us),
        unsupported=tally.unsupported,
    )


def run_ws(load: WsLoad, on_window: WindowCallback = lambda _: None) -> WsResult:
    """Drive ``load`` on a fresh uvloop event loop; blocks for warm-up + window (less when bounded).

    ``on_window`` is called with ``"start"`` and ``"end"`` (both at once when
    the server does not support WebSockets). Raises UnsafeTargetError for a
    non-loopback host unless ``load.allow_remote``, FileLimitError when the
    connections cannot fit.
    """
    return uvloop.run(drive_ws(load, on_window))
