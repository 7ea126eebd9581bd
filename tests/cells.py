"""Measurements and targets made up for the analysis, verdict and report tests."""

from __future__ import annotations

import re
from collections.abc import Mapping

from hdrh.histogram import HdrHistogram

from harness.model import (
    BoundReason,
    Errors,
    Interface,
    LatencyMs,
    LoadModel,
    Measurement,
    SettingValue,
    TargetConfig,
    TargetRun,
)


def target(
    name: str,
    interface: Interface,
    *,
    workers: int = 2,
    worker_model: str | None = None,
    settings: Mapping[str, SettingValue] | None = None,
) -> TargetRun:
    config = TargetConfig(
        name=name,
        description=name,
        framework=name.split("-")[0],
        server=name.split("-")[1],
        interface=interface,
        worker_model=worker_model or ("sync" if interface == "wsgi" else "event loop"),
        command="{python} -m app {host}:{port}",
        default_workers=workers,
        workers_rule="fixed",
        settings=dict(settings or {}),
    )
    return TargetRun(config=config, workers=workers)


TARGETS = {
    "flask-gunicorn": target("flask-gunicorn", "wsgi"),
    "django-gunicorn": target("django-gunicorn", "wsgi"),
    "fastapi-uvicorn": target("fastapi-uvicorn", "asgi"),
    "quart-hypercorn": target("quart-hypercorn", "asgi"),
}


def histogram_of(latencies_ms: list[float]) -> str:
    """An encoded HdrHistogram (µs, 1 µs to 1 h, 3 digits) of these latencies, as the drivers store it."""
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    for ms in latencies_ms:
        histogram.record_value(round(ms * 1000))
    encoded = histogram.encode()
    return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)


def cell(
    name: str = "fastapi-uvicorn",
    *,
    endpoint: str = "/io",
    model: LoadModel = "closed",
    concurrency: int = 32,
    rate: float | None = None,
    repeat: int = 0,
    requests_per_second: float = 1000.0,
    mean_ms: float | None = None,
    p99_ms: float = 80.0,
    uncorrected_p99_ms: float | None = None,
    errors: Errors | None = None,
    dropped: int = 0,
    cpu: float = 50.0,
    pss: float | None = 40.0,
    generator_bound: bool = False,
    bound_reasons: tuple[BoundReason, ...] = (),
    upstream_bound: bool = False,
    slo_held: bool | None = None,
    slo_breach: str | None = None,
    histogram: str | None = None,
    failed: bool = False,
) -> Measurement:
    """A measurement; the mean latency defaults to what Little's law predicts (C / requests_per_second).

    Open and saturation cells (``rate`` given) have no concurrency. An upstream-bound cell's
    upstream used 95% CPU; a bound cell's reasons say so (a generator-bound one's as
    ``stored``, no numbers) unless ``bound_reasons`` name its own.
    """
    if generator_bound and not any(r.by == "generator" for r in bound_reasons):
        bound_reasons += (BoundReason(by="generator", rule="stored", measured=0.0, limit=0.0),)
    if upstream_bound and not any(r.by == "upstream" for r in bound_reasons):
        bound_reasons += (BoundReason(by="upstream", rule="cpu", measured=95.0, limit=80.0),)
    if model != "closed" and rate is None:
        raise ValueError("open and saturation cells need a rate")
    closed = model == "closed"
    if mean_ms is None:
        mean_ms = concurrency / requests_per_second * 1000.0 if requests_per_second and closed else 50.0
    latency = LatencyMs(
        min=1.0, mean=mean_ms, stdev=1.0, p50=mean_ms, p90=2 * mean_ms, p99=p99_ms, p999=2 * p99_ms, max=300.0
    )
    uncorrected = None
    if uncorrected_p99_ms is not None:
        uncorrected = latency.model_copy(update={"p99": uncorrected_p99_ms, "p999": 2 * uncorrected_p99_ms})
    level = f"c{concurrency}" if closed else f"rate{rate:g}".replace(".", "-")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", endpoint).strip("-")
    return Measurement(
        cell_id=f"{name}__{slug}__{level}__r{repeat}",
        target=name,
        endpoint=endpoint,
        model=model,
        concurrency=concurrency if closed else None,
        rate=rate,
        intended_rate=rate,
        achieved_rate=None if rate is None else rate,
        repeat=repeat,
        started_at="2024-06-01T12:00:00+00:00",
        warmup_s=1.0,
        duration_s=10.0,
        requests=0 if failed else int(requests_per_second * 10),
        errors=errors or Errors(),
        dropped=dropped,
        requests_per_second=0.0 if failed else requests_per_second,
        latency_ms=None if failed else latency,
        latency_ms_uncorrected=None if failed else uncorrected,
        connections_opened=concurrency,
        server_cpu_percent=0.0 if failed else cpu,
        server_rss_mib_peak=0.0 if failed else 60.0,
        server_pss_mib_peak=None if failed else pss,
        server_processes=3,
        generator_cpu_percent=20.0,
        upstream_cpu_percent=95.0 if upstream_bound else 10.0,
        generator_bound=generator_bound,
        bound_reasons=bound_reasons,
        upstream_bound=upstream_bound,
        slo_held=slo_held,
        slo_breach=slo_breach,
        histogram=histogram,
        status="failed" if failed else "ok",
        failure_reason="target exited before ready" if failed else None,
    )
