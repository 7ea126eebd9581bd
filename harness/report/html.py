"""Render a stored run, and the list of runs, as self-contained HTML pages.

``render_*`` return HTML text and read only ``results/``; the sentences come
from :mod:`harness.report.formats`; :func:`write_reports` is the one function
that writes files. Every value reaches the page through jinja2 autoescaping,
except the SVG charts, which matplotlib escapes itself.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from pydantic import ValidationError

from harness import analysis, saturation, timeseries
from harness.histogram import decode
from harness.model import Measurement, Phase, RunManifest, TargetRun
from harness.report import charts, timecharts
from harness.report.formats import (
    DASH,
    format_comparison,
    format_flag,
    format_headline,
    format_interval,
    format_number,
    format_percent,
    format_ratios,
    format_slo,
    format_spread,
    format_time,
    format_verdict,
    format_where,
    format_workload,
)
from harness.results import ResultsError, list_runs, load_manifest, load_run, read_measurements, write_atomic
from harness.stats import Interval
from harness.verdict import Verdict, WorkloadSummary, verdict, workload_summary

TEMPLATES = Path(__file__).parent / "templates"

_jinja = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _endpoint_order(manifest: RunManifest, frame: pd.DataFrame) -> list[str]:
    order = list(manifest.scenario.endpoint_labels())
    return order + sorted(set(frame["endpoint"]) - set(order))


def _interfaces(manifest: RunManifest, frame: pd.DataFrame) -> dict[str, str | None]:
    interfaces: dict[str, str | None] = {name: None for name in frame["target"]}
    interfaces.update({name: run.config.interface for name, run in manifest.targets.items()})
    return interfaces


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "root"


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
    return None if math.isnan(low) else Interval(low, high)


def _cell_flags(row: Mapping[Hashable, object]) -> list[str]:
    flags = []
    if row["generator_bound"]:
        reason = row["generator_bound_reason"]
        flags.append(f"generator bound: {reason}" if isinstance(reason, str) else "generator bound")
    if row["upstream_bound"]:
        flags.append(f"upstream bound ({format_number(_float(row['upstream_cpu_percent']), 0)}% CPU)")
    if _float(row["dropped"]) > 0:
        flags.append(f"dropped {int(_float(row['dropped'])):,}")
    if row["littles_law_inconsistent"]:
        flags.append(f"Little's law {_float(row['littles_law_ratio']):.2f}")
    if row["sync_ceiling_exceeded"]:
        flags.append(f"above sync ceiling {format_number(_float(row['sync_ceiling_rps']), 0)} req/s")
    if row["slo_held"] is False:
        flags.append(f"SLO broken: {row['slo_breach']}")
    # A trend is stored only over a minute or more; flagged when its whole 95% interval is above 0.
    if _float(row["server_memory_slope_low"]) > 0:
        flags.append(f"memory growing {_float(row['server_memory_slope_mb_per_min']):+.2f} MiB/min")
    return flags


def _cell_row(row: Mapping[Hashable, object]) -> dict[str, object]:
    def num(column: str, digits: int | None = None) -> str:
        return format_number(_float(row[column]), digits)

    errors = [f"{kind} {row[f'errors_{kind}']}" for kind in analysis.ERROR_KINDS if row[f"errors_{kind}"]]
    return {
        "target": row["target"],
        "endpoint": row["endpoint"],
        "level": _level(row["model"], row["level"], row["stage_kind"]),
        "repeat": row["repeat"],
        "failed": row["status"] == "failed",
        "reason": row["failure_reason"] or "no reason recorded",
        "rps": num("rps"),
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
        "rss": num("server_rss_mb_peak", 0),
        "pss": num("server_pss_mb_peak", 0),
        "generator_cpu": num("generator_cpu_percent", 0),
        "ratio": num("littles_law_ratio", 2),
        "flags": "; ".join(_cell_flags(row)),
    }


def _summary_flags(row: Mapping[Hashable, object]) -> list[str]:
    flags = []
    if int(_float(row["n"])) == 1:
        flags.append("single run")
    if row["generator_bound"]:
        flags.append("generator bound")
    if row["upstream_bound"]:
        flags.append("upstream bound")
    if int(_float(row["errors_total"])):
        flags.append(f"errors {int(_float(row['errors_total'])):,}")
    if int(_float(row["dropped"])):
        flags.append(f"dropped {int(_float(row['dropped'])):,}")
    if row["littles_law_inconsistent"]:
        flags.append(f"Little's law {_float(row['littles_law_ratio_median']):.2f}")
    if row["sync_ceiling_exceeded"]:
        flags.append(f"above sync ceiling {format_number(_float(row['sync_ceiling_rps']), 0)} req/s")
    return flags


def _ceiling(row: Mapping[Hashable, object]) -> str:
    """A sync stack's Little's-law ceiling (requests/s) and the share served: ``38 (96%)``; else empty."""
    ceiling, rps = _float(row["sync_ceiling_rps"]), _float(row["rps_median"])
    if math.isnan(ceiling) or ceiling <= 0:
        return ""
    share = "" if math.isnan(rps) else f" ({rps / ceiling:.0%})"
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
        "rps": format_number(_float(row["rps_median"]), 0),
        "rps_ci": format_interval(_interval(row, "rps"), 0),
        "rps_cv": format_percent(_float(row["rps_cv"])),
        "p50": format_number(_float(row["latency_ms_p50_median"])),
        "p99": format_number(_float(row["latency_ms_p99_median"])),
        "p99_ci": format_interval(_interval(row, "latency_ms_p99")),
        "p99_uncorrected": format_number(_float(row["latency_ms_uncorrected_p99_median"])),
        "cpu_us": format_number(_float(row["server_cpu_us_per_request_median"]), 0),
        "pss": format_number(_float(row["server_pss_mb_peak_max"]), 0),
        "ceiling": _ceiling(row),
        "errors": int(_float(row["errors_total"])),
        "dropped": int(_float(row["dropped"])),
        "flags": ", ".join(_summary_flags(row)),
    }


def _summary_rows(summary: pd.DataFrame, endpoints: Sequence[str]) -> list[dict[str, object]]:
    order = {endpoint: index for index, endpoint in enumerate(endpoints)}
    ordered = summary.assign(_order=summary["endpoint"].map(order)).sort_values(
        ["_order", "stage", "level", "target"]
    )
    return [_summary_row(row) for row in ordered.to_dict("records")]


def _standing_rows(summary: pd.DataFrame, v: Verdict) -> list[dict[str, object]]:
    """Every stack at the verdict's level, ranked ones first by median, then those left out."""
    at_level = summary[(summary["endpoint"] == v.endpoint) & (summary["level"] == v.level)]
    rows = at_level.sort_values(["rps_median", "target"], ascending=[False, True], na_position="last")
    out = [_summary_row(row) | {"excluded": row["target"] in v.excluded} for row in rows.to_dict("records")]
    return sorted(out, key=lambda r: bool(r["excluded"]))


def _saturation_rows(
    searches: pd.DataFrame, endpoint: str, excluded: Sequence[str]
) -> list[dict[str, object]]:
    rows = searches[searches["endpoint"] == endpoint]
    rows = rows.sort_values(["sustainable_rps_median", "target"], ascending=[False, True], na_position="last")
    out = []
    for row in rows.to_dict("records"):
        flags = []
        if row["bound"]:
            flags.append(str(row["bound_reason"]))
        if int(_float(row["none_held"])):
            flags.append(f"no rate held in {int(_float(row['none_held']))} repeat(s)")
        if int(_float(row["never_broke"])):
            flags.append(f"never broke in {int(_float(row['never_broke']))} repeat(s): a floor")
        values = row["sustainable_rps_values"]
        out.append(
            {
                "target": row["target"],
                "interface": row["interface"] if isinstance(row["interface"], str) else "",
                "n": int(_float(row["n"])),
                "failed": int(_float(row["failed"])),
                "rps": format_number(_float(row["sustainable_rps_median"]), 0),
                "rps_ci": format_interval(_interval(row, "sustainable_rps"), 0),
                "rps_cv": format_percent(_float(row["sustainable_rps_cv"])),
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


def _packages(run: TargetRun, installed: Mapping[str, str]) -> list[tuple[str, str]]:
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    by_norm = {norm(name): (name, version) for name, version in installed.items()}
    found = []
    for requirement in run.config.packages:
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        key = norm(match.group(0)) if match else norm(requirement)
        found.append(by_norm.get(key, (requirement, "not recorded")))
    return found


def _duration(manifest: RunManifest) -> str:
    try:
        start = datetime.fromisoformat(manifest.started_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat((manifest.finished_at or "").replace("Z", "+00:00"))
    except ValueError:
        return DASH
    minutes = round((end - start).total_seconds() / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _histograms(run_dir: Path, cells: pd.DataFrame, problems: list[str]) -> dict[str, list[str]]:
    """The encoded histograms of these cells, by target; each unreadable one is named in ``problems``."""
    root = run_dir.resolve()
    found: dict[str, list[str]] = {}
    for row in cells.to_dict("records"):
        relative = row["histogram"]
        if not isinstance(relative, str):
            continue
        path = (run_dir / relative).resolve()
        try:
            if not path.is_relative_to(root):
                raise ValueError("outside the run folder")
            encoded = path.read_text(encoding="ascii").strip()
            decode(encoded)
        # hdrh raises its own exception classes, which subclass Exception only.
        except Exception as exc:
            problems.append(f"{relative}: unreadable histogram ({exc}); left out of the percentile spectrum")
            continue
        found.setdefault(str(row["target"]), []).append(encoded)
    return found


@dataclass(frozen=True)
class _EndpointCharts:
    endpoint: str
    anchor: str
    charts: tuple[tuple[str, Markup], ...]
    error_free: bool = False  # measured, without a failed or dropped request: no errors chart


def with_phases(summary: pd.DataFrame, phases: Sequence[Phase]) -> pd.DataFrame:
    """``summary`` with each staged row's phase: ``stage_kind``, ``stage_start_s``, ``stage_duration_s``,
    ``stage_level_start`` and ``stage_level_end`` (None/NaN on rows that are not phases)."""
    by_index = {p.index: p for p in phases}
    found = [by_index.get(int(stage)) for stage in summary["stage"]]

    def number(attribute: str) -> pd.Series:
        values = [math.nan if p is None else float(getattr(p, attribute)) for p in found]
        return pd.Series(values, index=summary.index, dtype=float)

    return summary.assign(
        stage_kind=pd.Series([p and p.kind for p in found], index=summary.index, dtype=object),
        stage_start_s=number("start_s"),
        stage_duration_s=number("duration_s"),
        stage_level_start=number("start_level"),
        stage_level_end=number("end_level"),
    )


def _memory_series(
    run_dir: Path, cells: pd.DataFrame, problems: list[str]
) -> dict[str, timecharts.MemorySeries]:
    """Each stack's server samples from its first ok cell among ``cells`` that has a time series."""
    out: dict[str, timecharts.MemorySeries] = {}
    picked = cells[cells["status"].eq("ok") & cells["timeseries"].notna()].sort_values(["repeat", "stage"])
    for name, stack in picked.groupby("target", sort=True):
        path = run_dir / str(stack["timeseries"].iloc[0])
        try:
            series = timeseries.read(path)
        except (OSError, ValueError) as exc:
            problems.append(f"memory over time of {name}: {exc}")
            continue
        values = series[timeseries.memory_column(series)]
        # None over a short window: that is warm-up, not a leak (timeseries.MIN_SLOPE_WINDOW_S).
        slope = timeseries.memory_slope(series["t_s"].tolist(), values.tolist())
        out[str(name)] = (series, None if slope is None else slope.mb_per_min)
    return out


def _memory_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Peak memory per stack over every ok cell given, in the shape :func:`charts.memory_chart` reads."""
    ok = frame[frame["status"].eq("ok")]
    return (
        ok.groupby("target", sort=True)
        .agg(
            n=("repeat", "count"),
            server_pss_mb_peak_max=("server_pss_mb_peak", "max"),
            server_rss_mb_peak_max=("server_rss_mb_peak", "max"),
        )
        .reset_index()
    )


def _spectrum_title(top: pd.DataFrame) -> str:
    if top["model"].eq("saturation").all():
        return "Percentile spectrum at each stack's sustainable rate"
    model, level = top["model"].iloc[0], _float(top["level"].max())
    where = (
        f"concurrency {format_number(level, 0)}" if model == "closed" else f"{format_number(level, 0)} req/s"
    )
    return f"Percentile spectrum at {where}"


def _charts(
    run_dir: Path,
    frame: pd.DataFrame,
    tables: tuple[pd.DataFrame, pd.DataFrame],
    endpoints: Sequence[str],
    interfaces: Mapping[str, str | None],
    slo: str,
    problems: list[str],
) -> list[_EndpointCharts]:
    summary, searches = tables
    styles = charts.stack_styles(interfaces)
    top_cells = analysis.highest_level_cells(frame)
    out = []
    for index, endpoint in enumerate(endpoints):
        rows = summary[summary["endpoint"] == endpoint]
        searched = searches[searches["endpoint"] == endpoint]
        drawn: list[tuple[str, str]] = []
        staged = bool((rows["stage"] >= 0).any())
        if staged and (rows["n"] > 0).any():
            unit = "connections" if (rows["model"] == "closed").all() else "requests/s"
            drawn.append(
                ("stages", timecharts.stages_chart(rows, styles, interfaces, f"e{index}g", unit=unit))
            )
        elif (rows["n"] > 0).any():
            x = "concurrency" if (rows["model"] == "closed").all() else "rate"
            drawn.append(("throughput", charts.throughput_chart(rows, styles, interfaces, f"e{index}t", x)))
            drawn.append(("cpu", charts.cpu_chart(rows, styles, interfaces, f"e{index}c", x)))
            if x == "concurrency":
                drawn.append(("latency", charts.latency_chart(rows, styles, interfaces, f"e{index}l")))
            else:
                drawn.append(("latency", charts.open_latency_chart(rows, styles, interfaces, f"e{index}l")))
        if (searched["n"] > 0).any():
            drawn.append(
                ("sustainable", charts.sustainable_chart(searched, styles, interfaces, f"e{index}s", slo=slo))
            )
        top = top_cells[top_cells["endpoint"] == endpoint]
        if len(top):
            spectra = {
                name: analysis.percentile_spectrum(encoded)
                for name, encoded in _histograms(run_dir, top, problems).items()
            }
            if spectra:
                title = _spectrum_title(top)
                drawn.append(
                    (
                        "spectrum",
                        charts.spectrum_chart(spectra, styles, interfaces, f"e{index}p", title=title),
                    )
                )
            memory = _memory_rows(frame[frame["endpoint"] == endpoint])
            drawn.append(("memory", charts.memory_chart(memory, styles, interfaces, f"e{index}m")))
            over_time = frame[(frame["endpoint"] == endpoint) & (frame["stage"] >= 0)] if staged else top
            series = _memory_series(run_dir, over_time, problems)
            if series:
                if staged:
                    title = "Memory over the staged run"
                    boundaries = sorted(set(rows["stage_start_s"].dropna().astype(float)) - {0.0})
                else:
                    title = "Memory over time, " + _spectrum_title(top).removeprefix("Percentile spectrum ")
                    boundaries = []
                drawn.append(
                    (
                        "memory-time",
                        timecharts.memory_over_time_chart(
                            series, styles, interfaces, f"e{index}w", title=title, boundaries_s=boundaries
                        ),
                    )
                )
        measured = rows[rows["n"] > 0]
        failed_requests = int((measured["errors_total"] + measured["dropped"]).sum())
        if failed_requests:
            x = "concurrency" if (rows["model"] == "closed").all() else "rate"
            ok = frame[
                (frame["endpoint"] == endpoint) & frame["status"].eq("ok") & (frame["model"] != "saturation")
            ]
            drawn.append(("errors", charts.errors_chart(measured, ok, styles, interfaces, f"e{index}e", x)))
        out.append(
            _EndpointCharts(
                endpoint,
                _slug(endpoint),
                tuple((k, Markup(svg)) for k, svg in drawn),
                error_free=bool(len(measured)) and not failed_requests,
            )
        )
    return out


def _verdict_context(v: Verdict, summary: pd.DataFrame, searches: pd.DataFrame) -> dict[str, object]:
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


def _workload_context(summary: WorkloadSummary) -> dict[str, object]:
    return {
        "sentence": format_workload(summary),
        "rows": [
            {
                "endpoint": v.endpoint,
                "where": format_where(v).removeprefix(f"On {v.endpoint}").lstrip(", ") or DASH,
                "wsgi": f"{v.best_wsgi.target} ({format_number(v.best_wsgi.rps_median, 0)} req/s)"
                if v.best_wsgi
                else DASH,
                "asgi": f"{v.best_asgi.target} ({format_number(v.best_asgi.rps_median, 0)} req/s)"
                if v.best_asgi
                else DASH,
                "ratio": format_comparison(v.asgi_over_wsgi) if v.asgi_over_wsgi else DASH,
            }
            for v in summary.compared
        ],
    }


def _run_context(
    run_dir: Path,
    manifest: RunManifest,
    measurements: Sequence[Measurement],
    raw_href: str,
    problems: list[str],
) -> dict[str, object]:
    frame = analysis.measurements_frame(measurements, manifest.targets)
    summary = with_phases(analysis.summarise(frame), manifest.scenario.phases())
    searches = saturation.saturation_summary(frame)
    endpoints = _endpoint_order(manifest, frame)
    interfaces = _interfaces(manifest, frame)
    verdicts = verdict(summary, manifest.targets, searches)
    order = {endpoint: index for index, endpoint in enumerate(endpoints)}
    ordered = sorted(verdicts, key=lambda v: order.get(v.endpoint, len(order)))
    styles = charts.stack_styles(interfaces)
    cells = frame.assign(_order=frame["endpoint"].map(order)).sort_values(
        ["target", "_order", "level", "repeat"]
    )
    slo = format_slo(manifest.scenario.slo)
    return {
        "manifest": manifest,
        "scenario": manifest.scenario,
        "slo": slo,
        "started": format_time(manifest.started_at),
        "finished": format_time(manifest.finished_at),
        "duration": _duration(manifest),
        "verdicts": [_verdict_context(v, summary, searches) for v in ordered],
        "workloads": [_workload_context(w) for w in workload_summary(ordered)],
        "stacks": [
            {
                "name": name,
                "interface": interfaces[name] or "",
                "colour": style.colour,
                "wsgi": interfaces[name] == "wsgi",
            }
            for name, style in styles.items()
        ],
        "charts": _charts(run_dir, frame, (summary, searches), endpoints, interfaces, slo, problems),
        "summary": _summary_rows(summary, endpoints),
        "open_model": bool((frame["model"] != "closed").any()),
        "cells": [_cell_row(row) for row in cells.to_dict("records")],
        "failed_count": int(frame["status"].eq("failed").sum()),
        "targets": [
            (name, run, _packages(run, manifest.environment.packages))
            for name, run in sorted(manifest.targets.items())
        ]
        + (
            []
            if manifest.upstream is None
            else [
                (
                    f"{manifest.upstream.config.name} (the service every stack calls)",
                    manifest.upstream,
                    _packages(manifest.upstream, manifest.environment.packages),
                )
            ]
        ),
        "raw_href": raw_href.rstrip("/"),
        "littles_low": analysis.LITTLES_LAW_LOW,
        "littles_high": analysis.LITTLES_LAW_HIGH,
    }


def render_run(run_dir: Path, *, raw_href: str | None = None) -> str:
    """The report page of one stored run, as HTML text.

    ``raw_href`` is the run directory as seen from the page, for links to the
    raw files; by default ``../../results/<run_id>`` (``reports/<run_id>/``
    beside ``results/<run_id>/``). Raises ResultsError for an unreadable run.
    """
    manifest = load_manifest(run_dir)
    measurements, problems = read_measurements(run_dir)
    href = raw_href if raw_href is not None else f"../../results/{manifest.run_id}"
    context = _run_context(run_dir, manifest, measurements, href, problems)
    context["problems"] = problems
    return _jinja.get_template("run.html.j2").render(context)


def _index_row(run_dir: Path, reports_root: Path) -> dict[str, object]:
    try:
        manifest, measurements = load_run(run_dir)
    except (ResultsError, ValidationError, json.JSONDecodeError, OSError) as exc:
        return {"run_id": run_dir.name, "sort": "", "error": str(exc).splitlines()[0], "href": None}
    frame = analysis.measurements_frame(measurements, manifest.targets)
    verdicts = verdict(analysis.summarise(frame), manifest.targets, saturation.saturation_summary(frame))
    page = reports_root / manifest.run_id / "index.html"
    return {
        "run_id": manifest.run_id,
        "sort": manifest.started_at,
        "error": None,
        "href": f"{manifest.run_id}/index.html" if page.is_file() else None,
        "date": format_time(manifest.started_at),
        "scenario": manifest.scenario.name,
        "status": manifest.status,
        "stacks": sorted(manifest.targets),
        "headline": format_headline(verdicts),
    }


def render_index(results_root: Path, reports_root: Path) -> str:
    """The list of every run under ``results_root``, newest first, linking to pages under ``reports_root``.

    A run without a rendered page is listed without a link; an unreadable run
    is listed with the reason. The claims page and run comparisons under
    ``reports_root`` are linked when they exist.
    """
    rows = [_index_row(run_dir, reports_root) for run_dir in list_runs(results_root)]
    rows.sort(key=lambda row: (str(row["sort"]), str(row["run_id"])), reverse=True)
    compare = reports_root / "compare"
    comparisons = sorted((p.name for p in compare.glob("*.html")), reverse=True) if compare.is_dir() else []
    return _jinja.get_template("index.html.j2").render(
        runs=rows,
        claims=(reports_root / "claims" / "index.html").is_file(),
        comparisons=[
            (f"compare/{name}", name.removesuffix(".html").replace("__", " vs ")) for name in comparisons
        ],
    )


def write_reports(run_dir: Path, reports_root: Path) -> Path:
    """Write ``reports_root/<run_id>/index.html``, regenerate ``reports_root/index.html``.

    Returns the run page's path. Runs listed in the index are those beside
    ``run_dir`` (its parent folder is the results root).
    """
    manifest = load_manifest(run_dir)
    page = reports_root / manifest.run_id / "index.html"
    raw_href = Path(os.path.relpath(run_dir.resolve(), page.parent.resolve())).as_posix()
    write_atomic(page, render_run(run_dir, raw_href=raw_href))
    write_atomic(reports_root / "index.html", render_index(run_dir.parent, reports_root))
    return page
