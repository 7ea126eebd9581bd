"""Render a stored run, and the list of runs, as self-contained HTML pages.

``render_*`` return HTML text and read only ``results/``; ``format_*`` turn
analysis values into sentences; :func:`write_reports` is the one function
that writes files. Every value reaches the page through jinja2 autoescaping,
except the SVG charts, which matplotlib escapes itself.
"""

from __future__ import annotations

import json
import math
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

from harness import analysis
from harness.analysis import Flag, Standing, Verdict
from harness.model import Measurement, RunManifest, TargetRun
from harness.report import charts
from harness.results import ResultsError, list_runs, load_manifest, load_run, read_measurements, write_atomic

TEMPLATES = Path(__file__).parent / "templates"
DASH = "\N{EN DASH}"  # ranges (1,296-1,319) and missing values

_jinja = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value: float | None, digits: int | None = None) -> str:
    """``1234.5 -> "1,234"``, ``12.345 -> "12.3"``, ``1.2345 -> "1.23"``; None/NaN -> an en dash.

    Without ``digits``, keeps about three significant figures for small values.
    """
    if value is None or _missing(value):
        return DASH
    if digits is None:
        magnitude = abs(value)
        digits = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2
    return f"{value:,.{digits}f}"


def format_ratio(ratio: float) -> str:
    """``5.47 -> "5.5x"``, ``0.623 -> "0.62x"``, ``12.4 -> "12x"``."""
    if ratio >= 10:
        return f"{ratio:.0f}x"
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"


def _rps(standing: Standing) -> str:
    # Single runs are called out in the "Repeats:" line and the flags right below.
    return f"{format_number(standing.rps_median, 0)} requests/s"


def format_verdict(verdict: Verdict) -> str:
    """One sentence: who served most, and how the best ASGI and WSGI stacks compare."""
    where = f"On {verdict.endpoint} at concurrency {verdict.concurrency}"
    best, wsgi, asgi = verdict.best, verdict.best_wsgi, verdict.best_asgi
    if best is None:
        return f"{where}, no stack produced a measurement."
    kind = f" ({best.interface.upper()})" if best.interface else ""
    head = f"{where}, {best.target}{kind} served {_rps(best)}"
    ratio = verdict.asgi_over_wsgi
    if ratio is not None and wsgi is not None and asgi is not None:
        if best is asgi:
            return f"{head}, {format_ratio(ratio)} the best WSGI stack ({wsgi.target}, {_rps(wsgi)})."
        if best is wsgi:
            return (
                f"{head}; the best ASGI stack ({asgi.target}, {_rps(asgi)}) "
                f"served {format_ratio(ratio)} as many."
            )
        return (
            f"{head}; the best ASGI stack ({asgi.target}, {_rps(asgi)}) served "
            f"{format_ratio(ratio)} the best WSGI stack ({wsgi.target}, {_rps(wsgi)})."
        )
    absent = "WSGI" if wsgi is None else "ASGI"
    return f"{head}; no {absent} stack was measured at this level, so there is no ASGI/WSGI ratio."


def format_spread(verdict: Verdict) -> str | None:
    """The repeats and min-max ranges behind a verdict's numbers, or None when nothing was measured."""
    shown = [s for s in (verdict.best, verdict.best_wsgi, verdict.best_asgi) if s is not None]
    unique = list({s.target: s for s in shown}.values())
    if not unique:
        return None
    parts = [
        f"{s.target} median of {s.n}, range {format_number(s.rps_min, 0)}{DASH}{format_number(s.rps_max, 0)}"
        if s.n > 1
        else f"{s.target} single run, no spread"
        for s in unique
    ]
    return "Repeats: " + "; ".join(parts) + "."


def format_flag(flag: Flag) -> str:
    """A sentence saying what the flag means for the number it weakens."""
    t = flag.target
    value = flag.value if flag.value is not None else math.nan
    if flag.kind == "single_run":
        return f"{t}: single run, no spread; repeat the run to know how stable this number is."
    if flag.kind == "errors":
        return f"{t}: {value:,.0f} failed requests at this level (requests/s counts successes only)."
    if flag.kind == "generator_bound":
        return (
            f"{t}: the load generator was the bottleneck (generator_bound), so this throughput "
            "is a floor, not the server's limit."
        )
    if flag.kind == "littles_law":
        return (
            f"{t}: Little's law check failed: requests/s x mean latency = {value:.2f} x the concurrency "
            f"(expected {analysis.LITTLES_LAW_LOW}{DASH}{analysis.LITTLES_LAW_HIGH}); the driver's counts, "
            "clock or latencies disagree."
        )
    if flag.kind == "spread_overlap":
        return (
            f"{t} and {flag.other}: their min-max ranges across repeats overlap, "
            "so the order between them is not settled."
        )
    return f"{t}: {value:,.0f} failed cell(s) at this level, excluded from the statistics."


def format_headline(verdicts: Sequence[Verdict]) -> str:
    """One line for the list of runs: the winner and the ASGI/WSGI ratio per endpoint."""
    parts = []
    for v in verdicts:
        if v.best is None:
            parts.append(f"{v.endpoint}: no measurement")
            continue
        part = f"{v.endpoint} @ c{v.concurrency}: {v.best.target} {format_number(v.best.rps_median, 0)} req/s"
        if v.asgi_over_wsgi is not None:
            part += f", ASGI/WSGI {format_ratio(v.asgi_over_wsgi)}"
        if v.flags:
            part += f" ({len(v.flags)} flag{'s' if len(v.flags) > 1 else ''})"
        parts.append(part)
    return "; ".join(parts) if parts else "no measurements"


def format_time(iso: str | None) -> str:
    """``2024-06-01T12:00:05+00:00 -> "2024-06-01 12:00 UTC"``; unparsable text is returned as is."""
    if not iso:
        return DASH
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _endpoint_order(manifest: RunManifest, frame: pd.DataFrame) -> list[str]:
    order = list(manifest.scenario.endpoints)
    return order + sorted(set(frame["endpoint"]) - set(order))


def _interfaces(manifest: RunManifest, frame: pd.DataFrame) -> dict[str, str | None]:
    interfaces: dict[str, str | None] = {name: None for name in frame["target"]}
    interfaces.update({name: run.config.interface for name, run in manifest.targets.items()})
    return interfaces


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "root"


def _cell_row(row: Mapping[Hashable, object]) -> dict[str, object]:
    def num(column: str, digits: int | None = None) -> str:
        value = row[column]
        return format_number(float(value), digits) if isinstance(value, int | float) else DASH

    errors = [f"{kind} {row[f'errors_{kind}']}" for kind in analysis.ERROR_KINDS if row[f"errors_{kind}"]]
    flags = []
    if row["generator_bound"]:
        flags.append("generator bound")
    if row["littles_law_inconsistent"]:
        flags.append(f"Little's law {float(str(row['littles_law_ratio'])):.2f}")
    failed = row["status"] == "failed"
    return {
        "target": row["target"],
        "endpoint": row["endpoint"],
        "concurrency": row["concurrency"],
        "repeat": row["repeat"],
        "failed": failed,
        "reason": row["failure_reason"] or "no reason recorded",
        "rps": num("rps"),
        "p50": num("latency_ms_p50"),
        "p90": num("latency_ms_p90"),
        "p99": num("latency_ms_p99"),
        "p999": num("latency_ms_p999"),
        "max": num("latency_ms_max"),
        "errors": ", ".join(errors) or "0",
        "cpu": num("server_cpu_percent", 0),
        "rss": num("server_rss_mb_peak", 0),
        "pss": num("server_pss_mb_peak", 0),
        "generator_cpu": num("generator_cpu_percent", 0),
        "ratio": num("littles_law_ratio", 2),
        "flags": ", ".join(flags),
    }


def _summary_flags(row: pd.Series) -> list[str]:
    flags = []
    if int(row["n"]) == 1:
        flags.append("single run")
    if bool(row["generator_bound"]):
        flags.append("generator bound")
    if bool(row["littles_law_inconsistent"]):
        flags.append(f"Little's law {float(row['littles_law_ratio_median']):.2f}")
    return flags


def _standing_rows(summary: pd.DataFrame, verdict: Verdict) -> list[dict[str, object]]:
    at_level = (summary["endpoint"] == verdict.endpoint) & (summary["concurrency"] == verdict.concurrency)
    level = summary[at_level]
    level = level.sort_values(["rps_median", "target"], ascending=[False, True], na_position="last")
    rows = []
    for _, r in level.iterrows():
        n = int(r["n"])
        spread = f"{format_number(r['rps_min'], 0)}{DASH}{format_number(r['rps_max'], 0)}" if n > 1 else DASH
        rows.append(
            {
                "target": r["target"],
                "interface": r["interface"] if isinstance(r["interface"], str) else "",
                "n": n,
                "failed": int(r["failed"]),
                "rps": format_number(r["rps_median"], 0),
                "spread": spread,
                "p50": format_number(r["latency_ms_p50_median"]),
                "p99": format_number(r["latency_ms_p99_median"]),
                "cpu_us": format_number(r["server_cpu_us_per_request_median"], 0),
                "pss": format_number(r["server_pss_mb_peak_max"], 0),
                "errors": int(r["errors_total"]),
                "flags": ", ".join(_summary_flags(r)),
            }
        )
    return rows


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


@dataclass(frozen=True)
class _EndpointCharts:
    endpoint: str
    anchor: str
    charts: tuple[tuple[str, Markup], ...]


def _charts(
    summary: pd.DataFrame, endpoints: Sequence[str], interfaces: Mapping[str, str | None]
) -> list[_EndpointCharts]:
    styles = charts.stack_styles(interfaces)
    out = []
    for index, endpoint in enumerate(endpoints):
        rows = summary[summary["endpoint"] == endpoint]
        if not (rows["n"] > 0).any():
            out.append(_EndpointCharts(endpoint, _slug(endpoint), ()))
            continue
        drawn = (
            ("throughput", charts.throughput_chart(rows, styles, interfaces, f"e{index}t")),
            ("cpu", charts.cpu_chart(rows, styles, interfaces, f"e{index}c")),
            ("latency", charts.latency_chart(rows, styles, interfaces, f"e{index}l")),
            ("memory", charts.memory_chart(rows, styles, interfaces, f"e{index}m")),
        )
        out.append(_EndpointCharts(endpoint, _slug(endpoint), tuple((k, Markup(svg)) for k, svg in drawn)))
    return out


def _duration(manifest: RunManifest) -> str:
    try:
        start = datetime.fromisoformat(manifest.started_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat((manifest.finished_at or "").replace("Z", "+00:00"))
    except ValueError:
        return DASH
    minutes = round((end - start).total_seconds() / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _run_context(
    manifest: RunManifest, measurements: Sequence[Measurement], raw_href: str
) -> dict[str, object]:
    frame = analysis.measurements_frame(measurements, manifest.targets)
    summary = analysis.summarise(frame)
    endpoints = _endpoint_order(manifest, frame)
    interfaces = _interfaces(manifest, frame)
    verdicts = {v.endpoint: v for v in analysis.verdict(summary, manifest.targets)}
    ordered = [verdicts[e] for e in endpoints if e in verdicts]
    styles = charts.stack_styles(interfaces)
    order = {endpoint: index for index, endpoint in enumerate(endpoints)}
    cells = frame.assign(_order=frame["endpoint"].map(order)).sort_values(
        ["target", "_order", "concurrency", "repeat"]
    )
    return {
        "manifest": manifest,
        "scenario": manifest.scenario,
        "started": format_time(manifest.started_at),
        "finished": format_time(manifest.finished_at),
        "duration": _duration(manifest),
        "verdicts": [
            {
                "sentence": format_verdict(v),
                "spread": format_spread(v),
                "flags": [format_flag(f) for f in v.flags],
                "standings": _standing_rows(summary, v),
                "concurrency": v.concurrency,
                "endpoint": v.endpoint,
            }
            for v in ordered
        ],
        "stacks": [
            {
                "name": name,
                "interface": interfaces[name] or "",
                "colour": style.colour,
                "wsgi": interfaces[name] == "wsgi",
            }
            for name, style in styles.items()
        ],
        "charts": _charts(summary, endpoints, interfaces),
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
    context = _run_context(manifest, measurements, href)
    context["problems"] = problems
    return _jinja.get_template("run.html.j2").render(context)


def _index_row(run_dir: Path, reports_root: Path) -> dict[str, object]:
    try:
        manifest, measurements = load_run(run_dir)
    except (ResultsError, ValidationError, json.JSONDecodeError, OSError) as exc:
        return {"run_id": run_dir.name, "sort": "", "error": str(exc).splitlines()[0], "href": None}
    frame = analysis.measurements_frame(measurements, manifest.targets)
    verdicts = analysis.verdict(analysis.summarise(frame), manifest.targets)
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
    is listed with the reason.
    """
    rows = [_index_row(run_dir, reports_root) for run_dir in list_runs(results_root)]
    rows.sort(key=lambda row: (str(row["sort"]), str(row["run_id"])), reverse=True)
    return _jinja.get_template("index.html.j2").render(runs=rows)


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
