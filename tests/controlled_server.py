"""An HTTP/1.1 server whose answers a test controls, run in a background thread.

Paths (query strings ignored):
- ``/ok``: 200 after ``delay_s``.
- ``/flaky``: every third request gets 500, the others 200.
- ``/close``: 200 with ``Connection: close``, then the connection is closed.
- ``/hang``: never answers.
- ``/stall``: like ``/ok``, but every ``stall_every_s`` seconds one request freezes the
  whole event loop for ``stall_s`` seconds (a blocking sleep), as a GC pause or a
  blocking call in an async server would.
Counts of answers by status are kept in ``answered``, of requests by method and
path in ``requests``, and the distinct bodies received in ``bodies``. A request
may carry a body (``Content-Length``); it is read whatever the path.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter, defaultdict
from types import TracebackType


class ControlledServer:
    def __init__(self, delay_s: float = 0.0, stall_every_s: float = 3.0, stall_s: float = 1.0) -> None:
        self.delay_s = delay_s
        self.stall_every_s = stall_every_s
        self.stall_s = stall_s
        self.stalls = 0
        self._last_stall = time.monotonic()
        self.answered: Counter[int] = Counter()
        self.requests: Counter[str] = Counter()  # by "METHOD /path"
        self.bodies: defaultdict[str, set[bytes]] = defaultdict(set)  # distinct bodies by "METHOD /path"
        self.connections = 0
        self._lock = threading.Lock()
        self._flaky = 0
        self._loop = asyncio.new_event_loop()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> ControlledServer:
        self._thread.start()
        self._ready.wait(5)
        self._last_stall = time.monotonic()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def total(self) -> int:
        with self._lock:
            return sum(self.answered.values())

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, sock=self._sock, backlog=1024)
        )
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._shut_down())
        self._loop.close()

    async def _shut_down(self) -> None:
        """Stop accepting, cancel every handler and close every accepted socket before the loop closes.

        Connections accepted in the loop's last iteration get their handler only on the next one, so
        the loop runs a little before the handlers are cancelled; without this, a socket can be
        garbage-collected unclosed and pytest (warnings are errors) fails the test that used it.
        """
        assert self._server is not None
        self._server.close()
        await asyncio.sleep(0.05)
        current = asyncio.current_task()
        handlers = [task for task in asyncio.all_tasks() if task is not current]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.sleep(0.05)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target = head.split(b" ", 2)[:2]
                path = target.split(b"?")[0].decode()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                with self._lock:
                    self.requests[f"{method.decode()} {path}"] += 1
                    self.bodies[f"{method.decode()} {path}"].add(body)
                close = False
                status = 200
                if path == "/hang":
                    await asyncio.sleep(3600)
                elif path == "/flaky":
                    with self._lock:
                        self._flaky += 1
                        status = 500 if self._flaky % 3 == 0 else 200
                elif path == "/close":
                    close = True
                elif path == "/stall":
                    if time.monotonic() - self._last_stall >= self.stall_every_s:
                        self.stalls += 1
                        time.sleep(self.stall_s)  # blocks the event loop on purpose
                        self._last_stall = time.monotonic()
                elif path != "/ok":
                    status = 404
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                body = b"ok"
                headers = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
                if close:
                    headers += "Connection: close\r\n"
                writer.write(headers.encode() + b"\r\n" + body)
                with self._lock:
                    self.answered[status] += 1
                if close:
                    await writer.drain()
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()
        finally:
            self._writers.discard(writer)
