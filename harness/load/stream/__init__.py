"""Streaming loads: Server-Sent Events, WebSocket echo, and idle connections held open.

- ``run_sse`` (``sse.py``): streams of ``GET /stream/sse``; time to first event, events/s.
- ``run_ws`` (``websocket.py``): WebSocket echo, closed model; messages/s, round-trip time.
- ``run_ws_open`` (``wsopen.py``): WebSocket echo, open model: messages at an arrival rate over
  the connections, round trips from each message's intended send time.
- ``hold_connections`` (``hold.py``): K idle HTTP or WebSocket connections held open.

All run on raw asyncio protocols and uvloop (``link.py``), as the HTTP
drivers do, and refuse non-loopback hosts unless allowed. ``run_sse`` and
``run_ws`` count what happens inside the measured window, after the warm-up
(``run_ws_open`` counts a message by its intended send time, as the HTTP open model does):
an event or an echo when it arrives, an error when it is detected. Times come
from ``connection.clock``; histograms hold µs (``histogram.encode``). Errors by
kind: ``connect`` (no TCP connection within ``timeout_s``), ``read`` (the
connection broke, or the answer was not valid HTTP or WebSocket), ``status``
(an answer other than 200, or 101 to an upgrade; by code in
``error_statuses``), ``timeout`` (no answer or next event within
``timeout_s``), ``malformed`` (a wrong content type, event or echo, or a
stream with more or fewer events than asked).
"""

from harness.load.stream.hold import HoldKind, HoldLoad, HoldResult, drive_hold, hold_connections
from harness.load.stream.link import FileLimitError, open_file_limit, stream_error_counts
from harness.load.stream.sse import SseLoad, SseParser, SseResult, drive_sse, run_sse
from harness.load.stream.websocket import WsLoad, WsResult, drive_ws, run_ws
from harness.load.stream.wsopen import WsOpenLoad, drive_ws_open, run_ws_open

__all__ = [
    "FileLimitError",
    "HoldKind",
    "HoldLoad",
    "HoldResult",
    "SseLoad",
    "SseParser",
    "SseResult",
    "WsLoad",
    "WsOpenLoad",
    "WsResult",
    "drive_hold",
    "drive_sse",
    "drive_ws",
    "drive_ws_open",
    "hold_connections",
    "open_file_limit",
    "run_sse",
    "run_ws",
    "run_ws_open",
    "stream_error_counts",
]
