"""Stream endpoints in words: the sentence on each, a blocking stack's hold on streams, a headline.

Each function takes rows of :func:`harness.streamsummary.stream_summary` (one per stack,
endpoint and level) and returns text. SSE endpoints are told as streams (completed/s,
time to first event, the gap between events against the interval asked), WebSocket
endpoints as echoes (messages/s, round trip; in the open model at each rate offered, the
round trip timed from each message's intended send time, and messages dropped); a stack that
answered a WebSocket upgrade with 501 is :data:`UNSUPPORTED`, never failed. Nothing here
computes a statistic.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping

import pandas as pd

from harness import analysis
from harness.model import DEFAULT_MESSAGE_BYTES, Scenario, sse_parameters
from harness.report.formats import DASH, TIMES, format_number
from harness.report.svg import label

Record = Mapping[Hashable, object]
"""A row of a frame, as ``DataFrame.to_dict("records")`` gives it."""

UNSUPPORTED = "not supported (answers 501)"
"""What a stack without WebSocket support is called, wherever its cells are listed."""


def number(value: object) -> float:
    """A number from a frame's cell (numpy scalars included) as a float; anything else as NaN."""
    return float(value) if isinstance(value, numbers.Real) else math.nan


def count(value: object) -> int:
    """A count from a frame's cell; 0 for NaN or anything else."""
    found = number(value)
    return 0 if math.isnan(found) else int(found)


def _ms(value: object) -> str:
    return format_number(number(value))


def _level(row: Record) -> str:
    return format_number(number(row["level"]), 0)


def offered(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` are open-model cells: a WebSocket endpoint's levels are then messages/s offered."""
    return bool(rows["model"].eq("open").any())


def level_words(level: str, kind: str, open_model: bool) -> str:
    """``100 connections``, ``400 concurrent streams`` or, in the open model, ``2,000 messages/s
    offered``: a formatted ``level`` with its unit."""
    if open_model:
        return f"{level} messages/s offered"
    return f"{level} {'concurrent streams' if kind == 'sse' else 'connections'}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def error_kinds(row: Record) -> str:
    """``timeout 388, read 2``: a row's (or a cell's) errors by kind; empty when there were none."""
    kinds = [(kind, count(row[f"errors_{kind}"])) for kind in analysis.ERROR_KINDS]
    return ", ".join(f"{kind} {n:,}" for kind, n in kinds if n)


def _failures(row: Record, noun: str) -> str:
    """``388 of 394 streams failed (timeout 388)``, or ``no stream failed``."""
    failed = count(row["errors_total"])
    if not failed:
        return f"no {noun} failed"
    return f"{failed:,} of {count(row['requests']):,} {noun}s failed ({error_kinds(row)})"


def not_measured(row: Record) -> str | None:
    """Why a row has no figures: :data:`UNSUPPORTED`, or every repeat failed before any load;
    None when a repeat ran load."""
    if count(row["n"]):
        return None
    if count(row["unsupported"]):
        return UNSUPPORTED
    return "every repeat failed before any load (the reasons are under Every cell)"


def slots(row: Record) -> int | None:
    """The streams a row's stack holds at once (workers x threads), or None when it does not block."""
    workers, threads = number(row["slots_workers"]), number(row["slots_threads"])
    return None if math.isnan(workers) else int(workers * threads)


def above_slots(row: Record) -> bool:
    """Whether a row's level asks a blocking stack for more streams than it holds at once."""
    held = slots(row)
    return held is not None and number(row["level"]) > held


def asked_interval(rows: pd.DataFrame) -> str:
    """``30 ms``: the interval between events the SSE streams of ``rows`` asked for."""
    asked = rows["event_interval_ms"].dropna()
    return f"{format_number(float(asked.iloc[0]), 0)} ms" if len(asked) else "unknown"


def top_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows at the highest level where a stack ran load; none when no stack did."""
    ran = rows["n"] > 0
    if not ran.any():
        return rows[ran]
    highest = float(rows.loc[ran, "level"].max())
    return rows[rows["level"].eq(highest)]


def _ordered(top: pd.DataFrame, kind: str) -> list[Record]:
    """The stacks at one level, best first: those with no failure (SSE, and WebSocket in the open
    model, whose messages/s the rate offered sets: by p99; WebSocket in the closed model: most
    messages/s first), then those whose streams or messages failed or were dropped, or none
    completed (the smallest share failed first), then those not measured, each group by name on ties."""
    ran = top["n"] > 0
    completed = top["streams_completed"] if kind == "sse" else top["requests_per_second_median"]
    lost = top["errors_total"] + top["dropped"]
    failed = ran & ((lost > 0) | ~(completed > 0))
    share = lost / (top["requests"] + top["dropped"]).where(top["requests"] + top["dropped"] > 0)
    by_p99 = kind == "sse" or offered(top)
    speed = top["latency_ms_p99_median"] if by_p99 else -top["requests_per_second_median"]
    ordered = top.assign(
        _group=(~ran).astype(int) * 2 + failed.astype(int),
        _key=speed.where(~failed, share).fillna(math.inf),
    ).sort_values(["_group", "_key", "target"])
    return list(ordered.to_dict("records"))


def _clean(row: Record) -> bool:
    """Whether a stack completed streams (or echoed messages) at a level, and none failed."""
    completed = count(row["streams_completed"]) > 0 or number(row["requests_per_second_median"]) > 0
    return count(row["n"]) > 0 and completed and not _lost(row)


def _lost(row: Record) -> int:
    """A row's messages (or streams) that failed or, in the open model, were dropped."""
    return count(row["errors_total"]) + count(row["dropped"])


def _nothing(row: Record, noun: str) -> str:
    """``388 of 394 streams failed (timeout 388)``, or, when none failed either, that the window saw none."""
    if count(row["errors_total"]):
        return _failures(row, noun) + _dropped(row)
    if count(row["dropped"]):
        return f"no {noun} completed{_dropped(row)}"
    return f"no {noun} completed or failed in the measured window"


def _dropped(row: Record) -> str:
    """``, 12 dropped (no connection open)`` for an open-model row that dropped messages; else empty."""
    dropped = count(row["dropped"])
    return f", {dropped:,} dropped (no connection open)" if dropped else ""


def _clause(row: Record, kind: str, interfaces: Mapping[str, str | None]) -> str:
    """``starlette-uvicorn (ASGI): first event p99 133 ms, gap p99 73.4 ms, no stream failed``; a
    WebSocket stack's messages/s and round trip; or why nothing was measured."""
    stack = label(str(row["target"]), interfaces)
    if (note := not_measured(row)) is not None:
        return f"{stack}: {note}"
    p99 = number(row["latency_ms_p99_median"])
    if kind == "sse":
        if not count(row["streams_completed"]):
            return f"{stack}: {_nothing(row, 'stream')}"
        gap = f", gap p99 {_ms(row['inter_event_gap_ms_p99_median'])} ms"
        return f"{stack}: first event p99 {format_number(p99)} ms{gap}, {_failures(row, 'stream')}"
    if not number(row["requests_per_second_median"]) > 0:
        return f"{stack}: {_nothing(row, 'message')}"
    rate = format_number(number(row["requests_per_second_median"]), 0)
    failures = _failures(row, "message") + _dropped(row)
    return f"{stack}: {rate} messages/s, round trip p99 {format_number(p99)} ms, {failures}"


def stream_sentence(
    endpoint: str, kind: str, rows: pd.DataFrame, interfaces: Mapping[str, str | None], shown: int = 3
) -> str:
    """The verdict on one stream endpoint (``kind`` sse or websocket) from its rows, at the highest
    level where a stack ran load: the ``shown`` best stacks with no failure (:func:`_ordered`), how
    many more had none, then every stack whose streams (or messages) failed or that was not measured.
    Open-model rows (WebSocket) are told at the rate offered."""
    top = top_rows(rows)
    if top.empty:
        return f"On {endpoint}, no stack ran load: nothing to compare."
    level = format_number(number(top["level"].iloc[0]), 0)
    ordered = _ordered(top, kind)
    clean = [row for row in ordered if _clean(row)]
    parts = [_clause(row, kind, interfaces) for row in clean[:shown]]
    if more := clean[shown:]:
        # _ordered puts the slowest of them last: name it, so that a slow stack is never hidden.
        last, name = more[-1], label(str(more[-1]["target"]), interfaces)
        if kind == "sse" or offered(top):
            what = "first event" if kind == "sse" else "round trip"
            worst = f"{what} p99 up to {_ms(last['latency_ms_p99_median'])} ms, {name}"
        else:
            least = format_number(number(last["requests_per_second_median"]), 0)
            worst = f"down to {least} messages/s, {name}"
        parts.append(f"{_plural(len(more), 'more stack')} with no failure ({worst})")
    parts += [_clause(row, kind, interfaces) for row in ordered if not _clean(row)]
    repeats = int(top["n"].max())
    said = [f"events asked {asked_interval(rows)} apart"] if kind == "sse" else []
    said += [f"medians of {repeats} repeats"] if repeats > 1 else []
    where = f"On {endpoint} at {level_words(level, kind, offered(top))}"
    where += f" ({', '.join(said)})" if said else ""
    return f"{where}, " + "; ".join(parts) + "."


def slots_note(
    stack_rows: pd.DataFrame, interfaces: Mapping[str, str | None], timeout_s: float
) -> str | None:
    """What a stack whose workers block does with SSE streams: how many it holds at once (workers x
    threads), the most it completes per second, and what happened to the streams above that.

    ``stack_rows``: one stack's rows of one SSE endpoint, by level; ``timeout_s`` the scenario's
    (a stream without its first event by then fails). None when the stack does not block.
    """
    first = stack_rows.iloc[0].to_dict()
    held = slots(first)
    if held is None:
        return None
    workers, threads = count(first["slots_workers"]), count(first["slots_threads"])
    length, ceiling = number(first["stream_length_s"]), number(first["ceiling_streams_per_second"])
    interval = number(first["event_interval_ms"])
    head = (
        f"{label(str(first['target']), interfaces)} holds at most {_plural(held, 'stream')} at once "
        f"({_plural(workers, 'worker')} {TIMES} {_plural(threads, 'thread')}): a stream holds a worker's "
        "thread from its request to its last event"
    )
    if not math.isnan(ceiling):
        head += (
            f", {format_number(length)} s here, so it completes at most about {format_number(ceiling)} "
            f"streams/s and sends at most about {format_number(held * 1000 / interval, 0)} events/s"
        )
    above = [row for row in stack_rows.to_dict("records") if above_slots(row) and count(row["n"])]
    if not above:
        return f"{head}. No level of this run asked for more."
    waits = [
        f"{_ms(row['latency_ms_p50_median'])} ms at {_level(row)} streams"
        for row in above
        if not math.isnan(number(row["latency_ms_p50_median"]))
    ]
    text = (
        f"{head}. Above {held}, the other streams wait in its accept queue for a free worker, so their "
        "time to first event grows"
        + (f" (median {', '.join(waits)})" if waits else " (no first event arrived in the measured window)")
    )
    timed_out = [
        f"{count(row['errors_timeout']):,} of {count(row['requests']):,} at {_level(row)} streams"
        for row in above
        if count(row["errors_timeout"])
    ]
    limit = f"{timeout_s:g} s timeout"
    if not timed_out:
        return f"{text}; none waited past the {limit}."
    return (
        f"{text}, and a stream still waiting at the {limit} fails: {', '.join(timed_out)}. The time to "
        "first event is that of the streams that got a worker in time."
    )


def endpoint_words(scenario: Scenario, endpoint: str, kind: str) -> str:
    """What a stream endpoint asked for, from the scenario's endpoint (a dash when it has none)."""
    try:
        (spec,) = scenario.requests_for(endpoint)
        _, events, interval_ms = sse_parameters(spec.path) if kind == "sse" else ("", 0, 0)
    except (KeyError, ValueError):
        return DASH
    if kind == "sse":
        length = format_number((events - 1) * interval_ms / 1000)
        return (
            f"Server-Sent Events: each stream is {events} events {interval_ms} ms apart, the first at once "
            f"(about {length} s when the server keeps pace), and each connection opens its next stream "
            "when one ends. The level is the number of streams open at once."
        )
    size = spec.message_bytes or DEFAULT_MESSAGE_BYTES
    if scenario.model == "open":
        return (
            f"WebSocket echo in the open model: {size:,}-byte messages arrive at the rate offered "
            f"({scenario.arrival} arrivals) and go out in turn over {scenario.max_connections:,} "
            "connections, whether or not earlier echoes have come back. Each round trip is timed from "
            "the message's intended send time (corrected for coordinated omission); a message due when "
            "no connection is open is dropped. The level is the rate offered, in messages/s."
        )
    return (
        f"WebSocket echo: each connection sends a {size:,}-byte message and the next one when its echo "
        "arrives. The level is the number of connections, each with one message in flight."
    )


def stream_headline(endpoint: str, kind: str, rows: pd.DataFrame) -> str:
    """One stream endpoint in the list of runs, at its top level: the best stack (:func:`_ordered`) and
    how many failed or were not measured, e.g. ``/ws/echo @ c100: starlette-uvicorn 16,906 messages/s,
    round trip p99 10.7 ms; 1 of 2 stacks not supported`` (open model: ``/ws/echo @ 2,000 messages/s
    offered: ...``)."""
    top = top_rows(rows)
    if top.empty:
        return f"{endpoint}: no measurement"
    level = format_number(number(top["level"].iloc[0]), 0)
    ordered = _ordered(top, kind)
    measured = [row for row in ordered if count(row["n"])]
    timed = [row for row in measured if not math.isnan(number(row["latency_ms_p99_median"]))]
    if not timed:
        said = f"{endpoint} @ {level} {'streams' if kind == 'sse' else 'connections'}: nothing completed"
    elif kind == "sse":
        best, worst = timed[0], max(timed, key=lambda row: number(row["latency_ms_p99_median"]))
        said = f"{endpoint} @ {level} streams: first event p99 {_ms(best['latency_ms_p99_median'])} ms"
        said += f" ({best['target']})"
        if worst is not best:
            said += f" to {_ms(worst['latency_ms_p99_median'])} ms ({worst['target']})"
    else:
        best = timed[0]
        rate = format_number(number(best["requests_per_second_median"]), 0)
        p99 = _ms(best["latency_ms_p99_median"])
        at = level_words(level, kind, True) if offered(top) else f"c{level}"
        said = f"{endpoint} @ {at}: {best['target']} {rate} messages/s, round trip p99 {p99} ms"
    failed = sum(1 for row in measured if _lost(row))
    empty = sum(1 for row in measured if not _lost(row) and not _clean(row))
    unsupported = sum(1 for row in ordered if not_measured(row) == UNSUPPORTED)
    others = len(ordered) - len(measured) - unsupported
    noun = "streams" if kind == "sse" else "messages"
    counts = (
        (failed, f"failed {noun}"),
        (empty, f"completed no {noun[:-1]} in the window"),
        (unsupported, "not supported"),
        (others, "failed"),
    )
    for n, what in counts:
        if n:
            said += f"; {n} of {_plural(len(ordered), 'stack')} {what}"
    return said
