"""A staged run's chart over time, as SVG text: each phase's throughput and p99 latency.

Same conventions as :mod:`harness.report.charts` (the shared styles of
:mod:`harness.report.svg`: a stack keeps its colour and line style, text stays
text, ids are salted). Time is seconds since the measured window opened
(warm-up excluded).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from harness.report.svg import (
    NO_SUCCESS,
    RC,
    StackStyle,
    has_data,
    label,
    log_latency_axis,
    no_success,
    no_success_entry,
    note_instead,
    svg_text,
)


def stages_chart(
    rows: pd.DataFrame,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    *,
    unit: str,
) -> str:
    """A staged run phase by phase: throughput (top) and p99 latency (bottom, log) vs time (s).

    ``rows`` are the summary rows of one endpoint's staged cells, with
    ``stage_start_s``, ``stage_duration_s``, ``stage_level_start`` and
    ``stage_level_end`` columns (:func:`harness.runanalysis.with_phases`); each phase
    is drawn as a flat step over its time span at its median. The offered
    level (``unit``: requests/s, on the throughput axis; or connections, on a
    right-hand axis of its own) is drawn dotted in grey. A stack without a
    successful request is named in the legend as such, not drawn.
    """
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 5.6), layout="constrained")
        top, bottom = figure.subplots(2, 1, sharex=True)
        measured = rows[rows["n"] > 0].sort_values("stage_start_s")
        for name, stack in measured.groupby("target", sort=True):
            style = styles[str(name)]
            if no_success(stack):
                no_success_entry(top, str(name), style, interfaces)
                continue
            for axes, column in ((top, "requests_per_second_median"), (bottom, "latency_ms_p99_median")):
                xs: list[float] = []
                ys: list[float] = []
                for _, phase in stack.iterrows():
                    begin = float(phase["stage_start_s"])
                    xs += [begin, begin + float(phase["stage_duration_s"])]
                    ys += [float(phase[column])] * 2
                axes.plot(
                    xs,
                    ys,
                    color=style.colour,
                    linestyle=style.linestyle,
                    linewidth=1.5,
                    label=label(str(name), interfaces),
                )
        if not has_data(top):
            note_instead(top, NO_SUCCESS)
        # Offered requests/s share the throughput axis; offered connections get one of their own.
        same_axis = unit == "requests/s"
        offered = top if same_axis else top.twinx()
        phases = measured.drop_duplicates("stage").sort_values("stage_start_s")
        xs, ys = [], []
        for _, phase in phases.iterrows():
            begin = float(phase["stage_start_s"])
            xs += [begin, begin + float(phase["stage_duration_s"])]
            ys += [float(phase["stage_level_start"]), float(phase["stage_level_end"])]
        offered.plot(xs, ys, color="#888888", linestyle=":", linewidth=1.2, label=f"offered ({unit})")
        if not same_axis:
            offered.set_ylabel(f"offered load ({unit})", color="#666666")
            offered.set_ylim(bottom=0)
            offered.grid(False)
        for boundary in phases["stage_start_s"].iloc[1:]:
            for axes in (top, bottom):
                axes.axvline(float(boundary), color="#bbbbbb", linestyle=":", linewidth=0.8)
        top.set_ylabel("throughput (successful requests/s)")
        top.set_ylim(bottom=0)
        top.set_title("Throughput and p99 latency, phase by phase")
        log_latency_axis(bottom)
        bottom.set_ylabel("p99 latency (ms, log scale)")
        bottom.set_xlabel("time in the measured window (s)")
        handles, labels = top.get_legend_handles_labels()
        if not same_axis:
            extra_handles, extra_labels = offered.get_legend_handles_labels()
            handles, labels = handles + extra_handles, labels + extra_labels
        figure.legend(handles, labels, loc="outside lower center", ncols=2)
        return svg_text(figure, prefix)
