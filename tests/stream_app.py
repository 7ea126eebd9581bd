"""The streaming endpoints of the contract, as small real apps for the stream driver's tests.

``app`` (ASGI, served by uvicorn): ``GET /health``; ``GET
/stream/sse?events=N&interval_ms=M``, N events ``data: {"i": k}\\n\\n`` M ms apart
(the first at once), then the end of the response; ``WS /ws/echo``, every text or
binary message sent back unchanged until the client closes. Test-only paths:
``/stream/sse-shuffled`` sends the same events with the first two swapped, and
``/stream/sse-500`` answers 500.

``wsgi_app`` (WSGI, served by Gunicorn): ``GET /health``, and ``/ws/echo`` answered 501
``{"error": "websocket not supported"}`` as a WSGI stack must.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _http(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    path = scope["path"]
    if path == "/health":
        await _respond(send, 200, b"text/plain", b"ok")
    elif path == "/stream/sse-500":
        await _respond(send, 500, b"application/json", b'{"error": "boom"}')
    elif path in ("/stream/sse", "/stream/sse-shuffled"):
        query = parse_qs(scope["query_string"].decode("latin-1"))
        try:
            events = int(query["events"][0])
            interval_ms = int(query["interval_ms"][0])
        except (KeyError, ValueError):
            await _respond(send, 400, b"application/json", b'{"error": "bad query"}')
            return
        order = list(range(events))
        if path.endswith("shuffled") and events > 1:
            order[0], order[1] = order[1], order[0]
        await _sse(receive, send, order, interval_ms / 1000)
    else:
        await _respond(send, 404, b"application/json", b'{"error": "not found"}')


async def _sse(receive: Receive, send: Send, order: list[int], interval_s: float) -> None:
    """Send one event per index in ``order``, ``interval_s`` apart; stop early if the client leaves."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for position, index in enumerate(order):
            if position and interval_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), interval_s)
            if gone.is_set():
                return
            body = f"data: {json.dumps({'i': index})}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()


async def _websocket(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    if scope["path"] != "/ws/echo":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        elif message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/health":
        status, content_type, body = "200 OK", "text/plain", b"ok"
    elif path == "/ws/echo":
        status, content_type = "501 Not Implemented", "application/json"
        body = json.dumps({"error": "websocket not supported"}).encode()
    else:
        status, content_type, body = "404 Not Found", "application/json", b'{"error": "not found"}'
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
