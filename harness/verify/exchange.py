"""One request to a target and the checks every answer gets: the pieces of verify.

Requests go over plain HTTP/1.1 with the standard library's ``http.client`` (one
connection per request), so the raw status line and headers are what the server sent.
A failure, a refused connection included, comes back as a string, never raised.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

#: Timed endpoints must answer in less than this many seconds.
TIMED_CAP_S = 5.0
#: How much sooner than asked a wait may end: libuv (under uvloop) counts a timer from the
#: loop's cached time in whole milliseconds, so asyncio.sleep(0.05) can end 49.x ms after
#: the call.
TIMER_SLACK_MS = 1.0


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
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    elapsed_s: float
    #: For a streamed answer: when each blank line (the end of an SSE event) arrived,
    #: in seconds since the request was sent.
    line_ends_s: tuple[float, ...] = ()


@dataclass(frozen=True)
class Request:
    """A request to send: ``GET path``, or ``POST path`` with a JSON ``body``.

    ``label`` tells apart requests to one path in check names: ``POST /validate (valid)``.
    """

    path: str
    method: str = "GET"
    body: bytes | None = None
    label: str = ""

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}" + (f" ({self.label})" if self.label else "")


class Client:
    """Sends requests to paths under one base URL; a failure comes back as a string."""

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

    def get(self, path: str, *, stream: bool = False) -> Reply | str:
        """GET ``path``; with ``stream``, read line by line and time each blank line."""
        return self.send(Request(path), stream=stream)

    def send(self, request: Request, *, stream: bool = False) -> Reply | str:
        """Send ``request`` (a body goes as ``application/json``); see :meth:`get`."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        headers = {"Accept": "*/*"}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            connection.request(request.method, self.prefix + request.path, body=request.body, headers=headers)
            response = connection.getresponse()
            if not stream:
                body = response.read()
                return Reply(response.status, response.msg, body, time.perf_counter() - started)
            lines: list[bytes] = []
            line_ends_s: list[float] = []
            while line := response.readline():
                lines.append(line)
                if line == b"\n":
                    line_ends_s.append(time.perf_counter() - started)
            elapsed_s = time.perf_counter() - started
            return Reply(response.status, response.msg, b"".join(lines), elapsed_s, tuple(line_ends_s))
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        except (OSError, http.client.HTTPException) as exc:
            return f"request failed: {type(exc).__name__}: {exc}"
        finally:
            connection.close()


def describe(reply: Reply) -> str:
    content_type = reply.headers.get("Content-Type", "(none)")
    body = reply.body[:200].decode("utf-8", "replace")
    return f"{reply.status} {content_type} {body!r}"


def media_type_of(reply: Reply) -> str:
    return reply.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


NOT_JSON = object()


def json_body(reply: Reply) -> object:
    """The parsed body, or NOT_JSON."""
    try:
        return json.loads(reply.body)
    except ValueError:
        return NOT_JSON


def check_exchange(
    client: Client,
    request: str | Request,
    *,
    status: int,
    media_type: str,
    body_ok: Callable[[Reply], bool],
    expected: str,
    stream: bool = False,
) -> tuple[list[Check], Reply | None]:
    """Send ``request`` (a path: a GET); one check for status, media type and body, one for the headers."""
    if isinstance(request, str):
        request = Request(request)
    reply = client.send(request, stream=stream)
    if isinstance(reply, str):
        return [Check(request.name, False, f"expected {expected}; {reply}")], None
    passed = reply.status == status and media_type_of(reply) == media_type and body_ok(reply)
    checks = [Check(request.name, passed, f"expected {expected}; got {describe(reply)}")]
    checks.append(check_headers(request.name, reply))
    return checks, reply


def check_headers(name: str, reply: Reply) -> Check:
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


def json_equals(expected: object) -> Callable[[Reply], bool]:
    return lambda reply: json_body(reply) == expected


def check_json(
    client: Client, request: str | Request, status: int, expected: object
) -> tuple[list[Check], Reply | None]:
    """The answer is ``status``, ``application/json`` and exactly ``expected`` once parsed."""
    return check_exchange(
        client,
        request,
        status=status,
        media_type="application/json",
        body_ok=json_equals(expected),
        expected=f"{status} application/json {json.dumps(expected)}",
    )


def check_timing(
    name: str, reply: Reply | None, minimum_ms: float, below_ms: float = TIMED_CAP_S * 1000
) -> Check:
    """The answer took at least ``minimum_ms`` (less TIMER_SLACK_MS) and less than
    ``below_ms``, measured by the client from sending the request to the end of the body."""
    name = f"{name} timing"
    expected = f"expected {minimum_ms:g} ms (less {TIMER_SLACK_MS:g} ms slack) <= elapsed < {below_ms:g} ms"
    if reply is None:
        return Check(name, False, f"{expected}; no answer")
    elapsed_ms = reply.elapsed_s * 1000
    passed = minimum_ms - TIMER_SLACK_MS <= elapsed_ms < below_ms
    return Check(name, passed, f"{expected}; took {elapsed_ms:.2f} ms")
