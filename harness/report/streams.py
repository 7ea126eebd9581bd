"""The stream endpoints of a run's page: the Streams section and the stream cells' tables.

Per stream endpoint (:attr:`~harness.runanalysis.RunAnalysis.stream_kinds`), in the run's
order: what it asked for, the sentence on its top level and a note per stack whose
workers block (:mod:`harness.report.streamwords`), a table by level and stack, and its
charts in the stacks' usual styles (:mod:`harness.report.charts`). SSE: time to first
event, the gap between events against the interval asked, and events/s against
concurrent streams; WebSocket: messages/s and round trip against connections (open model:
against the rate offered, with messages dropped). The Every-cell section lists stream
cells in tables of their own (:func:`stream_cells`). Rows come from the run's analysis
(``streams``, ``frame``); nothing here computes a statistic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd
from markupsafe import Markup

from harness.report import charts
from harness.report.formats import format_number
from harness.report.streamwords import (
    UNSUPPORTED,
    Record,
    above_slots,
    asked_interval,
    count,
    endpoint_words,
    error_kinds,
    level_words,
    not_measured,
    number,
    offered,
    slots,
    slots_note,
    stream_sentence,
)
from harness.report.svg import StackStyle, label, stack_styles
from harness.report.tables import cell_flags
from harness.runanalysis import RunAnalysis
from harness.streamcapacity import capacity_words, slo_words


@dataclass(frozen=True)
class Column:
    """A table column: its heading, and whether it holds numbers (right-aligned), an endpoint (code)
    or words that may wrap."""

    label: str
    numeric: bool = True
    code: bool = False
    wrap: bool = False


@dataclass(frozen=True)
class Row:
    """A table row. A row with a ``note`` (a cell not measured) has only its leading cells, the note
    spanning the rest. ``kind``: ``""``, ``failed`` or ``unsupported`` (its class in the page)."""

    cells: tuple[str, ...]
    note: str | None = None
    kind: str = ""


@dataclass(frozen=True)
class Table:
    """A table as the page's ``grid`` macro draws it."""

    columns: tuple[Column, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class StreamEndpoint:
    """One stream endpoint of the Streams section: what it asked for (``what``), the sentence on its
    top level, a note per stack whose workers block, its table and its charts (kind, SVG). SSE: its
    capacity in concurrent streams within the SLO (``capacity``, the sentence, and ``capacities``,
    each stack's in words, highest first; :mod:`harness.streamcapacity`)."""

    endpoint: str
    anchor: str
    kind: str
    what: str
    sentence: str
    notes: tuple[str, ...]
    table: Table
    charts: tuple[tuple[str, Markup], ...]
    capacity: str | None = None
    capacities: tuple[tuple[str, str], ...] = ()


def _row_flags(row: Record) -> str:
    flags = [error_kinds(row)] if count(row["errors_total"]) else []
    if above_slots(row):
        flags.append(f"above the {slots(row)} streams it holds")
    if row["generator_bound"]:
        flags.append("generator bound")
    if count(row["failed"]):
        flags.append(f"{count(row['failed'])} failed repeat(s)")
    return "; ".join(flags)


SSE_COLUMNS = (
    "streams completed/s",
    "events/s",
    "first event p50 ms",
    "first event p99 ms",
    "gap p50 ms",
    "gap p99 ms",
    "completed",
    "failed",
)
WEBSOCKET_COLUMNS = ("messages/s", "round trip p50 ms", "round trip p99 ms", "failed")
WEBSOCKET_OPEN_COLUMNS = ("messages/s", "round trip p50 ms", "round trip p99 ms", "dropped", "failed")


def _figures(row: Record, kind: str) -> tuple[str, ...]:
    """A row's figures in the order of :data:`SSE_COLUMNS`, :data:`WEBSOCKET_COLUMNS` or (an
    open-model row) :data:`WEBSOCKET_OPEN_COLUMNS`."""

    def ms(column: str) -> str:
        return format_number(number(row[column]))

    rate = number(row["requests_per_second_median"])
    failed = f"{count(row['errors_total']):,}"
    if kind == "sse":
        gaps = (ms("inter_event_gap_ms_p50_median"), ms("inter_event_gap_ms_p99_median"))
        events = format_number(number(row["stream_events_per_second_median"]), 0)
        first = (ms("latency_ms_p50_median"), ms("latency_ms_p99_median"))
        return (format_number(rate), events, *first, *gaps, f"{count(row['streams_completed']):,}", failed)
    trips = (format_number(rate, 0), ms("latency_ms_p50_median"), ms("latency_ms_p99_median"))
    if row["model"] == "open":
        return (*trips, f"{count(row['dropped']):,}", failed)
    return (*trips, failed)


def _table(rows: pd.DataFrame, kind: str, interfaces: dict[str, str | None]) -> Table:
    """One stream endpoint's rows by stack and level: its figures, server CPU, peak memory and flags."""
    if kind == "sse":
        interval = asked_interval(rows)
        names = tuple(
            f"{name} (asked {interval})" if name.startswith("gap") else name for name in SSE_COLUMNS
        )
    else:
        names = WEBSOCKET_OPEN_COLUMNS if offered(rows) else WEBSOCKET_COLUMNS
    columns = (
        Column("stack", numeric=False),
        Column(level_words("", kind, offered(rows)).strip()),
        *(Column(name) for name in names),
        Column("server CPU %"),
        Column("peak PSS MiB"),
        Column("flags", numeric=False, wrap=True),
    )
    out = []
    for row in rows.sort_values(["target", "level"]).to_dict("records"):
        first = (label(str(row["target"]), interfaces), format_number(number(row["level"]), 0))
        note = not_measured(row)
        if note is not None:
            out.append(Row(first, note, "unsupported" if note == UNSUPPORTED else "failed"))
            continue
        machine = (
            format_number(number(row["server_cpu_percent_median"]), 0),
            format_number(number(row["server_pss_mib_peak_max"]), 0),
        )
        out.append(Row((*first, *_figures(row, kind), *machine, _row_flags(row))))
    return Table(columns, tuple(out))


def _anchor(endpoint: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", endpoint).strip("-") or "root"


def _absent(rows: pd.DataFrame) -> dict[str, str]:
    """The stacks with no level that ran load, each with why, for the charts' legends."""
    out = {}
    for name, stack in rows.groupby("target", sort=True):
        if not (stack["n"] > 0).any():
            out[str(name)] = UNSUPPORTED if (stack["unsupported"] > 0).any() else "failed before any load"
    return out


def _charts(
    kind: str,
    rows: pd.DataFrame,
    styles: dict[str, StackStyle],
    interfaces: dict[str, str | None],
    index: int,
) -> tuple[tuple[str, Markup], ...]:
    """SSE: time to first event p50 and p99, the gap between events p99 (with the interval asked) and
    events/s, against concurrent streams; WebSocket: round trip p99 and messages/s against connections
    (open model: against the rate offered, with the line of messages/s = the rate)."""
    if not (rows["n"] > 0).any():
        return ()
    absent = _absent(rows)
    if kind == "sse":
        x = "concurrent streams (closed model)"
        asked = rows["event_interval_ms"].dropna()
        reference = (float(asked.iloc[0]), f"asked: {asked.iloc[0]:g} ms apart") if len(asked) else None
        drawn = [
            ("firstevent", charts.line_chart(
                rows, "latency_ms_p50", styles, interfaces, f"s{index}h", x="concurrency", xlabel=x,
                ylabel="time to first event p50 (ms, log scale)", title="Time to first event, p50", log=True,
                absent=absent,
            )),
            ("firstevent", charts.line_chart(
                rows, "latency_ms_p99", styles, interfaces, f"s{index}f", x="concurrency", xlabel=x,
                ylabel="time to first event p99 (ms, log scale)", title="Time to first event, p99", log=True,
                absent=absent,
            )),
            ("gaps", charts.line_chart(
                rows, "inter_event_gap_ms_p99", styles, interfaces, f"s{index}g", x="concurrency", xlabel=x,
                ylabel="gap between events p99 (ms)", title="Gap between events, p99", reference=reference,
                absent=absent,
            )),
            ("events", charts.line_chart(
                rows, "stream_events_per_second", styles, interfaces, f"s{index}e", x="concurrency",
                xlabel=x, ylabel="events received per second", title="Events/s", absent=absent,
            )),
        ]  # fmt: skip
    else:
        opened = offered(rows)
        level = "rate" if opened else "concurrency"
        x = "connections, one message in flight each (closed model)"
        if opened:
            x = "messages/s offered (open model)"
        drawn = [
            ("roundtrip", charts.line_chart(
                rows, "latency_ms_p99", styles, interfaces, f"s{index}r", x=level, xlabel=x,
                ylabel="round trip p99 (ms, log scale)", title="Round trip, p99", log=True, absent=absent,
            )),
            ("messages", charts.line_chart(
                rows, "requests_per_second", styles, interfaces, f"s{index}m", x=level, xlabel=x,
                ylabel="messages echoed per second", title="Messages/s", absent=absent, offered=opened,
            )),
        ]  # fmt: skip
    return tuple((name, Markup(svg)) for name, svg in drawn)


def stream_endpoints(run: RunAnalysis) -> list[StreamEndpoint]:
    """The Streams section: each stream endpoint of ``run``, in its endpoint order."""
    interfaces, scenario = dict(run.interfaces), run.manifest.scenario
    styles = stack_styles(interfaces)
    out = []
    for index, (endpoint, kind) in enumerate(run.stream_kinds.items()):
        rows = run.streams[run.streams["endpoint"] == endpoint]
        notes = []
        if kind == "sse":
            for _, stack in rows.groupby("target", sort=True):
                notes.append(slots_note(stack.sort_values("level"), interfaces, scenario.timeout_s))
        capacity: str | None = None
        capacities: tuple[tuple[str, str], ...] = ()
        if kind == "sse":
            words = slo_words(scenario.slo)
            capacity = words[0].upper() + words[1:]
            mine = run.stream_capacity[run.stream_capacity["endpoint"] == endpoint]
            capacities = tuple((str(r["target"]), capacity_words(r)) for r in mine.to_dict("records"))
        out.append(
            StreamEndpoint(
                endpoint=endpoint,
                anchor=_anchor(endpoint),
                kind=kind,
                what=endpoint_words(scenario, endpoint, kind),
                sentence=stream_sentence(endpoint, kind, rows, interfaces),
                notes=tuple(note for note in notes if note),
                table=_table(rows, kind, interfaces),
                charts=_charts(kind, rows, styles, interfaces, index),
                capacity=capacity,
                capacities=capacities,
            )
        )
    return out


_MACHINE = ("server CPU %", "RSS peak", "PSS peak", "generator CPU %")
_MACHINE_FIELDS = (
    "server_cpu_percent",
    "server_rss_mib_peak",
    "server_pss_mib_peak",
    "generator_cpu_percent",
)
_CELL_COLUMNS = {
    "sse": (
        "streams", "streams/s", "events/s", "first event p50", "p90", "p99", "max", "gap p50", "gap p99",
        "completed", "errors", *_MACHINE,
    ),
    "websocket": (
        "connections", "messages/s", "round trip p50", "p90", "p99", "p99.9", "max", "errors", *_MACHINE,
        "L/C",
    ),
}  # fmt: skip
_OPEN_CELL_COLUMNS = ("messages/s offered", *_CELL_COLUMNS["websocket"][1:-1], "dropped")
"""The WebSocket open model's: the rate offered for connections, messages dropped for Little's law."""
CELL_TITLES = {"sse": "SSE cells", "websocket": "WebSocket cells"}


def _cell_figures(row: Record, kind: str) -> tuple[str, ...]:
    """A stream cell's figures, in the order of its :data:`_CELL_COLUMNS` after the level."""

    def num(column: str, digits: int | None = None) -> str:
        return format_number(number(row[column]), digits)

    errors = error_kinds(row) or "0"
    machine = tuple(num(column, 0) for column in _MACHINE_FIELDS)
    if kind == "sse":
        first = tuple(num(f"latency_ms_{p}") for p in ("p50", "p90", "p99", "max"))
        gaps = (num("inter_event_gap_ms_p50"), num("inter_event_gap_ms_p99"))
        rates = (num("requests_per_second"), num("stream_events_per_second", 0))
        return (*rates, *first, *gaps, num("streams_completed", 0), errors, *machine)
    trips = tuple(num(f"latency_ms_{p}") for p in ("p50", "p90", "p99", "p999", "max"))
    last = num("dropped", 0) if row["model"] == "open" else num("littles_law_ratio", 2)
    return (num("requests_per_second", 0), *trips, errors, *machine, last)


def _cell_row(row: Record, kind: str) -> Row:
    level = format_number(number(row["level"]), 0)
    repeat = str(count(row["repeat"]) + 1)  # counted from 1, as the terminal does
    lead = (str(row["target"]), str(row["endpoint"]), level, repeat)
    reason = row["failure_reason"] or "no reason recorded"
    if row["status"] == "unsupported":
        return Row(lead, f"{UNSUPPORTED}: no WebSocket support, nothing measured", "unsupported")
    failed = row["status"] == "failed"
    if failed and not count(row["requests"]):
        return Row(lead, f"failed: {reason}", "failed")
    flags = [f"failed: {reason}"] if failed else []
    flags += cell_flags(row)
    return Row((*lead, *_cell_figures(row, kind), "; ".join(flags)), kind="failed" if failed else "")


def stream_cells(cells: pd.DataFrame, kinds: dict[str, str]) -> list[tuple[str, Table]]:
    """The stream cells of the Every-cell section, one table per kind (SSE, then WebSocket), each with
    its title (:data:`CELL_TITLES`). ``cells``: rows of :func:`harness.analysis.measurements_frame` in
    page order; ``kinds``: each stream endpoint's kind (:attr:`RunAnalysis.stream_kinds`). WebSocket
    cells of the open model have the rate offered for a level, and messages dropped."""
    out = []
    for kind in ("sse", "websocket"):
        mine = cells[[kinds.get(str(endpoint)) == kind for endpoint in cells["endpoint"]]]
        if mine.empty:
            continue
        names = _OPEN_CELL_COLUMNS if kind == "websocket" and offered(mine) else _CELL_COLUMNS[kind]
        columns = (
            Column("target", numeric=False),
            Column("endpoint", numeric=False, code=True),
            Column(names[0]),
            Column("repeat"),
            *(Column(name, numeric=name != "errors") for name in names[1:]),
            Column("flags", numeric=False, wrap=True),
        )
        rows = tuple(_cell_row(row, kind) for row in mine.to_dict("records"))
        out.append((CELL_TITLES[kind], Table(columns, rows)))
    return out
