"""Plain Starlette app implementing targets/CONTRACT.md with async views (ASGI).

The same handlers as targets/fastapi-uvicorn without FastAPI's layer (dependency
injection, validation, response-model serialisation), so the two targets together
show what FastAPI itself costs.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

MAX_MS = 10_000
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")


def parse_ms(values: list[str]) -> int | str:
    """Return the delay in ms, or the contract's error reason (targets/CONTRACT.md)."""
    if not values:
        return "ms is required"
    raw = values[0]
    if not _INTEGER.fullmatch(raw):
        return "ms must be an integer"
    digits = raw.lstrip("-").lstrip("0") or "0"
    if (raw.startswith("-") and digits != "0") or len(digits) > 5 or int(digits) > MAX_MS:
        return f"ms must be between 0 and {MAX_MS}"
    return int(digits)


def upstream_failed(reason: str) -> JSONResponse:
    return JSONResponse({"error": f"upstream unavailable: {reason}"}, status_code=502)


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def hello(request: Request) -> Response:
    return JSONResponse({"message": "hello, world!"})


async def io_sleep(request: Request) -> Response:
    ms = parse_ms(request.query_params.getlist("ms"))
    if isinstance(ms, str):
        return JSONResponse({"error": ms}, status_code=400)
    await asyncio.sleep(ms / 1000)
    return JSONResponse({"slept_ms": ms})


async def io_upstream(request: Request) -> Response:
    ms = parse_ms(request.query_params.getlist("ms"))
    if isinstance(ms, str):
        return JSONResponse({"error": ms}, status_code=400)
    session: aiohttp.ClientSession = request.app.state.upstream
    timeout = aiohttp.ClientTimeout(total=ms / 1000 + 5.0, connect=2.0)
    try:
        async with session.get(f"{UPSTREAM_URL}/delay?ms={ms}", timeout=timeout) as reply:
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
    return JSONResponse(body)


async def not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "not found"}, status_code=404)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # One pooled session per worker process, made inside its event loop.
    # limit=0: no client-side cap on connections; the offered load bounds them.
    app.state.upstream = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        yield
    finally:
        await app.state.upstream.close()


app = Starlette(
    routes=[
        Route("/health", health, methods=["GET"]),
        Route("/json", hello, methods=["GET"]),
        Route("/io/sleep", io_sleep, methods=["GET"]),
        Route("/io/upstream", io_upstream, methods=["GET"]),
    ],
    exception_handlers={404: not_found},
    lifespan=lifespan,
)
# The contract matches paths exactly: /health/ is a 404, not a redirect to /health.
app.router.redirect_slashes = False
