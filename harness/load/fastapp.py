"""A raw ASGI app that answers every request at once: the fast target of ``make bench-driver``.

Run with ``uvicorn harness.load.fastapp:app --loop uvloop --http httptools --lifespan off``.
No framework sits between the server and this function, so the server's HTTP
layer, not the app, bounds its throughput.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]

BODY = b"Hello, world!"
_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())],
}
_BODY: Message = {"type": "http.response.body", "body": BODY}


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Answer every HTTP request with 200 and a 13-byte body."""
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY)
