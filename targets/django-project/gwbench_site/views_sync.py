"""Sync views, served over WSGI by gunicorn."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import urllib3
from django.db import Error
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from gwbench_site.contract import (
    DATABASE_CONFIGURED,
    UPSTREAM_URL,
    database_failed,
    database_not_configured,
    parse_ms,
    parse_sse,
    run_query,
    sse_event,
    upstream_failed,
)

# Created when a gunicorn worker imports the URLconf (no --preload), so every worker
# process has its own pool and no socket crosses a fork. retries=False: exactly one GET.
upstream = urllib3.PoolManager(retries=False)


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
    timeout = urllib3.Timeout(connect=2.0, total=ms / 1000 + 5.0)
    try:
        reply = upstream.request("GET", f"{UPSTREAM_URL}/delay?ms={ms}", timeout=timeout)
    except urllib3.exceptions.NewConnectionError:
        # Checked first: urllib3 2 derives NewConnectionError from ConnectTimeoutError.
        return upstream_failed("connection failed")
    except urllib3.exceptions.TimeoutError:
        return upstream_failed("timeout")
    except urllib3.exceptions.HTTPError:
        return upstream_failed("connection failed")
    if reply.status != 200:
        return upstream_failed(f"status {reply.status}")
    try:
        body = json.loads(reply.data)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return upstream_failed("invalid body")
    return JsonResponse(body)


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
