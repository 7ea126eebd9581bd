"""SSE capacity in concurrent streams: the most streams a stack serves at once within an SLO on the
time to first event, read off the levels a scenario measured.

A stream scenario runs fixed levels of concurrent streams (closed model). A level holds the
scenario's SLO (:class:`harness.model.config.Slo`, its ``p99_ms`` applied to the time to
first event, its ``error_rate`` to the streams that failed) when the median over its repeats
does; a stack's capacity is the highest level held below the first level that broke it.
With levels 10, 100 and 400, a stack that holds 100 and breaks at 400 has a capacity of at
least 100 and below 400: the levels bracket it, they do not bisect it. A stack that held every
level has a capacity of at least the highest one, set by the levels tried, not by the stack
(``bounded``), as a capacity search capped by its own bound is flagged
(:mod:`harness.run.search`). One that broke the lowest level has a capacity below it.

Pure: built from :func:`harness.streamsummary.stream_summary`'s rows alone.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import pandas as pd

from harness import analysis
from harness.model.config import Slo

CAPACITY_COLUMNS = (
    "endpoint",
    "target",
    "capacity_streams",
    "broke_at_streams",
    "breach",
    "bounded",
    "slots",
)
"""Columns of :func:`stream_capacity`: ``capacity_streams``, the highest level held (0 when the
lowest broke); ``broke_at_streams``, the first level that broke the SLO (NaN when none did) and
``breach``, why (the SLO's words); ``bounded``: no level broke it, so the capacity is at least the
highest level tried; ``slots``: workers x threads of a stack whose workers block (NaN otherwise),
the most streams it serves at once."""


def level_breach(row: Mapping[Hashable, object], slo: Slo) -> str | None:
    """Why one SSE level (a :func:`~harness.streamsummary.stream_summary` row) breaks ``slo``, or None.

    Its time to first event p99 (ms, median over repeats) against ``slo.p99_ms``; its failed
    streams (every error kind) against ``slo.error_rate`` of the streams completed and failed.
    A level with no repeat that ran load breaks it ("not measured").
    """
    if not _number(row.get("n")) > 0:
        return "not measured"
    failed = sum(_number(row.get(f"errors_{kind}"), 0.0) for kind in analysis.ERROR_KINDS)
    completed = _number(row.get("streams_completed"), 0.0)
    p99 = _number(row.get("latency_ms_p99_median"))
    return slo.breach(
        p99_ms=None if math.isnan(p99) else p99,
        failed=int(failed),
        scheduled=int(failed + completed),
        achieved_rate=0.0,
        intended_rate=0.0,
    )


def stream_capacity(streams: pd.DataFrame, slo: Slo) -> pd.DataFrame:
    """Per SSE endpoint and stack (columns :data:`CAPACITY_COLUMNS`), from ``streams`` (the rows of
    :func:`~harness.streamsummary.stream_summary`, any kinds: only ``sse`` ones are read) and the
    scenario's ``slo``. Stacks with no level that ran load (failed before any load) are left out.
    Sorted by endpoint, then capacity (highest first), then name."""
    rows = []
    sse = streams[streams["workload"].eq("sse")] if not streams.empty else streams
    for (endpoint, target), stack in sse.groupby(["endpoint", "target"], sort=True):
        stack = stack.sort_values("level")
        if not (stack["n"] > 0).any():
            continue
        held, broke, breach = 0.0, math.nan, None
        for row in stack.to_dict("records"):
            why = level_breach(row, slo)
            if why is not None:
                broke, breach = float(row["level"]), why
                break
            held = float(row["level"])
        workers, threads = _number(stack["slots_workers"].iloc[0]), _number(stack["slots_threads"].iloc[0])
        rows.append(
            {
                "endpoint": endpoint,
                "target": target,
                "capacity_streams": held,
                "broke_at_streams": broke,
                "breach": breach,
                "bounded": math.isnan(broke),
                "slots": workers * threads,
            }
        )
    out = pd.DataFrame(rows, columns=list(CAPACITY_COLUMNS))
    if out.empty:
        return out
    ordered = out.sort_values(["endpoint", "capacity_streams", "target"], ascending=[True, False, True])
    return ordered.reset_index(drop=True)


def capacity_words(row: Mapping[Hashable, object]) -> str:
    """One stack's capacity in words: ``at least 100, below 400 (p99 812.0 ms > 250 ms)``, ``at least
    400 (every level held: set by the levels tried)`` or ``below 10 (errors 3.10% > 0.1%)``."""
    held, broke = _number(row["capacity_streams"]), _number(row["broke_at_streams"])
    if math.isnan(broke):
        return f"at least {held:,.0f} (every level held: set by the levels tried, not the stack)"
    if held == 0:
        return f"below {broke:,.0f} ({row['breach']})"
    return f"at least {held:,.0f}, below {broke:,.0f} ({row['breach']})"


def slo_words(slo: Slo) -> str:
    """``concurrent streams within the SLO (time to first event p99 <= 250 ms, errors <= 0.1%)``."""
    return (
        f"concurrent streams within the SLO (time to first event p99 <= {slo.p99_ms:g} ms, "
        f"errors <= {100 * slo.error_rate:g}%)"
    )


def capacity_sentence(endpoint: str, capacity: pd.DataFrame, slo: Slo) -> str:
    """The run's sentence on one SSE endpoint's capacity, e.g. ``/stream/sse?... capacity within the
    SLO (time to first event p99 <= 250 ms, errors <= 0.1%): starlette-uvicorn at least 100, below
    400; ...; flask-gunicorn below 10``, stacks from the highest capacity down."""
    rows = capacity[capacity["endpoint"] == endpoint]
    head = f"{endpoint} {slo_words(slo)}"
    if rows.empty:
        return f"{head}: no stack measured"
    parts = []
    for row in rows.to_dict("records"):
        held, broke = _number(row["capacity_streams"]), _number(row["broke_at_streams"])
        if math.isnan(broke):
            parts.append(f"{row['target']} at least {held:,.0f} (every level held)")
        elif held == 0:
            parts.append(f"{row['target']} below {broke:,.0f}")
        else:
            parts.append(f"{row['target']} {held:,.0f} to {broke:,.0f}")
    return f"{head}: " + ", ".join(parts)


def _number(value: object, default: float = math.nan) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return default if math.isnan(number) else number
