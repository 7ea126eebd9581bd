"""The streaming drivers against real servers on 127.0.0.1: uvicorn and Gunicorn serving ``stream_app``."""

from __future__ import annotations

import asyncio
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from controlled_server import ControlledServer

from harness.histogram import decode
from harness.launch.base import health_ok
from harness.load import UnsafeTargetError, drive_in_subprocess
from harness.load.stream import (
    FileLimitError,
    HoldKind,
    HoldLoad,
    SseLoad,
    SseParser,
    WsLoad,
    WsOpenLoad,
    drive_hold,
    drive_sse,
    drive_ws,
    drive_ws_open,
    hold_connections,
    open_file_limit,
    run_sse,
    run_ws,
    run_ws_open,
)
from harness.load.summary import latency_summary
from harness.net import free_port

TESTS = Path(__file__).parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
NO_ERRORS = {"connect": 0, "read": 0, "status": 0, "timeout": 0, "malformed": 0}


@contextmanager
def serving(*command: str) -> Iterator[int]:
    """Run a server (``{port}`` in ``command`` filled) in its own process group until the block ends."""
    with server_process(*command) as (port, _):
        yield port


@contextmanager
def server_process(*command: str) -> Iterator[tuple[int, int]]:
    """:func:`serving`, giving the port and the process group's id (its leader's pid) too."""
    port = free_port()
    process = subprocess.Popen(
        [part.format(port=port) for part in command],
        cwd=TESTS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not health_ok(HOST, port, "/health", 1.0):
            assert process.poll() is None, f"{command[0]} exited with {process.returncode}"
            assert time.monotonic() < deadline, f"{command[0]} did not answer /health"
            time.sleep(0.05)
        yield port, process.pid
    finally:
        os.killpg(process.pid, signal.SIGCONT)  # a paused server would not see the SIGTERM
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        assert not psutil.pid_exists(process.pid) or psutil.Process(process.pid).status() == "zombie"


def uvicorn(*options: str) -> tuple[str, ...]:
    return (
        str(BIN / "uvicorn"), "stream_app:app", "--host", HOST, "--port", "{port}", "--loop", "uvloop",
        "--http", "httptools", "--lifespan", "off", "--log-level", "warning", "--no-access-log", *options,
    )  # fmt: skip


GUNICORN = (
    str(BIN / "gunicorn"),
    "-b",
    f"{HOST}:{{port}}",
    "-w",
    "1",
    "--no-control-socket",
    "stream_app:wsgi_app",
)


@pytest.fixture(scope="module")
def asgi() -> Iterator[int]:
    with serving(*uvicorn()) as port:
        yield port


@pytest.fixture(scope="module")
def wsgi() -> Iterator[int]:
    with serving(*GUNICORN) as port:
        yield port


def sockets_to(port: int) -> int:
    """Open TCP connections of this process to ``port``."""
    return sum(1 for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port)


def assert_all_closed(port: int) -> None:
    assert sockets_to(port) == 0


# --- the event-stream parser ------------------------------------------------------------------


def parse(*chunks: bytes) -> list[bytes]:
    events: list[bytes] = []
    parser = SseParser(events.append)
    for chunk in chunks:
        parser.feed(chunk)
    return events


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_the_parser_reads_every_line_ending_wherever_the_chunks_split(end: bytes) -> None:
    stream = end.join(
        [
            b"\xef\xbb\xbf: comment",
            b"event: tick",
            b"data: one",
            b"data:two",
            b"",
            b"id: 7",
            b"data",
            b"",
            b"",
        ]
    )
    for split in range(len(stream) + 1):
        assert parse(stream[:split], stream[split:]) == [b"one\ntwo", b""], split
    assert parse(*(stream[i : i + 1] for i in range(len(stream)))) == [b"one\ntwo", b""]


def test_the_parser_drops_an_unfinished_event_and_refuses_endless_lines() -> None:
    assert parse(b'data: {"i": 0}\n\ndata: {"i": 1}\n') == [b'{"i": 0}']
    with pytest.raises(ValueError, match="longer than"):
        SseParser(lambda _: None, max_line_bytes=10).feed(b"data: " + b"x" * 20)


# --- Server-Sent Events -----------------------------------------------------------------------


def sse(port: int, events: int = 5, interval_ms: int = 10, duration_s: float = 10.0, **kw: Any) -> SseLoad:
    kw = {"connections": 4, "warmup_s": 0.0, **kw}
    return SseLoad(HOST, port, events=events, interval_ms=interval_ms, duration_s=duration_s, **kw)


def test_every_event_of_every_stream_is_counted_in_order(asgi: int) -> None:
    result = run_sse(sse(asgi, max_streams=12))
    assert result.errors == NO_ERRORS
    assert result.streams_started == result.streams_completed == 12
    assert result.events == 5 * result.streams_completed
    assert decode(result.time_to_first_event_histogram).get_total_count() == 12
    # Keep-alive: the 12 streams ran on the 4 connections; the bound ended the window early.
    assert result.connections_opened == 4
    assert result.duration_s < 2
    assert_all_closed(asgi)


def test_the_first_event_comes_at_once_even_when_the_next_is_seconds_away(asgi: int) -> None:
    result = run_sse(sse(asgi, events=3, interval_ms=2000, duration_s=1.0))
    summary = latency_summary(result.time_to_first_event_histogram)
    assert summary is not None
    assert decode(result.time_to_first_event_histogram).get_total_count() == 4
    assert summary.max < 100  # ms, against 2,000 ms between events
    assert result.events == 4 and result.streams_completed == 0
    assert result.errors == NO_ERRORS
    assert_all_closed(asgi)


def test_events_per_second_follow_connections_over_the_interval(asgi: int) -> None:
    result = run_sse(sse(asgi, events=1000, interval_ms=20, warmup_s=0.5, duration_s=2.0))
    expected = 4 * 1000 / 20
    # The server sleeps 20 ms after each send, so its period is a little longer than 20 ms.
    assert 0.85 * expected <= result.events_per_second <= 1.02 * expected, result.events_per_second
    assert result.errors == NO_ERRORS
    assert result.streams_started == 0  # each stream outlasts the window; warm-up started them
    assert 0 < result.generator_cpu_s < 0.5 * result.duration_s


def test_a_wrong_status_or_event_order_is_an_error_not_an_event(asgi: int) -> None:
    started = time.monotonic()
    failing = run_sse(sse(asgi, path="/stream/sse-500", duration_s=0.5))
    # Reconnecting at once, connects are often in flight when the window ends; none may hold up the end.
    assert time.monotonic() - started < 1.5
    assert failing.errors["status"] > 0 and failing.events == 0
    assert failing.error_statuses == {500: failing.errors["status"]}
    shuffled = run_sse(sse(asgi, path="/stream/sse-shuffled", duration_s=0.5))
    assert shuffled.errors["malformed"] > 0
    assert shuffled.events == shuffled.streams_completed == 0
    assert_all_closed(asgi)


def test_a_silent_server_times_out_and_a_closed_port_fails_to_connect() -> None:
    with ControlledServer() as server:
        silent = run_sse(sse(server.port, path="/hang", timeout_s=0.3, duration_s=1.0))
    assert silent.errors["timeout"] >= 4 and silent.events == 0
    closed = run_sse(sse(free_port(), duration_s=0.3))
    assert closed.errors["connect"] > 0 and closed.events == 0


class CloseDelimitedSse:
    """A raw server sending CRLF event streams whose end is the connection's close (no length, no chunks)."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.served = 0
        self.sock = socket.create_server((HOST, 0))
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve)

    def __enter__(self) -> CloseDelimitedSse:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone would not
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: hello\r\n")
                for index in range(self.events):
                    event = b'data: {"i":%d}\r\n\r\n' % index  # compact JSON: parsed, not compared
                    conn.sendall(event[:5])
                    conn.sendall(event[5:])
                self.served += 1


def test_a_stream_may_end_with_the_connection() -> None:
    with CloseDelimitedSse(events=3) as server:
        result = run_sse(sse(server.port, events=3, connections=1, max_streams=5))
    assert result.errors == NO_ERRORS
    assert result.streams_completed == 5 and result.events == 15
    assert result.connections_opened == 5


# --- WebSockets --------------------------------------------------------------------------------


def ws(
    port: int, connections: int = 4, message_bytes: int = 100, duration_s: float = 10.0, **kw: Any
) -> WsLoad:
    kw = {"warmup_s": 0.0, **kw}
    return WsLoad(HOST, port, connections, message_bytes, duration_s=duration_s, **kw)


def test_every_echo_is_counted_with_its_round_trip(asgi: int) -> None:
    bounded = run_ws(ws(asgi, max_messages=400))
    assert bounded.errors == NO_ERRORS and not bounded.unsupported
    assert bounded.messages == 400
    assert decode(bounded.histogram).get_total_count() == 400
    assert bounded.connections_opened == 4
    assert bounded.duration_s < 2

    timed = run_ws(ws(asgi, connections=8, message_bytes=70_000, warmup_s=0.3, duration_s=1.0))
    summary = latency_summary(timed.histogram)
    assert summary is not None and timed.errors == NO_ERRORS
    assert timed.messages > 100 and decode(timed.histogram).get_total_count() == timed.messages
    assert 0.9 <= timed.duration_s <= 1.1
    # Closed model, 8 connections: Little's law ties rate and mean round trip.
    assert 6 <= timed.messages_per_second * summary.mean / 1000 <= 8.05
    assert_all_closed(asgi)


def test_a_wsgi_stack_answering_501_is_unsupported_not_broken(wsgi: int) -> None:
    started = time.monotonic()
    windows: list[str] = []
    result = run_ws(ws(wsgi, duration_s=5.0), windows.append)
    assert result.unsupported
    assert result.messages == 0 and result.errors == NO_ERRORS
    assert windows == ["start", "end"]
    assert time.monotonic() - started < 2
    held = hold_connections(HoldLoad(HOST, wsgi, connections=20, hold_s=5.0, kind="ws"))
    assert held.unsupported and held.connections_opened == 0
    assert held.errors == {**NO_ERRORS, "closed": 0}
    assert_all_closed(wsgi)


# --- WebSockets in the open model ----------------------------------------------------------------


def ws_open(port: int, rate: float, connections: int = 10, duration_s: float = 2.0, **kw: Any) -> WsOpenLoad:
    kw = {"message_bytes": 100, "warmup_s": 0.5, "timeout_s": 5.0, "seed": 7, **kw}
    return WsOpenLoad(HOST, port, rate=rate, connections=connections, duration_s=duration_s, **kw)


def test_the_open_model_sends_at_the_arrival_rate_and_every_message_is_echoed(asgi: int) -> None:
    load = ws_open(asgi, rate=400.0)
    result = run_ws_open(load)
    assert result.model == "open" and result.intended_rate == load.rate
    assert result.stream is not None and result.stream.kind == "websocket" and not result.stream.unsupported
    # Poisson arrivals: the count in the window is Poisson(rate x window), sd its square root.
    expected = load.rate * load.duration_s
    assert abs(result.scheduled - expected) <= 4 * math.sqrt(expected), result.scheduled
    assert result.dropped == 0 and result.errors == NO_ERRORS
    assert result.ok == result.scheduled  # every message sent was echoed, in order, intact
    assert decode(result.histogram).get_total_count() == result.ok
    assert result.histogram_uncorrected is not None
    assert decode(result.histogram_uncorrected).get_total_count() == result.ok
    corrected = latency_summary(result.histogram)
    assert corrected is not None and corrected.max < load.timeout_s * 1000
    # Echoes arriving in the window: the window's messages, give or take those in flight at its ends.
    assert result.answered_in_window is not None
    assert abs(result.answered_in_window - result.scheduled) <= 4 * math.sqrt(expected)
    assert result.connections_opened == result.connections_peak == load.connections
    assert 0.9 * load.duration_s <= result.duration_s <= 1.1 * load.duration_s
    # Uniform arrivals put exactly rate x window messages in the window (one more or less at its ends).
    uniform = run_ws_open(ws_open(asgi, rate=200.0, duration_s=1.0, arrival="uniform", connections=3))
    assert abs(uniform.scheduled - 200) <= 1 and uniform.ok == uniform.scheduled
    assert uniform.errors == NO_ERRORS and uniform.dropped == 0
    assert_all_closed(asgi)


def test_the_open_model_splits_over_driver_processes_and_their_results_merge(asgi: int) -> None:
    load = ws_open(asgi, rate=300.0, connections=5, duration_s=1.5)
    parts = load.split(2)
    assert [part.connections for part in parts] == [3, 2]
    assert sum(part.rate for part in parts) == pytest.approx(load.rate)
    assert len({part.seed for part in parts}) == 2 and load.split(9) == load.split(5)
    result, _ = drive_in_subprocess(load, processes=2)
    assert result.processes == 2 and result.model == "open"
    assert result.intended_rate == pytest.approx(load.rate)
    expected = load.rate * load.duration_s
    assert abs(result.scheduled - expected) <= 4 * math.sqrt(expected), result.scheduled
    assert result.ok == result.scheduled and result.dropped == 0 and result.errors == NO_ERRORS
    assert result.stream is not None and result.stream.kind == "websocket"
    assert result.connections_peak == load.connections


FREEZE_S = 1.0


def freeze_later(group: int, after_s: float) -> threading.Thread:
    """SIGSTOP the process group ``group`` after ``after_s`` s and SIGCONT it FREEZE_S later, in a thread."""

    def freeze() -> None:
        time.sleep(after_s)
        os.killpg(group, signal.SIGSTOP)
        try:
            time.sleep(FREEZE_S)
        finally:
            os.killpg(group, signal.SIGCONT)

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    return thread


def test_a_stalled_server_shows_in_the_open_models_round_trips_not_the_closed_models() -> None:
    stall_ms = FREEZE_S * 1000
    with server_process(*uvicorn()) as (port, group):
        # The server is paused for FREEZE_S, a second into each 3 s window.
        frozen = freeze_later(group, after_s=1.5)
        opened = run_ws_open(ws_open(port, rate=200.0, connections=4, duration_s=3.0, arrival="uniform"))
        frozen.join()
        frozen = freeze_later(group, after_s=1.5)
        closed = run_ws(ws(port, connections=4, warmup_s=0.5, duration_s=3.0, timeout_s=5.0))
        frozen.join()
    # Open model: every message due in the stall waits for its end, timed from its intended send time,
    # so about a third of the window's messages carry part of the stall, and the p99 nearly all of it.
    # Dozens were in flight on each connection; their echoes came back in order.
    assert opened.errors == NO_ERRORS and opened.dropped == 0 and opened.ok == opened.scheduled
    trips = latency_summary(opened.histogram)
    assert trips is not None
    assert 0.8 * stall_ms <= trips.p99 <= stall_ms + 500, trips
    assert trips.p50 < 0.2 * stall_ms, trips
    # Closed model: each connection waited out the stall with one message and sent none meanwhile, so
    # four slow round trips among thousands; the p99 does not show the stall, only the maximum does.
    assert closed.errors == NO_ERRORS
    waited = latency_summary(closed.histogram)
    assert waited is not None and closed.messages > 400
    assert waited.max >= 0.8 * stall_ms, waited
    assert waited.p99 < 0.2 * stall_ms, waited


def test_a_wsgi_stack_answering_501_is_unsupported_in_the_open_model_too(wsgi: int) -> None:
    started = time.monotonic()
    windows: list[str] = []
    result = run_ws_open(ws_open(wsgi, rate=100.0, connections=20, duration_s=5.0), windows.append)
    assert result.stream is not None and result.stream.unsupported
    assert result.scheduled == result.dropped == result.ok == 0 and result.errors == NO_ERRORS
    assert result.duration_s == 0.0 and decode(result.histogram).get_total_count() == 0
    assert windows == ["start", "end"]
    assert time.monotonic() - started < 2
    assert_all_closed(wsgi)


# --- idle connections ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http", "ws"])
def test_a_thousand_idle_connections_stay_open(asgi: int, kind: HoldKind) -> None:
    open_when_held: list[int] = []
    result = hold_connections(
        HoldLoad(HOST, asgi, connections=1000, hold_s=2.0, kind=kind),
        lambda: open_when_held.append(sockets_to(asgi)),
    )
    assert open_when_held == [1000]
    assert result.connections_opened == result.connections_open_at_end == 1000
    assert result.connections_failed == result.connections_dropped == 0
    assert sum(result.errors.values()) == 0
    assert 2.0 <= result.held_s < 2.5
    # HTTP asks after 1.5 s of silence, to stay within keep-alive timeouts; WebSockets need no help.
    assert 1000 <= result.refreshes <= 2000 if kind == "http" else result.refreshes == 0
    assert_all_closed(asgi)


def test_the_hold_covers_the_time_from_its_announcement_to_its_release(asgi: int) -> None:
    """The idle driver announces the hold (``on_held``: the time, over a pipe that may wait on a busy
    machine) and its parent reads memory until it releases it: the hold must cover that span, else
    the parent finds its readings outside the hold (CI saw "read until 0.7 s into a hold of 0.7 s")."""
    announced: list[float] = []

    def slow_announcement() -> None:
        announced.append(time.monotonic())
        time.sleep(0.3)  # the pipe's write, delayed

    release_at: list[float] = []

    def released() -> bool:  # released as soon as the announcement is through
        release_at.append(time.monotonic())
        return True

    result = hold_connections(HoldLoad(HOST, asgi, connections=10, hold_s=5.0), slow_announcement, released)
    assert result.connections_open_at_end == 10
    assert result.held_s >= release_at[0] - announced[0] >= 0.3


def test_refreshes_keep_connections_open_past_the_servers_keep_alive() -> None:
    with serving(*uvicorn("--timeout-keep-alive", "1")) as port:
        kept = hold_connections(HoldLoad(HOST, port, connections=100, hold_s=2.0, refresh_s=0.4))
        left = hold_connections(HoldLoad(HOST, port, connections=100, hold_s=2.0, refresh_s=None))
    assert kept.connections_open_at_end == 100 and kept.refreshes >= 400
    # Without refreshes the server closes every idle connection after its 1 s, and the hold ends early.
    assert left.connections_opened == 100 and left.connections_open_at_end == 0
    assert left.errors["closed"] == 100 and left.held_s < 1.5


def test_a_sync_worker_closing_after_each_answer_holds_nothing(wsgi: int) -> None:
    result = hold_connections(HoldLoad(HOST, wsgi, connections=20, hold_s=1.0))
    assert result.connections_opened == 20 and result.connections_open_at_end == 0
    assert result.errors["closed"] == 20


# --- limits, safety, clean-up --------------------------------------------------------------------


def test_the_open_file_limit_is_raised_for_the_connections_and_restored(asgi: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        result = hold_connections(HoldLoad(HOST, asgi, connections=500, hold_s=0.1))
        assert result.connections_open_at_end == 500
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (256, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_too_many_connections_for_the_hard_limit_is_a_clear_error() -> None:
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))\n"
        "from harness.load.stream import open_file_limit\n"
        "with open_file_limit(10_000): pass\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == 1
    assert "FileLimitError: 10000 connections need 10064 open files" in child.stderr
    with open_file_limit(100):
        pass
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(FileLimitError), open_file_limit(hard):
            pass


def test_only_loopback_targets_are_driven() -> None:
    with pytest.raises(UnsafeTargetError):
        run_sse(SseLoad("192.0.2.1", 80, connections=1, events=1, interval_ms=0, warmup_s=0, duration_s=1))
    with pytest.raises(UnsafeTargetError):
        run_ws(WsLoad("192.0.2.1", 80, connections=1, message_bytes=1, warmup_s=0, duration_s=1))
    with pytest.raises(UnsafeTargetError):
        run_ws_open(WsOpenLoad("192.0.2.1", 80, 1.0, 1, message_bytes=1, warmup_s=0, duration_s=1))
    with pytest.raises(UnsafeTargetError):
        hold_connections(HoldLoad("192.0.2.1", 80, connections=1, hold_s=1))
    with pytest.raises(ValueError, match="events"):
        SseLoad(HOST, 80, connections=1, events=1001, interval_ms=0, warmup_s=0, duration_s=1)


def test_no_task_or_connection_outlives_a_drive(asgi: int) -> None:
    async def every_drive() -> list[set[asyncio.Task[Any]]]:
        leftovers = []
        current = asyncio.current_task()
        drives: list[Callable[[], Coroutine[Any, Any, object]]] = [
            lambda: drive_sse(sse(asgi, events=1000, interval_ms=5, duration_s=0.5)),
            lambda: drive_ws(ws(asgi, duration_s=0.5)),
            lambda: drive_ws_open(ws_open(asgi, rate=500.0, warmup_s=0.0, duration_s=0.5)),
            lambda: drive_hold(HoldLoad(HOST, asgi, connections=50, hold_s=0.3, kind="ws")),
            lambda: drive_hold(HoldLoad(HOST, asgi, connections=50, hold_s=0.3)),
        ]
        for drive in drives:
            await drive()
            leftovers.append({task for task in asyncio.all_tasks() if task is not current})
            assert sockets_to(asgi) == 0
        return leftovers

    assert asyncio.run(every_drive()) == [set(), set(), set(), set(), set()]
    assert_all_closed(asgi)
