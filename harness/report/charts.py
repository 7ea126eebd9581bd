"""Charts of a run's summary by load level, as SVG text ready to inline in HTML.

Throughput, latency, CPU cost, errors, the percentile spectrum and sustainable
throughput. Each function takes the rows of one endpoint (of
:func:`harness.analysis.summarise`, unless it says otherwise) and returns one
``<svg>`` element, drawn with the shared styles of :mod:`harness.report.svg`
(a stack keeps its colour; WSGI stacks are dashed lines and hatched bars,
except in the open model's latency chart, where dashes mark uncorrected
latency). When a stack has more than one repeat, error bars span the 95%
order-statistic interval of the median where the summary has one (requests/s, p99),
else the min-max across repeats. Memory charts are in
:mod:`harness.report.memorycharts`, a staged run's in :mod:`harness.report.timecharts`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from harness.report.svg import (
    NO_SUCCESS,
    RC,
    StackStyle,
    label,
    log_latency_axis,
    no_success,
    no_success_entry,
    note_instead,
    svg_text,
)


def _level_axis(axes: Axes, levels: Iterable[float], x: str, xlabel: str | None = None) -> None:
    """A log axis with a tick at each measured level: concurrency (base 2) or offered rate; ``xlabel``
    names it instead of the load model's words."""
    ticks = sorted(set(levels))
    axes.set_xscale("log", base=2 if x == "concurrency" else 10)
    axes.set_xticks(ticks, [f"{level:g}" for level in ticks])
    axes.xaxis.set_minor_locator(NullLocator())
    if xlabel is not None:
        axes.set_xlabel(xlabel)
    elif x == "concurrency":
        axes.set_xlabel("concurrency (connections, closed model)")
    else:
        axes.set_xlabel("offered rate (requests/s, open model)")


def _error_bars(stack: pd.DataFrame, column: str) -> list[Any] | None:
    """Bars around ``<column>_median``: the 95% interval where there is one, else min-max; None if n == 1."""
    if not (stack["n"] > 1).any():
        return None
    median = stack[f"{column}_median"]
    low_column, high_column = (
        (f"{column}_ci_low", f"{column}_ci_high")
        if f"{column}_ci_low" in stack
        else (f"{column}_min", f"{column}_max")
    )
    if low_column not in stack:
        return None
    low = (median - stack[low_column]).where(stack["n"] > 1, 0.0).clip(lower=0)
    high = (stack[high_column] - median).where(stack["n"] > 1, 0.0).clip(lower=0)
    return [low.to_numpy(), high.to_numpy()]


def _lines(
    axes: Axes,
    rows: pd.DataFrame,
    column: str,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    x: str = "concurrency",
    xlabel: str | None = None,
) -> bool:
    """Plot ``<column>_median`` vs ``x`` (concurrency or rate) per stack, with :func:`_error_bars`.

    A stack without a successful request gets a legend entry saying so, not a
    line. Returns whether any finite value was drawn.
    """
    drawn = False
    for name, stack in rows[rows["n"] > 0].groupby("target", sort=True):
        stack = stack.sort_values(x)
        style = styles[str(name)]
        if no_success(stack):
            no_success_entry(axes, str(name), style, interfaces)
            continue
        values = stack[f"{column}_median"]
        drawn = drawn or bool(values.notna().any())
        yerr = _error_bars(stack, column)
        axes.errorbar(
            stack[x].to_numpy(),
            values.to_numpy(),
            yerr=yerr,
            color=style.colour,
            linestyle=style.linestyle,
            marker=style.marker,
            markersize=4,
            linewidth=1.5,
            capsize=3 if yerr is not None else 0,
            label=label(str(name), interfaces),
        )
    _level_axis(axes, rows[x].astype(float), x, xlabel)
    return drawn


def line_chart(
    rows: pd.DataFrame,
    column: str,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    *,
    x: str,
    ylabel: str,
    title: str,
    offered: bool = False,
    xlabel: str | None = None,
    log: bool = False,
    reference: tuple[float, str] | None = None,
    absent: Mapping[str, str] | None = None,
) -> str:
    """``<column>_median`` vs ``x``, one line per stack, y axis from 0; ``offered`` adds the line y = x.

    ``xlabel`` names the x axis instead of the load model's words; ``log`` draws a log axis of
    times in ms instead (:func:`~harness.report.svg.log_latency_axis`); ``reference`` (a value and
    its label) a dotted line across, e.g. the interval a stream asked for; ``absent`` names the
    stacks with nothing measured, each with why, in the legend.

    With no value to draw, the plot says so: :data:`NO_SUCCESS` when no stack
    had a successful request, else ``not measured`` (server CPU of an app
    given without its process).
    """
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 3.8), layout="constrained")
        axes = figure.subplots()
        if offered:
            rates = sorted(set(rows[x].astype(float)))
            axes.plot(rates, rates, color="#888888", linestyle=":", linewidth=1, label="offered rate")
        drawn = _lines(axes, rows, column, styles, interfaces, x, xlabel)
        if log:
            log_latency_axis(axes)
        elif drawn:
            axes.set_ylim(bottom=0)
        else:
            measured = rows[rows["n"] > 0]
            every_failed = all(no_success(stack) for _, stack in measured.groupby("target"))
            note_instead(axes, NO_SUCCESS if every_failed else "not measured")
        if reference is not None and drawn:
            axes.axhline(reference[0], color="#888888", linestyle=":", linewidth=1, label=reference[1])
        for name, why in (absent or {}).items():
            no_success_entry(axes, name, styles[name], interfaces, why)
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        # Below the plot, never over a line.
        figure.legend(*axes.get_legend_handles_labels(), loc="outside lower center", ncols=3)
        return svg_text(figure, prefix)


def throughput_chart(
    rows: pd.DataFrame,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    x: str = "concurrency",
) -> str:
    """Median requests/s vs concurrency, or vs offered rate (``x="rate"``, with the offered line)."""
    return line_chart(
        rows,
        "requests_per_second",
        styles,
        interfaces,
        prefix,
        x=x,
        ylabel="throughput (successful requests/s)",
        title="Throughput" if x == "concurrency" else "Throughput vs offered rate",
        offered=x == "rate",
    )


def latency_chart(
    rows: pd.DataFrame,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    x: str = "concurrency",
) -> str:
    """Median p50 (left) and p99 (right) latency vs concurrency or rate, log y-axis, shared scale."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(12.8, 3.8), layout="constrained")
        left, right = figure.subplots(1, 2, sharey=True)
        for axes, column, title in ((left, "latency_ms_p50", "p50"), (right, "latency_ms_p99", "p99")):
            _lines(axes, rows, column, styles, interfaces, x)
            log_latency_axis(axes)
            axes.set_title(f"{title} latency")
        left.set_ylabel("latency (ms, log scale)")
        figure.legend(*left.get_legend_handles_labels(), loc="outside right upper")
        return svg_text(figure, prefix)


def open_latency_chart(
    rows: pd.DataFrame, styles: Mapping[str, StackStyle], interfaces: Mapping[str, str | None], prefix: str
) -> str:
    """Median p50 (left) and p99 (right) latency vs offered rate: corrected solid, uncorrected dashed.

    Corrected latency runs from each request's intended send time (what a user
    waits, queueing included); uncorrected from its actual send time (what a
    closed-model tool would report). Each stack keeps its colour; the line
    style here tells the two measures apart, not the interface.
    """
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(12.8, 3.8), layout="constrained")
        left, right = figure.subplots(1, 2, sharey=True)
        for axes, field in ((left, "p50"), (right, "p99")):
            for name, stack in rows[rows["n"] > 0].groupby("target", sort=True):
                stack = stack.sort_values("rate")
                style = styles[str(name)]
                if no_success(stack):
                    no_success_entry(axes, str(name), style, interfaces)
                    continue
                rates = stack["rate"].to_numpy()
                axes.plot(
                    rates,
                    stack[f"latency_ms_{field}_median"].to_numpy(),
                    color=style.colour,
                    linestyle="-",
                    marker=style.marker,
                    markersize=4,
                    linewidth=1.5,
                    label=label(str(name), interfaces),
                )
                axes.plot(
                    rates,
                    stack[f"latency_ms_uncorrected_{field}_median"].to_numpy(),
                    color=style.colour,
                    linestyle="--",
                    marker=style.marker,
                    markersize=4,
                    markerfacecolor="none",
                    linewidth=1.2,
                )
            _level_axis(axes, rows["rate"].astype(float), "rate")
            log_latency_axis(axes)
            axes.set_title(f"{field} latency: corrected (solid), uncorrected (dashed)")
        left.set_ylabel("latency (ms, log scale)")
        handles = [
            *left.get_legend_handles_labels()[0],
            Line2D([], [], color="#444444", linestyle="-", label="corrected (from intended send time)"),
            Line2D([], [], color="#444444", linestyle="--", label="uncorrected (from actual send time)"),
        ]
        figure.legend(handles=handles, loc="outside right upper")
        return svg_text(figure, prefix)


NINES_TICKS = (0, 1, 2, 3, 4, 5)
NINES_LABELS = ("0%", "90%", "99%", "99.9%", "99.99%", "99.999%")


def spectrum_chart(
    spectra: Mapping[str, pd.DataFrame],
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    *,
    title: str,
) -> str:
    """Latency by percentile, one line per stack (HdrHistogram's percentile distribution plot).

    ``spectra`` maps a stack to :func:`harness.analysis.percentile_spectrum`'s
    frame. The x axis is in "nines" (``-log10(1 - p)``), so 90%, 99%, 99.9%,
    99.99% and 99.999% are evenly spaced; the y axis is log latency in ms.
    An empty spectrum (no successful request) is named in the legend as such.
    """
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 3.8), layout="constrained")
        axes = figure.subplots()
        for name in sorted(spectra):
            spectrum = spectra[name]
            style = styles[name]
            if spectrum.empty:
                no_success_entry(axes, name, style, interfaces)
                continue
            axes.plot(
                spectrum["nines"].to_numpy(),
                spectrum["latency_ms"].to_numpy(),
                color=style.colour,
                linestyle=style.linestyle,
                linewidth=1.5,
                label=label(name, interfaces),
            )
        axes.set_xlim(0, NINES_TICKS[-1])
        axes.set_xticks(NINES_TICKS, NINES_LABELS)
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set_xlabel("percentile")
        log_latency_axis(axes)
        axes.set_ylabel("latency (ms, log scale)")
        axes.set_title(title)
        figure.legend(*axes.get_legend_handles_labels(), loc="outside lower center", ncols=3)
        return svg_text(figure, prefix)


def sustainable_chart(
    rows: pd.DataFrame,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    *,
    slo: str,
) -> str:
    """Median sustainable throughput per stack (requests/s), bars with their 95% interval.

    ``rows`` are :func:`harness.saturation.saturation_summary`'s for one endpoint;
    ``slo`` says what "sustainable" meant, for the axis label.
    """
    measured = rows[rows["n"] > 0].sort_values("target")
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 0.9 + 0.45 * max(len(measured), 1)), layout="constrained")
        axes = figure.subplots()
        for position, (_, row) in enumerate(measured.iterrows()):
            name = str(row["target"])
            style = styles[name]
            value = float(row["sustainable_requests_per_second_median"])
            low, high = (
                float(row["sustainable_requests_per_second_ci_low"]),
                float(row["sustainable_requests_per_second_ci_high"]),
            )
            xerr = None if math.isnan(low) else [[value - low], [high - value]]
            axes.barh(
                position,
                value,
                xerr=xerr,
                capsize=3,
                color=style.colour,
                alpha=0.85,
                hatch=style.hatch,
                edgecolor="white" if style.hatch else style.colour,
            )
            axes.annotate(
                f"{value:,.0f}",
                (high if xerr else value, position),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
            )
        axes.set_yticks(range(len(measured)), [label(str(n), interfaces) for n in measured["target"]])
        axes.invert_yaxis()
        axes.set_xlabel("sustainable throughput (requests/s within the SLO)")
        axes.set_title(f"Sustainable throughput\n{slo}", fontsize=9)
        axes.grid(axis="y", visible=False)
        axes.margins(x=0.2)
        return svg_text(figure, prefix)


def cpu_chart(
    rows: pd.DataFrame,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    x: str = "concurrency",
) -> str:
    """Median server CPU time per successful request (microseconds) vs concurrency or rate."""
    return line_chart(
        rows,
        "server_cpu_us_per_request",
        styles,
        interfaces,
        prefix,
        x=x,
        ylabel="server CPU time per request (µs)",
        title="CPU cost",
    )


ERROR_KINDS = (
    ("errors_status", "HTTP status other than 2xx (or the declared one)", "#b2182b"),
    ("errors_connect", "connect", "#ef8a62"),
    ("errors_read", "read", "#fddbc7"),
    ("errors_timeout", "timeout", "#67a9cf"),
    ("errors_malformed", "malformed (streams)", "#762a83"),
    ("dropped", "dropped (never sent)", "#999999"),
)


def errors_chart(
    rows: pd.DataFrame,
    cells: pd.DataFrame,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    x: str = "concurrency",
) -> str:
    """Left: failed plus dropped requests as a share of all requests (%) vs load, per stack.
    Right: the same requests by kind, summed over every level and repeat, per stack.

    ``rows`` are the endpoint's summary rows (sums over the repeats that ran load of
    ``requests``, ``errors_total`` and ``dropped``); ``cells`` its cells that ran load
    (:func:`harness.cellstate.ran_load`), for the kinds.
    """
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(12.8, 3.8), layout="constrained")
        left, right = figure.subplots(1, 2, width_ratios=(3, 2))
        measured = rows[rows["n"] > 0]
        for name, stack in measured.groupby("target", sort=True):
            stack = stack.sort_values(x)
            style = styles[str(name)]
            sent = stack["requests"] + stack["dropped"]
            share = 100.0 * (stack["errors_total"] + stack["dropped"]) / sent.where(sent > 0)
            left.plot(
                stack[x].to_numpy(),
                share.to_numpy(),
                color=style.colour,
                linestyle=style.linestyle,
                marker=style.marker,
                markersize=4,
                linewidth=1.5,
                label=label(str(name), interfaces),
            )
        _level_axis(left, rows[x].astype(float), x)
        left.set_ylabel("failed or dropped (% of requests)")
        left.set_ylim(bottom=0)
        left.set_title("Errors vs load")
        totals = cells.groupby("target", sort=True)[[kind for kind, _, _ in ERROR_KINDS]].sum()
        names = [str(n) for n in totals.index]
        offsets = [0.0] * len(names)
        for kind, kind_label, colour in ERROR_KINDS:
            counts = [float(v) for v in totals[kind]]
            if not any(counts):
                continue
            right.barh(range(len(names)), counts, left=offsets, color=colour, label=kind_label)
            offsets = [o + c for o, c in zip(offsets, counts, strict=True)]
        right.set_yticks(range(len(names)), [label(n, interfaces) for n in names])
        right.invert_yaxis()
        right.set_xlabel("requests (sum over levels and repeats)")
        right.set_title("By kind")
        right.grid(axis="y", visible=False)
        right.legend(loc="lower right")
        figure.legend(*left.get_legend_handles_labels(), loc="outside lower center", ncols=4)
        return svg_text(figure, prefix)
