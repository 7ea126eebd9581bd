"""Result records: what a run stores, and the results format's version.

Every record is a frozen pydantic model with an explicit JSON round trip
(``model_dump(mode="json")`` / ``model_validate``). This module imports only
:mod:`harness.model.config` and :mod:`harness.model.scenario`.

Results format changelog (``SCHEMA_VERSION``):

- 1: first format. ``manifest.json`` holds a :class:`RunManifest`;
  ``measurements.jsonl`` holds one :class:`Measurement` per line.
- 2: open and saturation models, the wrk and locust drivers. :class:`Measurement` gains
  ``driver``, ``rate``, ``intended_rate``, ``achieved_rate``, ``scheduled``, ``dropped``,
  ``connections_peak``, ``latency_ms_uncorrected``, ``histogram_uncorrected``,
  ``upstream_bound``, ``generator_bound_reason``, ``slo_held``, ``slo_breach``
  ``db_queries`` and the ``server_cgroup_*``, ``server_oom_kills`` and
  ``server_throttled_s`` limits readings; ``concurrency`` is None in open-model
  cells. :class:`RunManifest` gains ``database``; :class:`TargetRun` the limits
  and image; :class:`Environment` ``cgroup_version``, ``limits_note`` and
  ``docker_engine``. Version 1 files
  still load (the new fields take their defaults).
- 3: one name per quantity, and units in names. :class:`Measurement`'s ``rps`` becomes
  ``requests_per_second``; fields that held MiB under an ``_mb`` name are named ``_mib``
  (``server_rss_mib_peak``, ``server_pss_mib_peak``, ``server_cgroup_memory_mib_peak``,
  ``server_memory_slope_mib_per_min``; ``memory_mib`` in :class:`TargetRun`, in a target's
  config and in a scenario's per-stack limits); the time series' columns likewise
  (``server_rss_mib``, ``server_pss_mib``, ``cgroup_memory_mib``). ``generator_bound_reason``
  (words) becomes ``bound_reasons``, a tuple of :class:`BoundReason` records. Files of
  versions 1 and 2 still load: :func:`upgrade_measurement` and :func:`upgrade_manifest`
  rename their keys (the store applies them; nothing is rewritten on disk).
  Open-model cells of the native driver gain ``generator_lateness_ms_p50``, ``_p99`` and
  ``_max`` (how late the driver got to its requests against their intended send times,
  ms; None for other cells and older files) and :class:`BoundReason` the rule ``late``;
  the generator's ``cpu`` rule judges its busiest driver process against 80% of a core.
  Status classes: a response succeeds when its status is a 2xx, or the one ``status`` its
  endpoint declares (:class:`~harness.model.scenario.RequestSpec`); every other status,
  1xx, 3xx, 4xx or 5xx, is an error (before, only status >= 400 was, and a 3xx was a
  success). :class:`Errors` counts them in ``status`` and ``by_status`` as before and gains
  ``by_class`` (``{"3xx": 12}``); older files get ``by_class`` from their ``by_status``.
  The native closed model's ``connections_peak`` is measured (the most connections
  established at once, per stage too), no longer the concurrency it asked for.
  The scenario gains ``target_requests_per_second`` (the load the cost is worked out for,
  default 10,000); older manifests take the default.
  Streaming endpoints (an endpoint's ``kind``: ``sse`` or ``websocket``): :class:`Measurement`
  gains ``workload``, the SSE figures (``stream_events``, ``stream_events_per_second``,
  ``streams_completed``, ``events_per_stream``, ``event_interval_ms``, ``inter_event_gap_ms``)
  and the status ``unsupported``; :class:`Errors` gains ``malformed``. Older files take the
  defaults (``http``, None, 0).
  Idle connections (an endpoint's ``kind``: ``idle-http`` or ``idle-websocket``): the
  workloads of those names; :class:`Measurement` gains ``connections_held``,
  ``connections_held_by_server``, ``memory_per_connection_kib`` (a
  :class:`MemoryPerConnection`), ``connections_open_s``, ``connections_open_peak`` and
  ``server_pss_mib_before``. Older files take None.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.model.config import DriverName, Frozen, LoadModel, TargetConfig, _Setting
from harness.model.scenario import Scenario

SCHEMA_VERSION = 3

MEASUREMENT_KEYS_RENAMED_IN_3 = {
    "rps": "requests_per_second",
    "server_rss_mb_peak": "server_rss_mib_peak",
    "server_pss_mb_peak": "server_pss_mib_peak",
    "server_cgroup_memory_mb_peak": "server_cgroup_memory_mib_peak",
    "server_memory_slope_mb_per_min": "server_memory_slope_mib_per_min",
}
"""Keys of a stored :class:`Measurement` renamed in schema 3: old name -> new name."""

MANIFEST_KEYS_RENAMED_IN_3 = {"memory_mb": "memory_mib"}
"""Keys renamed in schema 3 wherever they occur in a stored :class:`RunManifest`
(a target's config, its :class:`TargetRun`, the scenario's per-stack limits)."""

TIMESERIES_COLUMNS_RENAMED_IN_3 = {
    "server_rss_mb": "server_rss_mib",
    "server_pss_mb": "server_pss_mib",
    "cgroup_memory_mb": "cgroup_memory_mib",
}
"""Columns of a stored time series (CSV) renamed in schema 3: old name -> new name."""


def classes_of(by_status: dict[str, int]) -> dict[str, int]:
    """Counts by status code (``{"302": 2, "301": 1, "503": 4}``) summed by class
    (``{"3xx": 3, "5xx": 4}``), classes in order."""
    classes: dict[str, int] = {}
    for code, count in sorted(by_status.items()):
        key = f"{code[:1]}xx"
        classes[key] = classes.get(key, 0) + count
    return dict(sorted(classes.items()))


class LatencyMs(Frozen):
    """Latency summary in milliseconds, of successful responses only."""

    min: float = Field(description="Fastest response, ms.")
    mean: float = Field(description="Mean latency, ms.")
    stdev: float = Field(description="Standard deviation of the latencies, ms.")
    p50: float = Field(description="Median (50th percentile) latency, ms.")
    p90: float = Field(description="90th percentile latency, ms.")
    p99: float = Field(description="99th percentile latency, ms.")
    p999: float = Field(description="99.9th percentile latency, ms.")
    max: float = Field(description="Slowest response, ms.")


class MemoryPerConnection(Frozen):
    """Memory one idle connection costs a stack, KiB: (reading during the hold - reading before) /
    connections held, per reading (harness.idle.memory.MemoryReading says what each includes)."""

    pss: float = Field(description="Proportional set size of the process tree, KiB per connection.")
    pss_anon: float | None = Field(
        description="Anonymous part of the PSS, KiB per connection (None before Linux 5.3)."
    )
    uss: float = Field(description="Unique set size of the process tree, KiB per connection.")
    cgroup: float | None = Field(
        description="The control group's memory charge, KiB per connection (None without a control group)."
    )


class Errors(Frozen):
    """Failed requests by kind. ``status`` counts responses whose status was not a success
    (any 2xx, or the one status the endpoint declares): 1xx, 3xx, 4xx and 5xx alike;
    ``by_status`` the same responses by status code (``{"502": 17}``) and ``by_class`` by
    class (``{"5xx": 17}``). Drivers that do not report codes (wrk) leave both empty; wrk
    counts only status >= 400. A record without ``by_class`` (stored before it existed)
    takes it from its ``by_status``."""

    status: int = Field(
        default=0,
        description="Responses whose status was not a success (any 2xx, or the one status the endpoint "
        "declares): 1xx, 3xx, 4xx and 5xx alike (wrk: status >= 400 only).",
    )
    connect: int = Field(default=0, description="Requests that failed because no connection could be opened.")
    read: int = Field(
        default=0,
        description="Requests whose connection closed, or sent a response that could not be parsed, while"
        " they were in flight (wrk: its read and write errors).",
    )
    timeout: int = Field(
        default=0, description="Requests with no complete response within the scenario's timeout_s."
    )
    malformed: int = Field(
        default=0,
        description="Streaming loads: streams with a wrong content type, a wrong or missing event, or more"
        " or fewer events than asked; WebSocket echoes that differ from the message sent. 0 for HTTP.",
    )
    by_status: dict[str, int] = Field(
        default_factory=dict,
        description='The responses counted in status, by status code, e.g. {"502": 17}; empty for drivers'
        " that do not report codes (wrk).",
    )
    by_class: dict[str, int] = Field(
        default_factory=dict,
        description='The responses counted in status, by class, e.g. {"5xx": 17}; empty for drivers that '
        "do not report codes (wrk).",
    )

    @model_validator(mode="before")
    @classmethod
    def _class_from_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and "by_class" not in data and data.get("by_status"):
            return {**data, "by_class": classes_of(data["by_status"])}
        return data

    @property
    def total(self) -> int:
        return self.status + self.connect + self.read + self.timeout + self.malformed


class BoundReason(Frozen):
    """Why a cell's figures may be the harness's rather than the stack's: one rule that tripped.

    Built once, where the cell is measured (:mod:`harness.run.flags`); put into words
    only by the report (:func:`harness.report.formats.format_bound_reason`).

    ``by``: what may have set the limit, ``generator`` (the load generator) or
    ``upstream`` (the service the stacks call). ``rule``:

    - ``cpu``: ``measured`` percent of one core used, above ``limit`` percent (the
      generator: its busiest driver process's percent, above 80%, of ``processes``; a
      driver that reports only a total, wrk or Locust, and records stored before this
      rule, compare the total with 80% x ``processes``; the upstream: 80%);
    - ``late`` (open model): the generator got to its requests ``measured`` ms late at p99,
      against their intended send times, above ``limit`` ms (max(5 ms, 5% of the SLO's p99));
    - ``behind`` (open model): the generator sent ``measured`` requests/s, below ``limit``
      requests/s (95% of the ``scheduled`` requests/s) while it could still open connections;
    - ``stored``: a result written before schema 3 whose words (``detail``) were not
      recognised; ``measured`` and ``limit`` are then 0.
    """

    by: Literal["generator", "upstream"] = Field(
        description="What may have set the limit: generator (the load generator) or upstream (the service"
        " the stacks call)."
    )
    rule: Literal["cpu", "late", "behind", "stored"] = Field(
        description="The rule that tripped: cpu (percent of a core), late (open model: the generator's "
        "p99 lateness, ms), behind (open model: requests/s sent below 95% of those "
        "scheduled), stored (a record written before schema 3 whose words were not "
        "recognised)."
    )
    measured: float = Field(
        description="The measured value, in the rule's unit: percent of one core (cpu), ms (late), "
        "requests/s sent (behind); 0 for stored."
    )
    limit: float = Field(
        description="The value the rule allows, in the same unit as measured: cpu, 80 (the busiest "
        "generator process, or the upstream), or 80 x processes where only the generator's total is "
        "known (wrk, Locust, older records); late, max(5 ms, 5% of the SLO's p99); behind, 95% of "
        "scheduled; 0 for stored."
    )
    scheduled: float | None = Field(
        default=None,
        description="behind: the requests/s the generator was scheduled to send; None for other rules.",
    )
    processes: int | None = Field(
        default=None,
        description="cpu rule on the generator: how many driver processes the load was spread over; None "
        "otherwise.",
    )
    detail: str | None = Field(
        default=None,
        description="stored: the unrecognised words of a record written before schema 3; None otherwise.",
    )


class Measurement(Frozen):
    """One measured cell: a line of ``measurements.jsonl``. Each field's meaning and unit is its
    ``description`` (exported in ``docs/schema/measurement.schema.json``); the rules across fields:

    Units are in the names or fixed: CPU percentages are of one core (200 = two cores busy),
    memory is the sum over the target's process tree in MiB (2**20 bytes), latencies are in
    ms, rates in requests/s, times in s. ``requests`` counts every request finished inside
    the measured window (successes and errors) and ``requests_per_second`` successful
    responses per second over ``duration_s``; in the open model, throughput counts responses
    that *arrived* in the window, while ``requests`` and latency cover the requests
    *scheduled* in it. ``status`` is ``failed`` when the cell could not be measured; then
    ``failure_reason`` says why and the figures are zero or None. Server figures are None
    when there was no process to monitor (an external app given without ``--pid``);
    ``server_cgroup_*``, ``server_oom_kills`` and ``server_throttled_s`` are None where the
    target had no control group of its own (local launcher without cgroups).

    ``generator_bound`` and ``upstream_bound`` flag figures the harness may have set rather
    than the stack; ``bound_reasons`` holds one :class:`BoundReason` per rule that tripped
    (built in :mod:`harness.run.flags`). A staged scenario stores one measurement per stage
    (``stage``, ``stage_kind``, ``stage_start_s``, ``stage_levels``); ``rate`` /
    ``concurrency`` then hold the stage's mean level.
    """

    cell_id: str = Field(
        description="The cell's id, unique in the run and file-name safe: <target>__<endpoint "
        "slug>__<level>__r<repeat>, e.g. flask-gunicorn__json__c1__r0 (a stage adds -p<stage>"
        " to the level)."
    )
    target: str = Field(description="The stack measured (a folder name under targets/, or the user's app).")
    endpoint: str = Field(
        description="The endpoint path requested, e.g. /json or /io/upstream?ms=50 (or the name of a "
        "request mix)."
    )
    model: LoadModel = Field(
        description="Load model: closed (a fixed number of connections, each sending its next request "
        "when the last is answered), open (requests sent at an arrival rate) or saturation "
        "(an open-model step of a capacity search)."
    )
    concurrency: int | None = Field(
        description="Closed model: connections (a stage: its mean level, rounded). None in open-model and"
        " saturation cells."
    )
    repeat: int = Field(description="Which repeat of the cell this is, from 0.")
    started_at: str = Field(
        description="When the cell's load started, UTC ISO 8601 (e.g. 2026-11-24T02:00:00Z)."
    )
    warmup_s: float = Field(description="Warm-up before the measured window, s; nothing in it is counted.")
    duration_s: float = Field(description="Length of the measured window, s (0 for a failed cell).")
    requests: int = Field(
        description="Requests that finished in the window, successes and errors (open model: those whose "
        "intended send time fell in the window)."
    )
    errors: Errors = Field(description="Failed requests by kind.")
    requests_per_second: float = Field(
        description="Throughput: successful responses per second over duration_s (open model: responses "
        "that arrived in the window)."
    )
    latency_ms: LatencyMs | None = Field(
        description="Latency of successful responses, ms (open model: from each request's intended send "
        "time, corrected for coordinated omission). None when nothing succeeded."
    )
    connections_opened: int = Field(
        description="TCP connections the generator opened in the window (stacks that close the connection"
        " after each response open one per request)."
    )
    server_cpu_percent: float | None = Field(
        description="CPU time of the target's process tree over the window, percent of one core (200 = "
        "two cores busy). None when no process was monitored."
    )
    server_rss_mib_peak: float | None = Field(
        description="Highest resident set size (RSS) of the target's process tree, summed over its "
        "processes, in the window, MiB (2**20 bytes); counts shared pages once per process."
    )
    server_pss_mib_peak: float | None = Field(
        description="Highest proportional set size (PSS) of the target's process tree in the window, MiB:"
        " shared pages split between the processes sharing them. None where the system does "
        "not report PSS."
    )
    server_processes: int | None = Field(
        description="Processes in the target's tree (e.g. a master and its workers). None when no process"
        " was monitored."
    )
    generator_cpu_percent: float = Field(
        description="CPU time of the load generator over the window, percent of one core, summed over its"
        " driver processes (idle cells: the driver's while it held the connections, up to the memory read)."
    )
    upstream_cpu_percent: float | None = Field(
        description="CPU time of the upstream service (what the stacks' I/O endpoints call) over the "
        "window, percent of one core. None when it was not monitored."
    )
    generator_bound: bool = Field(
        description="True when the load generator may have set the figures rather than the stack: one of "
        "its driver processes above 80% of a core, its lateness p99 above max(5 ms, 5% of the"
        " SLO's p99), or it sent less than 95% of the requests scheduled while it could still"
        " open connections. The rules that tripped are in bound_reasons."
    )
    histogram: str | None = Field(
        description="Path of the cell's latency HdrHistogram, relative to the run folder "
        "(histograms/<cell_id>.hdr, base64 HISTFAAA... encoding, values in microseconds). "
        "None for a failed cell."
    )
    status: Literal["ok", "failed", "unsupported"] = Field(
        default="ok",
        description="ok when the cell was measured; failed when it could not be (then its figures are zero"
        " or None), or when every request it sent failed (then its figures are those measured, its"
        " latency None; a capacity search's step like that broke the SLO, and is no failure of the run)."
        " unsupported: the stack answered a WebSocket upgrade with 501 (the contract's answer of a stack"
        " without WebSocket support): nothing was measured, and it is no failure. failure_reason says why.",
    )
    workload: Literal["http", "sse", "websocket", "idle-http", "idle-websocket"] = Field(
        default="http",
        description="What the cell's requests were: http (requests and responses), sse (Server-Sent Event"
        " streams: a request is one stream, requests_per_second counts streams completed per second and"
        " latency_ms is the time to first event, from the request's send), websocket (echo round trips:"
        " a request is one message, latency_ms its round trip; in the open model rate is the messages/s"
        " offered over max_connections WebSockets and latency_ms runs from each message's intended send"
        " time), or idle-http / idle-websocket (connections"
        " held idle, concurrency of them asked for: requests counts the connections opened,"
        " requests_per_second is 0 and latency_ms None; the figures are connections_held and"
        " memory_per_connection_kib).",
    )
    connections_held: int | None = Field(
        default=None,
        description="Idle cells: connections still open at the end of the hold, counted by the driver. None"
        " for other cells.",
    )
    connections_held_by_server: int | None = Field(
        default=None,
        description="Idle cells: established TCP connections on the stack's listening ports owned by its"
        " processes while its memory was read (a sync worker holds only those it accepted; the rest wait in"
        " the kernel's accept queue). None for other cells, or when the processes could not be read.",
    )
    memory_per_connection_kib: MemoryPerConnection | None = Field(
        default=None,
        description="Idle cells: the stack's memory growth from before the hold to during it, over"
        " connections_held, KiB. None for other cells, or when no connection was held.",
    )
    connections_open_s: float | None = Field(
        default=None,
        description="Idle cells: how long opening the connections took, s (opening stops once none opened"
        " for timeout_s, the stack accepting no more, or after 20 s: a stack cut there held fewer because it"
        " answers connections slower). None for other cells.",
    )
    connections_open_peak: int | None = Field(
        default=None,
        description="Idle cells: the most connections open at once during the cell (a stack killed out of"
        " memory during the hold, server_oom_kills > 0, held that many before it). None for other cells.",
    )
    server_pss_mib_before: float | None = Field(
        default=None,
        description="Idle cells: the stack's PSS before the connections opened, MiB (server_pss_mib_peak is"
        " the reading during the hold). None for other cells.",
    )
    stream_events: int | None = Field(
        default=None,
        description="SSE cells: valid, in-order events received in the window. None for other cells.",
    )
    stream_events_per_second: float | None = Field(
        default=None, description="SSE cells: stream_events over duration_s, events/s. None for other cells."
    )
    streams_completed: int | None = Field(
        default=None,
        description="SSE cells: streams that ended in the window with every event asked for. None for other"
        " cells.",
    )
    events_per_stream: int | None = Field(
        default=None, description="SSE cells: the events each stream was asked for. None for other cells."
    )
    event_interval_ms: int | None = Field(
        default=None,
        description="SSE cells: the interval asked between two events of a stream, ms. None for other cells.",
    )
    inter_event_gap_ms: LatencyMs | None = Field(
        default=None,
        description="SSE cells: percentiles of the time between two consecutive events of a stream, ms (a"
        " server keeping pace shows the interval asked). None for other cells, or when no stream had two"
        " events in the window.",
    )
    failure_reason: str | None = Field(
        default=None,
        description="Why a cell failed, in words (e.g. 'every request failed: 211 requests (HTTP 404: 211)');"
        " None when status is ok.",
    )
    driver: DriverName = Field(
        default="native", description="The load driver: native (the harness's own), wrk or locust."
    )
    rate: float | None = Field(
        default=None,
        description="Open and saturation models: the arrival rate asked for, requests/s (a stage: its "
        "mean level). None in the closed model.",
    )
    intended_rate: float | None = Field(
        default=None,
        description="Open and saturation models: requests/s scheduled over the window (equals rate, a "
        "stage: its mean). None in the closed model.",
    )
    achieved_rate: float | None = Field(
        default=None,
        description="Requests/s actually sent: open model, scheduled minus dropped over the window; "
        "closed model, requests finished over the window.",
    )
    scheduled: int | None = Field(
        default=None,
        description="Open and saturation models: requests whose intended send time fell in the window "
        "(Poisson arrivals vary around rate x duration_s by about its square root). None in "
        "the closed model.",
    )
    dropped: int = Field(
        default=0,
        description="Open model: requests scheduled but never sent (no connection free within the cap); 0"
        " in the closed model.",
    )
    connections_peak: int | None = Field(
        default=None,
        description="The most connections open at once in the window (a staged closed-model cell: the "
        "most its profile asked for).",
    )
    latency_ms_uncorrected: LatencyMs | None = Field(
        default=None,
        description="Open and saturation models: latency measured from each request's actual send time "
        "(not corrected for coordinated omission), ms. None in the closed model.",
    )
    histogram_uncorrected: str | None = Field(
        default=None,
        description="Open and saturation models: path of the uncorrected latency histogram, relative to "
        "the run folder. None otherwise.",
    )
    upstream_bound: bool = Field(
        default=False,
        description="True when the upstream service used more than 80% of a core: the stack may have "
        "waited on it, not on itself.",
    )
    bound_reasons: tuple[BoundReason, ...] = Field(
        default=(),
        description="One record per rule that tripped generator_bound or upstream_bound; empty when "
        "neither did.",
    )
    slo_held: bool | None = Field(
        default=None,
        description="Saturation cells: whether the cell met the scenario's SLO (p99 latency, error rate, "
        "achieved rate). None for other cells.",
    )
    slo_breach: str | None = Field(
        default=None,
        description="Saturation cells that missed the SLO: which limit was passed, in words. None otherwise.",
    )
    db_queries: int | None = Field(
        default=None,
        description="The database's own count of the endpoint's queries in the window "
        "(pg_stat_statements), for runs that started a database; None otherwise.",
    )
    server_cgroup_cpu_percent: float | None = Field(
        default=None,
        description="CPU time of the target's control group over the window, percent of one core. None "
        "where the target had no control group of its own.",
    )
    server_cgroup_memory_mib_peak: float | None = Field(
        default=None,
        description="Highest memory charged to the target's control group in the window, MiB (includes "
        "page cache, so it exceeds RSS). None where the target had no control group of its "
        "own.",
    )
    server_oom_kills: int | None = Field(
        default=None,
        description="Processes of the target killed for exceeding its memory limit in the window. None "
        "where the target had no control group of its own.",
    )
    server_throttled_s: float | None = Field(
        default=None,
        description="Seconds the target's control group waited on its CPU quota in the window. None where"
        " the target had no control group of its own.",
    )
    timeseries: str | None = Field(
        default=None,
        description="Path of the cell's server samples over the window (CSV: t_s, server_cpu_percent, "
        "server_rss_mib, server_pss_mib, cgroup_memory_mib), relative to the run folder. None"
        " when none were taken.",
    )
    server_memory_slope_mib_per_min: float | None = Field(
        default=None,
        description="Trend of the server's memory over the window, MiB per minute (PSS, else RSS; Theil-"
        "Sen). None for windows under 60 s or with too few samples.",
    )
    server_memory_slope_ci: tuple[float, float] | None = Field(
        default=None,
        description="95% confidence interval [low, high] of server_memory_slope_mib_per_min, MiB per "
        "minute. None when there is no slope.",
    )
    stage: int | None = Field(
        default=None, description="Staged scenarios: the stage's index, from 0. None otherwise."
    )
    stage_kind: str | None = Field(
        default=None,
        description="Staged scenarios: the stage's kind: constant, ramp, step, spike or soak. None "
        "otherwise.",
    )
    stage_start_s: float | None = Field(
        default=None,
        description="Staged scenarios: when the stage started, s after the measured window opened. None "
        "otherwise.",
    )
    stage_levels: tuple[float, float] | None = Field(
        default=None,
        description="Staged scenarios: the level at the stage's start and end [start, end], requests/s "
        "(open model) or connections (closed model). None otherwise.",
    )
    generator_lateness_ms_p50: float | None = Field(
        default=None,
        description="Native driver, open model: median of how late the driver's own loop got to its "
        "requests against their intended send times, ms (a wait for a free connection is not "
        "counted). None otherwise.",
    )
    generator_lateness_ms_p99: float | None = Field(
        default=None,
        description="Native driver, open model: 99th percentile of the driver's lateness, ms. None "
        "otherwise.",
    )
    generator_lateness_ms_max: float | None = Field(
        default=None,
        description="Native driver, open model: the driver's greatest lateness, ms. None otherwise.",
    )
    longest_silence_s: float | None = Field(
        default=None,
        description="Native driver, closed model: the longest time inside the window with no response "
        "from the server (the window's ends included), s; far longer than the response times, it is a "
        "stall (harness.analysis.stalled). None otherwise, and in runs stored before it was recorded.",
    )
    search_upper_rps: float | None = Field(
        default=None,
        description="Capacity searches (saturation, method probe): the upper bound the search bisected "
        "below, requests/s, known before its steps (see search_prior). None otherwise.",
    )
    search_prior: str | None = Field(
        default=None,
        description="Capacity searches: where search_upper_rps came from, in words (a blocking stack's "
        "Little's-law ceiling, or a closed-model probe's peak and its connections). None otherwise.",
    )


class Placement(Frozen):
    """Which CPUs the target, and the load generator with the upstream, ran on."""

    target_cpus: tuple[int, ...] = Field(description="CPU numbers the target ran on.")
    generator_cpus: tuple[int, ...] = Field(
        description="CPU numbers the load generator, the upstream and the harness ran on."
    )


class Environment(Frozen):
    """The machine and software a run was measured on."""

    cpu_model: str = Field(description="The CPU's model name.")
    cores: int = Field(description="Logical CPUs of the machine.")
    kernel: str = Field(description="The kernel's release.")
    python: str = Field(description="The harness's Python version.")
    hostname: str = Field(description="The machine's host name.")
    git_commit: str | None = Field(description="The harness's git commit; None outside a git checkout.")
    launcher: str = Field(
        description="How the targets were started: local (processes on this machine) or docker."
    )
    packages: dict[str, str] = Field(
        description="Versions of the harness's and the targets' packages: name -> version (or \"not "
        'installed").'
    )
    cgroup_version: int | None = Field(
        default=None, description="The control group version (1 or 2) the limits used; None when unknown."
    )
    limits_note: str | None = Field(
        default=None,
        description="Why the targets had no control group of their own, when they had none; None otherwise.",
    )
    docker_engine: str | None = Field(
        default=None, description="The Docker engine's version, for docker runs; None otherwise."
    )


class TargetRun(Frozen):
    """A target's configuration as it ran: its file plus resolved workers and limits.

    ``cpus`` and ``memory_mib`` are the limits asked for; ``limits_applied`` says
    how they were enforced (a control group, or only CPU pinning, and why).
    Docker runs record the ``image`` and how long it took to build (s).
    """

    config: TargetConfig = Field(
        description="The target's target.toml as read (the user's app: its generated configuration)."
    )
    workers: int = Field(
        description="Workers the target ran with: the {workers} its start command was given."
    )
    cpus: float | None = Field(
        default=None, description="CPU limit asked for, cores of CPU time; None: no limit."
    )
    memory_mib: int | None = Field(default=None, description="Memory limit asked for, MiB; None: no limit.")
    limits_applied: str | None = Field(
        default=None,
        description="How the limits were enforced, in words (a control group's quota, cpuset and memory "
        "limit, or CPU pinning only, and why).",
    )
    image: str | None = Field(
        default=None, description="docker runs: the image the target ran in; None otherwise."
    )
    image_build_s: float | None = Field(
        default=None, description="docker runs: how long building the image took, s; None otherwise."
    )
    verified: bool | None = Field(
        default=None,
        description="Whether the target passed targets/CONTRACT.md before any load; None when it was not "
        "checked (--no-verify, or a user's app).",
    )
    verification_failures: tuple[str, ...] = Field(
        default=(), description="The contract checks that failed, one line each (name: detail)."
    )
    tuning: str | None = Field(
        default=None,
        description="A blocking stack's tuned variant (<stack>@tuned): how its workers and threads were "
        "derived within the limits, in words (harness.run.tuning). None otherwise.",
    )


class RunFailure(Frozen):
    """Something that went wrong but did not stop the run."""

    target: str = Field(description="The stack concerned.")
    cell_id: str | None = Field(
        description="The cell concerned; None when the failure concerned the whole stack (e.g. it did not"
        " start)."
    )
    reason: str = Field(description="What went wrong, in words.")


class DatabaseRun(Frozen):
    """The database server a run started for its ``/db/`` endpoints, as it ran."""

    server: str = Field(description="The database server, e.g. postgresql.")
    version: str | None = Field(description="Its version; None when unknown.")
    settings: dict[str, _Setting] = Field(
        default_factory=dict, description="Its settings that matter for the comparison: name -> value."
    )


class RunManifest(Frozen):
    """``results/<run_id>/manifest.json``. Timestamps are UTC ISO 8601."""

    schema_version: int = Field(
        default=SCHEMA_VERSION,
        description="Version of the results format this run was written in (see the changelog in "
        "harness/model/records.py). The harness reads older versions too, upgrading their keys as it "
        "reads; this schema describes this version's files only.",
        json_schema_extra={"const": SCHEMA_VERSION},
    )
    run_id: str = Field(
        description="The run's id and folder name: <UTC start, YYYYMMDDTHHMMSSZ>-<scenario name>, e.g. "
        "20261124T020000Z-default."
    )
    status: Literal["running", "complete", "interrupted", "failed"] = Field(
        description="running (being written, or the harness was killed), complete, interrupted (Ctrl-C or"
        " a signal: what was measured is kept) or failed."
    )
    started_at: str = Field(description="When the run started, UTC ISO 8601.")
    finished_at: str | None = Field(description="When the run ended, UTC ISO 8601; None while it runs.")
    scenario: Scenario = Field(
        description="The scenario as run (scenarios/<name>.toml, after --quick and command-line overrides)."
    )
    targets: dict[str, TargetRun] = Field(
        description="Every stack measured, by name: its configuration, workers and limits as it ran."
    )
    upstream: TargetRun | None = Field(
        default=None,
        description="The upstream service the stacks' I/O endpoints call, as it ran; None when none was "
        "started.",
    )
    database: DatabaseRun | None = Field(
        default=None, description="The database server started for /db/ endpoints; None when none was."
    )
    placement: Placement = Field(description="Which CPUs the target and the load generator ran on.")
    environment: Environment = Field(description="The machine and software the run was measured on.")
    cell_order: tuple[str, ...] = Field(description="Every planned cell's id, in the (randomised) order run.")
    failures: tuple[RunFailure, ...] = Field(
        default=(),
        description="What went wrong without stopping the run (a stack that did not start, a cell that "
        "failed).",
    )


_LEGACY_CPU = re.compile(r"the generator used (?P<measured>[\d.]+)% CPU \(limit (?P<limit>[\d.]+)%\)")
_LEGACY_BEHIND = re.compile(
    r"it sent (?P<measured>[\d.]+) req/s, \d+% behind the (?P<scheduled>[\d.]+) req/s scheduled"
)
_LEGACY_BEHIND_RATIO = 0.95  # the rule's ratio when schema 2 was written


def _legacy_bound_reasons(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The :class:`BoundReason` records (as dicts) that a schema 1-2 measurement's flags stand for."""
    reasons: list[dict[str, Any]] = []
    words = data.get("generator_bound_reason")
    if data.get("generator_bound") and isinstance(words, str):
        for part in words.split("; "):
            if cpu := _LEGACY_CPU.fullmatch(part):
                measured, limit = float(cpu["measured"]), float(cpu["limit"])
                reasons.append({"by": "generator", "rule": "cpu", "measured": measured, "limit": limit})
            elif behind := _LEGACY_BEHIND.match(part):
                scheduled = float(behind["scheduled"])
                reasons.append(
                    {
                        "by": "generator",
                        "rule": "behind",
                        "measured": float(behind["measured"]),
                        "limit": round(_LEGACY_BEHIND_RATIO * scheduled, 3),
                        "scheduled": scheduled,
                    }
                )
            else:
                stored = {"by": "generator", "rule": "stored", "measured": 0.0, "limit": 0.0, "detail": part}
                reasons.append(stored)
    elif data.get("generator_bound"):
        reasons.append({"by": "generator", "rule": "stored", "measured": 0.0, "limit": 0.0})
    if data.get("upstream_bound"):
        cpu_percent = data.get("upstream_cpu_percent")
        reasons.append(
            {
                "by": "upstream",
                "rule": "cpu",
                "measured": float(cpu_percent) if isinstance(cpu_percent, int | float) else 0.0,
                "limit": 80.0,
            }
        )
    return reasons


def upgrade_measurement(data: dict[str, Any], version: int) -> dict[str, Any]:
    """A stored measurement (a line of ``measurements.jsonl``, parsed) of schema ``version``, in
    the current schema's keys: schema 1-2 keys renamed (:data:`MEASUREMENT_KEYS_RENAMED_IN_3`) and
    ``generator_bound_reason``'s words read into ``bound_reasons``. A new dict; the input is kept.
    """
    if version >= 3:
        return data
    upgraded = {MEASUREMENT_KEYS_RENAMED_IN_3.get(key, key): value for key, value in data.items()}
    upgraded.pop("generator_bound_reason", None)
    upgraded["bound_reasons"] = _legacy_bound_reasons(data)
    return upgraded


def upgrade_manifest(data: object, version: int) -> object:
    """A stored manifest (parsed JSON) of schema ``version`` in the current schema's keys: keys of
    :data:`MANIFEST_KEYS_RENAMED_IN_3` renamed wherever they occur. A new structure; the input is kept.
    """
    if version >= 3:
        return data
    if isinstance(data, dict):
        return {MANIFEST_KEYS_RENAMED_IN_3.get(k, k): upgrade_manifest(v, version) for k, v in data.items()}
    if isinstance(data, list):
        return [upgrade_manifest(item, version) for item in data]
    return data
