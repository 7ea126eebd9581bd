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
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.model.config import DriverName, LoadModel, TargetConfig, _Frozen, _Setting
from harness.model.scenario import Scenario

SCHEMA_VERSION = 2


class LatencyMs(_Frozen):
    """Latency summary in milliseconds, of successful responses only."""

    min: float
    mean: float
    stdev: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float


class Errors(_Frozen):
    """Failed requests by kind. ``status`` counts responses with status >= 400,
    ``by_status`` the same responses by status code (``{"502": 17}``)."""

    status: int = 0
    connect: int = 0
    read: int = 0
    timeout: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.status + self.connect + self.read + self.timeout


class Measurement(_Frozen):
    """One measured cell: a line of ``measurements.jsonl``.

    ``requests`` counts every request finished inside the measured window
    (successes and errors), ``rps`` is successful responses per second over
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
    open at once.

    Flags: ``generator_bound`` (reason in ``generator_bound_reason``) when the
    generator used more than 80% of its CPUs or sent less than 95% of the
    requests scheduled while connections were still allowed; ``upstream_bound`` when
    the upstream service used more than 80% of a core. Saturation cells say
    whether they met the scenario's SLO (``slo_held``) and, if not, why
    (``slo_breach``). ``db_queries`` is the database's own count of the
    endpoint's queries run inside the window (``pg_stat_statements``), for
    cells of a run that started a database.

    Limits: where the target ran in a control group of its own (local launcher
    with cgroups, or a container), ``server_cgroup_cpu_percent`` and
    ``server_cgroup_memory_mb_peak`` are the group's own CPU time and memory
    peak in the window (memory includes page cache, so it exceeds RSS),
    ``server_oom_kills`` counts processes killed for exceeding the memory
    limit, and ``server_throttled_s`` the seconds it waited on its CPU quota.

    Over time: ``timeseries`` is the path (relative to the run directory) of the
    cell's server samples (:mod:`harness.timeseries`); ``server_memory_slope_mb_per_min``
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
    rps: float
    latency_ms: LatencyMs | None
    connections_opened: int
    server_cpu_percent: float | None
    server_rss_mb_peak: float | None
    server_pss_mb_peak: float | None
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
    generator_bound_reason: str | None = None
    slo_held: bool | None = None
    slo_breach: str | None = None
    db_queries: int | None = None
    server_cgroup_cpu_percent: float | None = None
    server_cgroup_memory_mb_peak: float | None = None
    server_oom_kills: int | None = None
    server_throttled_s: float | None = None
    timeseries: str | None = None
    server_memory_slope_mb_per_min: float | None = None
    server_memory_slope_ci: tuple[float, float] | None = None
    stage: int | None = None
    stage_kind: str | None = None
    stage_start_s: float | None = None
    stage_levels: tuple[float, float] | None = None


class Placement(_Frozen):
    """Which CPUs the target, and the load generator with the upstream, ran on."""

    target_cpus: tuple[int, ...]
    generator_cpus: tuple[int, ...]


class Environment(_Frozen):
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


class TargetRun(_Frozen):
    """A target's configuration as it ran: its file plus resolved workers and limits.

    ``cpus`` and ``memory_mb`` are the limits asked for; ``limits_applied`` says
    how they were enforced (a control group, or only CPU pinning, and why).
    Docker runs record the ``image`` and how long it took to build (s).
    """

    config: TargetConfig
    workers: int
    cpus: float | None = None
    memory_mb: int | None = None
    limits_applied: str | None = None
    image: str | None = None
    image_build_s: float | None = None
    verified: bool | None = None
    verification_failures: tuple[str, ...] = ()


class RunFailure(_Frozen):
    """Something that went wrong but did not stop the run."""

    target: str
    cell_id: str | None
    reason: str


class DatabaseRun(_Frozen):
    """The database server a run started for its ``/db/`` endpoints, as it ran."""

    server: str
    version: str | None
    settings: dict[str, _Setting] = Field(default_factory=dict)


class RunManifest(_Frozen):
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
