"""The rows of a run page's tables and verdict blocks, as the texts the templates show.

Per section: the measured cells (:func:`cell_row`), the medians per load level
(:func:`summary_rows`), each verdict with the stacks it ranked or left out
(:func:`verdict_context`), the WSGI-against-ASGI summary per workload kind
(:func:`workload_context`) and each stack's packages (:func:`packages`). Rows
come from a :class:`~harness.runanalysis.RunAnalysis`'s frames; the sentences
from :mod:`harness.report.formats`. Nothing here computes a statistic.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Hashable, Mapping, Sequence

import pandas as pd

from harness import analysis, stats
from harness.bounds import bound_kinds, merge_bound_reasons
from harness.model import TargetRun
from harness.report.formats import (
    DASH,
    format_bound_reasons,
    format_comparison,
    format_flag,
    format_interval,
    format_number,
    format_percent,
    format_ratios,
    format_spread,
    format_verdict,
    format_where,
    format_workload,
)
from harness.report.streamwords import count
from harness.stats import Interval
from harness.verdict import Standing, Verdict, WorkloadSummary


def _float(value: object) -> float:
    """A number from a DataFrame cell (numpy scalars included) as a float; anything else as NaN."""
    return float(value) if isinstance(value, numbers.Real) else math.nan


def _level(model: object, level: object, kind: object = None) -> str:
    """``c64`` (closed), ``960 req/s`` (open and saturation); a phase of a staged run first names its kind."""
    text = (
        f"c{format_number(_float(level), 0)}"
        if model == "closed"
        else f"{format_number(_float(level), 0)} req/s"
    )
    return f"{kind}, {text}" if isinstance(kind, str) else text


def _interval(row: Mapping[Hashable, object], column: str) -> Interval | None:
    low, high = _float(row[f"{column}_ci_low"]), _float(row[f"{column}_ci_high"])
    if math.isnan(low):
        return None
    return stats.stored_median_interval(low, high, int(_float(row["n"])))


def _bound_flags(reasons: object, *, generator: bool, upstream: bool) -> list[str]:
    """``generator bound: <its reasons>`` and ``upstream bound: <its reasons>``, for the kinds that apply."""
    merged = merge_bound_reasons([reasons])
    flags = []
    for by, applies in (("generator", generator), ("upstream", upstream)):
        if applies:
            words = format_bound_reasons(r for r in merged if r.by == by)
            flags.append(f"{by} bound: {words}" if words else f"{by} bound")
    return flags


def cell_flags(row: Mapping[Hashable, object]) -> list[str]:
    """The flags of one cell (a row of :func:`harness.analysis.measurements_frame`), in words."""
    flags = _bound_flags(
        row["bound_reasons"], generator=bool(row["generator_bound"]), upstream=bool(row["upstream_bound"])
    )
    if _float(row["dropped"]) > 0:
        flags.append(f"dropped {int(_float(row['dropped'])):,}")
    if row["littles_law_inconsistent"]:
        flags.append(f"Little's law {_float(row['littles_law_ratio']):.2f}")
    if row.get("stalled", False):
        flags.append(f"stalled {_float(row['longest_silence_s']):.1f} s")
    if row["sync_ceiling_exceeded"]:
        flags.append(
            f"above sync ceiling {format_number(_float(row['sync_ceiling_requests_per_second']), 0)} req/s"
        )
    if row["slo_held"] is False:
        flags.append(f"SLO broken: {row['slo_breach']}")
    if row.get("set_by_load", False):
        flags.append("set by the load, not the stack")
    # A trend is stored only over a minute or more; flagged when its whole 95% interval is above 0.
    if _float(row["server_memory_slope_low"]) > 0:
        flags.append(f"memory growing {_float(row['server_memory_slope_mib_per_min']):+.2f} MiB/min")
    return flags


def cell_row(row: Mapping[Hashable, object]) -> dict[str, object]:
    """One measured cell (a row of :func:`harness.analysis.measurements_frame`) in the cells table."""

    def num(column: str, digits: int | None = None) -> str:
        return format_number(_float(row[column]), digits)

    errors = [f"{kind} {row[f'errors_{kind}']}" for kind in analysis.ERROR_KINDS if row[f"errors_{kind}"]]
    return {
        "target": row["target"],
        "endpoint": row["endpoint"],
        "level": _level(row["model"], row["level"], row["stage_kind"]),
        "repeat": count(row["repeat"]) + 1,  # counted from 1, as the terminal does
        "failed": row["status"] == "failed",
        "reason": row["failure_reason"] or "no reason recorded",
        "requests_per_second": num("requests_per_second"),
        "achieved": num("achieved_rate"),
        "p50": num("latency_ms_p50"),
        "p90": num("latency_ms_p90"),
        "p99": num("latency_ms_p99"),
        "p999": num("latency_ms_p999"),
        "p99_uncorrected": num("latency_ms_uncorrected_p99"),
        "max": num("latency_ms_max"),
        "errors": ", ".join(errors) or "0",
        "dropped": int(_float(row["dropped"])),
        "cpu": num("server_cpu_percent", 0),
        "rss": num("server_rss_mib_peak", 0),
        "pss": num("server_pss_mib_peak", 0),
        "generator_cpu": num("generator_cpu_percent", 0),
        "generator_late_p99": num("generator_lateness_ms_p99"),
        "ratio": num("littles_law_ratio", 2),
        "flags": "; ".join(cell_flags(row)),
    }


def _summary_flags(row: Mapping[Hashable, object]) -> list[str]:
    flags = []
    if int(_float(row["n"])) == 1:
        flags.append("single run")
    if row["generator_bound"]:
        flags.append("generator bound")
    if row["upstream_bound"]:
        flags.append("upstream bound")
    if row.get("set_by_load", False):
        flags.append("set by the load, not the stack")
    if int(_float(row["errors_total"])):
        flags.append(f"errors {int(_float(row['errors_total'])):,}")
    if int(_float(row["dropped"])):
        flags.append(f"dropped {int(_float(row['dropped'])):,}")
    if row["littles_law_inconsistent"]:
        flags.append(f"Little's law {_float(row['littles_law_ratio_median']):.2f}")
    if row["sync_ceiling_exceeded"]:
        flags.append(
            f"above sync ceiling {format_number(_float(row['sync_ceiling_requests_per_second']), 0)} req/s"
        )
    if row.get("stalled", False):
        flags.append(f"stalled {_float(row['longest_silence_s_max']):.1f} s")
    split = row.get("requests_per_second_split")
    if isinstance(split, stats.Split):
        groups = (" / ".join(format_number(v, 0) for v in group) for group in (split.low, split.high))
        flags.append("repeats split in two: " + " vs ".join(groups) + " req/s")
    return flags


def _ceiling(row: Mapping[Hashable, object]) -> str:
    """A sync stack's Little's-law ceiling (requests/s) and the share served: ``38 (96%)``; else empty."""
    ceiling, requests_per_second = (
        _float(row["sync_ceiling_requests_per_second"]),
        _float(row["requests_per_second_median"]),
    )
    if math.isnan(ceiling) or ceiling <= 0:
        return ""
    share = "" if math.isnan(requests_per_second) else f" ({requests_per_second / ceiling:.0%})"
    digits = 2 if ceiling < 10 else 1 if ceiling < 100 else 0
    return f"{format_number(ceiling, digits)}{share}"


def _summary_row(row: Mapping[Hashable, object]) -> dict[str, object]:
    """One load level of one stack: medians, 95% intervals, CV and flags."""
    n = int(_float(row["n"]))
    return {
        "target": row["target"],
        "interface": row["interface"] if isinstance(row["interface"], str) else "",
        "endpoint": row["endpoint"],
        "level": _level(row["model"], row["level"], row.get("stage_kind")),
        "n": n,
        "failed": int(_float(row["failed"])),
        "requests_per_second": format_number(_float(row["requests_per_second_median"]), 0),
        "requests_per_second_ci": format_interval(_interval(row, "requests_per_second"), 0),
        "requests_per_second_cv": format_percent(_float(row["requests_per_second_cv"])),
        "p50": format_number(_float(row["latency_ms_p50_median"])),
        "p99": format_number(_float(row["latency_ms_p99_median"])),
        "p99_ci": format_interval(_interval(row, "latency_ms_p99")),
        "p99_uncorrected": format_number(_float(row["latency_ms_uncorrected_p99_median"])),
        "cpu_us": format_number(_float(row["server_cpu_us_per_request_median"]), 0),
        "pss": format_number(_float(row["server_pss_mib_peak_max"]), 0),
        "ceiling": _ceiling(row),
        "errors": int(_float(row["errors_total"])),
        "dropped": int(_float(row["dropped"])),
        "flags": ", ".join(_summary_flags(row)),
    }


def summary_rows(summary: pd.DataFrame, endpoints: Sequence[str]) -> list[dict[str, object]]:
    """The medians table: every summary row, by endpoint (in ``endpoints`` order), stage, level and stack."""
    order = {endpoint: index for index, endpoint in enumerate(endpoints)}
    ordered = summary.assign(_order=summary["endpoint"].map(order)).sort_values(
        ["_order", "stage", "level", "target"]
    )
    return [_summary_row(row) for row in ordered.to_dict("records")]


def _standing_rows(summary: pd.DataFrame, v: Verdict) -> list[dict[str, object]]:
    """Every stack at the verdict's level, ranked ones first by median, then those left out."""
    at_level = summary[(summary["endpoint"] == v.endpoint) & (summary["level"] == v.level)]
    rows = at_level.sort_values(
        ["requests_per_second_median", "target"], ascending=[False, True], na_position="last"
    )
    out = [_summary_row(row) | {"excluded": row["target"] in v.excluded} for row in rows.to_dict("records")]
    return sorted(out, key=lambda r: bool(r["excluded"]))


def _saturation_rows(
    searches: pd.DataFrame, endpoint: str, excluded: Sequence[str]
) -> list[dict[str, object]]:
    rows = searches[searches["endpoint"] == endpoint]
    rows = rows.sort_values(
        ["sustainable_requests_per_second_median", "target"], ascending=[False, True], na_position="last"
    )
    out = []
    for row in rows.to_dict("records"):
        flags = []
        if row["bound"]:
            reasons = merge_bound_reasons([row["bound_reasons"]])
            generator, upstream = bound_kinds(reasons)
            flags += _bound_flags(reasons, generator=generator, upstream=upstream)
        if int(_float(row["none_held"])):
            flags.append(f"no rate held in {int(_float(row['none_held']))} repeat(s)")
        if int(_float(row["never_broke"])):
            flags.append(f"never broke in {int(_float(row['never_broke']))} repeat(s): a floor")
        values = row["sustainable_requests_per_second_values"]
        out.append(
            {
                "target": row["target"],
                "interface": row["interface"] if isinstance(row["interface"], str) else "",
                "n": int(_float(row["n"])),
                "failed": int(_float(row["failed"])),
                "requests_per_second": format_number(
                    _float(row["sustainable_requests_per_second_median"]), 0
                ),
                "requests_per_second_ci": format_interval(
                    _interval(row, "sustainable_requests_per_second"), 0
                ),
                "requests_per_second_cv": format_percent(_float(row["sustainable_requests_per_second_cv"])),
                "by_repeat": ", ".join(format_number(v, 0) for v in values)
                if isinstance(values, tuple)
                else DASH,
                "p99": format_number(_float(row["latency_ms_p99_median"])),
                "breaches": "; ".join(row["breaches"]) if isinstance(row["breaches"], tuple) else "",
                "excluded": row["target"] in excluded,
                "flags": "; ".join(flags),
            }
        )
    return sorted(out, key=lambda r: bool(r["excluded"]))


def verdict_context(v: Verdict, summary: pd.DataFrame, searches: pd.DataFrame) -> dict[str, object]:
    """One verdict block: its sentences, flags, and the stacks at its level (or its saturation searches)."""
    return {
        "sentence": format_verdict(v),
        "ratios": format_ratios(v),
        "spread": format_spread(v),
        "flags": [format_flag(f) for f in v.flags],
        "where": format_where(v),
        "model": v.model,
        "endpoint": v.endpoint,
        "standings": _standing_rows(summary, v) if v.model != "saturation" else [],
        "searches": _saturation_rows(searches, v.endpoint, v.excluded) if v.model == "saturation" else [],
    }


def _best(standing: Standing | None) -> str:
    """A workload row's best stack of one interface with its median requests/s, or a dash."""
    if standing is None:
        return DASH
    return f"{standing.target} ({format_number(standing.requests_per_second_median, 0)} req/s)"


def workload_context(summary: WorkloadSummary) -> dict[str, object]:
    """One workload kind's sentence and its row per endpoint: best WSGI, best ASGI and their ratio."""
    return {
        "sentence": format_workload(summary),
        "rows": [
            {
                "endpoint": v.endpoint,
                "where": format_where(v).removeprefix(f"On {v.endpoint}").lstrip(", ") or DASH,
                "wsgi": _best(v.best_wsgi),
                "asgi": _best(v.best_asgi),
                "ratio": format_comparison(v.asgi_over_wsgi) if v.asgi_over_wsgi else DASH,
            }
            for v in summary.compared
        ],
    }


def packages(run: TargetRun, installed: Mapping[str, str]) -> list[tuple[str, str]]:
    """Each package a stack requires, with the version installed (``not recorded`` when unknown)."""

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    by_norm = {norm(name): (name, version) for name, version in installed.items()}
    found = []
    for requirement in run.config.packages:
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        key = norm(match.group(0)) if match else norm(requirement)
        found.append(by_norm.get(key, (requirement, "not recorded")))
    return found
