"""One HTTP/1.1 client connection of a driver: send a request, parse its answer, time it out.

The hot path allocates nothing per request but the bytes the server sends: the
next request is written from inside the parser's ``on_message_complete``
callback, with no future, task switch or timer in between. Timeouts take one
timer per connection, re-armed lazily: when it fires, the request then in
flight is checked against its own deadline and the timer is set again for it,
so a connection answering fast re-arms about once per ``timeout_s``, not once
per request.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

import httptools

clock = time.monotonic_ns
"""The drivers' clock, in ns: CLOCK_MONOTONIC, shared by every process on the machine."""


class Connection(asyncio.Protocol):
    """A keep-alive connection with at most one request in flight; subclasses count the outcomes.

    ``start_ns`` is the clock when the request in flight started (connect time
    included for a connection's first request), 0 when there is none. The
    request in flight succeeds when its status is in ``[ok_from, ok_to)``
    (:meth:`succeeded`; any 2xx unless the request declares its status).
    ``finished`` resolves when the connection closes, from either side.
    Subclasses implement ``on_message_complete`` (called by the parser, the
    answer is complete) and ``failed``.
    """

    __slots__ = (
        "_loop",
        "_timeout_ns",
        "_timer",
        "closed",
        "finished",
        "ok_from",
        "ok_to",
        "parser",
        "start_ns",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_ns: int) -> None:
        self._loop = loop
        self._timeout_ns = timeout_ns
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.start_ns = 0
        self.ok_from = 200
        self.ok_to = 300
        self.closed = False
        self.finished: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes, start_ns: int) -> None:
        """Write ``request``; its latency and its ``timeout_s`` run from ``start_ns``."""
        self.start_ns = start_ns
        assert self.transport is not None
        self.transport.write(request)
        if self._timer is None:
            self._arm(start_ns + self._timeout_ns)

    def send_pick(self, pick: tuple[bytes, int, int], start_ns: int) -> None:
        """Send a picked request (its bytes and the statuses that are its success) from ``start_ns``."""
        request, self.ok_from, self.ok_to = pick
        self.send(request, start_ns)

    def succeeded(self, status: int) -> bool:
        """Whether ``status`` is a success for the request in flight."""
        return self.ok_from <= status < self.ok_to

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.start_ns:
                self.fail("read")
            else:
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.start_ns:
            self.fail("read")
        else:
            self._release()

    def fail(self, kind: str) -> None:
        """End the request in flight as an error of ``kind``, close the connection, report it."""
        start, self.start_ns = self.start_ns, 0
        self.close()
        self.failed(kind, start, clock())

    def failed(self, kind: str, start_ns: int, now_ns: int) -> None:
        """The request started at ``start_ns`` failed at ``now_ns``: ``timeout`` or ``read``."""
        raise NotImplementedError

    def abandon(self) -> None:
        """Close the connection, leaving the request in flight, if any, uncounted."""
        self.start_ns = 0
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self._release()

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.finished.done():
            self.finished.set_result(None)

    def _arm(self, deadline_ns: int) -> None:
        self._timer = self._loop.call_later(max(deadline_ns - clock(), 0) / 1e9, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self.start_ns or self.closed:
            return
        deadline = self.start_ns + self._timeout_ns
        if clock() >= deadline:
            self.fail("timeout")
        else:
            self._arm(deadline)
