"""Charts of the server's memory, as SVG text: peak memory per stack, and memory over time.

Same conventions as :mod:`harness.report.charts` (the shared styles of
:mod:`harness.report.svg`). Memory is in MiB, PSS where every sample has it,
else RSS (:func:`harness.timeseries.memory_column`); time is seconds since the
measured window opened (warm-up excluded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from harness.report.svg import RC, StackStyle, label, svg_text
from harness.timeseries import memory_column


def memory_chart(
    rows: pd.DataFrame, styles: Mapping[str, StackStyle], interfaces: Mapping[str, str | None], prefix: str
) -> str:
    """Peak memory per stack (max over every concurrency level), bars in MiB.

    PSS (shared pages split between processes) where it was read; RSS, which
    counts shared pages once per process, for a stack without PSS. A stack
    with neither (an app given without its process) is marked "not measured".
    """
    measured = rows[rows["n"] > 0]
    names: list[str] = []
    values: list[float] = []
    kinds: list[str] = []
    for name, stack in measured.groupby("target", sort=True):
        pss = float(stack["server_pss_mib_peak_max"].max())
        names.append(str(name))
        if math.isnan(pss):
            values.append(float(stack["server_rss_mib_peak_max"].max()))
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
            if math.isnan(value):
                axes.annotate(
                    "not measured", (0, position), xytext=(4, 0), textcoords="offset points", va="center"
                )
                continue
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
        axes.set_yticks(positions, [label(name, interfaces) for name in names])
        axes.invert_yaxis()
        if all(math.isnan(value) for value in values):
            # No bar to size the axes by: one row per stack, and no memory scale.
            axes.set_xlim(0, 1)
            axes.set_ylim(len(names) - 0.5, -0.5)
            axes.set_xticks([])
        measure = "PSS" if "RSS" not in kinds else "RSS" if "PSS" not in kinds else "PSS, or RSS where marked"
        axes.set_xlabel(f"peak memory of the server's processes ({measure}, MiB)")
        axes.set_title("Peak memory")
        axes.grid(axis="y", visible=False)
        axes.margins(x=0.2)
        return svg_text(figure, prefix)


MemorySeries = tuple[pd.DataFrame, float | None]
"""A stack's time series (:func:`harness.timeseries.read`) and its memory slope (MiB/min) or None."""


def memory_over_time_chart(
    series: Mapping[str, MemorySeries],
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    *,
    title: str,
    boundaries_s: Sequence[float] = (),
) -> str:
    """Memory of each stack's processes (PSS, else RSS, MiB) vs time in the window (s).

    The legend gives each stack's trend in MiB per minute (Theil-Sen fit) when
    there is one: a leak is a slope that stays positive over a long window.
    ``boundaries_s`` draws dotted vertical lines (phase boundaries of a staged run).
    """
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 3.8), layout="constrained")
        axes = figure.subplots()
        kinds = set()
        for name in sorted(series):
            frame, slope = series[name]
            column = memory_column(frame)
            kinds.add("PSS" if column == "server_pss_mib" else "RSS")
            values = frame[column]
            style = styles[name]
            trend = "" if slope is None or math.isnan(slope) else f", {slope:+.2f} MiB/min"
            axes.plot(
                frame["t_s"].to_numpy(),
                values.to_numpy(),
                color=style.colour,
                linestyle=style.linestyle,
                linewidth=1.3,
                label=label(name, interfaces) + trend,
            )
        for boundary in boundaries_s:
            axes.axvline(boundary, color="#888888", linestyle=":", linewidth=0.8)
        measure = " or ".join(sorted(kinds)) or "PSS"
        axes.set_xlabel("time in the measured window (s)")
        axes.set_ylabel(f"server memory ({measure}, MiB)")
        axes.set_ylim(bottom=0)
        axes.set_title(title)
        figure.legend(*axes.get_legend_handles_labels(), loc="outside lower center", ncols=2)
        return svg_text(figure, prefix)
