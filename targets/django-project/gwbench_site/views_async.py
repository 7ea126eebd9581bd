"""Async views, served over ASGI by uvicorn."""

from __future__ import annotations

import asyncio

import aiohttp
from django.http import HttpRequest, HttpResponse, JsonResponse

from gwbench_site.contract import UPSTREAM_URL, parse_ms, upstream_failed

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
