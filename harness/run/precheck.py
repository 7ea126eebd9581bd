"""Before any load on the user's app: each endpoint asked once, and a wrong answer said in one line.

A run pointed at a port where nothing listens, or at a path that answers 404,
would otherwise store its cells as measured with every request an error.
:func:`first_answer_problem` sends each of the scenario's requests once, as the
drivers would (:class:`~harness.load.requests.HttpRequest`: method, body, the
status that counts as success), and says what went wrong with the first one
that did not succeed. :func:`check_external` is the run's check, made once
before the plan is printed.
"""

from __future__ import annotations

import http.client
from collections.abc import Sequence

from harness.load.requests import HttpRequest
from harness.net import http_origin
from harness.run.cells import http_requests
from harness.run.spec import PreflightError, RunSpec


def first_answer_problem(
    host: str, port: int, requests: Sequence[HttpRequest], *, timeout_s: float
) -> str | None:
    """One request of each kind in ``requests`` to ``host:port``; None when each succeeded.

    Success is a status in the request's ``ok_statuses`` (any 2xx, or its declared
    status). Otherwise one line naming the request's URL and what came back: the
    status (``answered 404 Not Found, expected a 2xx``), the connection error
    (``nothing listens there (connection refused)``) or ``no answer within
    <timeout_s> s``. Redirects are not followed: a 3xx is a wrong answer unless
    declared.
    """
    for request in requests:
        url = http_origin(host, port) + request.path
        what = url if request.method == "GET" else f"{request.method} {url}"
        headers = {"User-Agent": "gwbench", "Accept": "*/*"}
        if request.body or request.method != "GET":
            headers["Content-Type"] = request.content_type
        connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
        try:
            connection.request(request.method, request.path, body=request.body or None, headers=headers)
            response = connection.getresponse()
            response.read()
        except ConnectionRefusedError:
            return f"{what}: nothing listens there (connection refused)"
        except TimeoutError:
            return f"{what}: no answer within {timeout_s:g} s"
        except (OSError, http.client.HTTPException) as exc:
            return f"{what}: the request failed: {type(exc).__name__}: {exc}"
        finally:
            connection.close()
        low, high = request.ok_statuses
        if not low <= response.status < high:
            expected = "a 2xx" if request.status is None else str(request.status)
            return f"{what}: answered {response.status} {response.reason}, expected {expected}"
    return None


def check_external(spec: RunSpec) -> None:
    """Raise PreflightError when one of the user's apps (``spec.external``) does not answer each
    of the scenario's requests once with its success status, within the scenario's
    ``timeout_s``; nothing when the run has no user's app."""
    requests = http_requests(spec.scenario.requests())
    for name, external in spec.external.items():
        problem = first_answer_problem(
            external.host, external.port, requests, timeout_s=spec.scenario.timeout_s
        )
        if problem is not None:
            app = "your app" if len(spec.external) == 1 else f"your app {name!r}"
            raise PreflightError(f"{app} did not answer as expected before any load: {problem}")
