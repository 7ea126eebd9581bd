"""The crossover map as text, an SVG chart, CSV and a self-contained HTML page (harness.tools.crossover).

Formatters only: each takes the map's rows (:class:`harness.tools.crossover.MapRow`) and returns
text; :func:`write_outputs` writes the files of a map's folder.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from harness.report.svg import RC, svg_text

if TYPE_CHECKING:
    from harness.tools.crossover import MapRow


def _interval_text(row: MapRow) -> str:
    if math.isnan(row.ratio_ci_low):
        return "no interval"
    return f"[{row.ratio_ci_low:.2f}, {row.ratio_ci_high:.2f}]"


def format_table(rows: Iterable[MapRow]) -> list[str]:
    """The map as text lines: path, variant, wait, from and to capacity, ratio [interval], flags."""
    capacities = f"{'from req/s':>10} {'to req/s':>9} {'ratio':>7} {'95% CI':>16}"
    lines = [f"{'path':40} {'from':13} {'wait (SLO p99, ms)':26} {capacities}"]
    for r in rows:
        wait = f"{r.label} ({r.slo_p99_ms:g})"
        flags = "  " + " | ".join(r.flags) if r.flags else ""
        lines.append(
            f"{r.path:40} {r.variant:13} {wait:26} {r.from_requests_per_second:>10,.0f} "
            f"{r.to_requests_per_second:>9,.0f} {r.ratio:>6.2f}x {_interval_text(r):>16}{flags}"
        )
    return lines


CPU_X = 1.0
"""Where the CPU-only point sits on the log axis of waits (ms), left of 5 ms."""


def chart_svg(rows: Sequence[MapRow]) -> str:
    """One SVG chart: capacity ratio (log) against the wait (ms, log; CPU only at the left), a line
    per path and variant (tuned solid, as configured dashed), the fan-out as its own marker,
    95% interval bars, and a line at 1."""
    colours = {path: f"C{i}" for i, path in enumerate(dict.fromkeys(r.path for r in rows))}
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(7.2, 4.2), layout="constrained")
        axes = figure.subplots()
        series: dict[tuple[str, str], list[MapRow]] = {}
        for row in rows:
            series.setdefault((row.path, row.variant), []).append(row)
        for (path, variant), members in series.items():
            style = "-" if variant == "tuned" else "--"
            for fanout in (False, True):
                part = sorted(
                    (r for r in members if r.point.startswith("fanout") == fanout and math.isfinite(r.ratio)),
                    key=lambda r: r.wait_ms,
                )
                if not part:
                    continue
                xs = [CPU_X if r.wait_ms == 0 else r.wait_ms for r in part]
                ys = [r.ratio for r in part]
                lows = [0.0 if math.isnan(r.ratio_ci_low) else r.ratio - r.ratio_ci_low for r in part]
                highs = [
                    0.0 if not math.isfinite(r.ratio_ci_high) else r.ratio_ci_high - r.ratio for r in part
                ]
                axes.errorbar(
                    xs,
                    ys,
                    yerr=[lows, highs],
                    color=colours[path],
                    linestyle="none" if fanout else style,
                    marker="s" if fanout else ("o" if variant == "tuned" else "^"),
                    capsize=3,
                    label=None if fanout else f"{path} ({variant})",
                )
                flagged = [(x, r.ratio) for x, r in zip(xs, part, strict=True) if r.flags]
                if flagged:  # hollow: flagged, no verdict
                    axes.scatter(
                        [x for x, _ in flagged],
                        [y for _, y in flagged],
                        s=22,
                        facecolors="white",
                        edgecolors=colours[path],
                        zorder=3,
                    )
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.annotate(
            "migrating pays above the line",
            (0.99, 1.0),
            xycoords=("axes fraction", "data"),
            xytext=(0, 4),
            textcoords="offset points",
            fontsize=8,
            ha="right",
            va="bottom",
        )
        axes.set_xscale("log")
        axes.set_yscale("log")
        finite = [r.ratio_ci_low if math.isfinite(r.ratio_ci_low) else r.ratio for r in rows if r.ratio > 0]
        tops = [r.ratio_ci_high if math.isfinite(r.ratio_ci_high) else r.ratio for r in rows]
        axes.set_ylim(
            bottom=min([0.5, *(v / 1.3 for v in finite if v > 0)]),
            top=max([2.0, *(1.5 * v for v in tops if math.isfinite(v))]),
        )
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ticks = sorted({CPU_X if r.wait_ms == 0 else r.wait_ms for r in rows})
        names = {CPU_X if r.wait_ms == 0 else r.wait_ms: r.label for r in rows}
        axes.set_xticks(ticks, [names[t].replace(" upstream", "") for t in ticks], rotation=20)
        axes.minorticks_off()
        axes.set_xlabel("what a request waits on (ms, log; squares: fan-out; hollow: flagged, no verdict)")
        axes.set_ylabel("capacity ratio, to / from (log; 95% interval)")
        axes.set_title("Crossover map: capacity within each point's SLO (p99 <= wait + 100 ms)", fontsize=9)
        axes.legend(loc="upper left", bbox_to_anchor=(0, 0.95))
        return svg_text(figure, "map")


def csv_text(rows: Sequence[MapRow]) -> str:
    """The table as CSV, one row per path, variant and point (value tuples joined by spaces)."""
    buffer = io.StringIO()
    names = [f.name for f in fields(rows[0])] if rows else []
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    for row in rows:
        record = asdict(row)
        for key in ("from_values", "to_values", "flags"):
            record[key] = " | ".join(map(str, record[key]))
        writer.writerow(record)
    return buffer.getvalue()


def html_page(rows: Sequence[MapRow], svg: str, notes: Sequence[str]) -> str:
    """A self-contained page: the chart, the table, and the notes on what was measured."""
    cells = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                r.path,
                r.variant,
                f"{r.label} (p99 <= {r.slo_p99_ms:g} ms)",
                f"{r.from_requests_per_second:,.0f}",
                f"{r.to_requests_per_second:,.0f}",
                f"{r.ratio:.2f}x",
                _interval_text(r),
                "; ".join(r.flags) or "none",
            )
        )
        + "</tr>"
        for r in rows
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("path", "from-stack", "wait (SLO)", "from req/s", "to req/s", "ratio", "95% CI", "flags")
    )
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Crossover map</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}</style>"
        f"</head><body><h1>Crossover map</h1>{svg}<table><tr>{head}</tr>{cells}</table><ul>{items}</ul>"
        "</body></html>\n"
    )


NOTES = (
    "Capacity: the highest Poisson arrival rate held within the point's SLO (p99 <= wait + 100 ms, "
    "errors <= 0.1%, served >= 95% of the rate), 1 CPU and 1 GiB per stack, median of the repeats.",
    "Ratio: to-stack over from-stack, ratio of geometric means of the per-repeat capacities with "
    "its 95% t-interval (harness.stats.compare). A flagged row is no verdict.",
    "Tuned: the blocking from-stack at the workers and threads derived within the same limits on that "
    "point's endpoint (<stack>@tuned); as configured: its default workers.",
    "Fan-out: 3 upstream calls of 100 ms, overlapped on both sides (mode=threads for the sync stacks).",
)


def write_outputs(rows: Sequence[MapRow], folder: Path) -> Path:
    """map.json, map.csv, map.svg and index.html under ``folder``; returns the page's path."""
    svg = chart_svg(rows)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "map.json").write_text(json.dumps([asdict(r) for r in rows], indent=1, allow_nan=True))
    (folder / "map.csv").write_text(csv_text(rows))
    (folder / "map.svg").write_text(svg)
    page = folder / "index.html"
    page.write_text(html_page(rows, svg, NOTES))
    return page
