"""Sustainable throughput: what a saturation search found, per repeat and across repeats.

A saturation search (``model = "saturation"``) runs open-model cells at rising
arrival rates until one breaks the scenario's SLO, then bisects; each cell
says whether it held (``slo_held``) and, if not, why (``slo_breach``). The
stack's sustainable throughput in one repeat is the highest rate whose cell
held (issue 4); across repeats it gets a median and an interval of the median
(:mod:`harness.stats`). Pure functions over :func:`harness.analysis.measurements_frame`
frames; rates are requests/s offered, latencies ms.
"""

from __future__ import annotations

import math

import pandas as pd

from harness import stats
from harness.bounds import merge_bound_reasons
from harness.cellstate import ran_load


def _is_bound(cell: pd.Series) -> bool:
    """Whether a cell's figures may be the load generator's or the upstream's limit, not the target's."""
    return bool(cell["generator_bound"]) or bool(cell["upstream_bound"])


SUSTAINABLE_COLUMNS = [
    "target",
    "interface",
    "endpoint",
    "repeat",
    "steps",
    "sustainable_requests_per_second",
    "held_cell_id",
    "latency_ms_p99",
    "broke",
    "breach",
    "bound",
    "bound_reasons",
]


def sustainable_throughput(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (target, endpoint, repeat) of a saturation search: the highest rate whose cell held the SLO.

    Columns (``SUSTAINABLE_COLUMNS``): ``steps`` (the search's cells that ran load),
    ``sustainable_requests_per_second`` (requests/s offered in the highest cell with
    ``slo_held``; NaN when no cell held), ``held_cell_id`` and its
    ``latency_ms_p99``; ``broke`` (a higher rate broke the SLO, or the same rate did in a
    first window that a second window at that rate then held; False means the search ended
    before the SLO broke at or above the figure, so the figure is a floor, the search's own
    bound). A rate that broke once and held once is where the stack meets the SLO's edge,
    not a rate the search stopped below: measured here, in a ``make bench`` run, flask-granian
    held 1,190 req/s, then broke and held 1,720 and broke and held 2,070 in its 5 windows,
    a figure that counting only higher rates left a floor with no verdict,
    ``breach`` (why the lowest rate at or above it that broke did); ``bound`` (True when a cell
    that decided the figure, the one that held or the one that broke at or above it,
    was generator- or upstream-bound: then the figure may be the generator's, not
    the target's) and ``bound_reasons`` (those cells' :class:`~harness.model.BoundReason`
    records, each once). A step whose every request failed is stored failed and counts as a step
    that broke the SLO (it did); a step that failed before any load is ignored; a search
    without a step that ran load (:func:`harness.cellstate.ran_load`) has no row.
    """
    ok = frame[frame["model"].eq("saturation") & ran_load(frame)]
    records = []
    for (target, endpoint, repeat), cells in ok.groupby(["target", "endpoint", "repeat"], sort=True):
        cells = cells.sort_values("level")
        held = cells[cells["slo_held"].eq(True)]
        top = held.iloc[-1] if len(held) else None
        floor = -math.inf if top is None else float(top["level"])
        above = cells[(cells["level"] > floor) & cells["slo_held"].eq(False)]
        if above.empty:  # the top rate's own first window, when a second window overturned it
            above = cells[cells["level"].eq(floor) & cells["slo_held"].eq(False)]
        first_break = above.iloc[0] if len(above) else None
        deciding = [cell for cell in (top, first_break) if cell is not None]
        records.append(
            {
                "target": target,
                "interface": cells["interface"].iloc[0],
                "endpoint": endpoint,
                "repeat": repeat,
                "steps": len(cells),
                "sustainable_requests_per_second": math.nan if top is None else float(top["level"]),
                "held_cell_id": None if top is None else top["cell_id"],
                "latency_ms_p99": math.nan if top is None else float(top["latency_ms_p99"]),
                "broke": first_break is not None,
                "breach": None if first_break is None else first_break["slo_breach"],
                "bound": any(_is_bound(cell) for cell in deciding),
                "bound_reasons": merge_bound_reasons(cell["bound_reasons"] for cell in deciding),
            }
        )
    return pd.DataFrame(records, columns=SUSTAINABLE_COLUMNS)


SATURATION_COLUMNS = [
    "target",
    "endpoint",
    "n",
    *(
        f"sustainable_requests_per_second_{s}"
        for s in ("median", "min", "max", "values", "ci_low", "ci_high", "cv")
    ),
    "latency_ms_p99_median",
    "none_held",
    "never_broke",
    "breaches",
    "bound",
    "bound_reasons",
]


def saturation_summary(frame: pd.DataFrame, *, per_repeat: pd.DataFrame | None = None) -> pd.DataFrame:
    """Sustainable throughput per (target, endpoint) across repeats, sorted by those keys.

    A repeat in which no rate held counts as 0 requests/s (the stack sustained
    less than the lowest rate tried). Columns: ``target``, ``endpoint``,
    ``interface``, ``n`` (repeats with a step that ran load), ``failed`` (steps that failed before
    any load; one whose every request failed is the SLO broken, the search's answer),
    ``sustainable_requests_per_second_median``/``_min``/``_max``, ``sustainable_requests_per_second_values``
    (by repeat), ``sustainable_requests_per_second_ci_low``/``_ci_high`` (the
    order-statistic interval of the median, :func:`harness.stats.median_interval`; NaN with one repeat),
    ``sustainable_requests_per_second_cv``,
    ``latency_ms_p99_median`` (at each repeat's sustainable rate),
    ``none_held`` (repeats where no rate held), ``never_broke`` (repeats whose
    search ended before the SLO broke), ``breaches`` (the distinct reasons, a
    tuple), ``bound`` and ``bound_reasons`` (any deciding cell generator- or
    upstream-bound, and the reasons of all of them: see :func:`sustainable_throughput`). ``per_repeat`` is
    :func:`sustainable_throughput`'s result for ``frame`` when it is at hand;
    else it is computed.
    """
    found = sustainable_throughput(frame) if per_repeat is None else per_repeat
    repeats = found.assign(
        value=lambda f: f["sustainable_requests_per_second"].fillna(0.0),
        none_held=lambda f: f["sustainable_requests_per_second"].isna(),
        never_broke=lambda f: ~f["broke"].astype(bool) & f["sustainable_requests_per_second"].notna(),
    )
    cells = frame[frame["model"].eq("saturation")]
    keys = ["target", "endpoint"]
    failed = (
        cells.assign(failed=cells["status"].eq("failed") & ~ran_load(cells))
        .groupby(keys, sort=True)
        .agg(interface=("interface", "first"), failed=("failed", "sum"))
    )
    records = []
    for (target, endpoint), group in repeats.sort_values("repeat").groupby(keys, sort=True):
        values = [float(v) for v in group["value"]]
        interval = stats.median_interval(values)
        records.append(
            {
                "target": target,
                "endpoint": endpoint,
                "n": len(values),
                "sustainable_requests_per_second_median": stats.median(values),
                "sustainable_requests_per_second_min": min(values),
                "sustainable_requests_per_second_max": max(values),
                "sustainable_requests_per_second_values": tuple(values),
                "sustainable_requests_per_second_ci_low": math.nan if interval is None else interval.low,
                "sustainable_requests_per_second_ci_high": math.nan if interval is None else interval.high,
                "sustainable_requests_per_second_cv": stats.coefficient_of_variation(values),
                "latency_ms_p99_median": stats.median(list(group["latency_ms_p99"])),
                "none_held": int(group["none_held"].sum()),
                "never_broke": int(group["never_broke"].sum()),
                "breaches": tuple(dict.fromkeys(b for b in group["breach"] if isinstance(b, str))),
                "bound": bool(group["bound"].any()),
                "bound_reasons": merge_bound_reasons(group["bound_reasons"]),
            }
        )
    stats_frame = pd.DataFrame(records, columns=SATURATION_COLUMNS).set_index(keys)
    summary = failed.join(stats_frame, how="left")
    summary["failed"] = summary["failed"].astype(int)
    for column in ("n", "none_held", "never_broke"):
        summary[column] = summary[column].fillna(0).astype(int)
    summary["bound"] = summary["bound"].astype("boolean").fillna(False).astype(bool)
    return summary.reset_index()
