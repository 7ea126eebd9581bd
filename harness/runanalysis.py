"""A stored run analysed once: the tables and verdicts every reader of a run takes.

:func:`analyse_run` turns a run's manifest and measurements into one frozen
:class:`RunAnalysis`: the per-cell frame, the summaries across repeats, the
saturation searches, the verdicts and the cells the top load says most about.
The HTML report (:mod:`harness.report`), the claims (:func:`harness.claimverdict.measure_run`)
and the comparison of two runs (:func:`harness.compare.compare_analyses`) all
read their numbers from it rather than each computing its own. Pure: no files
are read (histograms and time series stay with the report, which reads them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from harness import analysis, idlesummary, saturation, streamcapacity, streamsummary
from harness.model import Measurement, Phase, RunManifest
from harness.verdict import Verdict, WorkloadSummary, verdict, workload_summary


def with_phases(summary: pd.DataFrame, phases: Sequence[Phase]) -> pd.DataFrame:
    """``summary`` with each staged row's phase: ``stage_kind``, ``stage_start_s``, ``stage_duration_s``,
    ``stage_level_start`` and ``stage_level_end`` (None/NaN on rows that are not phases)."""
    by_index = {p.index: p for p in phases}
    found = [by_index.get(int(stage)) for stage in summary["stage"]]

    def number(attribute: str) -> pd.Series:
        values = [math.nan if p is None else float(getattr(p, attribute)) for p in found]
        return pd.Series(values, index=summary.index, dtype=float)

    return summary.assign(
        stage_kind=pd.Series([p and p.kind for p in found], index=summary.index, dtype=object),
        stage_start_s=number("start_s"),
        stage_duration_s=number("duration_s"),
        stage_level_start=number("start_level"),
        stage_level_end=number("end_level"),
    )


@dataclass(frozen=True)
class RunAnalysis:
    """Everything computed from one run's manifest and measurements; read it, never change it.

    ``frame`` is :func:`harness.analysis.measurements_frame`'s (one row per
    cell); ``summary`` :func:`harness.analysis.summarise`'s with each staged
    row's phase (:func:`with_phases`); ``sustainable`` the sustainable
    throughput of each saturation search per repeat
    (:func:`harness.saturation.sustainable_throughput`) and ``searches`` across
    repeats (:func:`harness.saturation.saturation_summary`); ``top_cells`` the
    ok cells of each endpoint's top load (:func:`harness.analysis.highest_level_cells`).
    ``verdicts`` are :func:`harness.verdict.verdict`'s (sorted by endpoint),
    ``verdicts_in_order`` the same in ``endpoints`` order, and ``workloads``
    :func:`harness.verdict.workload_summary` over those of HTTP endpoints (a stream is none of its
    kinds). ``stream_kinds`` gives each stream endpoint's kind (``sse`` or ``websocket``,
    :func:`harness.streamsummary.stream_kinds`), in ``endpoints`` order, and ``streams`` their rows
    (:func:`harness.streamsummary.stream_summary`), ``stream_capacity`` each SSE endpoint's
    capacity per stack in concurrent streams within the scenario's SLO
    (:func:`harness.streamcapacity.stream_capacity`); ``idle_kinds`` each idle-connections endpoint's
    kind and ``idle`` their rows (:func:`harness.idlesummary.idle_summary`). ``endpoints`` lists
    the scenario's endpoints in its order, then any other measured one
    (sorted); ``interfaces`` gives each stack's interface (wsgi/asgi/native,
    None for a stack measured but missing from the manifest).
    """

    manifest: RunManifest
    frame: pd.DataFrame
    summary: pd.DataFrame
    sustainable: pd.DataFrame
    searches: pd.DataFrame
    top_cells: pd.DataFrame
    verdicts: tuple[Verdict, ...]
    verdicts_in_order: tuple[Verdict, ...]
    workloads: tuple[WorkloadSummary, ...]
    endpoints: tuple[str, ...]
    interfaces: Mapping[str, str | None]
    stream_kinds: Mapping[str, str]
    streams: pd.DataFrame
    stream_capacity: pd.DataFrame
    idle_kinds: Mapping[str, str]
    idle: pd.DataFrame

    @property
    def apart(self) -> tuple[str, ...]:
        """The endpoints shown apart from requests: the streams, then the idle connections."""
        return (*self.stream_kinds, *self.idle_kinds)

    @property
    def http_endpoints(self) -> tuple[str, ...]:
        """The endpoints that are no stream, in ``endpoints`` order."""
        return tuple(e for e in self.endpoints if e not in self.apart)


def _endpoint_order(manifest: RunManifest, frame: pd.DataFrame) -> tuple[str, ...]:
    order = list(manifest.scenario.endpoint_labels())
    return tuple(order + sorted(set(frame["endpoint"]) - set(order)))


def _interfaces(manifest: RunManifest, frame: pd.DataFrame) -> dict[str, str | None]:
    interfaces: dict[str, str | None] = {name: None for name in frame["target"]}
    interfaces.update({name: run.config.interface for name, run in manifest.targets.items()})
    return interfaces


def analyse_run(manifest: RunManifest, measurements: Sequence[Measurement]) -> RunAnalysis:
    """Analyse one run (see :class:`RunAnalysis`); the sync ceilings and interfaces come from ``manifest``."""
    frame = analysis.measurements_frame(measurements, manifest.targets, manifest.scenario.slo)
    summary = with_phases(analysis.summarise(frame), manifest.scenario.phases())
    sustainable = saturation.sustainable_throughput(frame)
    searches = saturation.saturation_summary(frame, per_repeat=sustainable)
    verdicts = verdict(summary, manifest.targets, searches)
    endpoints = _endpoint_order(manifest, frame)
    order = {endpoint: index for index, endpoint in enumerate(endpoints)}
    in_order = sorted(verdicts, key=lambda v: order.get(v.endpoint, len(order)))
    found = streamsummary.stream_kinds(manifest.scenario, frame)
    kinds = {endpoint: found[endpoint] for endpoint in endpoints if endpoint in found}
    idle = idlesummary.idle_kinds(manifest.scenario)
    streams = streamsummary.stream_summary(frame, summary, kinds, manifest.targets)
    return RunAnalysis(
        manifest=manifest,
        frame=frame,
        summary=summary,
        sustainable=sustainable,
        searches=searches,
        top_cells=analysis.highest_level_cells(frame, sustainable=sustainable),
        verdicts=tuple(verdicts),
        verdicts_in_order=tuple(in_order),
        workloads=tuple(workload_summary([v for v in in_order if v.endpoint not in kinds | idle])),
        endpoints=endpoints,
        interfaces=_interfaces(manifest, frame),
        stream_kinds=kinds,
        streams=streams,
        stream_capacity=streamcapacity.stream_capacity(streams, manifest.scenario.slo),
        idle_kinds=idle,
        idle=idlesummary.idle_summary(measurements, idle, manifest.targets),
    )
