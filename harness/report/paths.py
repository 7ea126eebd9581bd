"""The migration-path table in words: one row of text cells per path and endpoint, for the
report's first screen and the end of a run in the terminal (:func:`format_path_lines`).

Takes :class:`harness.paths.PathRow` records and returns strings; prints nothing. Ratios are
written with :func:`harness.report.formats.format_ratio`'s digits and their 95% t-interval in
brackets (:func:`harness.stats.compare`); capacities with the interval of the median.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

from harness.cost import Cost
from harness.paths import PathRow, Side
from harness.report.formats import DASH, format_number, format_ratio
from harness.stats import Comparison, ratio_figure

PATH_COLUMNS = (
    ("path", "path"),
    ("endpoint", "endpoint"),
    ("source", "from: capacity req/s"),
    ("destination", "to: capacity req/s"),
    ("capacity_ratio", "capacity to/from"),
    ("cpu_ratio", "CPU/request to/from"),
    ("memory_ratio", "memory to/from"),
    ("cores", "cores for the load"),
    ("gib", "GiB for the load (limit; measured)"),
    ("saving", "saving"),
    ("verdict", "verdict"),
)
"""(key of :func:`path_cells`, column heading), in table order."""

PATH_NOTE = (
    "Capacity: the highest arrival rate served within the SLO, median of the repeats with the "
    "interval of the median. Ratios: to over from, the ratio of geometric means with its 95% "
    "t-interval over the repeats; CPU per request and memory are taken where each repeat held its "
    "capacity. A blocking stack tuned within its limits is compared with its tuned figures; the "
    "as-configured ones are shown beside them."
)


def format_ratio_interval(comparison: Comparison | None) -> str:
    """``15x [13-17]`` (en dash): a ratio with the ends of its interval; the ratio alone without one."""
    if comparison is None or math.isnan(comparison.ratio):
        return DASH
    if comparison.interval is None:
        return format_ratio(comparison.ratio)
    low, high = comparison.interval.low, comparison.interval.high
    return f"{format_ratio(comparison.ratio)} [{ratio_figure(low)}{DASH}{ratio_figure(high)}]"


def _capacity(side: Side) -> str:
    ends = ""
    if side.capacity_interval is not None:
        low, high = side.capacity_interval.low, side.capacity_interval.high
        ends = f" [{format_number(low, 0)}{DASH}{format_number(high, 0)}]"
    return f"{format_number(side.capacity_median, 0)}{ends} n={side.n}"


def _workers(side: Side) -> str:
    if side.workers is None:
        return DASH
    workers = f"{side.workers} worker{'' if side.workers == 1 else 's'}"
    if side.threads is not None and side.threads > 1:
        return f"{workers} x {side.threads} threads"
    return workers


def format_side(used: Side | None, configured: Side | None, memory: str) -> str:
    """``flask-gunicorn 55 [50-60] n=3`` or, with tuned figures, ``flask-gunicorn 160 [...] n=3
    tuned within the limits (9 workers, 410 MiB PSS); 55 [...] n=3 as configured (3 workers)``."""
    if used is None:
        return "not measured"
    stack = used.target.split("@", 1)[0]
    if not used.tuned:
        return f"{stack} {_capacity(used)} as configured ({_workers(used)})"
    values = used.pss_mib_values if memory == "PSS" else used.cgroup_mib_values
    cost = f", {format_number(sorted(values)[len(values) // 2], 0)} MiB {memory}" if values else ""
    text = f"{stack} {_capacity(used)} tuned within the limits ({_workers(used)}{cost})"
    if configured is not None:
        text += f"; {_capacity(configured)} as configured ({_workers(configured)})"
    return text


def format_side_short(used: Side | None, configured: Side | None, memory: str) -> tuple[str, str]:
    """A side for the report's narrow cells: (``442 [430-460] n=3``, ``tuned: 26 workers, 866 MiB
    PSS; as configured (3 workers): 27``); ``("not measured", "")`` without figures."""
    if used is None:
        return "not measured", ""
    if not used.tuned:
        return _capacity(used), f"as configured ({_workers(used)})"
    values = used.pss_mib_values if memory == "PSS" else used.cgroup_mib_values
    cost = f", {format_number(sorted(values)[len(values) // 2], 0)} MiB {memory}" if values else ""
    detail = f"tuned: {_workers(used)}{cost}"
    if configured is not None:
        detail += f"; as configured ({_workers(configured)}): {format_number(configured.capacity_median, 0)}"
    return _capacity(used), detail


def _pair(source: Cost | None, destination: Cost | None, field: str, digits: int) -> str:
    def one(cost: Cost | None) -> str:
        return DASH if cost is None else format_number(getattr(cost, field), digits)

    return f"{one(source)} {'->'} {one(destination)}"


def _saving(value: float, unit: str) -> str:
    if math.isnan(value):
        return f"{DASH} {unit}"
    return f"{format_number(value, 0 if abs(value) >= 10 else 1)} {unit}"


def path_cells(row: PathRow) -> dict[str, str]:
    """One path on one endpoint as text cells, keyed as :data:`PATH_COLUMNS`."""
    kind = row.memory_kind or "PSS"
    memory = format_ratio_interval(row.memory_ratio)
    if row.memory_kind is not None and memory != DASH:
        memory += f" ({row.memory_kind} peak)"
    if not row.measured:
        missing = [
            stack
            for stack, side in ((row.path.from_stack, row.source), (row.path.to_stack, row.destination))
            if side is None
        ]
        verdict = "not measured: " + ", ".join(missing)
    elif row.no_verdict:
        verdict = "no verdict: " + "; ".join(row.no_verdict)
    elif row.capacity_ratio is not None and row.capacity_ratio.interval is None:
        verdict = "no interval (fewer than 2 repeats a side): no verdict"
    elif row.capacity_ratio is not None and row.capacity_ratio.practical:
        verdict = "more capacity" if row.capacity_ratio.ratio > 1 else "less capacity"
    else:
        verdict = "no practical difference shown"
    source_capacity, source_detail = format_side_short(row.source, row.source_configured, kind)
    destination_capacity, destination_detail = format_side_short(
        row.destination, row.destination_configured, kind
    )
    return {
        "path": row.path.name,
        "from_stack": row.path.from_stack,
        "to_stack": row.path.to_stack,
        "stands_for": row.path.stands_for,
        "source_text": row.path.source,
        "endpoint": row.endpoint,
        "source": format_side(row.source, row.source_configured, kind),
        "source_capacity": source_capacity,
        "source_detail": source_detail,
        "destination_capacity": destination_capacity,
        "destination_detail": destination_detail,
        "destination": format_side(row.destination, row.destination_configured, kind),
        "capacity_ratio": format_ratio_interval(row.capacity_ratio),
        "cpu_ratio": format_ratio_interval(row.cpu_ratio),
        "memory_ratio": memory,
        "cores": _pair(row.source_cost, row.destination_cost, "cores", 0),
        "gib": f"{_pair(row.source_cost, row.destination_cost, 'limit_gib', 1)}; "
        f"{_pair(row.source_cost, row.destination_cost, 'measured_gib', 1)}",
        "saving": f"{_saving(row.saving_cores, 'cores')}, {_saving(row.saving_limit_gib, 'GiB')}",
        "verdict": verdict,
    }


PIPE_WIDTH = 160


def format_path_lines(
    rows: Sequence[PathRow], target_requests_per_second: float, assumption: str, *, width: int = PIPE_WIDTH
) -> list[str]:
    """The path table as plain lines of at most ``width`` columns (a pipe, a CI log): a heading,
    each path on one endpoint as a first line and indented continuation lines, then the cost's
    assumption. Empty when ``rows`` is."""
    if not rows:
        return []
    load = format_number(target_requests_per_second, 0)
    lines = [f"migration paths (capacity within the SLO; cores and GiB for {load} requests/s):"]
    for row in rows:
        c = path_cells(row)
        if not row.measured:  # one line: nothing to compare
            lines += textwrap.wrap(f"{c['path']} on {c['endpoint']}: {c['verdict']}", width)
            continue
        parts = [
            f"{c['path']} on {c['endpoint']}: {c['verdict']}",
            f"from {c['source']}",
            f"to {c['destination']}",
            f"capacity {c['capacity_ratio']}, CPU/request {c['cpu_ratio']}, memory {c['memory_ratio']}",
            f"cores {c['cores']}, GiB (limit; measured) {c['gib']}, saving {c['saving']}",
        ]
        lines += textwrap.wrap(parts[0], width, subsequent_indent="    ")
        for part in parts[1:]:
            lines += textwrap.wrap(part, width, initial_indent="  ", subsequent_indent="    ")
    lines += textwrap.wrap(f"cost: {assumption}", width, subsequent_indent="  ")
    return lines
