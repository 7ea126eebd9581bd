"""What the streaming drivers share: one client connection with a deadline, a run's counts and window.

A ``Link`` is an asyncio protocol whose subclasses parse what arrives in their
callbacks and answer from there, as ``connection.py`` does for request and
response: no task or future per event or message. Each has at most one
deadline, on one timer re-armed lazily (when it fires early, it is set again
for the current deadline), so a busy connection re-arms about once per
``timeout_s``, not once per event.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar, cast

from harness.load.connection import clock
from harness.load.native import CONNECT_RETRY_S
from harness.types import WindowCallback

L = TypeVar("L", bound="Link")

FILE_MARGIN = 64
"""File descriptors kept free besides one per connection (the loop, a parent's pipes, logs)."""
CLOSE_WAIT_S = 2.0
"""How long connections closed at the end may take to go (a WebSocket's closing handshake) (s)."""


def stream_error_counts() -> dict[str, int]:
    """Error counters by kind, all zero: the five kinds every streaming load reports."""
    return {"connect": 0, "read": 0, "status": 0, "timeout": 0, "malformed": 0}


class FileLimitError(RuntimeError):
    """The process may not open enough files (RLIMIT_NOFILE's hard limit) for the connections asked."""


@contextmanager
def open_file_limit(connections: int) -> Iterator[None]:
    """Raise the soft RLIMIT_NOFILE so ``connections`` sockets fit (+ FILE_MARGIN); restore it after.

    Raises FileLimitError when the hard limit is too low (raise it with
    ``ulimit -Hn`` or systemd's ``LimitNOFILE``).
    """
    needed = connections + FILE_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise FileLimitError(
                f"{connections} connections need {needed} open files, but this process may open at "
                f"most {hard} (RLIMIT_NOFILE hard limit); raise it with `ulimit -Hn {needed}` or LimitNOFILE"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@dataclass
class Tally:
    """Counts shared by the connections of one run, its measured window (driver clock, ns), open links."""

    window_start_ns: int
    window_end_ns: int
    errors: dict[str, int] = field(default_factory=stream_error_counts)
    error_statuses: dict[int, int] = field(default_factory=dict)
    connections_opened: int = 0
    live: set[Link] = field(default_factory=set)
    """Connections whose socket is not closed yet."""

    def counts(self, now_ns: int) -> bool:
        return self.window_start_ns <= now_ns <= self.window_end_ns

    def error(self, kind: str, now_ns: int, status: int = 0) -> None:
        if self.counts(now_ns):
            self.errors[kind] += 1
            if status:
                self.error_statuses[status] = self.error_statuses.get(status, 0) + 1


class Link(asyncio.Protocol):
    """One client connection: its transport, whether it closed, and one deadline.

    ``finished`` resolves as soon as the connection is closed by either side,
    ``gone`` once its socket is closed too. Subclasses implement ``lost`` (the
    peer or the network closed it) and ``expired`` (the deadline passed), and
    may override ``goodbye`` (how to close at the end of a run).
    """

    def __init__(self, tally: Tally) -> None:
        self.loop = asyncio.get_running_loop()
        self.live = tally.live
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.gone: asyncio.Future[None] = self.loop.create_future()
        self.deadline_ns = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            if not self.closed:
                self.closed = True
                self.lost()
        finally:
            self.forget()

    def forget(self) -> None:
        """The socket is closed (or about to be, by the event loop): stop tracking this link."""
        self.closed = True
        self._release()
        self.live.discard(self)
        if not self.gone.done():
            self.gone.set_result(None)

    def expect_by(self, deadline_ns: int) -> None:
        """Call ``expired`` if still waiting at ``deadline_ns``; 0 waits for nothing."""
        self.deadline_ns = deadline_ns
        if deadline_ns and self._timer is None and not self.closed:
            self._arm()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self._release()

    def abort(self) -> None:
        """Close at once, discarding unsent data."""
        self.closed = True
        if self.transport is not None and not self.gone.done():
            self.transport.abort()
        self._release()

    def goodbye(self) -> None:
        """Close at the end of a run; what is in flight is not counted."""
        self.close()

    def lost(self) -> None:
        raise NotImplementedError

    def expired(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.finished.done():
            self.finished.set_result(None)

    def _arm(self) -> None:
        self._timer = self.loop.call_later(max(self.deadline_ns - clock(), 0) / 1e9, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.closed or not self.deadline_ns:
            return
        if clock() >= self.deadline_ns:
            self.expired()
        else:
            self._arm()


async def open_link(factory: Callable[[], L], host: str, port: int, timeout_s: float) -> L:
    """Open one connection within ``timeout_s``; raises OSError or TimeoutError.

    When the connect is cancelled or times out just after the protocol got its
    transport, uvloop closes that transport without calling
    ``connection_lost``; the link is then forgotten here.
    """
    made: list[L] = []

    def make() -> L:
        made.append(factory())
        return made[-1]

    try:
        async with asyncio.timeout(timeout_s):
            _, link = await asyncio.get_running_loop().create_connection(make, host, port)
    except BaseException:
        for link in made:
            link.forget()
        raise
    return link


async def connect(
    tally: Tally, factory: Callable[[], Link], host: str, port: int, timeout_s: float
) -> Link | None:
    """Open one connection within ``timeout_s``; None, a ``connect`` error counted, when that fails."""
    try:
        link = await open_link(factory, host, port, timeout_s)
    except (OSError, TimeoutError):
        tally.error("connect", clock())
        await asyncio.sleep(CONNECT_RETRY_S)
        return None
    tally.connections_opened += 1
    return link


async def _until(at_ns: int, tasks: Collection[asyncio.Task[None]]) -> None:
    """Wait until the clock reads ``at_ns``, or until every one of ``tasks`` is done."""
    while (delay := at_ns - clock()) > 0:
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=delay / 1e9, return_when=asyncio.FIRST_COMPLETED)


async def measure(
    tally: Tally, tasks: Collection[asyncio.Task[None]], on_window: WindowCallback
) -> tuple[float, float]:
    """Wait through warm-up and the window, or until every task ended; (window wall s, CPU s).

    Calls ``on_window("start")`` and ``on_window("end")``, and moves the
    window's end to when it really ended, so nothing later counts.
    """
    await _until(tally.window_start_ns, tasks)
    on_window("start")
    cpu_start, wall_start = time.process_time_ns(), clock()
    await _until(tally.window_end_ns, tasks)
    cpu_end, wall_end = time.process_time_ns(), clock()
    tally.window_end_ns = min(tally.window_end_ns, wall_end)
    on_window("end")
    return (wall_end - wall_start) / 1e9, (cpu_end - cpu_start) / 1e9


async def finish(tasks: Collection[asyncio.Task[None]], tally: Tally) -> None:
    """Cancel ``tasks``, then close every connection still open and wait until its socket is closed.

    Connections get ``goodbye`` and CLOSE_WAIT_S to go; the rest are aborted.
    """
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    links = list(tally.live)
    for link in links:
        link.goodbye()
    for wait_s, last in ((CLOSE_WAIT_S, False), (1.0, True)):
        pending = [link.gone for link in links if not link.gone.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=wait_s)
        if not last:
            for link in links:
                link.abort()
