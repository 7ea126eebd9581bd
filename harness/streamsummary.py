"""Stream cells summarised: SSE streams and WebSocket round trips per stack, endpoint and level.

A stream endpoint (a scenario endpoint of ``kind = "sse"`` or ``"websocket"``) is
measured in the closed model, its level being the connections held open: concurrent
streams (SSE) or connections with one message in flight each (WebSocket); a WebSocket
endpoint may also be measured in the open model, its level then the messages/s offered
(``rate``; round trips from each message's intended send time, messages ``dropped``). Its cells
keep the usual names with their own meaning (:class:`~harness.model.Measurement`,
``workload``): for SSE ``requests_per_second`` counts streams completed per second and
``latency_ms`` is the time to first event; for WebSocket they are messages per second
and round trips. :func:`stream_summary` adds to :func:`harness.analysis.summarise`'s rows
what streams have besides: events/s, the gap between events, streams completed, errors
by kind, the cells a stack without WebSocket support answered 501 (``unsupported``:
neither measured nor failed), and how many streams a stack whose workers block can hold
at once (:func:`stream_slots`). Pure: frames in, a frame out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from harness import analysis, ceilings
from harness.cellstate import ran_load
from harness.model import Scenario, TargetRun
from harness.model.scenario import STREAM_KINDS


@dataclass(frozen=True)
class StreamSlots:
    """How many streams a stack whose workers block holds at once: ``workers`` x ``threads``.

    A stream holds a sync worker's thread from its request to its last event (a
    WebSocket, until it closes), so beyond that many the others wait in the server's
    accept queue. Threads per worker are those of
    :func:`harness.ceilings.blocking_request_slots`.
    """

    workers: int
    threads: int

    @property
    def streams(self) -> int:
        return self.workers * self.threads


def stream_slots(run: TargetRun) -> StreamSlots | None:
    """The streams ``run``'s stack holds at once, when its workers block (gunicorn sync and
    gthread; see :func:`harness.ceilings.blocking_request_slots`); None for every other stack,
    and for a blocking one whose thread count is not a fixed number."""
    slots = ceilings.blocking_request_slots(run)
    if slots is None:
        return None
    return StreamSlots(workers=run.workers, threads=slots // run.workers)


def stream_length_s(events: float, interval_ms: float) -> float:
    """How long one SSE stream lasts when the server keeps pace, s: the first event is sent at
    once, each next one ``interval_ms`` after the one before (targets/CONTRACT.md).

    >>> stream_length_s(50, 30)
    1.47
    """
    return max(events - 1, 0) * interval_ms / 1000.0


def stream_kinds(scenario: Scenario, frame: pd.DataFrame) -> dict[str, str]:
    """Each stream endpoint's kind (``sse`` or ``websocket``), by endpoint label.

    From the scenario's endpoints first: a cell that failed before any load was
    stored as ``http``, yet its endpoint streams. Then any other endpoint whose cells say so.
    """
    specs = scenario.requests()
    kinds: dict[str, str] = {spec.label: spec.kind for spec in specs if spec.kind in STREAM_KINDS}
    if not scenario.mix:
        streamed = frame[frame["workload"].isin(STREAM_KINDS)]
        for endpoint, workload in zip(streamed["endpoint"], streamed["workload"], strict=True):
            kinds.setdefault(str(endpoint), str(workload))
    return kinds


_GAPS = ("inter_event_gap_ms_p50", "inter_event_gap_ms_p99")


def stream_summary(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    kinds: Mapping[str, str],
    targets: Mapping[str, TargetRun],
) -> pd.DataFrame:
    """The summary rows (:func:`harness.analysis.summarise`) of the endpoints in ``kinds``, with:

    ``workload`` (the endpoint's kind, from ``kinds``); ``unsupported`` (cells the stack answered
    501 to a WebSocket upgrade: not measured, not failed) and ``unsupported_reason`` (the first
    one's words, else None); sums over the repeats that ran load of ``streams_completed`` and of each
    ``errors_<kind>`` of :data:`harness.analysis.ERROR_KINDS`; medians of
    ``stream_events_per_second``, and medians, minima and maxima of ``inter_event_gap_ms_p50`` and
    ``_p99`` (ms); ``events_per_stream`` and ``event_interval_ms`` (what each stream asked for);
    ``stream_length_s`` (:func:`stream_length_s`); ``slots_workers`` and ``slots_threads``
    (:func:`stream_slots`, NaN for a stack that does not block) and
    ``ceiling_streams_per_second`` (SSE: slots / stream length, the most streams a blocking stack
    completes per second; NaN otherwise). ``targets`` are the manifest's. Sorted by endpoint, level and
    target.
    """
    keys = analysis.SUMMARY_KEYS
    rows = summary[summary["endpoint"].isin(list(kinds))]
    cells = frame[frame["endpoint"].isin(list(kinds)) & frame["model"].ne("saturation")]
    ran = cells[ran_load(cells)]
    spec: dict[str, tuple[str, str]] = {"streams_completed": ("streams_completed", "sum")}
    spec |= {f"errors_{kind}": (f"errors_{kind}", "sum") for kind in analysis.ERROR_KINDS}
    spec["stream_events_per_second_median"] = ("stream_events_per_second", "median")
    for column in _GAPS:
        spec |= {f"{column}_{how}": (column, how) for how in ("median", "min", "max")}
    for column in ("events_per_stream", "event_interval_ms"):
        spec[column] = (column, "first")
    extra = ran.groupby(keys, sort=True, dropna=False).agg(**spec)
    refused = cells[cells["status"].eq("unsupported")]
    unsupported = refused.groupby(keys, sort=True, dropna=False).agg(
        unsupported=("status", "count"), unsupported_reason=("failure_reason", "first")
    )
    out = rows.set_index(keys).join(extra, how="left").join(unsupported, how="left").reset_index()
    out["unsupported"] = out["unsupported"].fillna(0).astype(int)
    out["unsupported_reason"] = out["unsupported_reason"].astype(object).where(out["unsupported"] > 0, None)
    out["streams_completed"] = out["streams_completed"].fillna(0).astype(int)
    for kind in analysis.ERROR_KINDS:
        out[f"errors_{kind}"] = out[f"errors_{kind}"].fillna(0).astype(int)
    out["workload"] = out["endpoint"].map(dict(kinds))
    out["stream_length_s"] = [
        stream_length_s(events, interval) if workload == "sse" else math.nan
        for workload, events, interval in zip(
            out["workload"], out["events_per_stream"], out["event_interval_ms"], strict=True
        )
    ]
    slots = {name: stream_slots(run) for name, run in targets.items()}
    out["slots_workers"] = [_slot(slots.get(str(t)), "workers") for t in out["target"]]
    out["slots_threads"] = [_slot(slots.get(str(t)), "threads") for t in out["target"]]
    length = out["stream_length_s"].where(out["stream_length_s"] > 0)
    out["ceiling_streams_per_second"] = out["slots_workers"] * out["slots_threads"] / length
    return out.sort_values(["endpoint", "level", "target"]).reset_index(drop=True)


def _slot(slots: StreamSlots | None, field: str) -> float:
    return math.nan if slots is None else float(getattr(slots, field))
