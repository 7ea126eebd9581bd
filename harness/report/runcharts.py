"""The charts section of a run's page: which charts each endpoint gets, drawn from the run's analysis.

Per endpoint, in page order: a staged run's phases, else throughput, CPU cost
and latency by load level; sustainable throughput of saturation searches; the
percentile spectrum, peak memory and memory over time of the top load; errors
when any request failed or was dropped. Numbers come from a
:class:`~harness.runanalysis.RunAnalysis`; the run's files are read here only
for what no measurement holds: the latency histograms and the time series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from harness import analysis, timeseries
from harness.cellstate import ran_load
from harness.histogram import decode
from harness.report import charts, memorycharts, timecharts
from harness.report.formats import format_number
from harness.report.memorycharts import MemorySeries
from harness.report.svg import StackStyle, stack_styles
from harness.runanalysis import RunAnalysis


@dataclass(frozen=True)
class EndpointCharts:
    """One endpoint's charts: ``charts`` pairs each chart's kind (its figure's class) with its SVG."""

    endpoint: str
    anchor: str
    charts: tuple[tuple[str, Markup], ...]
    error_free: bool = False  # measured, without a failed or dropped request: no errors chart


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "root"


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


def _memory_series(
    run_dir: Path, cells: pd.DataFrame, problems: list[str], *, whole_run: bool
) -> dict[str, MemorySeries]:
    """Each stack's server samples from its first cell among ``cells`` that ran load and has a time series,
    with its memory trend in MiB/min (None when there is none).

    The trend is the one the runner stored for that cell
    (``server_memory_slope_mib_per_min``, None over a window too short to say).
    With ``whole_run`` (a staged run: its cells are phases that share one time
    series, each storing the trend of its own phase only) the trend of the
    whole series is fitted here, as no stored figure covers it.
    """
    out: dict[str, MemorySeries] = {}
    picked = cells[ran_load(cells) & cells["timeseries"].notna()].sort_values(["repeat", "stage"])
    for name, stack in picked.groupby("target", sort=True):
        path = run_dir / str(stack["timeseries"].iloc[0])
        try:
            series = timeseries.read(path)
        except (OSError, ValueError) as exc:
            problems.append(f"memory over time of {name}: {exc}")
            continue
        if whole_run:
            values = series[timeseries.memory_column(series)]
            # None over a short window: that is warm-up, not a leak (timeseries.MIN_SLOPE_WINDOW_S).
            slope = timeseries.memory_slope(series["t_s"].tolist(), values.tolist())
            out[str(name)] = (series, None if slope is None else slope.mib_per_min)
        else:
            stored = float(stack["server_memory_slope_mib_per_min"].iloc[0])
            out[str(name)] = (series, None if math.isnan(stored) else stored)
    return out


def _memory_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Peak memory per stack over every cell given that ran load, as :func:`memorycharts.memory_chart`
    reads it."""
    ok = frame[ran_load(frame)]
    return (
        ok.groupby("target", sort=True)
        .agg(
            n=("repeat", "count"),
            server_pss_mib_peak_max=("server_pss_mib_peak", "max"),
            server_rss_mib_peak_max=("server_rss_mib_peak", "max"),
        )
        .reset_index()
    )


def _spectrum_title(top: pd.DataFrame) -> str:
    if top["model"].eq("saturation").all():
        return "Percentile spectrum at each stack's sustainable rate"
    model, level = top["model"].iloc[0], float(top["level"].max())
    where = (
        f"concurrency {format_number(level, 0)}" if model == "closed" else f"{format_number(level, 0)} req/s"
    )
    return f"Percentile spectrum at {where}"


def _by_level(
    rows: pd.DataFrame, styles: dict[str, StackStyle], run: RunAnalysis, index: int
) -> list[tuple[str, str]]:
    """A staged endpoint's phases, else throughput, CPU cost and latency by load level."""
    interfaces = run.interfaces
    if not (rows["n"] > 0).any():
        return []
    if (rows["stage"] >= 0).any():
        unit = "connections" if (rows["model"] == "closed").all() else "requests/s"
        return [("stages", timecharts.stages_chart(rows, styles, interfaces, f"e{index}g", unit=unit))]
    x = "concurrency" if (rows["model"] == "closed").all() else "rate"
    drawn = [
        ("throughput", charts.throughput_chart(rows, styles, interfaces, f"e{index}t", x)),
        ("cpu", charts.cpu_chart(rows, styles, interfaces, f"e{index}c", x)),
    ]
    if x == "concurrency":
        drawn.append(("latency", charts.latency_chart(rows, styles, interfaces, f"e{index}l")))
    else:
        drawn.append(("latency", charts.open_latency_chart(rows, styles, interfaces, f"e{index}l")))
    return drawn


def _at_top_load(
    run_dir: Path,
    endpoint: str,
    rows: pd.DataFrame,
    styles: dict[str, StackStyle],
    run: RunAnalysis,
    index: int,
    problems: list[str],
) -> list[tuple[str, str]]:
    """The percentile spectrum, peak memory and memory over time of the endpoint's top load."""
    frame, interfaces = run.frame, run.interfaces
    top = run.top_cells[run.top_cells["endpoint"] == endpoint]
    if not len(top):
        return []
    drawn: list[tuple[str, str]] = []
    spectra = {
        name: analysis.percentile_spectrum(encoded)
        for name, encoded in _histograms(run_dir, top, problems).items()
    }
    if spectra:
        title = _spectrum_title(top)
        drawn.append(
            ("spectrum", charts.spectrum_chart(spectra, styles, interfaces, f"e{index}p", title=title))
        )
    memory = _memory_rows(frame[frame["endpoint"] == endpoint])
    drawn.append(("memory", memorycharts.memory_chart(memory, styles, interfaces, f"e{index}m")))
    staged = bool((rows["stage"] >= 0).any())
    over_time = frame[(frame["endpoint"] == endpoint) & (frame["stage"] >= 0)] if staged else top
    series = _memory_series(run_dir, over_time, problems, whole_run=staged)
    if series:
        if staged:
            title = "Memory over the staged run"
            boundaries = sorted(set(rows["stage_start_s"].dropna().astype(float)) - {0.0})
        else:
            title = "Memory over time, " + _spectrum_title(top).removeprefix("Percentile spectrum ")
            boundaries = []
        chart = memorycharts.memory_over_time_chart(
            series, styles, interfaces, f"e{index}w", title=title, boundaries_s=boundaries
        )
        drawn.append(("memory-time", chart))
    return drawn


def endpoint_charts(run_dir: Path, run: RunAnalysis, slo: str, problems: list[str]) -> list[EndpointCharts]:
    """The charts of each HTTP endpoint of ``run`` (stored in ``run_dir``), in the run's endpoint order
    (stream endpoints have their own: :mod:`harness.report.streams`).

    ``slo`` is the scenario's SLO as text (the sustainable chart's title); each
    unreadable histogram or time series is named in ``problems`` and left out.
    """
    frame, summary, searches, interfaces = run.frame, run.summary, run.searches, run.interfaces
    styles = stack_styles(interfaces)
    out = []
    for index, endpoint in enumerate(run.http_endpoints):
        rows = summary[summary["endpoint"] == endpoint]
        searched = searches[searches["endpoint"] == endpoint]
        drawn = _by_level(rows, styles, run, index)
        if (searched["n"] > 0).any():
            drawn.append(
                ("sustainable", charts.sustainable_chart(searched, styles, interfaces, f"e{index}s", slo=slo))
            )
        drawn += _at_top_load(run_dir, endpoint, rows, styles, run, index, problems)
        measured = rows[rows["n"] > 0]
        failed_requests = int((measured["errors_total"] + measured["dropped"]).sum())
        if failed_requests:
            x = "concurrency" if (rows["model"] == "closed").all() else "rate"
            ok = frame[
                (frame["endpoint"] == endpoint) & ran_load(frame) & (frame["model"] != "saturation")
            ]
            drawn.append(("errors", charts.errors_chart(measured, ok, styles, interfaces, f"e{index}e", x)))
        out.append(
            EndpointCharts(
                endpoint,
                _slug(endpoint),
                tuple((k, Markup(svg)) for k, svg in drawn),
                error_free=bool(len(measured)) and not failed_requests,
            )
        )
    return out
