"""verify() and the 502 checks: the contract's endpoints in order, and its constants.

The streaming endpoints are checked in ``streams``, the workload endpoints of contract
v3 in ``workloads``; both send through ``exchange``.
"""

from __future__ import annotations

import time
from typing import Protocol

from harness.model import Interface
from harness.verify.exchange import (
    Check,
    Client,
    Reply,
    VerificationReport,
    check_exchange,
    check_json,
    check_timing,
    json_body,
)
from harness.verify.streams import check_streams, check_websocket
from harness.verify.workloads import check_cpu, check_fanout, check_validate

CONTRACT_VERSION = 3

MISSING_MS = "ms is required"
NOT_INTEGER_MS = "ms must be an integer"
OUT_OF_RANGE_MS = "ms must be between 0 and 10000"
UPSTREAM_DOWN_PREFIX = "upstream unavailable: "
DATABASE_DOWN_PREFIX = "database unavailable: "

#: Query strings with an invalid ``ms``, each with the exact reason the target must give.
BAD_MS_CASES: tuple[tuple[str, str], ...] = (
    ("", MISSING_MS),
    ("?ms=foo", NOT_INTEGER_MS),
    ("?ms=1.5", NOT_INTEGER_MS),
    ("?ms=", NOT_INTEGER_MS),
    ("?ms=-1", OUT_OF_RANGE_MS),
    ("?ms=10001", OUT_OF_RANGE_MS),
)

#: Timed endpoints must take at least this long (the requested ms) and less than TIMED_CAP_S.
TIMED_MS = 50
#: A target whose database is down must answer its 502 within this many seconds.
DATABASE_DOWN_WITHIN_S = 5.0
#: Gap between the two requests of the Date check; Date has a one-second resolution.
DATE_GAP_S = 1.1
NOT_FOUND_PATH = "/gwbench-no-such-path"


class QueryCounter(Protocol):
    """What verify needs of the database (``harness.launch.postgres.Postgres`` is one)."""

    def reset_statistics(self) -> None:
        """Forget the queries counted so far."""

    def calls(self) -> int:
        """How many ``pg_sleep`` queries the server ran since the last reset."""


def _check_date_changes(client: Client) -> Check:
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


def _check_database(client: Client, postgres: QueryCounter) -> list[Check]:
    """/db/query answers, waits, rejects bad ``ms``; PostgreSQL ran one query per 200."""
    checks: list[Check] = []
    try:
        postgres.reset_statistics()
    except Exception as exc:  # the database, not the target, failed: report it, go on
        return [Check("database query count", False, f"could not reset the statistics: {exc}")]
    checks += check_json(client, "/db/query?ms=0", 200, {"db_ms": 0, "value": 1})[0]
    timed_path = f"/db/query?ms={TIMED_MS}"
    timed, reply = check_json(client, timed_path, 200, {"db_ms": TIMED_MS, "value": 1})
    checks += timed
    checks.append(check_timing(f"GET {timed_path}", reply, TIMED_MS))
    for query, reason in BAD_MS_CASES:
        checks += check_json(client, "/db/query" + query, 400, {"error": reason})[0]
    expected = "expected PostgreSQL to count 2 pg_sleep queries (ms=0 and ms=50; none for a 400)"
    try:
        counted = postgres.calls()
    except Exception as exc:
        return [*checks, Check("database query count", False, f"{expected}; could not count: {exc}")]
    checks.append(Check("database query count", counted == 2, f"{expected}; counted {counted}"))
    return checks


def verify(
    base_url: str,
    *,
    timeout_s: float = 10.0,
    check_date_changes: bool = True,
    postgres: QueryCounter | None = None,
    websocket: bool | None = None,
    interface: Interface | None = None,
) -> VerificationReport:
    """Check a running target against contract v3; takes about 3 s.

    ``base_url`` is ``http://host:port`` (an optional path prefix is kept);
    ``timeout_s`` is the socket timeout of each request, in seconds. Every
    response (errors included) is also checked for ``Content-Type``,
    ``Content-Length`` (matching the body) or chunked encoding, a parseable
    ``Date`` and ``Server`` (check ``GET <path> headers``); every ``... timing``
    lower bound allows 1 ms of timer slack (``exchange.TIMER_SLACK_MS``). The checks,
    in order:

    - ``GET /health``: 200, ``text/plain``, body exactly ``ok``.
    - ``GET /json``: 200, ``application/json``, ``{"message": "hello, world!"}``.
    - ``GET /io/sleep?ms=0`` and ``?ms=50``: 200, ``{"slept_ms": N}``; the
      ``ms=50`` answer takes 50 ms to 5 s (``... timing``).
    - ``GET /io/upstream?ms=0`` and ``?ms=50``: 200, ``{"delayed_ms": N}``
      (needs the target's upstream running); ``ms=50`` takes 50 ms to 5 s.
    - For both I/O endpoints, each of BAD_MS_CASES (``ms`` missing, ``foo``,
      ``1.5``, empty, ``-1``, ``10001``): 400 ``{"error": <exact reason>}``.
    - ``GET /io/sleep?ms=20&ms=foo``: the first ``ms`` wins, ``{"slept_ms": 20}``.
    - ``GET /io/fanout?ms=0&n=1``, ``?ms=60&n=5`` and ``?ms=60&n=5&mode=threads``:
      200 ``{"calls": K, "delayed_ms": [N, ...], "mode": M}``. ``M`` is what
      ``interface`` implies (``wsgi``: ``sequential``, then ``threads``; ``asgi``:
      ``gather`` both times), or with None (the default, or ``native``) any of them,
      as long as the two answers agree. ``... timing``: ``sequential`` takes at least
      the 300 ms of the five calls; ``threads`` and ``gather`` at least 60 ms and less
      than 150 ms. ``?ms=0&n=2&n=x&mode=default&mode=x``: first values win.
      BAD_FANOUT_CASES (``ms``, ``n``, ``mode`` wrong, checked in that order): 400
      with the exact reason.
    - ``POST /validate``: three valid events at the edges of the rules, and 1000
      events: 200 ``{"valid": K}``. One batch with a wrong value for every rule
      (INVALID_FIELDS), items that are not objects and an empty event; bodies that
      are an array or a number, without ``events``, with ``events`` null, an object,
      empty or 1001 long: 422 ``{"errors": [{"loc": [...], "msg": "..."}, ...]}``
      naming exactly the bad locations (check ``... (label)``). Bodies that are not
      JSON (empty, cut short, trailing text, not UTF-8): 400 ``{"error": "invalid
      JSON"}``.
    - ``GET /cpu?n=1`` and ``?n=1000``: 200 ``{"n": N, "digest": <hex>}``, the exact
      digest; BAD_CPU_CASES: 400 with the exact reason.
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
    client = Client(base_url, timeout_s)
    checks: list[Check] = []

    health, _ = check_exchange(
        client,
        "/health",
        status=200,
        media_type="text/plain",
        body_ok=lambda reply: reply.body == b"ok",
        expected="200 text/plain 'ok'",
    )
    checks += health
    checks += check_json(client, "/json", 200, {"message": "hello, world!"})[0]

    for endpoint, key in (("/io/sleep", "slept_ms"), ("/io/upstream", "delayed_ms")):
        checks += check_json(client, f"{endpoint}?ms=0", 200, {key: 0})[0]
        timed_path = f"{endpoint}?ms={TIMED_MS}"
        timed, reply = check_json(client, timed_path, 200, {key: TIMED_MS})
        checks += timed
        checks.append(check_timing(f"GET {timed_path}", reply, TIMED_MS))
        for query, reason in BAD_MS_CASES:
            checks += check_json(client, endpoint + query, 400, {"error": reason})[0]
    checks += check_json(client, "/io/sleep?ms=20&ms=foo", 200, {"slept_ms": 20})[0]

    if postgres is not None:
        checks += _check_database(client, postgres)
    checks += check_fanout(client, interface)
    checks += check_validate(client)
    checks += check_cpu(client)
    checks += check_streams(client)
    checks += check_websocket(client, websocket)

    checks += check_json(client, NOT_FOUND_PATH, 404, {"error": "not found"})[0]
    checks += check_json(client, "/health/", 404, {"error": "not found"})[0]

    if check_date_changes:
        checks.append(_check_date_changes(client))
    return VerificationReport(base_url, tuple(checks))


def _is_error(reply: Reply, prefix: str, within_s: float) -> bool:
    """The body is ``{"error": "<prefix><non-empty reason>"}`` and came within ``within_s``."""
    if reply.elapsed_s >= within_s:
        return False
    body = json_body(reply)
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    message = body["error"]
    return isinstance(message, str) and message.startswith(prefix) and bool(message[len(prefix) :].strip())


def verify_upstream_down(base_url: str, *, timeout_s: float = 10.0) -> VerificationReport:
    """Check the 502 path of a target whose upstream is unreachable.

    Launch the target with ``GWBENCH_UPSTREAM_URL`` pointing at a closed port,
    then call this. ``GET /io/upstream?ms=10``, ``GET /io/fanout?ms=10&n=3`` and
    ``GET /io/fanout?ms=10&n=3&mode=threads`` must each answer within ``timeout_s``
    seconds with 502, ``application/json`` and ``{"error": "upstream unavailable:
    <reason>"}`` (any non-empty reason), plus the four contract headers.

    Raises ValueError only when ``base_url`` is not an ``http://`` URL.
    """
    client = Client(base_url, timeout_s)
    checks: list[Check] = []
    expected = f'502 application/json {{"error": "{UPSTREAM_DOWN_PREFIX}<reason>"}} within {timeout_s:g} s'
    for path in ("/io/upstream?ms=10", "/io/fanout?ms=10&n=3", "/io/fanout?ms=10&n=3&mode=threads"):
        checks += check_exchange(
            client,
            path,
            status=502,
            media_type="application/json",
            body_ok=lambda reply: _is_error(reply, UPSTREAM_DOWN_PREFIX, timeout_s),
            expected=expected,
        )[0]
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
    client = Client(base_url, timeout_s)
    checks, _ = check_exchange(
        client,
        "/db/query?ms=10",
        status=502,
        media_type="application/json",
        body_ok=lambda reply: _is_error(reply, DATABASE_DOWN_PREFIX, within_s),
        expected=f'502 application/json {{"error": "{DATABASE_DOWN_PREFIX}<reason>"}} within {within_s:g} s',
    )
    return VerificationReport(base_url, tuple(checks))
