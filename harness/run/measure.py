"""One stored record from what the driver and the monitors saw: :func:`build_measurement`.

Its inputs come in two records: :class:`CellContext` (which cell, or which
phase of a staged cell, and the conditions it was driven and is judged under)
and :class:`Observed` (what was measured in its window and where the samples
were written). Units follow :class:`~harness.model.Measurement`: CPU in percent
of one core, memory in MiB, latencies in ms, rates in requests/s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.load import LoadResult
from harness.load.summary import latency_summary
from harness.model import Cell, DriverName, Errors, Measurement, Phase, Slo
from harness.model.records import classes_of
from harness.monitor import CgroupWindowStats, WindowStats
from harness.run.cells import identity, phase_identity
from harness.run.flags import bound_reasons, scheduled_rate
from harness.timeseries import Row, Slope, memory_slope
from harness.types import MIB


@dataclass(frozen=True)
class CellContext:
    """Which cell a record is for and how it was driven.

    ``phase``: the record is one phase of a staged cell. ``max_connections`` is
    the open model's connection cap (for the generator-bound rule); ``slo``,
    when given, is judged on this cell (saturation cells).
    """

    cell: Cell
    started_at: str
    warmup_s: float
    driver: DriverName = "native"
    max_connections: int | None = None
    slo: Slo | None = None
    phase: Phase | None = None


@dataclass(frozen=True)
class Observed:
    """What was measured in one window: the driver's ``load``, the monitors' windows, where samples went.

    ``server``/``upstream``: their process trees' window (None when not
    monitored); ``group``: the server's control group; ``db_queries``: the
    queries PostgreSQL counted. ``histogram_path`` (and the uncorrected one)
    and ``timeseries_path`` are the stored files, relative to the run folder;
    ``slope`` is the server's memory trend over the window.
    """

    load: LoadResult
    server: WindowStats | None
    upstream: WindowStats | None
    histogram_path: str
    histogram_uncorrected_path: str | None = None
    db_queries: int | None = None
    group: CgroupWindowStats | None = None
    timeseries_path: str | None = None
    slope: Slope | None = None


def slope_of(rows: Sequence[Row], begin_s: float = 0.0, end_s: float = float("inf")) -> Slope | None:
    """The memory trend of the rows in [begin_s, end_s] (PSS where every row has it, else RSS)."""
    picked = [r for r in rows if begin_s <= r.t_s <= end_s]
    pss = all(r.server_pss_mib is not None for r in picked)
    values = [float((r.server_pss_mib if pss else r.server_rss_mib) or 0.0) for r in picked]
    return memory_slope([r.t_s for r in picked], values)


def build_measurement(context: CellContext, observed: Observed) -> Measurement:
    """Combine what the driver and the monitors saw into one stored record."""
    cell, phase, slo = context.cell, context.phase, context.slo
    load, server, group, slope = observed.load, observed.server, observed.group, observed.slope
    upstream_cpu = None if observed.upstream is None else round(observed.upstream.cpu_percent, 2)
    latency = latency_summary(load.histogram)
    reasons = bound_reasons(
        load,
        context.max_connections,
        upstream_cpu,
        slo_p99_ms=None if slo is None else slo.p99_ms,
        p99_ms=None if latency is None else latency.p99,
    )
    lateness = load.generator_lateness_ms
    breach = None
    if slo is not None:
        breach = slo.breach(
            p99_ms=None if latency is None else latency.p99,
            failed=sum(load.errors.values()) + load.dropped,
            scheduled=load.scheduled if load.model == "open" else load.requests,
            # Sent is not served: a stack that falls behind answers fewer than were sent.
            achieved_rate=min(load.achieved_rate, load.requests_per_second),
            intended_rate=scheduled_rate(load) or 0.0,
        )
    by_status = {str(k): v for k, v in sorted(load.error_statuses.items())}
    return Measurement(
        **_stream_fields(load),
        **(identity(cell) if phase is None else phase_identity(cell, phase)),
        started_at=context.started_at,
        warmup_s=context.warmup_s,
        duration_s=round(load.duration_s, 4),
        requests=load.requests,
        errors=Errors(**load.errors, by_status=by_status, by_class=classes_of(by_status)),
        requests_per_second=round(load.requests_per_second, 3),
        latency_ms=latency,
        connections_opened=load.connections_opened,
        server_cpu_percent=None if server is None else round(server.cpu_percent, 2),
        server_rss_mib_peak=None if server is None else round(server.rss_peak_bytes / MIB, 2),
        server_pss_mib_peak=None
        if server is None or server.pss_peak_bytes is None
        else round(server.pss_peak_bytes / MIB, 2),
        server_processes=None if server is None else server.processes,
        generator_cpu_percent=round(load.generator_cpu_percent, 2),
        upstream_cpu_percent=upstream_cpu,
        generator_bound=any(r.by == "generator" for r in reasons),
        upstream_bound=any(r.by == "upstream" for r in reasons),
        bound_reasons=reasons,
        histogram=observed.histogram_path,
        driver=context.driver,
        intended_rate=load.intended_rate,
        achieved_rate=round(load.achieved_rate, 3),
        scheduled=load.scheduled if load.intended_rate is not None else None,
        dropped=load.dropped,
        connections_peak=load.connections_peak,
        latency_ms_uncorrected=None
        if load.histogram_uncorrected is None
        else latency_summary(load.histogram_uncorrected),
        histogram_uncorrected=observed.histogram_uncorrected_path,
        slo_held=None if slo is None else breach is None,
        slo_breach=breach,
        db_queries=observed.db_queries,
        server_cgroup_cpu_percent=None
        if group is None or group.cpu_percent is None
        else round(group.cpu_percent, 2),
        server_cgroup_memory_mib_peak=None
        if group is None or group.memory_peak_bytes is None
        else round(group.memory_peak_bytes / MIB, 2),
        server_oom_kills=None if group is None else group.oom_kills,
        server_throttled_s=None
        if group is None or group.throttled_s is None
        else round(group.throttled_s, 3),
        timeseries=observed.timeseries_path,
        server_memory_slope_mib_per_min=None if slope is None else slope.mib_per_min,
        server_memory_slope_ci=None if slope is None else (slope.low, slope.high),
        generator_lateness_ms_p50=None if lateness is None else round(lateness.p50, 3),
        generator_lateness_ms_p99=None if lateness is None else round(lateness.p99, 3),
        generator_lateness_ms_max=None if lateness is None else round(lateness.max, 3),
        longest_silence_s=load.longest_silence_s,
    )


def _stream_fields(load: LoadResult) -> dict[str, Any]:
    """A streaming load's own fields of its Measurement (none for HTTP): its workload, the SSE
    figures, or the status ``unsupported`` of a WebSocket upgrade answered 501."""
    stream = load.stream
    if stream is None:
        return {}
    if stream.unsupported:
        reason = "answered the WebSocket upgrade with 501: no WebSocket support, nothing measured"
        return {"workload": stream.kind, "status": "unsupported", "failure_reason": reason}
    if stream.kind != "sse":
        return {"workload": stream.kind}
    gaps = stream.inter_event_gap_histogram
    return {
        "workload": "sse",
        "stream_events": stream.events,
        "stream_events_per_second": round(stream.events / load.duration_s, 3) if load.duration_s else 0.0,
        "streams_completed": stream.streams_completed,
        "events_per_stream": stream.events_per_stream,
        "event_interval_ms": stream.event_interval_ms,
        "inter_event_gap_ms": None if gaps is None else latency_summary(gaps),
    }


def every_request_failed(measurements: Sequence[Measurement]) -> str | None:
    """``every request failed: 211 requests (HTTP 404: 211)``, when these records sent (or dropped)
    requests and none succeeded; None when one succeeded, or when none sent any (a cell that
    failed before any load says why in its own reason).

    A request succeeded when it was answered without an error: ``requests`` counts
    errors too, and latency is recorded for successes only. Dropped requests (open
    model: never sent, the driver fell behind) count as failed.
    """
    sent = [m for m in measurements if m.requests + m.dropped > 0]
    if not sent or any(m.requests > m.errors.total or m.latency_ms is not None for m in sent):
        return None
    by_status: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for m in sent:
        by_status.update(m.errors.by_status)
        kinds.update({"status": m.errors.status, "connect": m.errors.connect, "read": m.errors.read})
        kinds.update({"timeout": m.errors.timeout, "malformed": m.errors.malformed, "dropped": m.dropped})
    statuses = [f"HTTP {code}: {count:,}" for code, count in sorted(by_status.items())]
    other = [
        f"{kind}: {count:,}" for kind, count in kinds.items() if count and not (kind == "status" and statuses)
    ]
    requests = sum(m.requests + m.dropped for m in sent)
    return f"every request failed: {requests:,} requests ({', '.join(statuses + other)})"
