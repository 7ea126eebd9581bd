"""Statistics over measured cells: pure functions over pandas DataFrames.

Units follow the column names: ``rps`` successful responses per second,
``latency_ms_*`` milliseconds, ``*_mb_*`` MiB (2**20 bytes), ``*_cpu_percent``
percent of one core (200 = two cores busy), ``server_cpu_us_per_request``
microseconds of server CPU time per successful response.

Failed cells (``status == "failed"``) stay in :func:`measurements_frame` so they
can be listed, but never enter a statistic: :func:`summarise` counts them in
``failed`` and computes everything else from the ``ok`` cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from harness.model import Measurement, TargetRun

LATENCY_FIELDS = ("min", "mean", "stdev", "p50", "p90", "p99", "p999", "max")
ERROR_KINDS = ("status", "connect", "read", "timeout")
CELL_KEYS = ["target", "endpoint", "concurrency"]

LITTLES_LAW_LOW = 0.8
LITTLES_LAW_HIGH = 1.2

COLUMNS = [
    "cell_id",
    "target",
    "interface",
    "endpoint",
    "model",
    "concurrency",
    "repeat",
    "status",
    "failure_reason",
    "started_at",
    "duration_s",
    "requests",
    *(f"errors_{kind}" for kind in ERROR_KINDS),
    "errors_total",
    "rps",
    *(f"latency_ms_{field}" for field in LATENCY_FIELDS),
    "connections_opened",
    "server_cpu_percent",
    "server_cpu_us_per_request",
    "server_rss_mb_peak",
    "server_pss_mb_peak",
    "server_processes",
    "generator_cpu_percent",
    "upstream_cpu_percent",
    "generator_bound",
    "littles_law_ratio",
    "littles_law_inconsistent",
]


def _nan(value: float | None) -> float:
    """None (not measured) as NaN, so pandas skips it in every statistic."""
    return math.nan if value is None else value


def cpu_us_per_request(server_cpu_percent: float, rps: float) -> float:
    """Server CPU time per successful response, in microseconds.

    ``server_cpu_percent / 100`` is CPU seconds per second; divided by responses
    per second it is CPU seconds per response. NaN when ``rps`` is not positive.

    >>> cpu_us_per_request(50.0, 1000.0)
    500.0
    """
    if not rps > 0:
        return math.nan
    return server_cpu_percent / 100.0 / rps * 1e6


def littles_law_ratio(rps: float, latency_ms_mean: float, concurrency: int) -> float:
    """Requests in flight implied by throughput and latency, over the concurrency.

    Little's law, L = lambda W (J. D. C. Little, "A proof for the queuing formula
    L = lambda W", Operations Research 9(3), 1961): in a closed model with C
    connections always busy, rps x mean latency (s) = C, so the ratio is ~1.
    Far from 1 means the driver's clock, its request count or the latency it
    recorded disagree (e.g. time spent outside the measured latency). The
    driver's latency includes connecting a fresh connection, so servers that
    close each connection (gunicorn sync workers) are held to the same ratio.
    NaN when an input is missing or the concurrency is not positive.

    >>> littles_law_ratio(1000.0, 32.0, 32)
    1.0
    """
    if concurrency <= 0 or math.isnan(rps) or math.isnan(latency_ms_mean):
        return math.nan
    return rps * latency_ms_mean / 1000.0 / concurrency


def littles_law_off(ratio: float) -> bool:
    """True when a ratio from :func:`littles_law_ratio` is outside [0.8, 1.2]."""
    return not math.isnan(ratio) and not LITTLES_LAW_LOW <= ratio <= LITTLES_LAW_HIGH


def _row(measurement: Measurement, interface: str | None) -> dict[str, object]:
    m = measurement
    latency = m.latency_ms
    row: dict[str, object] = {
        "cell_id": m.cell_id,
        "target": m.target,
        "interface": interface,
        "endpoint": m.endpoint,
        "model": m.model,
        "concurrency": m.concurrency,
        "repeat": m.repeat,
        "status": m.status,
        "failure_reason": m.failure_reason,
        "started_at": m.started_at,
        "duration_s": m.duration_s,
        "requests": m.requests,
        "errors_total": m.errors.total,
        "rps": m.rps,
        "connections_opened": m.connections_opened,
        "server_cpu_percent": _nan(m.server_cpu_percent),
        "server_rss_mb_peak": _nan(m.server_rss_mb_peak),
        "server_pss_mb_peak": _nan(m.server_pss_mb_peak),
        "server_processes": _nan(m.server_processes),
        "generator_cpu_percent": m.generator_cpu_percent,
        "upstream_cpu_percent": _nan(m.upstream_cpu_percent),
        "generator_bound": m.generator_bound,
    }
    for kind in ERROR_KINDS:
        row[f"errors_{kind}"] = getattr(m.errors, kind)
    for field in LATENCY_FIELDS:
        row[f"latency_ms_{field}"] = math.nan if latency is None else getattr(latency, field)
    ok = m.status == "ok"
    cpu = m.server_cpu_percent
    row["server_cpu_us_per_request"] = cpu_us_per_request(cpu, m.rps) if ok and cpu is not None else math.nan
    mean_ms = math.nan if latency is None else latency.mean
    # The law needs the number in flight; only the closed model fixes it (its concurrency).
    ratio = littles_law_ratio(m.rps, mean_ms, m.concurrency) if ok and m.concurrency else math.nan
    row["littles_law_ratio"] = ratio
    # Errored requests hold a connection for a time no latency records, so the
    # law is only checked on error-free cells (the errors are flagged anyway).
    row["littles_law_inconsistent"] = ok and m.errors.total == 0 and littles_law_off(ratio)
    return row


def measurements_frame(
    measurements: Sequence[Measurement], targets: Mapping[str, TargetRun] | None = None
) -> pd.DataFrame:
    """One row per measured cell, in the order given, with the columns of ``COLUMNS``.

    ``latency_ms.p99`` becomes ``latency_ms_p99``, ``errors.timeout``
    ``errors_timeout``; ``errors_total`` sums the kinds. ``interface``
    (wsgi/asgi/native) comes from ``targets`` (a manifest's), else is None.
    Missing figures (latency of a failed cell, PSS where unreadable) are NaN.
    Derived per cell: ``server_cpu_us_per_request``, ``littles_law_ratio`` and
    ``littles_law_inconsistent`` (see :func:`littles_law_ratio`).
    """
    interfaces = {name: run.config.interface for name, run in (targets or {}).items()}
    rows = [_row(m, interfaces.get(m.target)) for m in measurements]
    return pd.DataFrame(rows, columns=COLUMNS)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Statistics per (target, endpoint, concurrency) over repeats, sorted by those keys.

    Columns: the keys, ``interface``, ``n`` (ok repeats), ``failed`` (failed
    repeats, excluded from everything else), ``rps_median``/``_min``/``_max``
    (min and max are the spread across repeats), ``latency_ms_{p50,p99}_median``/
    ``_min``/``_max``, ``latency_ms_{mean,p90,p999}_median``,
    ``server_cpu_percent_median``, ``server_cpu_us_per_request_median``/``_min``/
    ``_max`` (each cell's CPU per request, then the median),
    ``server_rss_mb_peak_max``, ``server_pss_mb_peak_max``,
    ``generator_cpu_percent_max``, ``requests`` and ``errors_total`` (sums),
    ``generator_bound`` and ``littles_law_inconsistent`` (any repeat),
    ``littles_law_ratio_median``. A key whose every repeat failed has ``n == 0``
    and NaN statistics.
    """
    flagged = frame.assign(failed=frame["status"].eq("failed"))
    base = flagged.groupby(CELL_KEYS, sort=True, dropna=False).agg(
        interface=("interface", "first"), failed=("failed", "sum")
    )
    ok = frame[frame["status"].eq("ok")]
    spec: dict[str, tuple[str, str]] = {"n": ("repeat", "count")}
    spread = ["rps", "latency_ms_p50", "latency_ms_p99", "server_cpu_us_per_request"]
    for column in spread:
        for how in ("median", "min", "max"):
            spec[f"{column}_{how}"] = (column, how)
    for column in ("latency_ms_mean", "latency_ms_p90", "latency_ms_p999", "server_cpu_percent"):
        spec[f"{column}_median"] = (column, "median")
    for column in ("server_rss_mb_peak", "server_pss_mb_peak", "generator_cpu_percent"):
        spec[f"{column}_max"] = (column, "max")
    spec["requests"] = ("requests", "sum")
    spec["errors_total"] = ("errors_total", "sum")
    spec["generator_bound"] = ("generator_bound", "any")
    spec["littles_law_ratio_median"] = ("littles_law_ratio", "median")
    spec["littles_law_inconsistent"] = ("littles_law_inconsistent", "any")
    stats = ok.groupby(CELL_KEYS, sort=True).agg(**spec)
    summary = base.join(stats, how="left")
    summary["failed"] = summary["failed"].astype(int)
    for column in ("n", "requests", "errors_total"):
        summary[column] = summary[column].fillna(0).astype(int)
    for column in ("generator_bound", "littles_law_inconsistent"):
        summary[column] = summary[column].astype("boolean").fillna(False).astype(bool)
    return summary.reset_index()


FlagKind = Literal["single_run", "spread_overlap", "errors", "generator_bound", "littles_law", "failed"]


@dataclass(frozen=True)
class Flag:
    """Something that weakens a verdict.

    ``value`` by kind: single_run -> repeats (1); errors -> failed requests;
    littles_law -> the median ratio; failed -> failed cells; spread_overlap ->
    None, with ``other`` the stack whose min-max range overlaps ``target``'s.
    """

    kind: FlagKind
    target: str
    value: float | None = None
    other: str | None = None


@dataclass(frozen=True)
class Standing:
    """One stack's throughput in a verdict (requests/s over its ``n`` repeats)."""

    target: str
    interface: str | None
    rps_median: float
    rps_min: float
    rps_max: float
    n: int


@dataclass(frozen=True)
class Verdict:
    """Who serves most on one endpoint at its highest measured concurrency.

    ``asgi_over_wsgi`` = best ASGI median rps / best WSGI median rps (None when
    either side is missing). ``best`` is None when no stack has an ok cell there.
    """

    endpoint: str
    concurrency: int
    best: Standing | None
    best_wsgi: Standing | None
    best_asgi: Standing | None
    runner_up: Standing | None
    asgi_over_wsgi: float | None
    flags: tuple[Flag, ...]


def _standing(row: pd.Series, interface: str | None) -> Standing:
    return Standing(
        target=str(row["target"]),
        interface=interface,
        rps_median=float(row["rps_median"]),
        rps_min=float(row["rps_min"]),
        rps_max=float(row["rps_max"]),
        n=int(row["n"]),
    )


def _cell_flags(row: pd.Series) -> list[Flag]:
    target = str(row["target"])
    flags: list[Flag] = []
    if int(row["n"]) == 1:
        flags.append(Flag("single_run", target, 1.0))
    if int(row["errors_total"]) > 0:
        flags.append(Flag("errors", target, float(row["errors_total"])))
    if bool(row["generator_bound"]):
        flags.append(Flag("generator_bound", target))
    if bool(row["littles_law_inconsistent"]):
        flags.append(Flag("littles_law", target, float(row["littles_law_ratio_median"])))
    return flags


def _verdict(endpoint: str, rows: pd.DataFrame, interfaces: Mapping[str, str | None]) -> Verdict:
    measured = rows[rows["n"] > 0]
    concurrency = int((measured if len(measured) else rows)["concurrency"].max())
    level = rows[rows["concurrency"] == concurrency]
    ranked = level[level["n"] > 0].sort_values(["rps_median", "target"], ascending=[False, True])
    standings = [_standing(row, interfaces.get(str(row["target"]))) for _, row in ranked.iterrows()]
    by_target = {str(row["target"]): row for _, row in ranked.iterrows()}

    best = standings[0] if standings else None
    runner_up = standings[1] if len(standings) > 1 else None
    best_wsgi = next((s for s in standings if s.interface == "wsgi"), None)
    best_asgi = next((s for s in standings if s.interface == "asgi"), None)
    ratio = None
    if best_wsgi is not None and best_asgi is not None and best_wsgi.rps_median > 0:
        ratio = best_asgi.rps_median / best_wsgi.rps_median

    flags: list[Flag] = []
    seen: set[str] = set()
    for standing in (best, best_wsgi, best_asgi):
        if standing is not None and standing.target not in seen:
            seen.add(standing.target)
            flags.extend(_cell_flags(by_target[standing.target]))
    pairs = [(best, runner_up)]
    if best_asgi is not None and best_wsgi is not None:
        pairs.append((best_asgi, best_wsgi))
    overlapping: set[frozenset[str]] = set()
    for high, low in pairs:
        if high is None or low is None or high.n < 2 or low.n < 2:
            continue
        pair = frozenset((high.target, low.target))
        if high.rps_min <= low.rps_max and pair not in overlapping:
            overlapping.add(pair)
            flags.append(Flag("spread_overlap", high.target, None, low.target))
    for _, row in level[level["failed"] > 0].iterrows():
        flags.append(Flag("failed", str(row["target"]), float(row["failed"])))
    return Verdict(endpoint, concurrency, best, best_wsgi, best_asgi, runner_up, ratio, tuple(flags))


def verdict(summary: pd.DataFrame, targets: Mapping[str, TargetRun]) -> list[Verdict]:
    """One :class:`Verdict` per endpoint (sorted), at that endpoint's highest concurrency.

    The highest concurrency is the highest level with at least one ok cell.
    Stacks are ranked by median rps (ties by name). A stack's interface comes
    from ``targets``, else from the summary's ``interface`` column. Flags cover
    the cells the verdict rests on (best, best WSGI, best ASGI): a single
    repeat, errors, generator_bound, Little's law; min-max spreads that overlap
    (best vs runner-up, best ASGI vs best WSGI); and every failed cell at that
    level, whichever stack it belongs to.
    """
    interfaces: dict[str, str | None] = {
        str(row["target"]): (None if pd.isna(row["interface"]) else str(row["interface"]))
        for _, row in summary.iterrows()
    }
    interfaces.update({name: run.config.interface for name, run in targets.items()})
    return [
        _verdict(str(endpoint), rows, interfaces) for endpoint, rows in summary.groupby("endpoint", sort=True)
    ]


def failed_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The failed rows of a :func:`measurements_frame`, with their ``failure_reason``."""
    return frame[frame["status"].eq("failed")].reset_index(drop=True)
