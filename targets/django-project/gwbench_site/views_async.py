"""Async views, served over ASGI by uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from asgiref.sync import sync_to_async
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

# One pooled session per worker process. It must be created inside the running event
# loop, and Django has no ASGI lifespan hook, so it is made on first use; for the same
# reason it is never closed explicitly: its sockets close when the worker exits.
_session: aiohttp.ClientSession | None = None


def upstream() -> aiohttp.ClientSession:
    global _session
    if _session is None or _session.closed:
        # limit=0: no client-side cap on connections; the offered load bounds them.
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    return _session


async def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


async def hello(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"message": "hello, world!"})


async def io_sleep(request: HttpRequest) -> HttpResponse:
    ms = parse_ms(request.GET.getlist("ms"))
    if isinstance(ms, str):
        return JsonResponse({"error": ms}, status=400)
    await asyncio.sleep(ms / 1000)
    return JsonResponse({"slept_ms": ms})


async def io_upstream(request: HttpRequest) -> HttpResponse:
    ms = parse_ms(request.GET.getlist("ms"))
    if isinstance(ms, str):
        return JsonResponse({"error": ms}, status=400)
    timeout = aiohttp.ClientTimeout(total=ms / 1000 + 5.0, connect=2.0)
    try:
        async with upstream().get(f"{UPSTREAM_URL}/delay?ms={ms}", timeout=timeout) as reply:
            if reply.status != 200:
                return upstream_failed(f"status {reply.status}")
            try:
                body = await reply.json(content_type=None)
            except ValueError:
                body = None
    except TimeoutError:
        return upstream_failed("timeout")
    except aiohttp.ClientError:
        return upstream_failed("connection failed")
    if not isinstance(body, dict):
        return upstream_failed("invalid body")
    return JsonResponse(body)


async def db_query(request: HttpRequest) -> HttpResponse:
    ms = parse_ms(request.GET.getlist("ms"))
    if isinstance(ms, str):
        return JsonResponse({"error": ms}, status=400)
    if not DATABASE_CONFIGURED:
        return database_not_configured()
    # Django 5.2's database layer is sync only (its async ORM methods wrap it the same
    # way): sync_to_async runs the query in this request's own thread (Django's ASGI
    # handler gives every request a ThreadSensitiveContext), so requests overlap, and
    # Django hands the connection back to the pool from that thread when the response
    # closes.
    try:
        value = await sync_to_async(run_query)(ms)
    except Error as exc:
        return database_failed(exc)
    return JsonResponse({"db_ms": ms, "value": value})


async def sse_events(events: int, interval_ms: int) -> AsyncIterator[bytes]:
    """The first event at once, then one every ``interval_ms``."""
    for i in range(events):
        if i:
            await asyncio.sleep(interval_ms / 1000)
        yield sse_event(i)


async def stream_sse(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    parsed = parse_sse(request)
    if isinstance(parsed, JsonResponse):
        return parsed
    # An async iterator: Django streams it under ASGI without a thread per stream.
    return StreamingHttpResponse(
        sse_events(*parsed), content_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
