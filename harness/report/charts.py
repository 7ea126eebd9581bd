"""Charts of a run's summary, as SVG text ready to inline in HTML.

Each function takes the rows of :func:`harness.analysis.summarise` for one
endpoint and returns one ``<svg>`` element. A stack keeps its colour in every
chart (:func:`stack_styles`, from the sorted target names); WSGI stacks are
dashed lines and hatched bars, so the WSGI/ASGI split shows at a glance. When a
stack has more than one repeat, error bars span the min-max across repeats.

Figures are built with :class:`matplotlib.figure.Figure` rather than pyplot, so
no global backend or figure registry is touched; text stays text
(``svg.fonttype = none``) and ids are salted with a fixed string, so the same
summary always gives the same bytes.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
from matplotlib.typing import RcKeyType

RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "gateway-bench",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
}

_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
)  # fmt: skip


@dataclass(frozen=True)
class StackStyle:
    """How one stack is drawn: colour, line style, marker and bar hatch."""

    colour: str
    linestyle: str
    marker: str
    hatch: str | None


def stack_styles(interfaces: Mapping[str, str | None]) -> dict[str, StackStyle]:
    """A style per target name, in sorted-name order (so stable across runs with the same stacks).

    WSGI: dashed, square markers, hatched bars; ASGI: solid, round markers;
    anything else: dotted, triangles.
    """
    styles: dict[str, StackStyle] = {}
    for index, name in enumerate(sorted(interfaces)):
        colour = _PALETTE[index % len(_PALETTE)]
        interface = interfaces[name]
        if interface == "wsgi":
            styles[name] = StackStyle(colour, "--", "s", "///")
        elif interface == "asgi":
            styles[name] = StackStyle(colour, "-", "o", None)
        else:
            styles[name] = StackStyle(colour, ":", "^", "..")
    return styles


def _label(name: str, interfaces: Mapping[str, str | None]) -> str:
    interface = interfaces.get(name)
    return f"{name} ({interface.upper()})" if interface else name


def _svg(figure: Figure, prefix: str) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context(RC):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # Several SVGs share one HTML document, where ids must be unique.
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    return re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)


def _concurrency_axis(axes: Axes, levels: Iterable[int]) -> None:
    ticks = sorted(set(levels))
    axes.set_xscale("log", base=2)
    axes.set_xticks(ticks, [str(level) for level in ticks])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xlabel("concurrency (connections, closed model)")


def _lines(
    axes: Axes,
    rows: pd.DataFrame,
    column: str,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
) -> None:
    """Plot ``<column>_median`` vs concurrency per stack, min-max error bars where n > 1."""
    for name, stack in rows[rows["n"] > 0].groupby("target", sort=True):
        stack = stack.sort_values("concurrency")
        style = styles[str(name)]
        median = stack[f"{column}_median"]
        yerr = None
        if (stack["n"] > 1).any() and f"{column}_min" in stack:
            low = (median - stack[f"{column}_min"]).where(stack["n"] > 1, 0.0)
            high = (stack[f"{column}_max"] - median).where(stack["n"] > 1, 0.0)
            yerr = [low.to_numpy(), high.to_numpy()]
        axes.errorbar(
            stack["concurrency"].to_numpy(),
            median.to_numpy(),
            yerr=yerr,
            color=style.colour,
            linestyle=style.linestyle,
            marker=style.marker,
            markersize=4,
            linewidth=1.5,
            capsize=3 if yerr is not None else 0,
            label=_label(str(name), interfaces),
        )
    _concurrency_axis(axes, rows["concurrency"].astype(int))


def _line_chart(
    rows: pd.DataFrame,
    column: str,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    *,
    ylabel: str,
    title: str,
) -> str:
    """``column`` vs concurrency, one line per stack, y axis from 0."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 3.8), layout="constrained")
        axes = figure.subplots()
        _lines(axes, rows, column, styles, interfaces)
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        axes.set_title(title)
        # Below the plot, never over a line.
        figure.legend(*axes.get_legend_handles_labels(), loc="outside lower center", ncols=3)
        return _svg(figure, prefix)


def throughput_chart(
    rows: pd.DataFrame, styles: Mapping[str, StackStyle], interfaces: Mapping[str, str | None], prefix: str
) -> str:
    """Median requests/s vs concurrency, one line per stack."""
    return _line_chart(
        rows,
        "rps",
        styles,
        interfaces,
        prefix,
        ylabel="throughput (successful requests/s)",
        title="Throughput",
    )


def latency_chart(
    rows: pd.DataFrame, styles: Mapping[str, StackStyle], interfaces: Mapping[str, str | None], prefix: str
) -> str:
    """Median p50 (left) and p99 (right) latency vs concurrency, log y-axis, shared scale."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(12.8, 3.8), layout="constrained")
        left, right = figure.subplots(1, 2, sharey=True)
        for axes, column, title in ((left, "latency_ms_p50", "p50"), (right, "latency_ms_p99", "p99")):
            _lines(axes, rows, column, styles, interfaces)
            axes.set_yscale("log")
            # 1-2-5 ticks as plain numbers read better than 10^x over a narrow range.
            axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axes.yaxis.set_minor_locator(NullLocator())
            axes.set_title(f"{title} latency")
        left.set_ylabel("latency (ms, log scale)")
        figure.legend(*left.get_legend_handles_labels(), loc="outside right upper")
        return _svg(figure, prefix)


def memory_chart(
    rows: pd.DataFrame, styles: Mapping[str, StackStyle], interfaces: Mapping[str, str | None], prefix: str
) -> str:
    """Peak memory per stack (max over every concurrency level), bars in MiB.

    PSS (shared pages split between processes) where it was read; RSS, which
    counts shared pages once per process, for a stack without PSS.
    """
    measured = rows[rows["n"] > 0]
    names: list[str] = []
    values: list[float] = []
    kinds: list[str] = []
    for name, stack in measured.groupby("target", sort=True):
        pss = float(stack["server_pss_mb_peak_max"].max())
        names.append(str(name))
        if math.isnan(pss):
            values.append(float(stack["server_rss_mb_peak_max"].max()))
            kinds.append("RSS")
        else:
            values.append(pss)
            kinds.append("PSS")
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 0.9 + 0.45 * max(len(names), 1)), layout="constrained")
        axes = figure.subplots()
        positions = list(range(len(names)))
        for position, name, value, kind in zip(positions, names, values, kinds, strict=True):
            style = styles[name]
            axes.barh(
                position,
                value,
                color=style.colour,
                alpha=0.85,
                hatch=style.hatch,
                edgecolor="white" if style.hatch else style.colour,
            )
            axes.annotate(
                f"{value:,.0f} MiB" + (" (RSS)" if kind == "RSS" and "PSS" in kinds else ""),
                (value, position),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
            )
        axes.set_yticks(positions, [_label(name, interfaces) for name in names])
        axes.invert_yaxis()
        measure = "PSS" if "RSS" not in kinds else "RSS" if "PSS" not in kinds else "PSS, or RSS where marked"
        axes.set_xlabel(f"peak memory of the server's processes ({measure}, MiB)")
        axes.set_title("Peak memory")
        axes.grid(axis="y", visible=False)
        axes.margins(x=0.2)
        return _svg(figure, prefix)


def cpu_chart(
    rows: pd.DataFrame, styles: Mapping[str, StackStyle], interfaces: Mapping[str, str | None], prefix: str
) -> str:
    """Median server CPU time per successful request (microseconds) vs concurrency."""
    return _line_chart(
        rows,
        "server_cpu_us_per_request",
        styles,
        interfaces,
        prefix,
        ylabel="server CPU time per request (µs)",
        title="CPU cost",
    )
