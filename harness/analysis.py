"""Statistics over measured cells: pure functions over pandas DataFrames.

Units follow the column names: ``requests_per_second`` successful responses per second,
``rate`` (offered arrival rate) and ``achieved_rate`` requests per second,
``latency_ms_*`` milliseconds, ``*_mib_*`` MiB (2**20 bytes), ``*_cpu_percent``
percent of one core (200 = two cores busy), ``server_cpu_us_per_request``
microseconds of server CPU time per successful response.

A cell's *load level* (``level``) is its concurrency in the closed model and
its arrival rate in the open and saturation models. Failed cells
(``status == "failed"``) stay in :func:`measurements_frame` so they can be
listed; those that failed before any load never enter a statistic, while those
whose every request failed (:func:`harness.cellstate.ran_load`) enter the charts
and the error counts with what was measured: no latency, no throughput. Medians, intervals and
coefficients of variation across repeats come from :mod:`harness.stats`; the
sustainable throughput of saturation searches is in :mod:`harness.saturation`, what an
endpoint waits by design and a blocking stack's ceiling in :mod:`harness.ceilings`,
and the verdict built on all of them in :mod:`harness.verdict`;
:func:`harness.runanalysis.analyse_run` computes them all once for a stored run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from harness import loadset, saturation, stats
from harness.bounds import merge_bound_reasons
from harness.ceilings import (
    service_time_ms,
    sync_ceiling_requests_per_second,
)
from harness.cellstate import ran_load
from harness.histogram import decode
from harness.model import Measurement, Slo, TargetRun

LATENCY_FIELDS = ("min", "mean", "stdev", "p50", "p90", "p99", "p999", "max")
ERROR_KINDS = ("status", "connect", "read", "timeout", "malformed")
SUMMARY_KEYS = ["target", "endpoint", "model", "level", "stage"]

LITTLES_LAW_LOW = 0.8
LITTLES_LAW_HIGH = 1.2
SYNC_CEILING_TOLERANCE = 1.10  # a cell above 110% of its ceiling is inconsistent

STREAM_COLUMNS = (
    "stream_events",
    "stream_events_per_second",
    "streams_completed",
    "events_per_stream",
    "event_interval_ms",
)
"""The SSE cells' own figures (:class:`~harness.model.Measurement`), NaN in every other cell."""

COLUMNS = [
    "cell_id",
    "target",
    "interface",
    "endpoint",
    "workload",
    "model",
    "driver",
    "concurrency",
    "rate",
    "level",
    "stage",
    "stage_kind",
    "stage_start_s",
    "repeat",
    "status",
    "failure_reason",
    "started_at",
    "duration_s",
    "requests",
    *(f"errors_{kind}" for kind in ERROR_KINDS),
    "errors_total",
    "dropped",
    "requests_per_second",
    "intended_rate",
    "achieved_rate",
    *(f"latency_ms_{field}" for field in LATENCY_FIELDS),
    *(f"latency_ms_uncorrected_{field}" for field in LATENCY_FIELDS),
    "connections_opened",
    "connections_peak",
    "server_cpu_percent",
    "server_cpu_us_per_request",
    "server_rss_mib_peak",
    "server_pss_mib_peak",
    "server_cgroup_memory_mib_peak",
    "server_processes",
    "generator_cpu_percent",
    "generator_lateness_ms_p99",
    "upstream_cpu_percent",
    "generator_bound",
    "upstream_bound",
    "bound_reasons",
    "slo_held",
    "slo_breach",
    "histogram",
    "histogram_uncorrected",
    "littles_law_ratio",
    "littles_law_inconsistent",
    "sync_ceiling_requests_per_second",
    "sync_ceiling_exceeded",
    "server_memory_slope_mib_per_min",
    "server_memory_slope_low",
    "timeseries",
    "longest_silence_s",
    "stalled",
    "load_ceiling_requests_per_second",
    "set_by_load",
    *STREAM_COLUMNS,
    *(f"inter_event_gap_ms_{field}" for field in LATENCY_FIELDS),
]


def _nan(value: float | None) -> float:
    """None (not measured) as NaN, so pandas skips it in every statistic."""
    return math.nan if value is None else value


def cpu_us_per_request(server_cpu_percent: float, requests_per_second: float) -> float:
    """Server CPU time per successful response, in microseconds.

    ``server_cpu_percent / 100`` is CPU seconds per second; divided by responses
    per second it is CPU seconds per response. NaN when ``requests_per_second`` is not positive.

    >>> cpu_us_per_request(50.0, 1000.0)
    500.0
    """
    if not requests_per_second > 0:
        return math.nan
    return server_cpu_percent / 100.0 / requests_per_second * 1e6


def littles_law_ratio(requests_per_second: float, latency_ms_mean: float, concurrency: int) -> float:
    """Requests in flight implied by throughput and latency, over the concurrency.

    Little's law, L = lambda W (J. D. C. Little, "A proof for the queuing formula
    L = lambda W", Operations Research 9(3), 1961): in a closed model with C
    connections always busy, requests_per_second x mean latency (s) = C, so the ratio is ~1.
    Far from 1 means the driver's clock, its request count or the latency it
    recorded disagree (e.g. time spent outside the measured latency). The
    driver's latency includes connecting a fresh connection, so servers that
    close each connection (gunicorn sync workers) are held to the same ratio.
    NaN when an input is missing or the concurrency is not positive.

    >>> littles_law_ratio(1000.0, 32.0, 32)
    1.0
    """
    if concurrency <= 0 or math.isnan(requests_per_second) or math.isnan(latency_ms_mean):
        return math.nan
    return requests_per_second * latency_ms_mean / 1000.0 / concurrency


STALL_MIN_S = 1.0
"""A silence shorter than this (s) is never a stall: a queue or a garbage collection."""
STALL_FACTOR = 10.0
"""... and it must be this many times the cell's median response time."""


def stalled(longest_silence_s: float | None, latency_ms_p50: float | None) -> bool:
    """Whether a window's longest silence (no response at all) shows a server that stopped answering.

    A stall is a silence of at least :data:`STALL_MIN_S` s and at least
    :data:`STALL_FACTOR` times the median response time: a stack that answers its
    connections in bursts (every request in R s together) falls silent for about R, its
    median; one frozen for 3 s (SIGSTOP, swapping, a stop-the-world pause) in a window
    whose requests take milliseconds is silent for 3 s, far beyond its median. False when
    either figure is unknown.

    >>> stalled(3.0, 12.0), stalled(3.0, 900.0), stalled(0.5, 10.0)
    (True, False, False)
    """
    if longest_silence_s is None or latency_ms_p50 is None or math.isnan(latency_ms_p50):
        return False
    return longest_silence_s >= max(STALL_MIN_S, STALL_FACTOR * latency_ms_p50 / 1000.0)


def littles_law_off(ratio: float) -> bool:
    """True when a ratio from :func:`littles_law_ratio` is outside [0.8, 1.2]."""
    return not math.isnan(ratio) and not LITTLES_LAW_LOW <= ratio <= LITTLES_LAW_HIGH


def _row(measurement: Measurement, run: TargetRun | None, slo: Slo) -> dict[str, object]:
    m = measurement
    latency = m.latency_ms
    ok = m.status == "ok"
    level = m.concurrency if m.model == "closed" else (m.rate if m.rate is not None else m.intended_rate)
    row: dict[str, object] = {
        "cell_id": m.cell_id,
        "target": m.target,
        "interface": None if run is None else run.config.interface,
        "endpoint": m.endpoint,
        "workload": m.workload,
        "model": m.model,
        "driver": m.driver,
        "concurrency": m.concurrency,
        "rate": _nan(m.rate),
        "level": _nan(level),
        "stage": -1 if m.stage is None else m.stage,
        "stage_kind": m.stage_kind,
        "stage_start_s": _nan(m.stage_start_s),
        "repeat": m.repeat,
        "status": m.status,
        "failure_reason": m.failure_reason,
        "started_at": m.started_at,
        "duration_s": m.duration_s,
        "requests": m.requests,
        "errors_total": m.errors.total,
        "dropped": m.dropped,
        "requests_per_second": m.requests_per_second,
        "intended_rate": _nan(m.intended_rate),
        "achieved_rate": _nan(m.achieved_rate),
        "connections_opened": m.connections_opened,
        "connections_peak": _nan(m.connections_peak),
        "server_cpu_percent": _nan(m.server_cpu_percent),
        "server_rss_mib_peak": _nan(m.server_rss_mib_peak),
        "server_pss_mib_peak": _nan(m.server_pss_mib_peak),
        "server_cgroup_memory_mib_peak": _nan(m.server_cgroup_memory_mib_peak),
        "server_processes": _nan(m.server_processes),
        "generator_cpu_percent": m.generator_cpu_percent,
        "generator_lateness_ms_p99": _nan(m.generator_lateness_ms_p99),
        "upstream_cpu_percent": _nan(m.upstream_cpu_percent),
        "generator_bound": m.generator_bound,
        "upstream_bound": m.upstream_bound,
        "bound_reasons": m.bound_reasons,
        "slo_held": m.slo_held,
        "slo_breach": m.slo_breach,
        "histogram": m.histogram,
        "histogram_uncorrected": m.histogram_uncorrected,
        "server_memory_slope_mib_per_min": _nan(m.server_memory_slope_mib_per_min),
        "server_memory_slope_low": _nan(m.server_memory_slope_ci and m.server_memory_slope_ci[0]),
        "timeseries": m.timeseries,
        "longest_silence_s": _nan(m.longest_silence_s),
        "stalled": ok and stalled(m.longest_silence_s, None if latency is None else latency.p50),
    }
    for kind in ERROR_KINDS:
        row[f"errors_{kind}"] = getattr(m.errors, kind)
    for column in STREAM_COLUMNS:
        row[column] = _nan(getattr(m, column))
    summaries = (
        ("latency_ms", latency),
        ("latency_ms_uncorrected", m.latency_ms_uncorrected),
        ("inter_event_gap_ms", m.inter_event_gap_ms),
    )
    for prefix, summary in summaries:
        for field in LATENCY_FIELDS:
            row[f"{prefix}_{field}"] = math.nan if summary is None else getattr(summary, field)
    cpu = m.server_cpu_percent
    row["server_cpu_us_per_request"] = (
        cpu_us_per_request(cpu, m.requests_per_second) if ok and cpu is not None else math.nan
    )
    mean_ms = math.nan if latency is None else latency.mean
    # The law needs the number in flight; only the closed model fixes it (its concurrency). An SSE
    # cell's latency is its time to first event, not how long a stream holds its connection; an idle
    # cell holds its connections without a request.
    checked = ok and bool(m.concurrency) and m.workload in ("http", "websocket")
    ratio = littles_law_ratio(m.requests_per_second, mean_ms, m.concurrency or 0) if checked else math.nan
    row["littles_law_ratio"] = ratio
    # Errored requests hold a connection for a time no latency records, so the
    # law is only checked on error-free cells (the errors are flagged anyway).
    row["littles_law_inconsistent"] = ok and m.errors.total == 0 and littles_law_off(ratio)
    ceiling = None if run is None else sync_ceiling_requests_per_second(run, m.endpoint)
    row["sync_ceiling_requests_per_second"] = _nan(ceiling)
    row["sync_ceiling_exceeded"] = (
        ok and ceiling is not None and m.requests_per_second > SYNC_CEILING_TOLERANCE * ceiling
    )
    test_ceiling = loadset.closed_ceiling_requests_per_second(
        m.concurrency if m.model == "closed" else None, service_time_ms(m.endpoint)
    )
    row["load_ceiling_requests_per_second"] = _nan(test_ceiling)
    opened = m.model == "open" and m.intended_rate is not None and m.achieved_rate is not None
    row["set_by_load"] = ok and (
        loadset.closed_set_by_load(m.requests_per_second, test_ceiling)
        or (
            opened
            and loadset.open_set_by_load(
                intended_rate=float(m.intended_rate or 0.0),
                achieved_rate=float(m.achieved_rate or 0.0),
                latency_ms_p99=math.nan if latency is None else latency.p99,
                failed=m.errors.total + m.dropped,
                scheduled=m.requests + m.dropped,
                slo=slo,
            )
        )
    )
    return row


def measurements_frame(
    measurements: Sequence[Measurement],
    targets: Mapping[str, TargetRun] | None = None,
    slo: Slo | None = None,
) -> pd.DataFrame:
    """One row per measured cell, in the order given, with the columns of ``COLUMNS``.

    ``latency_ms.p99`` becomes ``latency_ms_p99``, ``errors.timeout``
    ``errors_timeout``; ``errors_total`` sums the kinds. ``interface``
    (wsgi/asgi/native) and the sync ceiling need ``targets`` (a manifest's);
    without them they are None/NaN. Missing figures (latency of a failed cell,
    PSS where unreadable, the rate of a closed cell, the generator's lateness
    ``generator_lateness_ms_p99`` outside the native open model or in runs stored
    before it was recorded, the SSE figures of :data:`STREAM_COLUMNS` and
    ``inter_event_gap_ms_*`` outside SSE cells) are NaN. ``workload`` is the cell's
    (http, sse, websocket; a cell that failed before any load says http). Derived per cell:
    ``level``, ``server_cpu_us_per_request``, ``littles_law_ratio`` and
    ``littles_law_inconsistent`` (:func:`littles_law_ratio`; NaN and False for SSE cells, whose
    latency is the time to first event),
    ``sync_ceiling_requests_per_second`` and ``sync_ceiling_exceeded``
    (:func:`sync_ceiling_requests_per_second`, exceeded by more than 10%),
    ``stalled`` (:func:`stalled`, from ``longest_silence_s``),
    ``load_ceiling_requests_per_second`` (a closed cell's concurrency / declared wait) and
    ``set_by_load`` (:mod:`harness.loadset`: the test, not the stack, set the figure; an open
    cell is judged against ``slo``, the scenario's, default :class:`~harness.model.Slo`).
    """
    runs, rule = targets or {}, slo or Slo()
    rows = [_row(m, runs.get(m.target), rule) for m in measurements]
    return pd.DataFrame(rows, columns=COLUMNS)


def _with_intervals(
    stats_frame: pd.DataFrame, ok: pd.DataFrame, keys: list[str], column: str
) -> pd.DataFrame:
    """Join ``<column>_values`` (tuple, by repeat), ``_ci_low``/``_ci_high``, ``_cv`` and ``_split``
    (:func:`harness.stats.split_repeats`: a Split, or None) per key."""
    records = []
    for key, group in ok.sort_values("repeat").groupby(keys, sort=True, dropna=False):
        values = [float(v) for v in group[column]]
        interval = stats.median_interval(values)
        records.append(
            {
                **dict(zip(keys, key, strict=True)),
                f"{column}_values": tuple(values),
                f"{column}_ci_low": math.nan if interval is None else interval.low,
                f"{column}_ci_high": math.nan if interval is None else interval.high,
                f"{column}_cv": stats.coefficient_of_variation(values),
                f"{column}_split": stats.split_repeats(values),
            }
        )
    suffixes = ("_values", "_ci_low", "_ci_high", "_cv", "_split")
    extra = pd.DataFrame(records, columns=[*keys, *(f"{column}{s}" for s in suffixes)])
    return stats_frame.join(extra.set_index(keys), how="left")


FLAG_COLUMNS = (
    "generator_bound",
    "upstream_bound",
    "littles_law_inconsistent",
    "sync_ceiling_exceeded",
    "stalled",
    "set_by_load",
)
"""Per-cell flags a summary row holds when any of its repeats does."""


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Statistics per (target, endpoint, model, level) over repeats, closed and open cells only.

    Saturation cells are summarised by :func:`harness.saturation.saturation_summary` instead.
    Columns: the keys, ``interface``, ``concurrency``, ``rate``, ``n`` (repeats that ran load,
    :func:`harness.cellstate.ran_load`), ``failed`` (failed repeats; those that failed before any load are
    excluded from everything else);
    ``requests_per_second_median``/``_min``/``_max``, ``requests_per_second_values`` (a tuple by repeat),
    ``requests_per_second_ci_low``/``_ci_high`` (the order-statistic interval of the median,
    :func:`harness.stats.median_interval`: the min-max below 6 repeats; NaN with one repeat),
    ``requests_per_second_cv`` (coefficient of variation), ``requests_per_second_split`` (the
    two groups the repeats fall into, :func:`harness.stats.split_repeats`, or None); the same for
    ``latency_ms_p99``; ``latency_ms_p50_median``/``_min``/``_max``;
    ``latency_ms_{mean,p90,p999}_median``,
    ``latency_ms_uncorrected_{p50,p99,p999}_median`` (open model, from the
    actual send time), ``achieved_rate_median``; ``server_cpu_percent_median``,
    ``server_cpu_us_per_request_median``/``_min``/``_max``,
    ``server_rss_mib_peak_max``, ``server_pss_mib_peak_max``, ``server_cgroup_memory_mib_peak_max``,
    ``generator_cpu_percent_max``, ``generator_lateness_ms_p99_max`` (the driver's worst
    lateness p99 over the repeats; NaN when no repeat recorded one),
    ``upstream_cpu_percent_max``; ``requests``,
    ``errors_total`` and ``dropped`` (sums); ``generator_bound``, ``upstream_bound``,
    ``littles_law_inconsistent``, ``sync_ceiling_exceeded`` and ``set_by_load`` (any repeat),
    ``bound_reasons`` (every repeat's, once each: :func:`merge_bound_reasons`), ``littles_law_ratio_median``,
    ``sync_ceiling_requests_per_second``. A key whose every repeat failed has ``n == 0`` and NaN
    statistics. Sorted by the keys.
    """
    rows = frame[frame["model"] != "saturation"]
    flagged = rows.assign(failed=rows["status"].eq("failed"))
    base = flagged.groupby(SUMMARY_KEYS, sort=True, dropna=False).agg(
        interface=("interface", "first"),
        concurrency=("concurrency", "first"),
        rate=("rate", "first"),
        failed=("failed", "sum"),
    )
    ok = rows[ran_load(rows)]
    spec: dict[str, tuple[str, str]] = {"n": ("repeat", "count")}
    for column in ("requests_per_second", "latency_ms_p50", "latency_ms_p99", "server_cpu_us_per_request"):
        for how in ("median", "min", "max"):
            spec[f"{column}_{how}"] = (column, how)
    medians = ["latency_ms_mean", "latency_ms_p90", "latency_ms_p999", "server_cpu_percent", "achieved_rate"]
    medians += [f"latency_ms_uncorrected_{field}" for field in ("p50", "p99", "p999")]
    for column in medians:
        spec[f"{column}_median"] = (column, "median")
    for column in (
        "server_rss_mib_peak",
        "server_pss_mib_peak",
        "server_cgroup_memory_mib_peak",
        "generator_cpu_percent",
        "generator_lateness_ms_p99",
        "upstream_cpu_percent",
        "longest_silence_s",
    ):
        spec[f"{column}_max"] = (column, "max")
    for column in ("requests", "errors_total", "dropped"):
        spec[column] = (column, "sum")
    for column in FLAG_COLUMNS:
        spec[column] = (column, "any")
    spec["bound_reasons"] = ("bound_reasons", merge_bound_reasons)  # type: ignore[assignment]
    spec["littles_law_ratio_median"] = ("littles_law_ratio", "median")
    spec["sync_ceiling_requests_per_second"] = ("sync_ceiling_requests_per_second", "first")
    summary = base.join(ok.groupby(SUMMARY_KEYS, sort=True, dropna=False).agg(**spec), how="left")
    for column in ("requests_per_second", "latency_ms_p99"):
        summary = _with_intervals(summary, ok, SUMMARY_KEYS, column)
    summary["failed"] = summary["failed"].astype(int)
    for column in ("n", "requests", "errors_total", "dropped"):
        summary[column] = summary[column].fillna(0).astype(int)
    for column in FLAG_COLUMNS:
        summary[column] = summary[column].astype("boolean").fillna(False).astype(bool)
    return summary.reset_index()


def highest_level_cells(frame: pd.DataFrame, *, sustainable: pd.DataFrame | None = None) -> pd.DataFrame:
    """The cells that ran load (:func:`harness.cellstate.ran_load`) a run's top load says most about,
    per endpoint.

    Closed and open cells: those at the endpoint's highest level with such a
    cell (every stack's repeats at that level). Saturation cells: each
    repeat's cell at its sustainable rate
    (:func:`harness.saturation.sustainable_throughput`; pass its result as
    ``sustainable`` when it is at hand, else it is computed from ``frame``).
    """
    ok = frame[ran_load(frame)]
    plain = ok[ok["model"] != "saturation"]
    top = plain.groupby("endpoint")["level"].transform("max")
    picked = plain[plain["level"] == top]
    per_repeat = saturation.sustainable_throughput(frame) if sustainable is None else sustainable
    held = set(per_repeat["held_cell_id"].dropna())
    return pd.concat([picked, ok[ok["cell_id"].isin(held) & ok["model"].eq("saturation")]])


SPECTRUM_MAX_NINES = 5.0  # 99.999%


def percentile_spectrum(histograms: Sequence[str], *, step_nines: float = 0.05) -> pd.DataFrame:
    """Latency by percentile of the merged histograms: the HdrHistogram percentile distribution.

    ``histograms`` are encoded HdrHistograms of latencies in microseconds (as
    the drivers store them); they are added together. Columns ``nines``
    (``-log10(1 - percentile / 100)``: 1 = 90%, 2 = 99%, 3 = 99.9%),
    ``percentile`` (0-100) and ``latency_ms``; one row every ``step_nines``
    from 0 up to 5 nines (99.999%), or fewer where the sample is too small to
    say more: ``log10(count)`` nines, the last point being the maximum. Empty
    when there is no recorded value.
    """
    columns = ["nines", "percentile", "latency_ms"]
    merged = None
    for encoded in histograms:
        histogram = decode(encoded)
        if merged is None:
            merged = histogram
        else:
            merged.add(histogram)
    count = 0 if merged is None else int(merged.get_total_count())
    if merged is None or count == 0:
        return pd.DataFrame(columns=columns)
    top = min(SPECTRUM_MAX_NINES, math.log10(count)) if count > 1 else 0.0
    points = [i * step_nines for i in range(int(top / step_nines) + 1)]
    if not points or points[-1] < top:
        points.append(top)
    rows = []
    for nines in points:
        percentile = 100.0 * (1.0 - 10.0 ** (-nines))
        rows.append((nines, percentile, merged.get_value_at_percentile(percentile) / 1000.0))
    return pd.DataFrame(rows, columns=columns)


def failed_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The failed rows of a :func:`measurements_frame`, with their ``failure_reason``."""
    return frame[frame["status"].eq("failed")].reset_index(drop=True)
