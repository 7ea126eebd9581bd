"""Quart app implementing targets/CONTRACT.md with async views (ASGI)."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import aiohttp
from quart import Quart, Response, request
from werkzeug.exceptions import NotFound

MAX_MS = 10_000
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")

app = Quart(__name__)
# One pooled session per worker process, made inside its event loop in before_serving.
upstream: aiohttp.ClientSession | None = None


@app.before_serving
async def open_upstream() -> None:
    global upstream
    # limit=0: no client-side cap on connections; the offered load bounds them.
    upstream = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


@app.after_serving
async def close_upstream() -> None:
    if upstream is not None:
        await upstream.close()


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


def upstream_failed(reason: str) -> tuple[dict[str, Any], int]:
    return {"error": f"upstream unavailable: {reason}"}, 502


@app.get("/health")
async def health() -> Response:
    return Response("ok", mimetype="text/plain")


@app.get("/json")
async def hello() -> dict[str, Any]:
    return {"message": "hello, world!"}


@app.get("/io/sleep")
async def io_sleep() -> tuple[dict[str, Any], int]:
    ms = parse_ms(request.args.getlist("ms"))
    if isinstance(ms, str):
        return {"error": ms}, 400
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}, 200


@app.get("/io/upstream")
async def io_upstream() -> tuple[dict[str, Any], int]:
    ms = parse_ms(request.args.getlist("ms"))
    if isinstance(ms, str):
        return {"error": ms}, 400
    assert upstream is not None, "before_serving has run"
    timeout = aiohttp.ClientTimeout(total=ms / 1000 + 5.0, connect=2.0)
    try:
        async with upstream.get(f"{UPSTREAM_URL}/delay?ms={ms}", timeout=timeout) as reply:
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
    return body, 200


@app.errorhandler(NotFound)
async def not_found(error: NotFound) -> tuple[dict[str, Any], int]:
    return {"error": "not found"}, 404
