"""Server-Sent Events load: streams opened again and again, every event checked and counted.

Each of ``connections`` connections sends ``GET
/stream/sse?events=N&interval_ms=M`` and reads the stream to its end, then sends
the next request at once, on the same connection when the server keeps it
alive, else on a new one. httptools parses the response (and undoes chunked
encoding; a body with neither length nor chunks ends when the server closes),
``SseParser`` the body; event k must be the JSON ``{"i": k}``. Time to first
event runs from the request's send (connect included on a new connection, as a
browser opening the stream pays it) to the first event.
"""

from __future__ import annotations

import asyncio
import json
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools
import uvloop

from harness import histogram
from harness.load.connection import clock
from harness.load.native import ensure_loopback, request_bytes
from harness.load.stream.link import Link, Tally, connect, finish, measure, open_file_limit
from harness.types import WindowCallback


class SseParser:
    """Incremental parser of a ``text/event-stream`` body: bytes in, each event's data out.

    Lines end in CRLF, LF or CR; a blank line dispatches the ``data`` lines seen
    since the last one, joined with LF (``data: a``, ``data: b``, blank ->
    ``b"a\\nb"``); no data line, no event. Comments (``:``) and the other fields
    (``event``, ``id``, ``retry``) are skipped; a field's value loses one
    leading space; a leading UTF-8 BOM is dropped. Data left without its blank
    line when the stream ends is discarded. Rules: WHATWG HTML Living Standard,
    9.2.6 "Interpreting an event stream". ``feed`` raises ValueError for a line
    longer than ``max_line_bytes``.
    """

    __slots__ = ("_data", "_on_event", "_partial", "_skip_lf", "_started", "max_line_bytes")

    def __init__(self, on_event: Callable[[bytes], None], max_line_bytes: int = 1 << 20) -> None:
        self._on_event = on_event
        self.max_line_bytes = max_line_bytes
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next byte starts a new stream."""
        self._partial = b""
        self._data: list[bytes] = []
        self._skip_lf = False
        self._started = False

    def feed(self, chunk: bytes) -> None:
        if not self._started:
            self._started = True
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 0x0A:  # the LF of a CRLF split between two chunks
                chunk = chunk[1:]
        buffer = self._partial + chunk if self._partial else chunk
        start = 0
        if b"\r" not in buffer:
            end = buffer.find(b"\n")
            while end >= 0:
                self._line(buffer[start:end])
                start = end + 1
                end = buffer.find(b"\n", start)
        else:
            while True:
                cr, lf = buffer.find(b"\r", start), buffer.find(b"\n", start)
                if lf >= 0 and (cr < 0 or lf < cr):
                    self._line(buffer[start:lf])
                    start = lf + 1
                elif cr >= 0:
                    self._line(buffer[start:cr])
                    start = cr + 1
                    if start == len(buffer):
                        self._skip_lf = True
                    elif buffer[start] == 0x0A:
                        start += 1
                else:
                    break
        self._partial = buffer[start:]
        if len(self._partial) > self.max_line_bytes:
            raise ValueError(f"event stream line longer than {self.max_line_bytes} bytes")

    def _line(self, line: bytes) -> None:
        if line.startswith(b"data: "):
            self._data.append(line[6:])
        elif not line:
            if self._data:
                data = b"\n".join(self._data)
                self._data = []
                self._on_event(data)
        elif line[0] != 0x3A:  # ":" starts a comment
            name, _, value = line.partition(b":")
            if name == b"data":
                self._data.append(value[1:] if value.startswith(b" ") else value)


def _is_event(data: bytes, expected: bytes, index: int) -> bool:
    """Is ``data`` the JSON ``{"i": index}``? ``expected`` is its usual spelling, checked first."""
    if data == expected:
        return True
    try:
        value = json.loads(data)
    except ValueError:
        return False
    return (
        isinstance(value, dict) and value.keys() == {"i"} and type(value["i"]) is int and value["i"] == index
    )


@dataclass(frozen=True)
class SseLoad:
    """``connections`` streams of ``events`` events each, ``interval_ms`` apart, for warm-up + window.

    ``timeout_s`` bounds the connect, the wait for the first event from the
    request's send, and the wait for each later event beyond ``interval_ms``.
    Besides its duration, the load is bounded by ``max_streams`` streams
    started; when all have ended, the window ends early. ``stagger_s`` spreads
    the connections' first streams evenly over that many seconds (connection i
    of n starts at i/n of it): streams of one length started together would end
    together, and the streams completed in a window would come in steps of
    ``connections``.
    """

    host: str
    port: int
    connections: int
    events: int
    interval_ms: int
    warmup_s: float
    duration_s: float
    timeout_s: float = 10.0
    max_streams: int = 10_000_000
    stagger_s: float = 0.0
    path: str = "/stream/sse"
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError(f"connections must be >= 1, got {self.connections}")
        if not 1 <= self.events <= 1000:
            raise ValueError(f"events must be between 1 and 1000, got {self.events}")
        if not 0 <= self.interval_ms <= 10_000:
            raise ValueError(f"interval_ms must be between 0 and 10000, got {self.interval_ms}")

    def request_bytes(self) -> bytes:
        target = f"{self.path}?events={self.events}&interval_ms={self.interval_ms}"
        return request_bytes(self.host, self.port, target)


@dataclass(frozen=True)
class SseResult:
    """What an SSE load measured in its window.

    ``events`` counts the valid, in-order events received; ``streams_started``
    the requests sent and ``streams_completed`` the streams that ended with all
    their events. ``time_to_first_event_histogram``: HdrHistogram (µs, as
    ``histogram.encode``; ``latency_summary`` gives ms) of each stream's time
    to first event; ``inter_event_gap_histogram`` likewise of the time between
    two consecutive events of a stream (event k-1 to event k, k >= 1).
    ``generator_cpu_s`` is this process's CPU time and ``duration_s`` the
    window's wall time (s).
    """

    duration_s: float
    events: int
    streams_started: int
    streams_completed: int
    errors: dict[str, int]
    error_statuses: dict[int, int]
    connections_opened: int
    generator_cpu_s: float
    time_to_first_event_histogram: str
    inter_event_gap_histogram: str = ""

    @property
    def events_per_second(self) -> float:
        return self.events / self.duration_s if self.duration_s else 0.0


@dataclass
class _SseTally(Tally):
    load: SseLoad | None = None
    first_event_us: array[int] = field(default_factory=lambda: array("q"))
    gap_us: array[int] = field(default_factory=lambda: array("q"))
    events: int = 0
    started: int = 0
    streams_started: int = 0
    streams_completed: int = 0

    def may_start(self, now_ns: int) -> bool:
        assert self.load is not None
        return now_ns < self.window_end_ns and self.started < self.load.max_streams


class _SseStream(Link):
    """A connection carrying one event stream at a time; the next request is sent from the callback."""

    def __init__(self, tally: _SseTally, request: bytes, expected: list[bytes], timeout_ns: int) -> None:
        super().__init__(tally)
        assert tally.load is not None
        self.tally = tally
        self.request = request
        self.expected = expected
        self.timeout_ns = timeout_ns
        self.gap_ns = tally.load.interval_ms * 1_000_000 + timeout_ns
        self.parser = httptools.HttpResponseParser(self)
        self.sse = SseParser(self._event)
        self.start_ns = 0
        self.last_event_ns = 0
        self.index = 0
        self.headers_done = False
        self.until_close = True
        self.content_type = b""

    def start(self, start_ns: int) -> None:
        """Send the next stream's request; its time to first event runs from ``start_ns``."""
        tally = self.tally
        tally.started += 1
        if tally.counts(start_ns):
            tally.streams_started += 1
        self.start_ns, self.index, self.headers_done, self.until_close = start_ns, 0, False, True
        self.content_type = b""
        self.sse.reset()
        assert self.transport is not None
        self.transport.write(self.request)
        self.expect_by(start_ns + self.timeout_ns)

    def fail(self, kind: str, status: int = 0) -> None:
        self.start_ns = 0
        self.close()
        self.tally.error(kind, clock(), status)

    def goodbye(self) -> None:
        self.start_ns = 0
        self.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.start_ns:
                self.fail("read")
            else:
                self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self.content_type = value.lower()
        elif name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.until_close = False

    def on_headers_complete(self) -> None:
        if not self.start_ns:
            return
        self.headers_done = True
        status = self.parser.get_status_code()
        if status != 200:
            self.fail("status", status)
        elif not self.content_type.startswith(b"text/event-stream"):
            self.fail("malformed")

    def on_body(self, body: bytes) -> None:
        if self.start_ns:
            try:
                self.sse.feed(body)
            except ValueError:
                self.fail("malformed")

    def on_message_complete(self) -> None:
        if self.start_ns and self._stream_ended() and self.parser.should_keep_alive():
            now = clock()
            if self.tally.may_start(now):
                self.start(now)
                return
        self.close()

    def _stream_ended(self) -> bool:
        """Count the stream that just ended: complete, or ``malformed`` when events are missing."""
        if self.index != len(self.expected):
            self.fail("malformed")
            return False
        self.start_ns = self.deadline_ns = 0
        if self.tally.counts(clock()):
            self.tally.streams_completed += 1
        return True

    def _event(self, data: bytes) -> None:
        if not self.start_ns:
            return
        now = clock()
        tally, index = self.tally, self.index
        if index >= len(self.expected) or not _is_event(data, self.expected[index], index):
            self.fail("malformed")
            return
        if tally.counts(now):
            tally.events += 1
            if index == 0:
                tally.first_event_us.append((now - self.start_ns) // 1000)
            else:
                tally.gap_us.append((now - self.last_event_ns) // 1000)
        self.last_event_ns = now
        self.index = index + 1
        self.expect_by(now + self.gap_ns)

    def lost(self) -> None:
        if self.start_ns and self.headers_done and self.until_close:
            self._stream_ended()
        elif self.start_ns:
            self.fail("read")

    def expired(self) -> None:
        self.fail("timeout")


async def _keep_streaming(tally: _SseTally, load: SseLoad, delay_s: float = 0.0) -> None:
    """One of the connections: after ``delay_s``, connect, stream until the connection closes, reconnect."""
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    request = load.request_bytes()
    expected = [f'{{"i": {index}}}'.encode() for index in range(load.events)]
    timeout_ns = int(load.timeout_s * 1e9)

    def factory() -> _SseStream:
        return _SseStream(tally, request, expected, timeout_ns)

    while tally.may_start(start := clock()):
        link = await connect(tally, factory, load.host, load.port, load.timeout_s)
        if link is not None:
            cast(_SseStream, link).start(start)
            await link.finished


async def drive_sse(load: SseLoad, on_window: WindowCallback = lambda _: None) -> SseResult:
    """The coroutine ``run_sse`` runs, for a caller with its own event loop; nothing outlives it."""
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    with open_file_limit(load.connections):
        window_start = clock() + int(load.warmup_s * 1e9)
        tally = _SseTally(window_start, window_start + int(load.duration_s * 1e9), load=load)
        step_s = load.stagger_s / load.connections
        tasks = [
            asyncio.create_task(_keep_streaming(tally, load, index * step_s))
            for index in range(load.connections)
        ]
        try:
            duration_s, cpu_s = await measure(tally, tasks, on_window)
        finally:
            await finish(tasks, tally)
    return SseResult(
        duration_s=duration_s,
        events=tally.events,
        streams_started=tally.streams_started,
        streams_completed=tally.streams_completed,
        errors=dict(tally.errors),
        error_statuses=dict(tally.error_statuses),
        connections_opened=tally.connections_opened,
        generator_cpu_s=cpu_s,
        time_to_first_event_histogram=histogram.encode(tally.first_event_us),
        inter_event_gap_histogram=histogram.encode(tally.gap_us),
    )


def run_sse(load: SseLoad, on_window: WindowCallback = lambda _: None) -> SseResult:
    """Drive ``load`` on a fresh uvloop event loop; blocks for warm-up + window (less when bounded).

    ``on_window`` is called with ``"start"`` and ``"end"`` as the window opens
    and closes. Raises UnsafeTargetError for a non-loopback host unless
    ``load.allow_remote``, FileLimitError when the connections cannot fit.
    """
    return uvloop.run(drive_sse(load, on_window))
