"""Sync views, served over WSGI by gunicorn."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from django.db import Error
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_POST

from gwbench_site.contract import (
    DATABASE_CONFIGURED,
    FANOUT_THREADS,
    UPSTREAM_URL,
    database_failed,
    database_not_configured,
    fanout_answer,
    parse_cpu,
    parse_fanout,
    parse_json_body,
    parse_ms,
    parse_sse,
    run_query,
    sha256_chain,
    sse_event,
    upstream_failed,
)
from gwbench_site.trades import validate_batch

# Created when a gunicorn worker imports the URLconf (no --preload), so every worker
# process has its own pool and no socket crosses a fork. retries=False: exactly one GET.
# It keeps a connection for the request and one for each thread of the fan-out pool.
upstream = urllib3.PoolManager(retries=False, maxsize=1 + FANOUT_THREADS)

# The fan-out pool of /io/fanout?mode=threads, likewise one per worker process (made
# when the worker first loads the URLconf); its threads start on first use and are kept.
fanout_pool = ThreadPoolExecutor(max_workers=FANOUT_THREADS, thread_name_prefix="fanout")


def fetch_delay(ms: int) -> dict[str, Any] | str:
    """GET the upstream's /delay: its JSON object, or the contract's failure reason."""
    timeout = urllib3.Timeout(connect=2.0, total=ms / 1000 + 5.0)
    try:
        reply = upstream.request("GET", f"{UPSTREAM_URL}/delay?ms={ms}", timeout=timeout)
    except urllib3.exceptions.NewConnectionError:
        # Checked first: urllib3 2 derives NewConnectionError from ConnectTimeoutError.
        return "connection failed"
    except urllib3.exceptions.TimeoutError:
        return "timeout"
    except urllib3.exceptions.HTTPError:
        return "connection failed"
    if reply.status != 200:
        return f"status {reply.status}"
    try:
        body = json.loads(reply.data)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return "invalid body"
    return body


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def hello(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"message": "hello, world!"})


def io_sleep(request: HttpRequest) -> HttpResponse:
    ms = parse_ms(request.GET.getlist("ms"))
    if isinstance(ms, str):
        return JsonResponse({"error": ms}, status=400)
    time.sleep(ms / 1000)
    return JsonResponse({"slept_ms": ms})


def io_upstream(request: HttpRequest) -> HttpResponse:
    ms = parse_ms(request.GET.getlist("ms"))
    if isinstance(ms, str):
        return JsonResponse({"error": ms}, status=400)
    body = fetch_delay(ms)
    if isinstance(body, str):
        return upstream_failed(body)
    return JsonResponse(body)


def io_fanout(request: HttpRequest) -> HttpResponse:
    parsed = parse_fanout(request.GET.getlist)
    if isinstance(parsed, str):
        return JsonResponse({"error": parsed}, status=400)
    ms, calls, threads = parsed
    if threads:
        futures = [fanout_pool.submit(fetch_delay, ms) for _ in range(calls)]
        return fanout_answer([future.result() for future in futures], "threads")
    bodies: list[dict[str, Any] | str] = []
    for _ in range(calls):
        bodies.append(fetch_delay(ms))
        if isinstance(bodies[-1], str):
            break  # no call after a failed one
    return fanout_answer(bodies, "sequential")


@require_POST
def validate(request: HttpRequest) -> HttpResponse:
    body = parse_json_body(request)
    if isinstance(body, JsonResponse):
        return body
    answer, status = validate_batch(body)
    return JsonResponse(answer, status=status)


def cpu(request: HttpRequest) -> HttpResponse:
    rounds = parse_cpu(request)
    if isinstance(rounds, JsonResponse):
        return rounds
    return JsonResponse({"n": rounds, "digest": sha256_chain(rounds)})


def db_query(request: HttpRequest) -> HttpResponse:
    ms = parse_ms(request.GET.getlist("ms"))
    if isinstance(ms, str):
        return JsonResponse({"error": ms}, status=400)
    if not DATABASE_CONFIGURED:
        return database_not_configured()
    try:
        value = run_query(ms)
    except Error as exc:
        return database_failed(exc)
    return JsonResponse({"db_ms": ms, "value": value})


def sse_events(events: int, interval_ms: int) -> Iterator[bytes]:
    """The first event at once, then one every ``interval_ms``; the sleeps hold the worker."""
    for i in range(events):
        if i:
            time.sleep(interval_ms / 1000)
        yield sse_event(i)


def stream_sse(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    parsed = parse_sse(request)
    if isinstance(parsed, JsonResponse):
        return parsed
    return StreamingHttpResponse(
        sse_events(*parsed), content_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
