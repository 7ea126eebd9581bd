"""Check a running target against the endpoint contract (``targets/CONTRACT.md``).

Requests go only to the given base URL, over plain HTTP/1.1 with the standard
library's ``http.client`` (one connection per request), so the raw status line and
headers are what the server sent. Nothing here raises for a misbehaving target: every
problem, a refused connection included, becomes a failed :class:`Check`.

Example::

    report = verify("http://127.0.0.1:8000")
    for check in report.failures:
        print(check.name, check.detail)
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

CONTRACT_VERSION = 1

MISSING_MS = "ms is required"
NOT_INTEGER_MS = "ms must be an integer"
OUT_OF_RANGE_MS = "ms must be between 0 and 10000"
UPSTREAM_DOWN_PREFIX = "upstream unavailable: "

#: Query strings with an invalid ``ms``, each with the exact reason the target must give.
BAD_MS_CASES: tuple[tuple[str, str], ...] = (
    ("", MISSING_MS),
    ("?ms=foo", NOT_INTEGER_MS),
    ("?ms=1.5", NOT_INTEGER_MS),
    ("?ms=", NOT_INTEGER_MS),
    ("?ms=-1", OUT_OF_RANGE_MS),
    ("?ms=10001", OUT_OF_RANGE_MS),
)

#: Timed endpoints must take at least this long (the requested ms) and less than the cap.
TIMED_MS = 50
TIMED_CAP_S = 5.0
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


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    elapsed_s: float


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

    def get(self, path: str) -> _Reply | str:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        started = time.perf_counter()
        try:
            connection.request("GET", self.prefix + path, headers={"Accept": "*/*"})
            response = connection.getresponse()
            body = response.read()
            elapsed_s = time.perf_counter() - started
            return _Reply(response.status, response.msg, body, elapsed_s)
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
) -> tuple[list[Check], _Reply | None]:
    """GET ``path``; one check for status, media type and body, one for the headers."""
    name = f"GET {path}"
    reply = client.get(path)
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


def verify(base_url: str, *, timeout_s: float = 10.0, check_date_changes: bool = True) -> VerificationReport:
    """Check a running target against contract v1; takes about 1.5 s.

    ``base_url`` is ``http://host:port`` (an optional path prefix is kept);
    ``timeout_s`` is the socket timeout of each request, in seconds. Every
    response (errors included) is also checked for ``Content-Type``,
    ``Content-Length`` (matching the body) or chunked encoding, a parseable
    ``Date`` and ``Server`` (check ``GET <path> headers``). The checks, in order:

    - ``GET /health``: 200, ``text/plain``, body exactly ``ok``.
    - ``GET /json``: 200, ``application/json``, ``{"message": "hello, world!"}``.
    - ``GET /io/sleep?ms=0`` and ``?ms=50``: 200, ``{"slept_ms": N}``; the
      ``ms=50`` answer takes 50 ms to 5 s (``... timing``).
    - ``GET /io/sleep?ms=20&ms=foo``: the first ``ms`` wins, ``{"slept_ms": 20}``.
    - ``GET /io/upstream?ms=0`` and ``?ms=50``: 200, ``{"delayed_ms": N}``
      (needs the target's upstream running); ``ms=50`` takes 50 ms to 5 s.
    - For both I/O endpoints, each of BAD_MS_CASES (``ms`` missing, ``foo``,
      ``1.5``, empty, ``-1``, ``10001``): 400 ``{"error": <exact reason>}``.
    - ``GET /gwbench-no-such-path``: 404 ``{"error": "not found"}``.
    - ``Date header advances`` (unless ``check_date_changes`` is False): two
      ``GET /health`` 1.1 s apart carry different ``Date`` values.

    Raises ValueError only when ``base_url`` is not an ``http://`` URL; a target
    that is down, slow or wrong yields failed checks instead.
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

    checks += _check_json(client, NOT_FOUND_PATH, 404, {"error": "not found"})[0]

    if check_date_changes:
        checks.append(_check_date_changes(client))
    return VerificationReport(base_url, tuple(checks))


def verify_upstream_down(base_url: str, *, timeout_s: float = 10.0) -> VerificationReport:
    """Check the 502 path of a target whose upstream is unreachable.

    Launch the target with ``GWBENCH_UPSTREAM_URL`` pointing at a closed port,
    then call this. ``GET /io/upstream?ms=10`` must answer within ``timeout_s``
    seconds with 502, ``application/json`` and ``{"error": "upstream unavailable:
    <reason>"}`` (any non-empty reason), plus the four contract headers.

    Raises ValueError only when ``base_url`` is not an ``http://`` URL.
    """
    client = _Client(base_url, timeout_s)

    def is_upstream_error(reply: _Reply) -> bool:
        if reply.elapsed_s >= timeout_s:
            return False
        body = _json_body(reply)
        if not isinstance(body, dict) or set(body) != {"error"}:
            return False
        message = body["error"]
        return (
            isinstance(message, str)
            and message.startswith(UPSTREAM_DOWN_PREFIX)
            and bool(message[len(UPSTREAM_DOWN_PREFIX) :].strip())
        )

    checks, _ = _check_exchange(
        client,
        "/io/upstream?ms=10",
        status=502,
        media_type="application/json",
        body_ok=is_upstream_error,
        expected=f'502 application/json {{"error": "{UPSTREAM_DOWN_PREFIX}<reason>"}} within {timeout_s:g} s',
    )
    return VerificationReport(base_url, tuple(checks))
