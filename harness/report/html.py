"""Render a stored run, and the list of runs, as self-contained HTML pages.

``render_*`` return HTML text and read only ``results/``; each run is analysed
once (:func:`harness.runanalysis.analyse_run`) and every section reads that
analysis: the tables and verdict blocks come from :mod:`harness.report.tables`,
the charts from :mod:`harness.report.runcharts`, the sentences from
:mod:`harness.report.formats`; stream endpoints (SSE, WebSocket) are told in their own
terms by :mod:`harness.report.streams`, and left out of the sections on requests.
:func:`write_reports` is the one function that writes files. Every value reaches
the page through jinja2 autoescaping, except the SVG charts, which matplotlib
escapes itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from harness import analysis, cost
from harness.idlesummary import idle_headline
from harness.model import RunManifest, TargetRun
from harness.paths import MigrationPath, run_paths
from harness.report.formats import (
    DASH,
    format_headline,
    format_number,
    format_slo,
    format_status,
    format_time,
)
from harness.report.idle import idle_endpoints
from harness.report.jinja import pages
from harness.report.paths import PATH_COLUMNS, PATH_NOTE, path_cells
from harness.report.runcharts import endpoint_charts
from harness.report.streams import stream_cells, stream_endpoints
from harness.report.streamwords import stream_headline
from harness.report.svg import stack_styles
from harness.report.tables import cell_row, packages, summary_rows, verdict_context, workload_context
from harness.results import ResultsError, list_runs, load_manifest, load_run, read_measurements, write_atomic
from harness.runanalysis import RunAnalysis, analyse_run


def _duration(manifest: RunManifest) -> str:
    try:
        start = datetime.fromisoformat(manifest.started_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat((manifest.finished_at or "").replace("Z", "+00:00"))
    except ValueError:
        return DASH
    minutes = round((end - start).total_seconds() / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _targets(manifest: RunManifest) -> list[tuple[str, TargetRun, list[tuple[str, str]]]]:
    """The stacks section: each stack (then the upstream) with its packages' installed versions."""
    installed = manifest.environment.packages
    found: list[tuple[str, TargetRun, list[tuple[str, str]]]] = [
        (name, run, packages(run, installed)) for name, run in sorted(manifest.targets.items())
    ]
    if manifest.upstream is not None:
        found.append(
            (
                f"{manifest.upstream.config.name} (the service every stack calls)",
                manifest.upstream,
                packages(manifest.upstream, installed),
            )
        )
    return found


def _path_context(run: RunAnalysis, paths: Sequence[MigrationPath]) -> dict[str, object]:
    """The migration-path table (:mod:`harness.report.paths`); no rows when the run measured no
    capacity of a path's stack."""
    rows = run_paths(run, paths)
    return {
        "path_rows": [path_cells(row) for row in rows],
        "path_defs": list({row.path.name: row.path for row in rows}.values()),
        "path_endpoints": list(dict.fromkeys(row.endpoint for row in rows)),
        "path_columns": PATH_COLUMNS,
        "path_note": PATH_NOTE,
        "path_load": format_number(run.manifest.scenario.target_requests_per_second, 0),
        "path_assumption": cost.assumption(1.0),
    }


def _sections(run: RunAnalysis) -> list[tuple[str, str]]:
    """The page's numbered sections, (id, title) in order: Streams only when the run has stream
    endpoints; the charts and medians of requests unless every endpoint streams."""
    sections = [("verdict", "Verdict")]
    if run.stream_kinds:
        sections.append(("streams", "Streams"))
    if run.idle_kinds:
        sections.append(("idle", "Idle connections"))
    if run.http_endpoints or not run.apart:
        sections += [("charts", "Charts"), ("medians", "Medians and intervals")]
    sections += [("cells", "Every cell"), ("stacks", "Stacks"), ("environment", "Environment")]
    return [*sections, ("raw", "Raw data")]


def _headline(run: RunAnalysis) -> str:
    """The run in one line for the list of runs: each HTTP endpoint's verdict, then each stream endpoint."""
    requests = [v for v in run.verdicts if v.endpoint not in run.apart]
    streams = [
        stream_headline(endpoint, kind, run.streams[run.streams["endpoint"] == endpoint])
        for endpoint, kind in run.stream_kinds.items()
    ] + [
        idle_headline(endpoint, kind, run.idle[run.idle["endpoint"] == endpoint])
        for endpoint, kind in run.idle_kinds.items()
    ]
    return "; ".join(([format_headline(requests)] if requests or not streams else []) + streams)


def _run_context(
    run_dir: Path, run: RunAnalysis, raw_href: str, problems: list[str], paths: Sequence[MigrationPath] = ()
) -> dict[str, object]:
    manifest, frame, interfaces = run.manifest, run.frame, run.interfaces
    order = {endpoint: index for index, endpoint in enumerate(run.endpoints)}
    styles = stack_styles(interfaces)
    cells = frame.assign(_order=frame["endpoint"].map(order)).sort_values(
        ["target", "_order", "level", "repeat"]
    )
    streamed = cells["endpoint"].isin(list(run.stream_kinds))
    requested = ~cells["endpoint"].isin(list(run.apart))
    summary = run.summary[~run.summary["endpoint"].isin(list(run.apart))]
    slo = format_slo(manifest.scenario.slo)
    sections = _sections(run)
    return {
        "manifest": manifest,
        "status_label": format_status(manifest.status),
        "scenario": manifest.scenario,
        "slo": slo,
        "started": format_time(manifest.started_at),
        "finished": format_time(manifest.finished_at),
        "duration": _duration(manifest),
        "sections": sections,
        "number": {section: index for index, (section, _) in enumerate(sections, start=1)},
        "verdicts": [
            verdict_context(v, summary, run.searches)
            for v in run.verdicts_in_order
            if v.endpoint not in run.apart
        ],
        "streams": stream_endpoints(run),
        "idle": idle_endpoints(run),
        "workloads": [workload_context(w) for w in run.workloads],
        "stacks": [
            {
                "name": name,
                "interface": interfaces[name] or "",
                "colour": style.colour,
                "wsgi": interfaces[name] == "wsgi",
            }
            for name, style in styles.items()
        ],
        "charts": endpoint_charts(run_dir, run, slo, problems),
        "summary": summary_rows(summary, run.http_endpoints),
        "open_model": bool((frame["model"] != "closed").any()),
        "cells": [cell_row(row) for row in cells[requested].to_dict("records")],
        "http_cells": bool(run.http_endpoints) or not run.apart,
        "stream_cells": stream_cells(cells[streamed], dict(run.stream_kinds)),
        "failed_count": int(cells[requested]["status"].eq("failed").sum()),
        "stream_failed_count": int(cells[streamed]["status"].eq("failed").sum()),
        "unsupported_count": int(cells[streamed]["status"].eq("unsupported").sum()),
        "timeout_s": manifest.scenario.timeout_s,
        "targets": _targets(manifest),
        "raw_href": raw_href.rstrip("/"),
        "littles_low": analysis.LITTLES_LAW_LOW,
        "littles_high": analysis.LITTLES_LAW_HIGH,
        **_path_context(run, paths),
    }


def _render_page(
    run_dir: Path,
    run: RunAnalysis,
    problems: list[str],
    raw_href: str | None,
    paths: Sequence[MigrationPath] = (),
) -> str:
    href = raw_href if raw_href is not None else f"../../results/{run.manifest.run_id}"
    context = _run_context(run_dir, run, href, problems, paths)
    context["problems"] = problems
    return pages.get_template("run.html.j2").render(context)


def render_run(run_dir: Path, *, raw_href: str | None = None, paths: Sequence[MigrationPath] = ()) -> str:
    """The report page of one stored run, as HTML text.

    ``raw_href`` is the run directory as seen from the page, for links to the
    raw files; by default ``../../results/<run_id>`` (``reports/<run_id>/``
    beside ``results/<run_id>/``). ``paths`` are the migration paths whose table
    opens the page (when the run measured capacity). Raises ResultsError for an unreadable run.
    """
    manifest = load_manifest(run_dir)
    measurements, problems = read_measurements(run_dir)
    return _render_page(run_dir, analyse_run(manifest, measurements), problems, raw_href, paths)


def _index_row(run_dir: Path, reports_root: Path, run: RunAnalysis | None) -> dict[str, object]:
    if run is None:
        try:
            manifest, measurements = load_run(run_dir)
        except (ResultsError, ValidationError, json.JSONDecodeError, OSError) as exc:
            return {"run_id": run_dir.name, "sort": "", "error": str(exc).splitlines()[0], "href": None}
        run = analyse_run(manifest, measurements)
    manifest = run.manifest
    page = reports_root / manifest.run_id / "index.html"
    return {
        "run_id": manifest.run_id,
        "sort": manifest.started_at,
        "error": None,
        "href": f"{manifest.run_id}/index.html" if page.is_file() else None,
        "date": format_time(manifest.started_at),
        "scenario": manifest.scenario.name,
        "status": manifest.status,
        "status_label": format_status(manifest.status),
        "stacks": sorted(manifest.targets),
        "headline": _headline(run),
    }


def render_index(
    results_root: Path, reports_root: Path, *, analysed: Mapping[str, RunAnalysis] | None = None
) -> str:
    """The list of every run under ``results_root``, newest first, linking to pages under ``reports_root``.

    A run without a rendered page is listed without a link; an unreadable run
    is listed with the reason. The claims page and run comparisons under
    ``reports_root`` are linked when they exist. ``analysed`` holds runs
    already analysed, by the name of their folder: those are not analysed again.
    """
    known = analysed or {}
    rows = [_index_row(run_dir, reports_root, known.get(run_dir.name)) for run_dir in list_runs(results_root)]
    rows.sort(key=lambda row: (str(row["sort"]), str(row["run_id"])), reverse=True)
    compare = reports_root / "compare"
    comparisons = sorted((p.name for p in compare.glob("*.html")), reverse=True) if compare.is_dir() else []
    return pages.get_template("index.html.j2").render(
        runs=rows,
        claims=(reports_root / "claims" / "index.html").is_file(),
        comparisons=[
            (f"compare/{name}", name.removesuffix(".html").replace("__", " vs ")) for name in comparisons
        ],
    )


def write_reports(
    run_dir: Path,
    reports_root: Path,
    *,
    paths: Sequence[MigrationPath] = (),
    analysed: tuple[RunAnalysis, list[str]] | None = None,
) -> Path:
    """Write ``reports_root/<run_id>/index.html``, regenerate ``reports_root/index.html``.

    Returns the run page's path. Runs listed in the index are those beside
    ``run_dir`` (its parent folder is the results root); this run is analysed
    once for both pages, or not at all when ``analysed`` gives its analysis and the
    problems met reading its measurements (:func:`harness.results.read_measurements`).
    ``paths``: the migration paths of the page's first table.
    """
    if analysed is None:
        measurements, problems = read_measurements(run_dir)
        run = analyse_run(load_manifest(run_dir), measurements)
    else:
        run, problems = analysed
    manifest = run.manifest
    page = reports_root / manifest.run_id / "index.html"
    raw_href = Path(os.path.relpath(run_dir.resolve(), page.parent.resolve())).as_posix()
    write_atomic(page, _render_page(run_dir, run, problems, raw_href, paths))
    index = render_index(run_dir.parent, reports_root, analysed={run_dir.name: run})
    write_atomic(reports_root / "index.html", index)
    return page
