"""A small app as a WSGI callable (``wsgi``) and as its ASGI port (``asgi``), no framework: the
user's own app of tests/test_yourapp_launch.py.

``GET /work?ms=N`` waits N ms (the WSGI one blocks its thread, the ASGI one awaits) and
answers ``{"waited_ms": N}``; ``GET /hang`` never answers; anything else is 404.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

HANG_S = 3600.0


def route(path: str, query: str) -> tuple[str, float | None]:
    """(``"work"``, ms) / (``"hang"``, None) / (``"missing"``, None) for a request."""
    if path == "/work":
        values = parse_qs(query).get("ms", ["0"])
        return "work", min(max(float(values[0]), 0.0), 10_000.0)
    if path == "/hang":
        return "hang", None
    return "missing", None


def body_of(ms: float | None) -> bytes:
    return json.dumps({"waited_ms": ms}).encode()


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    kind, ms = route(environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", ""))
    if kind == "hang":
        time.sleep(HANG_S)
    if kind != "work" or ms is None:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return [b"not found"]
    time.sleep(ms / 1000)
    body = body_of(ms)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    kind, ms = route(scope["path"], scope.get("query_string", b"").decode())
    if kind == "hang":
        await asyncio.sleep(HANG_S)
    if kind != "work" or ms is None:
        status, body, media = 404, b"not found", b"text/plain"
    else:
        await asyncio.sleep(ms / 1000)
        status, body, media = 200, body_of(ms), b"application/json"
    headers = [(b"content-type", media), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
