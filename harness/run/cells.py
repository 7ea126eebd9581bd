"""What a planned cell is to the store and to the driver.

Its identity in a :class:`~harness.model.Measurement` (and each phase's, for a
staged cell), the record stored for a cell that failed, and the load the
driver is given for it (:func:`load_for`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from harness.launch import RunningTarget
from harness.load import ClosedLoad
from harness.load.arrivals import OpenLoad
from harness.load.profile import Segment
from harness.load.requests import HttpRequest
from harness.load.stream import SseLoad, WsLoad, WsOpenLoad
from harness.load.stream.results import StreamLoad
from harness.model import (
    DEFAULT_MESSAGE_BYTES,
    Cell,
    Errors,
    Measurement,
    Phase,
    RequestSpec,
    Scenario,
    sse_parameters,
)
from harness.results import utc_now


def identity(cell: Cell) -> dict[str, Any]:
    """The fields that name a cell in its Measurement."""
    return {
        "cell_id": cell.cell_id,
        "target": cell.target,
        "endpoint": cell.endpoint,
        "model": cell.model,
        "concurrency": cell.concurrency,
        "rate": cell.rate,
        "repeat": cell.repeat,
    }


def phase_cell_id(cell: Cell, phase: Phase) -> str:
    """A staged cell's id for one of its phases: ``<prefix>-p<index>__<repeat>``."""
    prefix, repeat = cell.cell_id.rsplit("__", 1)
    return f"{prefix}-p{phase.index}__{repeat}"


def phase_identity(cell: Cell, phase: Phase) -> dict[str, Any]:
    """A staged cell's fields for one of its phases: its own id, the phase's mean level."""
    closed = cell.model == "closed"
    return {
        **identity(cell),
        "cell_id": phase_cell_id(cell, phase),
        "concurrency": round(phase.mean_level) if closed else None,
        "rate": None if closed else round(phase.mean_level, 3),
        "stage": phase.index,
        "stage_kind": phase.kind,
        "stage_start_s": phase.start_s,
        "stage_levels": (phase.start_level, phase.end_level),
    }


def failed(cell: Cell, scenario: Scenario, reason: str) -> Measurement:
    """The record stored for a cell that was not measured: no load, ``status = "failed"``, and why."""
    return Measurement(
        **identity(cell),
        started_at=utc_now(),
        warmup_s=scenario.warmup_s,
        duration_s=0.0,
        requests=0,
        errors=Errors(),
        requests_per_second=0.0,
        latency_ms=None,
        connections_opened=0,
        server_cpu_percent=None,
        server_rss_mib_peak=None,
        server_pss_mib_peak=None,
        server_processes=None,
        generator_cpu_percent=0.0,
        upstream_cpu_percent=None,
        generator_bound=False,
        histogram=None,
        status="failed",
        failure_reason=reason,
    )


def profile_for(phases: Sequence[Phase], *, closed: bool) -> tuple[Segment, ...]:
    """The driver's load profile for a staged cell: one linear segment per phase.

    Closed model: levels rounded to whole connections.
    """
    return tuple(
        Segment(
            duration_s=p.duration_s,
            start=float(round(p.start_level)) if closed else p.start_level,
            end=float(round(p.end_level)) if closed else p.end_level,
            stage=p.index,
        )
        for p in phases
    )


def http_requests(specs: Sequence[RequestSpec]) -> tuple[HttpRequest, ...]:
    """The scenario's request tables as the drivers send them (body encoded as UTF-8)."""
    return tuple(
        HttpRequest(
            path=spec.path,
            method=spec.method,
            body=(spec.body or "").encode(),
            content_type=spec.content_type,
            weight=spec.weight,
            status=spec.status,
        )
        for spec in specs
    )


def requests_for(scenario: Scenario, cell: Cell) -> tuple[HttpRequest, ...]:
    """The driver's requests for a cell's endpoint label (one, or the whole mix)."""
    return http_requests(scenario.requests_for(cell.endpoint))


def stream_load(
    scenario: Scenario,
    spec: RequestSpec,
    cell: Cell,
    running: RunningTarget,
    *,
    seed: int | None = None,
    allow_remote: bool,
) -> StreamLoad:
    """The streaming driver's load for a ``sse`` or ``websocket`` endpoint's ``cell``: closed model,
    ``cell.concurrency`` connections; a websocket endpoint in the open model, ``cell.rate`` messages/s
    over the scenario's ``max_connections`` WebSockets, its arrivals drawn with ``seed``."""
    message_bytes = spec.message_bytes or DEFAULT_MESSAGE_BYTES
    if cell.model == "open":
        assert spec.kind == "websocket" and cell.rate is not None  # Scenario allows no other
        return WsOpenLoad(
            host=running.host,
            port=running.port,
            rate=cell.rate,
            connections=scenario.max_connections,
            message_bytes=message_bytes,
            warmup_s=scenario.warmup_s,
            duration_s=scenario.duration_s,
            arrival=scenario.arrival,
            timeout_s=scenario.timeout_s,
            seed=seed,
            path=spec.path,
            allow_remote=allow_remote,
        )
    connections = cell.concurrency
    assert connections is not None  # closed-model streams run at fixed levels
    if spec.kind == "sse":
        path, events, interval_ms = sse_parameters(spec.path)
        # Streams of one length started together end together: spread the first ones over one
        # stream's length (within the warm-up), so the window sees them end at a steady pace.
        stream_s = (events - 1) * interval_ms / 1000
        return SseLoad(
            host=running.host,
            port=running.port,
            connections=connections,
            events=events,
            interval_ms=interval_ms,
            warmup_s=scenario.warmup_s,
            duration_s=scenario.duration_s,
            timeout_s=scenario.timeout_s,
            stagger_s=min(stream_s, scenario.warmup_s),
            path=path,
            allow_remote=allow_remote,
        )
    return WsLoad(
        host=running.host,
        port=running.port,
        connections=connections,
        message_bytes=message_bytes,
        warmup_s=scenario.warmup_s,
        duration_s=scenario.duration_s,
        timeout_s=scenario.timeout_s,
        path=spec.path,
        allow_remote=allow_remote,
    )


def load_for(
    scenario: Scenario, cell: Cell, running: RunningTarget, *, seed: int, allow_remote: bool
) -> ClosedLoad | OpenLoad | StreamLoad:
    """The driver's load description for one cell of a run seeded with ``seed`` (a stream
    endpoint's: :func:`stream_load`)."""
    specs = scenario.requests_for(cell.endpoint)
    # The same schedule and mix draws for every stack at this cell: a fair comparison.
    cell_seed = zlib.crc32(f"{seed}/{cell.endpoint}/{cell.level}/{cell.repeat}".encode())
    if specs[0].kind != "http":
        return stream_load(scenario, specs[0], cell, running, seed=cell_seed, allow_remote=allow_remote)
    requests = requests_for(scenario, cell)
    profile = profile_for(scenario.phases(), closed=cell.model == "closed") if cell.staged else ()
    peak = max((max(seg.start, seg.end) for seg in profile), default=0.0)
    if cell.model == "closed":
        concurrency = max(1, round(peak)) if profile else cell.concurrency
        assert concurrency is not None
        return ClosedLoad(
            host=running.host,
            port=running.port,
            path=requests[0].path if len(requests) == 1 else cell.endpoint,
            requests=requests,
            seed=cell_seed,
            concurrency=concurrency,
            profile=profile,
            warmup_s=scenario.warmup_s,
            duration_s=scenario.duration_s,
            timeout_s=scenario.timeout_s,
            allow_remote=allow_remote,
        )
    rate = peak if profile else cell.rate
    assert rate is not None
    return OpenLoad(
        host=running.host,
        port=running.port,
        path=requests[0].path if len(requests) == 1 else cell.endpoint,
        requests=requests,
        rate=rate,
        profile=profile,
        warmup_s=scenario.warmup_s,
        duration_s=scenario.duration_s,
        arrival=scenario.arrival,
        max_connections=scenario.max_connections,
        timeout_s=scenario.timeout_s,
        allow_remote=allow_remote,
        seed=cell_seed,
    )
