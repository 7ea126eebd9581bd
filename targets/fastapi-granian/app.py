"""FastAPI app implementing targets/CONTRACT.md with async views (ASGI), served by Granian."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

MAX_MS = 10_000
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One pooled session per worker process, made inside its event loop.
    # limit=0: no client-side cap on connections; the offered load bounds them.
    app.state.upstream = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        yield
    finally:
        await app.state.upstream.close()


# No interactive docs or OpenAPI schema: the contract says every other path is a 404.
# redirect_slashes=False: the contract matches paths exactly (/health/ is a 404).
app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)


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


@app.get("/health")
async def health() -> PlainTextResponse:
    return PlainTextResponse("ok")


@app.get("/json")
async def hello() -> dict[str, Any]:
    return {"message": "hello, world!"}


@app.get("/io/sleep", response_model=None)
async def io_sleep(request: Request) -> dict[str, Any] | JSONResponse:
    ms = parse_ms(request.query_params.getlist("ms"))
    if isinstance(ms, str):
        return JSONResponse({"error": ms}, status_code=400)
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@app.get("/io/upstream", response_model=None)
async def io_upstream(request: Request) -> dict[str, Any] | JSONResponse:
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
    return body


@app.exception_handler(404)
async def not_found(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": "not found"}, status_code=404)
