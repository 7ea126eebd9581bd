"""The ASGI app this target's Daphne serves: the Django project's, plus a Date header.

RFC 9110 (6.6.1) has an origin server with a clock send ``Date``, targets/CONTRACT.md
requires it, and every other server in the benchmark adds it itself. Daphne does not:
its requests are ``twisted.web.http.Request``, which never sets ``Date`` (Twisted's
``twisted.web.server.Request`` does). So this wrapper adds one, formatted as Twisted
formats it, to every HTTP response start that lacks one; nothing else changes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gwbench_site.asgi import application as django_application
from twisted.web.http import datetimeToString

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_cached_second = -1
_cached_date = b""


def http_date() -> bytes:
    """The current time as an IMF-fixdate, e.g. ``b"Tue, 24 Nov 2026 03:27:33 GMT"``."""
    global _cached_second, _cached_date
    second = int(time.time())
    if second != _cached_second:
        _cached_second, _cached_date = second, datetimeToString(second)
    return _cached_date


async def application(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        await django_application(scope, receive, send)
        return

    async def send_with_date(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if not any(name.lower() == b"date" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"date", http_date())]}
        await send(message)

    await django_application(scope, receive, send_with_date)
