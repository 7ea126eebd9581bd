"""Streaming loads in the run's terms: split over driver processes, run, and read as a LoadResult.

``gwbench run`` drives an SSE or WebSocket endpoint as it drives HTTP: in
spawned driver processes (:func:`harness.load.drive_in_subprocess`) whose
results merge. :func:`as_load_result` maps a streaming result onto
:class:`~harness.load.result.LoadResult`: for SSE a request is one stream
(``ok``: streams completed in the window; the histogram: time to first event),
for WebSocket one echo round trip; what has no place there goes into its
:class:`~harness.load.result.StreamCounts`. The WebSocket open model
(:mod:`harness.load.stream.wsopen`) gives a LoadResult of model ``open`` itself.
"""

from __future__ import annotations

from dataclasses import replace

import uvloop

from harness.load.native import sleep_until
from harness.load.result import LoadResult, StreamCounts
from harness.load.stream.sse import SseLoad, SseResult, drive_sse
from harness.load.stream.websocket import WsLoad, WsResult, drive_ws
from harness.load.stream.wsopen import WsOpenLoad, drive_ws_open
from harness.types import WindowCallback

StreamLoad = SseLoad | WsLoad | WsOpenLoad


def split_stream(load: StreamLoad, parts: int) -> list[StreamLoad]:
    """Up to ``parts`` loads of the same kind whose connections add up to ``load``'s (fewer when
    there are fewer connections); each bound on streams or messages divided alike (the open
    model's rate too: :meth:`WsOpenLoad.split`)."""
    if isinstance(load, WsOpenLoad):
        return list(load.split(parts))
    parts = max(1, min(parts, load.connections))
    base, extra = divmod(load.connections, parts)
    shares = [base + (1 if index < extra else 0) for index in range(parts)]
    if isinstance(load, SseLoad):
        return [replace(load, connections=n, max_streams=max(1, load.max_streams // parts)) for n in shares]
    return [replace(load, connections=n, max_messages=max(1, load.max_messages // parts)) for n in shares]


def as_load_result(result: SseResult | WsResult, load: StreamLoad) -> LoadResult:
    """``result`` of ``load`` as a closed-model LoadResult with its :class:`StreamCounts` (see the
    module docstring)."""
    if isinstance(result, SseResult):
        assert isinstance(load, SseLoad)
        return LoadResult(
            duration_s=result.duration_s,
            ok=result.streams_completed,
            errors=dict(result.errors),
            error_statuses=dict(result.error_statuses),
            connections_opened=result.connections_opened,
            generator_cpu_s=result.generator_cpu_s,
            histogram=result.time_to_first_event_histogram,
            stream=StreamCounts(
                kind="sse",
                events_per_stream=load.events,
                event_interval_ms=load.interval_ms,
                events=result.events,
                streams_completed=result.streams_completed,
                inter_event_gap_histogram=result.inter_event_gap_histogram or None,
            ),
        )
    return LoadResult(
        duration_s=result.duration_s,
        ok=result.messages,
        errors=dict(result.errors),
        error_statuses=dict(result.error_statuses),
        connections_opened=result.connections_opened,
        generator_cpu_s=result.generator_cpu_s,
        histogram=result.histogram,
        stream=StreamCounts(kind="websocket", unsupported=result.unsupported),
    )


async def _drive(load: StreamLoad, on_window: WindowCallback, begin_ns: int | None) -> LoadResult:
    if begin_ns is not None:
        await sleep_until(begin_ns)
    if isinstance(load, SseLoad):
        return as_load_result(await drive_sse(load, on_window), load)
    if isinstance(load, WsOpenLoad):
        return await drive_ws_open(load, on_window)
    return as_load_result(await drive_ws(load, on_window), load)


def run_stream(
    load: StreamLoad, on_window: WindowCallback = lambda _: None, *, begin_ns: int | None = None
) -> LoadResult:
    """Drive an SSE or WebSocket load on a fresh uvloop event loop, starting at ``begin_ns``
    (``time.monotonic_ns()`` time; None: now), and return it as a LoadResult.

    Raises what :func:`~harness.load.stream.run_sse`, :func:`~harness.load.stream.run_ws` and
    :func:`~harness.load.stream.run_ws_open` raise.
    """
    return uvloop.run(_drive(load, on_window, begin_ns))
