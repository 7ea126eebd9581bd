"""Checks of the streaming endpoints of the contract: /stream/sse and WS /ws/echo.

The WebSocket checks use the ``websockets`` library's sync client.
"""

from __future__ import annotations

import itertools
import json

from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import connect as websocket_connect

from harness.verify.exchange import Check, Client, Reply, check_exchange, check_json

WEBSOCKET_NOT_SUPPORTED = {"error": "websocket not supported"}

#: Query strings of /stream/sse with an invalid parameter, each with the exact reason.
BAD_SSE_CASES: tuple[tuple[str, str], ...] = (
    ("?interval_ms=0", "events is required"),
    ("?events=foo&interval_ms=0", "events must be an integer"),
    ("?events=0&interval_ms=0", "events must be between 1 and 1000"),
    ("?events=1001&interval_ms=0", "events must be between 1 and 1000"),
    ("?events=foo", "events must be an integer"),
    ("?events=1", "interval_ms is required"),
    ("?events=1&interval_ms=1.5", "interval_ms must be an integer"),
    ("?events=1&interval_ms=-1", "interval_ms must be between 0 and 10000"),
    ("?events=1&interval_ms=10001", "interval_ms must be between 0 and 10000"),
)

#: The paced SSE stream: its first event must come sooner than one interval, and every
#: later one at least SSE_MIN_GAP of an interval after the one before.
SSE_EVENTS = 3
SSE_INTERVAL_MS = 200
SSE_MIN_GAP = 0.8
#: Messages sent to /ws/echo, each to come back unchanged: ASCII, non-ASCII (incl. outside
#: the BMP), one character, and one longer than a small frame. Not the empty message: the
#: contract leaves it out (Daphne 4.2 never sends one).
WS_MESSAGES: tuple[str, ...] = (
    "hello",
    "snow \u2603, rocket \U0001f680, \u00fcn\u00efc\u00f6d\u00e9",
    "a",
    "x" * 10_000,
)


def _sse_body(events: int) -> bytes:
    return b"".join(f'data: {{"i": {i}}}\n\n'.encode() for i in range(events))


def _check_sse(client: Client, events: int, interval_ms: int) -> tuple[list[Check], Reply | None]:
    """One stream: status, media type, ``Cache-Control: no-cache``, the exact events; headers."""
    body = _sse_body(events)

    def body_ok(reply: Reply) -> bool:
        headers = reply.headers
        return (
            headers.get("Cache-Control", "").strip().lower() == "no-cache"
            and "chunked" in headers.get("Transfer-Encoding", "").lower()
            and reply.body == body
        )

    shown = body if len(body) <= 60 else body[:60] + b"..."
    return check_exchange(
        client,
        f"/stream/sse?events={events}&interval_ms={interval_ms}",
        status=200,
        media_type="text/event-stream",
        body_ok=body_ok,
        expected=f"200 text/event-stream, Cache-Control: no-cache, chunked, {shown!r}",
        stream=True,
    )


def _check_sse_pacing(reply: Reply | None, events: int, interval_ms: int) -> Check:
    """The first event comes before one interval has passed; the others interval_ms apart."""
    name = f"GET /stream/sse?events={events}&interval_ms={interval_ms} timing"
    minimum_gap_ms = SSE_MIN_GAP * interval_ms
    expected = f"expected the first event within {interval_ms} ms, then gaps >= {minimum_gap_ms:g} ms"
    if reply is None or len(reply.line_ends_s) != events:
        return Check(name, False, f"{expected}; got {0 if reply is None else len(reply.line_ends_s)} events")
    arrivals_ms = [t * 1000 for t in reply.line_ends_s]
    gaps_ms = [later - earlier for earlier, later in itertools.pairwise(arrivals_ms)]
    passed = arrivals_ms[0] < interval_ms and all(gap >= minimum_gap_ms for gap in gaps_ms)
    shown = ", ".join(f"{t:.0f}" for t in arrivals_ms)
    return Check(name, passed, f"{expected}; events arrived at {shown} ms")


def check_streams(client: Client) -> list[Check]:
    checks, paced = _check_sse(client, SSE_EVENTS, SSE_INTERVAL_MS)
    checks.append(_check_sse_pacing(paced, SSE_EVENTS, SSE_INTERVAL_MS))
    checks += _check_sse(client, 100, 0)[0]
    for query, reason in BAD_SSE_CASES:
        checks += check_json(client, "/stream/sse" + query, 400, {"error": reason})[0]
    return checks


def check_websocket(client: Client, supported: bool | None) -> list[Check]:
    """Echo of WS_MESSAGES, or a 501 to the handshake and to a plain GET.

    ``supported`` None accepts either, whichever the target shows.
    """
    name = "WS /ws/echo"
    refused = f"501 application/json {json.dumps(WEBSOCKET_NOT_SUPPORTED)}"
    try:
        with websocket_connect(
            client.websocket_url,
            open_timeout=client.timeout_s,
            close_timeout=client.timeout_s,
            proxy=None,
            compression=None,
        ) as ws:
            if supported is False:
                return [Check(name, False, f"expected {refused} (declared without WebSocket); it upgraded")]
            echoed: list[str | bytes] = []
            for message in WS_MESSAGES:
                ws.send(message)
                echoed.append(ws.recv(timeout=client.timeout_s))
    except InvalidStatus as exc:
        response = exc.response
        if supported:
            got = f"{response.status_code} {response.body!r}"
            return [Check(name, False, f"expected 101 and an echo; got {got}")]
        try:
            body = json.loads(response.body or b"")
        except ValueError:
            body = None
        passed = response.status_code == 501 and body == WEBSOCKET_NOT_SUPPORTED
        handshake = Check(name, passed, f"expected {refused}; got {response.status_code} {response.body!r}")
        return [handshake, *check_json(client, "/ws/echo", 501, WEBSOCKET_NOT_SUPPORTED)[0]]
    except (OSError, WebSocketException) as exc:
        return [Check(name, False, f"expected an echo or {refused}; {type(exc).__name__}: {exc}")]
    passed = echoed == list(WS_MESSAGES)
    shown = [m if len(m) < 40 else f"{m[:20]!r}... ({len(m)})" for m in echoed]
    return [Check(name, passed, f"expected {len(WS_MESSAGES)} text messages echoed unchanged; got {shown}")]
