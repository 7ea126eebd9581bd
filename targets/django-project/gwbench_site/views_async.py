"""Async views, served over ASGI by uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from asgiref.sync import sync_to_async
from django.db import Error
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_POST

from gwbench_site.contract import (
    DATABASE_CONFIGURED,
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


async def fetch_delay(ms: int) -> dict[str, Any] | str:
    """GET the upstream's /delay: its JSON object, or the contract's failure reason."""
    timeout = aiohttp.ClientTimeout(total=ms / 1000 + 5.0, connect=2.0)
    try:
        async with upstream().get(f"{UPSTREAM_URL}/delay?ms={ms}", timeout=timeout) as reply:
            if reply.status != 200:
                return f"status {reply.status}"
            try:
                body = await reply.json(content_type=None)
            except ValueError:
                body = None
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError:
        return "connection failed"
    if not isinstance(body, dict):
        return "invalid body"
    return body


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
    body = await fetch_delay(ms)
    if isinstance(body, str):
        return upstream_failed(body)
    return JsonResponse(body)


async def io_fanout(request: HttpRequest) -> HttpResponse:
    parsed = parse_fanout(request.GET.getlist)
    if isinstance(parsed, str):
        return JsonResponse({"error": parsed}, status=400)
    # mode=threads changes nothing here: the event loop overlaps the calls itself. Every
    # call runs to its end (fetch_delay returns failures); the first in call order is answered.
    ms, calls, _ = parsed
    bodies = await asyncio.gather(*(fetch_delay(ms) for _ in range(calls)))
    return fanout_answer(bodies, "gather")


@require_POST
async def validate(request: HttpRequest) -> HttpResponse:
    # Django's ASGI handler has read the whole body before the view runs.
    body = parse_json_body(request)
    if isinstance(body, JsonResponse):
        return body
    # On the event loop, as in the other async stacks: CPU work, no thread offload.
    answer, status = validate_batch(body)
    return JsonResponse(answer, status=status)


async def cpu(request: HttpRequest) -> HttpResponse:
    rounds = parse_cpu(request)
    if isinstance(rounds, JsonResponse):
        return rounds
    # On the event loop, as an async view does: the control where async should not win.
    return JsonResponse({"n": rounds, "digest": sha256_chain(rounds)})


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
