"""Check a running target against the endpoint contract (``targets/CONTRACT.md``).

Requests go only to the given base URL, over plain HTTP/1.1 with the standard
library's ``http.client`` (one connection per request), so the raw status line and
headers are what the server sent; the WebSocket checks use the ``websockets``
library's sync client. Nothing here raises for a misbehaving target: every problem,
a refused connection included, becomes a failed :class:`Check`.

Example::

    with Postgres(log_path=...) as pg:
        ...  # start the target with GWBENCH_DATABASE_URL=pg.url
        report = verify("http://127.0.0.1:8000", postgres=pg, websocket=True)
    for check in report.failures:
        print(check.name, check.detail)
"""

from __future__ import annotations

import http.client
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urlsplit

from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import connect as websocket_connect

CONTRACT_VERSION = 2

MISSING_MS = "ms is required"
NOT_INTEGER_MS = "ms must be an integer"
OUT_OF_RANGE_MS = "ms must be between 0 and 10000"
UPSTREAM_DOWN_PREFIX = "upstream unavailable: "
DATABASE_DOWN_PREFIX = "database unavailable: "
WEBSOCKET_NOT_SUPPORTED = {"error": "websocket not supported"}

#: Query strings with an invalid ``ms``, each with the exact reason the target must give.
BAD_MS_CASES: tuple[tuple[str, str], ...] = (
    ("", MISSING_MS),
    ("?ms=foo", NOT_INTEGER_MS),
    ("?ms=1.5", NOT_INTEGER_MS),
    ("?ms=", NOT_INTEGER_MS),
    ("?ms=-1", OUT_OF_RANGE_MS),
    ("?ms=10001", OUT_OF_RANGE_MS),
)

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

#: Timed endpoints must take at least this long (the requested ms) and less than the cap.
TIMED_MS = 50
TIMED_CAP_S = 5.0
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
#: A target whose database is down must answer its 502 within this many seconds.
DATABASE_DOWN_WITHIN_S = 5.0
#: Gap between the two requests of the Date check; Date has a one-second resolution.
DATE_GAP_S = 1.1
NOT_FOUND_PATH = "/gwbench-no-such-path"


@dataclass(frozen=True)
class Check:
    """One verified property. ``detail`` says what was expected and what came back."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class VerificationReport:
    """Every check run against ``base_url``, in the order they ran."""

    base_url: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """True when there is at least one check and every check passed."""
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that failed, in order."""
        return tuple(check for check in self.checks if not check.passed)


class QueryCounter(Protocol):
    """What verify needs of the database (``harness.launch.postgres.Postgres`` is one)."""

    def reset_statistics(self) -> None:
        """Forget the queries counted so far."""

    def calls(self) -> int:
        """How many ``pg_sleep`` queries the server ran since the last reset."""


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    elapsed_s: float
    #: For a streamed answer: when each blank line (the end of an SSE event) arrived,
    #: in seconds since the request was sent.
    line_ends_s: tuple[float, ...] = ()


class _Client:
    """GETs paths under one base URL; a failure comes back as a string, never raised."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"base_url must be http://host[:port][/prefix], got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s

    @property
    def websocket_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.prefix}/ws/echo"

    def get(self, path: str, *, stream: bool = False) -> _Reply | str:
        """GET ``path``; with ``stream``, read line by line and time each blank line."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        started = time.perf_counter()
        try:
            connection.request("GET", self.prefix + path, headers={"Accept": "*/*"})
            response = connection.getresponse()
            if not stream:
                body = response.read()
                return _Reply(response.status, response.msg, body, time.perf_counter() - started)
            lines: list[bytes] = []
            line_ends_s: list[float] = []
            while line := response.readline():
                lines.append(line)
                if line == b"\n":
                    line_ends_s.append(time.perf_counter() - started)
            elapsed_s = time.perf_counter() - started
            return _Reply(response.status, response.msg, b"".join(lines), elapsed_s, tuple(line_ends_s))
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        except (OSError, http.client.HTTPException) as exc:
            return f"request failed: {type(exc).__name__}: {exc}"
        finally:
            connection.close()


def _describe(reply: _Reply) -> str:
    content_type = reply.headers.get("Content-Type", "(none)")
    body = reply.body[:200].decode("utf-8", "replace")
    return f"{reply.status} {content_type} {body!r}"


def _media_type(reply: _Reply) -> str:
    return reply.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


_NOT_JSON = object()


def _json_body(reply: _Reply) -> object:
    try:
        return json.loads(reply.body)
    except ValueError:
        return _NOT_JSON


def _check_exchange(
    client: _Client,
    path: str,
    *,
    status: int,
    media_type: str,
    body_ok: Callable[[_Reply], bool],
    expected: str,
    stream: bool = False,
) -> tuple[list[Check], _Reply | None]:
    """GET ``path``; one check for status, media type and body, one for the headers."""
    name = f"GET {path}"
    reply = client.get(path, stream=stream)
    if isinstance(reply, str):
        return [Check(name, False, f"expected {expected}; {reply}")], None
    passed = reply.status == status and _media_type(reply) == media_type and body_ok(reply)
    checks = [Check(name, passed, f"expected {expected}; got {_describe(reply)}")]
    checks.append(_check_headers(name, reply))
    return checks, reply


def _check_headers(name: str, reply: _Reply) -> Check:
    """Content-Type, Content-Length (or chunked), a parseable Date and Server are present."""
    headers = reply.headers
    problems = [header for header in ("Content-Type", "Date", "Server") if not headers.get(header)]
    chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
    length = headers.get("Content-Length")
    if length is None and not chunked:
        problems.append("Content-Length or Transfer-Encoding: chunked")
    elif length is not None and length.strip() != str(len(reply.body)):
        problems.append(f"Content-Length {length} matching the {len(reply.body)}-byte body")
    date = headers.get("Date")
    if date:
        try:
            parsedate_to_datetime(date)
        except (TypeError, ValueError):
            problems.append(f"a valid HTTP Date (got {date!r})")
    seen = ", ".join(f"{key}: {value}" for key, value in headers.items())
    if problems:
        detail = f"missing or wrong: {', '.join(problems)}; headers were: {seen}"
    else:
        detail = f"Content-Type, Content-Length or chunked, Date and Server present; headers were: {seen}"
    return Check(f"{name} headers", not problems, detail)


def _json_equals(expected: object) -> Callable[[_Reply], bool]:
    return lambda reply: _json_body(reply) == expected


def _check_json(
    client: _Client, path: str, status: int, expected: object
) -> tuple[list[Check], _Reply | None]:
    return _check_exchange(
        client,
        path,
        status=status,
        media_type="application/json",
        body_ok=_json_equals(expected),
        expected=f"{status} application/json {json.dumps(expected)}",
    )


def _check_timing(path: str, reply: _Reply | None, minimum_ms: int) -> Check:
    """The answer took at least ``minimum_ms`` and less than TIMED_CAP_S (client side)."""
    name = f"GET {path} timing"
    expected = f"expected {minimum_ms} ms <= elapsed < {TIMED_CAP_S:g} s"
    if reply is None:
        return Check(name, False, f"{expected}; no answer")
    elapsed_ms = reply.elapsed_s * 1000
    passed = minimum_ms <= elapsed_ms < TIMED_CAP_S * 1000
    return Check(name, passed, f"{expected}; took {elapsed_ms:.1f} ms")


def _check_date_changes(client: _Client) -> Check:
    """Two GET /health about DATE_GAP_S apart carry different Date headers."""
    name = "Date header advances"
    expected = f"expected two Date headers {DATE_GAP_S:g} s apart to differ"
    first = client.get("/health")
    time.sleep(DATE_GAP_S)
    second = client.get("/health")
    if isinstance(first, str) or isinstance(second, str):
        reason = first if isinstance(first, str) else second
        return Check(name, False, f"{expected}; {reason}")
    dates = (first.headers.get("Date"), second.headers.get("Date"))
    passed = None not in dates and dates[0] != dates[1]
    return Check(name, passed, f"{expected}; got {dates[0]!r} then {dates[1]!r}")


def _check_database(client: _Client, postgres: QueryCounter) -> list[Check]:
    """/db/query answers, waits, rejects bad ``ms``; PostgreSQL ran one query per 200."""
    checks: list[Check] = []
    try:
        postgres.reset_statistics()
    except Exception as exc:  # the database, not the target, failed: report it, go on
        return [Check("database query count", False, f"could not reset the statistics: {exc}")]
    checks += _check_json(client, "/db/query?ms=0", 200, {"db_ms": 0, "value": 1})[0]
    timed_path = f"/db/query?ms={TIMED_MS}"
    timed, reply = _check_json(client, timed_path, 200, {"db_ms": TIMED_MS, "value": 1})
    checks += timed
    checks.append(_check_timing(timed_path, reply, TIMED_MS))
    for query, reason in BAD_MS_CASES:
        checks += _check_json(client, "/db/query" + query, 400, {"error": reason})[0]
    expected = "expected PostgreSQL to count 2 pg_sleep queries (ms=0 and ms=50; none for a 400)"
    try:
        counted = postgres.calls()
    except Exception as exc:
        return [*checks, Check("database query count", False, f"{expected}; could not count: {exc}")]
    checks.append(Check("database query count", counted == 2, f"{expected}; counted {counted}"))
    return checks


def _sse_body(events: int) -> bytes:
    return b"".join(f'data: {{"i": {i}}}\n\n'.encode() for i in range(events))


def _check_sse(client: _Client, events: int, interval_ms: int) -> tuple[list[Check], _Reply | None]:
    """One stream: status, media type, ``Cache-Control: no-cache``, the exact events; headers."""
    body = _sse_body(events)

    def body_ok(reply: _Reply) -> bool:
        headers = reply.headers
        return (
            headers.get("Cache-Control", "").strip().lower() == "no-cache"
            and "chunked" in headers.get("Transfer-Encoding", "").lower()
            and reply.body == body
        )

    shown = body if len(body) <= 60 else body[:60] + b"..."
    return _check_exchange(
        client,
        f"/stream/sse?events={events}&interval_ms={interval_ms}",
        status=200,
        media_type="text/event-stream",
        body_ok=body_ok,
        expected=f"200 text/event-stream, Cache-Control: no-cache, chunked, {shown!r}",
        stream=True,
    )


def _check_sse_pacing(reply: _Reply | None, events: int, interval_ms: int) -> Check:
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


def _check_streams(client: _Client) -> list[Check]:
    checks, paced = _check_sse(client, SSE_EVENTS, SSE_INTERVAL_MS)
    checks.append(_check_sse_pacing(paced, SSE_EVENTS, SSE_INTERVAL_MS))
    checks += _check_sse(client, 100, 0)[0]
    for query, reason in BAD_SSE_CASES:
        checks += _check_json(client, "/stream/sse" + query, 400, {"error": reason})[0]
    return checks


def _check_websocket(client: _Client, supported: bool | None) -> list[Check]:
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
        return [handshake, *_check_json(client, "/ws/echo", 501, WEBSOCKET_NOT_SUPPORTED)[0]]
    except (OSError, WebSocketException) as exc:
        return [Check(name, False, f"expected an echo or {refused}; {type(exc).__name__}: {exc}")]
    passed = echoed == list(WS_MESSAGES)
    shown = [m if len(m) < 40 else f"{m[:20]!r}... ({len(m)})" for m in echoed]
    return [Check(name, passed, f"expected {len(WS_MESSAGES)} text messages echoed unchanged; got {shown}")]


def verify(
    base_url: str,
    *,
    timeout_s: float = 10.0,
    check_date_changes: bool = True,
    postgres: QueryCounter | None = None,
    websocket: bool | None = None,
) -> VerificationReport:
    """Check a running target against contract v2; takes about 2.5 s.

    ``base_url`` is ``http://host:port`` (an optional path prefix is kept);
    ``timeout_s`` is the socket timeout of each request, in seconds. Every
    response (errors included) is also checked for ``Content-Type``,
    ``Content-Length`` (matching the body) or chunked encoding, a parseable
    ``Date`` and ``Server`` (check ``GET <path> headers``). The checks, in order:

    - ``GET /health``: 200, ``text/plain``, body exactly ``ok``.
    - ``GET /json``: 200, ``application/json``, ``{"message": "hello, world!"}``.
    - ``GET /io/sleep?ms=0`` and ``?ms=50``: 200, ``{"slept_ms": N}``; the
      ``ms=50`` answer takes 50 ms to 5 s (``... timing``).
    - ``GET /io/upstream?ms=0`` and ``?ms=50``: 200, ``{"delayed_ms": N}``
      (needs the target's upstream running); ``ms=50`` takes 50 ms to 5 s.
    - For both I/O endpoints, each of BAD_MS_CASES (``ms`` missing, ``foo``,
      ``1.5``, empty, ``-1``, ``10001``): 400 ``{"error": <exact reason>}``.
    - ``GET /io/sleep?ms=20&ms=foo``: the first ``ms`` wins, ``{"slept_ms": 20}``.
    - Only with ``postgres`` (the database the target was started with, e.g. a
      ``harness.launch.postgres.Postgres``; its statistics are reset):
      ``GET /db/query?ms=0`` and ``?ms=50``: 200 ``{"db_ms": N, "value": 1}``,
      ``ms=50`` takes 50 ms to 5 s; BAD_MS_CASES answer 400; then ``database
      query count``: PostgreSQL counted exactly 2 ``pg_sleep`` queries.
    - ``GET /stream/sse?events=3&interval_ms=200``: 200, ``text/event-stream``,
      ``Cache-Control: no-cache``, chunked, exactly ``data: {"i": 0}\\n\\n`` ... ``{"i": 2}``;
      ``... timing``: the first event within 200 ms, then gaps >= 160 ms.
      ``?events=100&interval_ms=0``: the 100 events. BAD_SSE_CASES: 400 with the
      exact reason.
    - ``WS /ws/echo``: with ``websocket`` True, the handshake succeeds and each of
      WS_MESSAGES comes back unchanged as text; with False, the handshake is
      refused with 501 ``{"error": "websocket not supported"}``, and so is a plain
      ``GET /ws/echo``; with None (the default), whichever of the two the target does.
    - ``GET /gwbench-no-such-path`` and ``GET /health/``: 404 ``{"error": "not found"}``
      (paths match exactly: no trailing-slash redirect).
    - ``Date header advances`` (unless ``check_date_changes`` is False): two
      ``GET /health`` 1.1 s apart carry different ``Date`` values.

    Raises ValueError only when ``base_url`` is not an ``http://`` URL; a target
    that is down, slow or wrong yields failed checks instead, and so does a
    ``postgres`` that cannot be queried.
    """
    client = _Client(base_url, timeout_s)
    checks: list[Check] = []

    health, _ = _check_exchange(
        client,
        "/health",
        status=200,
        media_type="text/plain",
        body_ok=lambda reply: reply.body == b"ok",
        expected="200 text/plain 'ok'",
    )
    checks += health
    checks += _check_json(client, "/json", 200, {"message": "hello, world!"})[0]

    for endpoint, key in (("/io/sleep", "slept_ms"), ("/io/upstream", "delayed_ms")):
        checks += _check_json(client, f"{endpoint}?ms=0", 200, {key: 0})[0]
        timed_path = f"{endpoint}?ms={TIMED_MS}"
        timed, reply = _check_json(client, timed_path, 200, {key: TIMED_MS})
        checks += timed
        checks.append(_check_timing(timed_path, reply, TIMED_MS))
        for query, reason in BAD_MS_CASES:
            checks += _check_json(client, endpoint + query, 400, {"error": reason})[0]
    checks += _check_json(client, "/io/sleep?ms=20&ms=foo", 200, {"slept_ms": 20})[0]

    if postgres is not None:
        checks += _check_database(client, postgres)
    checks += _check_streams(client)
    checks += _check_websocket(client, websocket)

    checks += _check_json(client, NOT_FOUND_PATH, 404, {"error": "not found"})[0]
    checks += _check_json(client, "/health/", 404, {"error": "not found"})[0]

    if check_date_changes:
        checks.append(_check_date_changes(client))
    return VerificationReport(base_url, tuple(checks))


def _is_error(reply: _Reply, prefix: str, within_s: float) -> bool:
    """The body is ``{"error": "<prefix><non-empty reason>"}`` and came within ``within_s``."""
    if reply.elapsed_s >= within_s:
        return False
    body = _json_body(reply)
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    message = body["error"]
    return isinstance(message, str) and message.startswith(prefix) and bool(message[len(prefix) :].strip())


def verify_upstream_down(base_url: str, *, timeout_s: float = 10.0) -> VerificationReport:
    """Check the 502 path of a target whose upstream is unreachable.

    Launch the target with ``GWBENCH_UPSTREAM_URL`` pointing at a closed port,
    then call this. ``GET /io/upstream?ms=10`` must answer within ``timeout_s``
    seconds with 502, ``application/json`` and ``{"error": "upstream unavailable:
    <reason>"}`` (any non-empty reason), plus the four contract headers.

    Raises ValueError only when ``base_url`` is not an ``http://`` URL.
    """
    client = _Client(base_url, timeout_s)
    checks, _ = _check_exchange(
        client,
        "/io/upstream?ms=10",
        status=502,
        media_type="application/json",
        body_ok=lambda reply: _is_error(reply, UPSTREAM_DOWN_PREFIX, timeout_s),
        expected=f'502 application/json {{"error": "{UPSTREAM_DOWN_PREFIX}<reason>"}} within {timeout_s:g} s',
    )
    return VerificationReport(base_url, tuple(checks))


def verify_database_down(
    base_url: str, *, timeout_s: float = 10.0, within_s: float = DATABASE_DOWN_WITHIN_S
) -> VerificationReport:
    """Check the 502 path of a target whose database is unreachable.

    Launch the target with ``GWBENCH_DATABASE_URL`` pointing at a closed port,
    then call this. ``GET /db/query?ms=10`` must answer within ``within_s``
    seconds (the contract's 2 s connection wait, with room to spare) with 502,
    ``application/json`` and ``{"error": "database unavailable: <reason>"}`` (any
    non-empty reason), plus the four contract headers. ``timeout_s`` is the
    socket timeout.

    Raises ValueError only when ``base_url`` is not an ``http://`` URL.
    """
    client = _Client(base_url, timeout_s)
    checks, _ = _check_exchange(
        client,
        "/db/query?ms=10",
        status=502,
        media_type="application/json",
        body_ok=lambda reply: _is_error(reply, DATABASE_DOWN_PREFIX, within_s),
        expected=f'502 application/json {{"error": "{DATABASE_DOWN_PREFIX}<reason>"}} within {within_s:g} s',
    )
    return VerificationReport(base_url, tuple(checks))
