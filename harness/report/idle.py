"""The idle-connections endpoints of a run's page: the Idle connections section.

Per idle endpoint (:attr:`~harness.runanalysis.RunAnalysis.idle_kinds`), in the run's order:
what it asked for, its sentence (:func:`harness.idlesummary.idle_headline`), a table by
stack (connections held by the driver's count and the stack's own, memory per connection
as PSS, USS and the control group's charge, the stack's PSS before and during the hold),
and two bar charts at the highest level: memory per connection (PSS, KiB; the bar spans
the median, the error bar the min-max over repeats) and connections held against those
asked. Rows come from the run's analysis (``idle``); nothing here computes a statistic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import matplotlib
import pandas as pd
from markupsafe import Markup
from matplotlib.figure import Figure

from harness.idlesummary import KIND_WORDS, OPENING_STOPPED, idle_headline, out_of_memory
from harness.report.streams import Column, Row, Table
from harness.report.streamwords import Record
from harness.report.svg import RC, StackStyle, label, stack_styles, svg_text
from harness.run.idlecell import UNSUPPORTED
from harness.runanalysis import RunAnalysis

COLUMNS = (
    Column("stack", numeric=False),
    Column("workers"),
    Column("connections asked"),
    Column("held (driver)"),
    Column("held (server)"),
    Column("PSS KiB / connection"),
    Column("PSS min-max"),
    Column("USS KiB / connection"),
    Column("cgroup KiB / connection"),
    Column("PSS MiB before → held"),
    Column("repeats"),
)


@dataclass(frozen=True)
class IdleEndpoint:
    """One idle endpoint of the section: what it asked for, its sentence, table and charts (name, SVG)."""

    endpoint: str
    anchor: str
    what: str
    sentence: str
    table: Table
    charts: tuple[tuple[str, Markup], ...]


def _figure(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _row(row: Record) -> Row:
    workers = row["workers"]
    lead = (str(row["target"]), "-" if workers is None else str(workers), f"{row['connections']:,}")
    if not row["repeats"]:
        if row["unsupported"]:
            return Row(lead, note=UNSUPPORTED, kind="unsupported")
        return Row(lead, note=f"failed: {row['failure_reason']}", kind="failed")
    value = {key: float(v) for key, v in row.items() if isinstance(v, float)}
    low, high = value["pss_kib_per_connection_min"], value["pss_kib_per_connection_max"]
    spread = "-" if math.isnan(low) else f"{_figure(low)}-{_figure(high)}"
    before, held = value["server_pss_mib_before"], value["server_pss_mib_held"]
    return Row(
        (
            *lead,
            _figure(value["connections_held"], 0)
            + (f" ({OPENING_STOPPED})" * bool(row["opening_cut"]))
            + (f" ({out_of_memory(row['memory_limit_mib'])})" * bool(row["out_of_memory"])),
            _figure(value["connections_held_by_server"], 0),
            _figure(value["pss_kib_per_connection"]),
            spread,
            _figure(value["uss_kib_per_connection"]),
            _figure(value["cgroup_kib_per_connection"]),
            f"{_figure(before)} → {_figure(held)}",
            str(row["repeats"]),
        )
    )


def _bars(
    rows: pd.DataFrame,
    styles: Mapping[str, StackStyle],
    interfaces: Mapping[str, str | None],
    prefix: str,
    *,
    column: str,
    xlabel: str,
    title: str,
    asked: int | None = None,
) -> Markup:
    """Horizontal bars of ``column`` per stack (sorted by name); with ``asked``, a line at that count."""
    measured = rows.dropna(subset=[column]).sort_values("target")
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 0.9 + 0.45 * max(len(measured), 1)), layout="constrained")
        axes = figure.subplots()
        for position, row in enumerate(measured.to_dict("records")):
            style = styles[str(row["target"])]
            value = float(row[column])
            xerr = None
            if column == "pss_kib_per_connection":
                low, high = float(row["pss_kib_per_connection_min"]), float(row["pss_kib_per_connection_max"])
                xerr = [[value - low], [high - value]] if high > low else None
            axes.barh(
                position, value, xerr=xerr, capsize=3, color=style.colour, alpha=0.85,
                hatch=style.hatch, edgecolor="white" if style.hatch else style.colour,
            )  # fmt: skip
            axes.annotate(f"{value:,.1f}" if value < 100 else f"{value:,.0f}", (value, position),
                          xytext=(4, 0), textcoords="offset points", va="center")  # fmt: skip
        if asked is not None:
            axes.axvline(asked, color="#555", linestyle=":", linewidth=1)
        axes.set_yticks(range(len(measured)), [label(str(n), interfaces) for n in measured["target"]])
        axes.invert_yaxis()
        axes.set_xlabel(xlabel)
        axes.set_title(title, fontsize=9)
        axes.grid(axis="y", visible=False)
        axes.margins(x=0.2)
        return Markup(svg_text(figure, prefix))


def idle_endpoints(run: RunAnalysis) -> list[IdleEndpoint]:
    """The Idle connections section's endpoints, in the run's order."""
    styles = stack_styles(run.interfaces)
    out = []
    for index, (endpoint, kind) in enumerate(run.idle_kinds.items()):
        rows = run.idle[run.idle["endpoint"] == endpoint]
        charts: list[tuple[str, Markup]] = []
        if not rows.empty:
            level = int(rows["connections"].max())
            top = rows[(rows["connections"] == level) & (rows["repeats"] > 0)]
            if not top.empty:
                charts.append(("memory-per-connection", _bars(
                    top, styles, run.interfaces, f"idle{index}m", column="pss_kib_per_connection",
                    xlabel="PSS per connection (KiB)", title=f"Memory per idle connection at {level:,}",
                )))  # fmt: skip
                charts.append(("connections-held", _bars(
                    top, styles, run.interfaces, f"idle{index}h", column="connections_held",
                    xlabel="connections held (driver's count; dotted: asked)",
                    title=f"Connections held of {level:,}", asked=level,
                )))  # fmt: skip
        out.append(
            IdleEndpoint(
                endpoint=endpoint,
                anchor="idle-" + re.sub(r"[^a-z0-9]+", "-", endpoint.lower()).strip("-"),
                what=KIND_WORDS.get(kind, kind),
                sentence=idle_headline(endpoint, kind, rows),
                table=Table(COLUMNS, tuple(_row(cast(Record, r)) for r in rows.to_dict("records"))),
                charts=tuple(charts),
            )
        )
    return out
