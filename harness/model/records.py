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

    min: float
    mean: float
    stdev: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float


class Errors(Frozen):
    """Failed requests by kind. ``status`` counts responses whose status was not a success
    (any 2xx, or the one status the endpoint declares): 1xx, 3xx, 4xx and 5xx alike;
    ``by_status`` the same responses by status code (``{"502": 17}``) and ``by_class`` by
    class (``{"5xx": 17}``). Drivers that do not report codes (wrk) leave both empty; wrk
    counts only status >= 400. A record without ``by_class`` (stored before it existed)
    takes it from its ``by_status``."""

    status: int = 0
    connect: int = 0
    read: int = 0
    timeout: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    by_class: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _class_from_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and "by_class" not in data and data.get("by_status"):
            return {**data, "by_class": classes_of(data["by_status"])}
        return data

    @property
    def total(self) -> int:
        return self.status + self.connect + self.read + self.timeout


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

    by: Literal["generator", "upstream"]
    rule: Literal["cpu", "late", "behind", "stored"]
    measured: float
    limit: float
    scheduled: float | None = None
    processes: int | None = None
    detail: str | None = None


class Measurement(Frozen):
    """One measured cell: a line of ``measurements.jsonl``.

    ``requests`` counts every request finished inside the measured window
    (successes and errors), ``requests_per_second`` is successful responses per second over
    ``duration_s`` (throughput; in the open model, responses that arrived in the
    window, while ``requests`` and latency cover the requests *scheduled* in
    it). CPU percentages are of one core (200 = two cores busy).
    Memory is the sum over the target's process tree, in MiB (2**20 bytes).
    ``status`` is ``failed`` when the cell could not be measured; then
    ``failure_reason`` says why and the figures are zero or None. Server
    figures are None when there was no process to monitor (an external app
    given without ``--pid``).

    Load: ``driver`` generated it (``native`` or ``wrk``). Open and saturation
    cells have ``rate`` = ``intended_rate`` (requests/s scheduled), ``dropped``
    (scheduled but never sent), ``scheduled`` (requests whose intended send time
    fell in the window: with Poisson arrivals it varies around ``rate`` x
    ``duration_s`` by about its square root), ``latency_ms`` measured from each request's
    intended send time (corrected for coordinated omission) and
    ``latency_ms_uncorrected`` from its actual send time. ``achieved_rate`` is
    requests/s actually sent. ``connections_peak`` is the most connections
    open at once. ``generator_lateness_ms_p50``, ``_p99`` and ``_max`` (native open
    model) say how late the driver's own loop got to its requests against their
    intended send times, in ms (a wait for a free connection is not counted).

    Flags: ``generator_bound`` when any one driver process used more than 80% of its
    core, its lateness p99 exceeded max(5 ms, 5% of the SLO's p99), or it sent less than
    95% of the requests scheduled while connections were still allowed;
    ``upstream_bound`` when the upstream service used more than 80% of a
    core; ``bound_reasons`` holds one :class:`BoundReason` per rule that tripped. Saturation cells say
    whether they met the scenario's SLO (``slo_held``) and, if not, why
    (``slo_breach``). ``db_queries`` is the database's own count of the
    endpoint's queries run inside the window (``pg_stat_statements``), for
    cells of a run that started a database.

    Limits: where the target ran in a control group of its own (local launcher
    with cgroups, or a container), ``server_cgroup_cpu_percent`` and
    ``server_cgroup_memory_mib_peak`` are the group's own CPU time and memory
    peak in the window (memory includes page cache, so it exceeds RSS),
    ``server_oom_kills`` counts processes killed for exceeding the memory
    limit, and ``server_throttled_s`` the seconds it waited on its CPU quota.

    Over time: ``timeseries`` is the path (relative to the run directory) of the
    cell's server samples (:mod:`harness.timeseries`); ``server_memory_slope_mib_per_min``
    is the memory trend over the window in MiB per minute (PSS, else RSS; Theil-Sen)
    with its 95% interval ``server_memory_slope_ci``, None for windows too short.

    Stages: a staged scenario stores one measurement per stage, each with its
    index ``stage``, ``stage_kind`` (constant, ramp, step, spike, soak), its start
    ``stage_start_s`` in seconds after the window opened and ``stage_levels``, the
    level at its start and end (requests/s, or connections in the closed model);
    ``rate`` / ``concurrency`` then hold the stage's mean level.
    """

    cell_id: str
    target: str
    endpoint: str
    model: LoadModel
    concurrency: int | None
    repeat: int
    started_at: str
    warmup_s: float
    duration_s: float
    requests: int
    errors: Errors
    requests_per_second: float
    latency_ms: LatencyMs | None
    connections_opened: int
    server_cpu_percent: float | None
    server_rss_mib_peak: float | None
    server_pss_mib_peak: float | None
    server_processes: int | None
    generator_cpu_percent: float
    upstream_cpu_percent: float | None
    generator_bound: bool
    histogram: str | None
    status: Literal["ok", "failed"] = "ok"
    failure_reason: str | None = None
    driver: DriverName = "native"
    rate: float | None = None
    intended_rate: float | None = None
    achieved_rate: float | None = None
    scheduled: int | None = None
    dropped: int = 0
    connections_peak: int | None = None
    latency_ms_uncorrected: LatencyMs | None = None
    histogram_uncorrected: str | None = None
    upstream_bound: bool = False
    bound_reasons: tuple[BoundReason, ...] = ()
    slo_held: bool | None = None
    slo_breach: str | None = None
    db_queries: int | None = None
    server_cgroup_cpu_percent: float | None = None
    server_cgroup_memory_mib_peak: float | None = None
    server_oom_kills: int | None = None
    server_throttled_s: float | None = None
    timeseries: str | None = None
    server_memory_slope_mib_per_min: float | None = None
    server_memory_slope_ci: tuple[float, float] | None = None
    stage: int | None = None
    stage_kind: str | None = None
    stage_start_s: float | None = None
    stage_levels: tuple[float, float] | None = None
    generator_lateness_ms_p50: float | None = None
    generator_lateness_ms_p99: float | None = None
    generator_lateness_ms_max: float | None = None


class Placement(Frozen):
    """Which CPUs the target, and the load generator with the upstream, ran on."""

    target_cpus: tuple[int, ...]
    generator_cpus: tuple[int, ...]


class Environment(Frozen):
    """The machine and software a run was measured on."""

    cpu_model: str
    cores: int
    kernel: str
    python: str
    hostname: str
    git_commit: str | None
    launcher: str
    packages: dict[str, str]
    cgroup_version: int | None = None
    limits_note: str | None = None
    docker_engine: str | None = None


class TargetRun(Frozen):
    """A target's configuration as it ran: its file plus resolved workers and limits.

    ``cpus`` and ``memory_mib`` are the limits asked for; ``limits_applied`` says
    how they were enforced (a control group, or only CPU pinning, and why).
    Docker runs record the ``image`` and how long it took to build (s).
    """

    config: TargetConfig
    workers: int
    cpus: float | None = None
    memory_mib: int | None = None
    limits_applied: str | None = None
    image: str | None = None
    image_build_s: float | None = None
    verified: bool | None = None
    verification_failures: tuple[str, ...] = ()


class RunFailure(Frozen):
    """Something that went wrong but did not stop the run."""

    target: str
    cell_id: str | None
    reason: str


class DatabaseRun(Frozen):
    """The database server a run started for its ``/db/`` endpoints, as it ran."""

    server: str
    version: str | None
    settings: dict[str, _Setting] = Field(default_factory=dict)


class RunManifest(Frozen):
    """``results/<run_id>/manifest.json``. Timestamps are UTC ISO 8601."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    status: Literal["running", "complete", "interrupted", "failed"]
    started_at: str
    finished_at: str | None
    scenario: Scenario
    targets: dict[str, TargetRun]
    upstream: TargetRun | None = None
    database: DatabaseRun | None = None
    placement: Placement
    environment: Environment
    cell_order: tuple[str, ...]
    failures: tuple[RunFailure, ...] = ()


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
