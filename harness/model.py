"""Typed, validated configuration and result records.

Every record is a frozen pydantic model with an explicit JSON round trip
(``model_dump(mode="json")`` / ``model_validate``). This module imports no other
layer of the harness but :mod:`harness.stages` (scenario stages, themselves
free of imports).

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

import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Sized
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from harness.stages import Phase, Stage, phases

SCHEMA_VERSION = 2

Interface = Literal["wsgi", "asgi", "native"]
LoadModel = Literal["closed", "open", "saturation"]
DriverName = Literal["native", "wrk", "locust"]
SettingValue = str | int | float | bool


class ConfigError(Exception):
    """A target or scenario file is missing or invalid; the message names the file."""


def _one_setting_error(value: object, handler: ValidatorFunctionWrapHandler) -> Any:
    # Without this, a bad setting gets one error per member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("setting_type", "must be a string, number or boolean") from None


def _is_path(value: str) -> str:
    # The endpoint goes verbatim into the request line: "GET <endpoint> HTTP/1.1".
    if not re.fullmatch(r"/[!-~]*", value):
        raise ValueError("must be a path starting with '/', printable ASCII without spaces")
    return value


def _is_folder_name(value: str) -> str:
    # The scenario's name is part of the results folder's name.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise ValueError(
            "must be letters, digits, '.', '_' or '-' (it names the results folder; default: the file's name)"
        )
    return value


_Setting = Annotated[SettingValue, WrapValidator(_one_setting_error)]
_Endpoint = Annotated[str, AfterValidator(_is_path)]
_Positive = Annotated[int, Field(ge=1)]
# Bounds that keep every load loop, and the plan itself, finite and sane.
MAX_CONCURRENCY = 100_000
MAX_DURATION_S = 86_400.0
MAX_REPEATS = 100
MAX_RATE = 1_000_000.0
QUICK_FACTOR = 0.2
QUICK_MAX_WINDOW_S = 10.0
"""``--quick`` at the default factor keeps at most this much measured window per cell (s): a
10-minute soak becomes 10 s. The cap scales with the factor (2.5 s at 0.05)."""
QUICK_BISECT_STEPS = 1
"""``--quick`` bisects a saturation search at most this many times."""
QUICK_MIN_WINDOW_S = 0.5
"""``--quick`` keeps at least this much measured window per cell (s)."""
QUICK_MIN_WARMUP_S = 0.1
"""``--quick`` keeps at least this much warm-up (s), unless the scenario has none."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TargetConfig(_Frozen):
    """One stack, as described by ``targets/<name>/target.toml``.

    ``command`` is a shell-free argument string with the placeholders
    ``{python}`` (the harness's interpreter), ``{host}``, ``{port}`` and
    ``{workers}``; it runs with ``app_dir`` (relative to the target folder) as
    its working directory. ``settings`` records every server setting that
    matters for a fair comparison, so it lands in the results. A user's own
    app sets ``verify_contract = false``: it is then only required to answer
    ``ready_path`` with 200, and is not checked against ``targets/CONTRACT.md``.
    ``cpus`` (cores of CPU time) and ``memory_mb`` (MiB) are the default limits
    the launchers give the target; a scenario may override them.
    """

    name: str
    description: str
    role: Literal["target", "upstream"] = "target"
    framework: str
    server: str
    interface: Interface
    worker_model: str
    command: str
    default_workers: int = Field(ge=1)
    workers_rule: str
    app_dir: str = "."
    requirements: str = "requirements.txt"
    packages: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, _Setting] = Field(default_factory=dict)
    ready_path: str = "/health"
    verify_contract: bool = True
    cpus: float = Field(default=1.0, gt=0, le=1024, allow_inf_nan=False)
    memory_mb: int = Field(default=1024, ge=32, le=1_048_576)

    @field_validator("command")
    @classmethod
    def _command_has_placeholders(cls, value: str) -> str:
        for placeholder in ("{host}", "{port}"):
            if placeholder not in value:
                raise ValueError(f"must contain the placeholder {placeholder}")
        return value

    @property
    def websocket(self) -> bool | None:
        """What the target declares in ``settings.websocket`` (True / False), or None when silent."""
        declared = self.settings.get("websocket")
        return declared if isinstance(declared, bool) else None

    def argv(self, *, python: str, host: str, port: int, workers: int) -> list[str]:
        """Return the start command as an argument list with placeholders filled."""
        filled = self.command.format(python=python, host=host, port=port, workers=workers)
        return filled.split()


class RequestSpec(_Frozen):
    """One kind of request in a scenario, when a plain GET path is not enough.

    ``body`` is sent as is with ``content_type`` (``body_file``, a path relative
    to the scenario file, is read into ``body`` when the scenario is loaded).
    ``weight`` is its share of a ``mix``. ``name`` labels it in results
    (default: the path, or ``"POST /path"`` for another method).
    """

    path: _Endpoint
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    body: str | None = None
    body_file: str | None = None
    content_type: str = "application/json"
    weight: int = Field(default=1, ge=1, le=1000)
    name: str | None = None

    @property
    def label(self) -> str:
        """How results name it: ``name``, else the path (GET) or ``"METHOD path"``."""
        if self.name:
            return self.name
        return self.path if self.method == "GET" else f"{self.method} {self.path}"


def _entry_kind(value: object) -> str | None:
    if isinstance(value, str):
        return "<path>"
    if isinstance(value, dict | RequestSpec):
        return "<table>"
    return None


# An endpoint is a GET path or a table; the tags (dropped from error locations) pick which.
_EndpointEntry = Annotated[
    Annotated[_Endpoint, Tag("<path>")] | Annotated[RequestSpec, Tag("<table>")],
    Discriminator(
        _entry_kind,
        custom_error_type="endpoint",
        custom_error_message="must be a path or a table with a path",
    ),
]


def _time_scaled(path: str, scale: float) -> str:
    """``/io/upstream?ms=300`` at scale 0.1 is ``/io/upstream?ms=30`` (every ``ms=`` and ``interval_ms=``)."""
    if scale == 1.0:
        return path
    return re.sub(
        r"(?<=[?&])((?:interval_)?ms=)(\d+)", lambda m: f"{m.group(1)}{round(int(m.group(2)) * scale)}", path
    )


class Slo(_Frozen):
    """A service-level objective a cell must meet: the saturation search's stopping rule.

    A cell breaks it when its p99 latency (corrected, in the open model) exceeds
    ``p99_ms``, when failed plus dropped requests exceed ``error_rate`` of the
    requests scheduled, or when the achieved rate is below ``min_achieved_ratio``
    of the intended rate.
    """

    p99_ms: float = Field(default=100.0, gt=0, allow_inf_nan=False)
    error_rate: float = Field(default=0.001, ge=0, le=1, allow_inf_nan=False)
    min_achieved_ratio: float = Field(default=0.95, gt=0, le=1, allow_inf_nan=False)

    def breach(
        self, *, p99_ms: float | None, failed: int, scheduled: int, achieved_rate: float, intended_rate: float
    ) -> str | None:
        """Why a cell breaks this SLO (the first rule broken, in words), or None when it holds.

        ``p99_ms`` is None when no request succeeded; ``failed`` counts failed
        plus dropped requests out of ``scheduled``; rates are in requests/s.
        """
        if scheduled and failed / scheduled > self.error_rate:
            return f"errors {100 * failed / scheduled:.2f}% > {100 * self.error_rate:g}%"
        if p99_ms is None:
            return "no successful response"
        if p99_ms > self.p99_ms:
            return f"p99 {p99_ms:.1f} ms > {self.p99_ms:g} ms"
        if intended_rate and achieved_rate < self.min_achieved_ratio * intended_rate:
            return (
                f"achieved {achieved_rate:.1f} req/s < {100 * self.min_achieved_ratio:g}% of "
                f"{intended_rate:g} req/s"
            )
        return None


class Saturation(_Frozen):
    """How the saturation search steps the arrival rate (requests/s).

    Rates start at ``start_rate`` and are multiplied by ``growth`` until the SLO
    breaks or ``max_rate`` is passed; then ``bisect_steps`` bisections between
    the last rate that held and the first that broke narrow the result.
    """

    start_rate: float = Field(default=50.0, gt=0, le=MAX_RATE, allow_inf_nan=False)
    growth: float = Field(default=2.0, gt=1, le=10, allow_inf_nan=False)
    max_rate: float = Field(default=20_000.0, gt=0, le=MAX_RATE, allow_inf_nan=False)
    bisect_steps: int = Field(default=3, ge=0, le=10)

    def max_steps(self) -> int:
        """The most cells one search can take (growth steps plus bisections)."""
        steps, rate = 1, self.start_rate
        while rate < self.max_rate:
            rate *= self.growth
            steps += 1
        return steps + self.bisect_steps


class Scenario(_Frozen):
    """A load description, as in ``scenarios/<name>.toml``.

    Durations are in seconds, rates in requests/s. ``targets`` empty means
    every target that has a ``target.toml`` (the upstream service excluded).
    ``workers``, ``cpus`` (cores of CPU time) and ``memory_mb`` (MiB) override a
    target's ``default_workers``, ``cpus`` and ``memory_mb`` by name.

    ``endpoints`` are GET paths or :class:`RequestSpec` tables (method, body,
    weight); each is measured on its own, unless ``mix`` names them all as one
    weighted mix measured as a single endpoint of that name. ``time_scale``
    multiplies every ``ms=`` and ``interval_ms=`` wait in the paths (0.1 runs a
    300 ms wait as 30 ms), so a slow workload can run at a fraction of its delays.

    ``model``: ``closed`` runs each level of ``concurrency`` (connections, each
    sending its next request when the previous answer arrives); ``open`` runs
    each of ``rates`` with ``arrival`` inter-arrival times and at most
    ``max_connections`` connections; ``saturation`` searches the highest open-
    model rate that meets ``slo`` (see :class:`Saturation`). ``driver`` is the
    load generator (``wrk`` and ``locust``: closed model only);
    ``generator_processes`` is how many driver processes (one event loop each,
    or Locust processes) share the load.

    ``stages`` (:mod:`harness.stages`) replace the levels with one continuous
    load that changes over time (constant, ramp, step, spike, soak), closed or
    open model, native driver; ``duration_s`` is then their total (filled in
    when omitted).
    """

    name: Annotated[str, AfterValidator(_is_folder_name)]
    description: str
    targets: tuple[str, ...] = ()
    endpoints: tuple[_EndpointEntry, ...] = Field(min_length=1)
    mix: str | None = None
    time_scale: float = Field(default=1.0, gt=0, le=100, allow_inf_nan=False)
    model: LoadModel = "closed"
    concurrency: tuple[Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)], ...] = ()
    rates: tuple[Annotated[float, Field(gt=0, le=MAX_RATE, allow_inf_nan=False)], ...] = ()
    arrival: Literal["uniform", "poisson"] = "poisson"
    max_connections: int = Field(default=1000, ge=1, le=MAX_CONCURRENCY)
    saturation: Saturation = Field(default_factory=Saturation)
    slo: Slo = Field(default_factory=Slo)
    driver: DriverName = "native"
    generator_processes: int = Field(default=1, ge=1, le=64)
    warmup_s: float = Field(ge=0, allow_inf_nan=False)
    duration_s: float = Field(gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    repeats: int = Field(default=1, ge=1, le=MAX_REPEATS)
    timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    workers: dict[str, _Positive] = Field(default_factory=dict)
    cpus: dict[str, Annotated[float, Field(gt=0, le=1024, allow_inf_nan=False)]] = Field(default_factory=dict)
    memory_mb: dict[str, Annotated[int, Field(ge=32, le=1_048_576)]] = Field(default_factory=dict)
    seed: int | None = None
    stages: tuple[Stage, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _duration_from_stages(cls, data: Any) -> Any:
        if isinstance(data, dict) and "duration_s" not in data and isinstance(data.get("stages"), list):
            durations = [s.get("duration_s") for s in data["stages"] if isinstance(s, dict)]
            if durations and all(isinstance(d, int | float) and d > 0 for d in durations):
                data = {**data, "duration_s": round(sum(float(d or 0) for d in durations), 6)}
        return data

    @model_validator(mode="after")
    def _stages_match_the_model(self) -> Scenario:
        if not self.stages:
            return self
        if self.model == "saturation" or self.concurrency or self.rates:
            raise PydanticCustomError(
                "levels",
                "{key}: stages set the load over time: no concurrency or rates list, "
                "and model 'closed' or 'open' (got '{model}')",
                {"key": "stages", "model": self.model},
            )
        if self.driver != "native":
            raise PydanticCustomError(
                "levels", "{key}: stages run on the native driver only", {"key": "driver"}
            )
        unit = "rate" if self.model == "open" else "concurrency"
        for index, stage in enumerate(self.stages):
            if getattr(stage, unit) is None:
                raise PydanticCustomError(
                    "levels",
                    "{key}: required in every stage when model = '{model}'",
                    {"key": f"stages[{index}].{unit}", "model": self.model},
                )
        total = sum(stage.duration_s for stage in self.stages)
        if abs(total - self.duration_s) > 1e-3:
            raise PydanticCustomError(
                "levels",
                "{key}: must equal the stages' total of {total} s, or be left out",
                {"key": "duration_s", "total": f"{total:g}"},
            )
        first = self.stages[0]
        if first.kind == "spike" and first.start is None:
            raise PydanticCustomError(
                "levels",
                "{key}: a spike needs a base level: give start, or put a stage before it",
                {"key": "stages[0].start"},
            )
        measured = phases(self.stages)
        if any(max(p.start_level, p.end_level) < (1 if self.model == "closed" else 1e-9) for p in measured):
            raise PydanticCustomError(
                "levels",
                "{key}: a phase with no load at all (level 0 from start to end): give it a level",
                {"key": "stages"},
            )
        return self

    def phases(self) -> list[Phase]:
        """The measured phases of a staged scenario (empty without stages)."""
        return phases(self.stages) if self.stages else []

    @model_validator(mode="after")
    def _levels_match_the_model(self) -> Scenario:
        if self.stages:
            return self
        if self.model == "closed" and not self.concurrency:
            raise PydanticCustomError(
                "levels",
                "{key}: required when model = 'closed': a list of levels (connections)",
                {"key": "concurrency"},
            )
        if self.model == "open" and not self.rates:
            raise PydanticCustomError(
                "levels", "{key}: required when model = 'open': a list of requests/s", {"key": "rates"}
            )
        labels = [spec.label for spec in self.requests()]
        if not self.mix and len(set(labels)) != len(labels):
            raise PydanticCustomError(
                "levels", "{key}: two endpoints share a label; give them distinct names", {"key": "endpoints"}
            )
        plain = all(spec.method == "GET" and spec.body is None for spec in self.requests())
        if self.driver == "wrk" and (self.mix or not plain):
            raise PydanticCustomError(
                "levels", "{key}: 'wrk' sends one GET per cell: no mix, no POST", {"key": "driver"}
            )
        if self.driver in ("wrk", "locust") and self.model != "closed":
            raise PydanticCustomError(
                "levels",
                "{key}: '{driver}' runs the closed model only (no arrival rate), got model = '{model}'",
                {"key": "driver", "driver": self.driver, "model": self.model},
            )
        return self

    def quick(self, factor: float = QUICK_FACTOR) -> tuple[Scenario, str]:
        """A smoke-run version: durations x ``factor`` (with floors), one repeat; and a sentence saying so.

        Warm-up is scaled with a floor of :data:`QUICK_MIN_WARMUP_S` (unless it
        was 0), the measured window with a floor of :data:`QUICK_MIN_WINDOW_S` and
        a cap of :data:`QUICK_MAX_WINDOW_S` (at the default factor; the cap scales
        with the factor)
        (stages all by the window's factor), and a saturation search keeps its
        rates but bisects at most :data:`QUICK_BISECT_STEPS` times.
        """
        warmup = 0.0 if self.warmup_s == 0 else max(round(self.warmup_s * factor, 2), QUICK_MIN_WARMUP_S)
        duration = max(round(self.duration_s * factor, 2), QUICK_MIN_WINDOW_S)
        most = round(QUICK_MAX_WINDOW_S * factor / QUICK_FACTOR, 2)
        capped = duration > most
        duration = min(duration, most)
        scale = duration / self.duration_s
        stages = tuple(stage.scaled(scale) for stage in self.stages)
        if stages:
            duration = sum(stage.duration_s for stage in stages)
        bisect = min(self.saturation.bisect_steps, QUICK_BISECT_STEPS)
        quick = self.model_copy(
            update={
                "warmup_s": warmup,
                "duration_s": duration,
                "repeats": 1,
                "stages": stages,
                "saturation": self.saturation.model_copy(update={"bisect_steps": bisect}),
            }
        )
        cap = f", at most {most:g} s: x {scale:.3g}" if capped else ""
        search = (
            f", bisections {self.saturation.bisect_steps} -> {bisect}"
            if self.model == "saturation" and bisect != self.saturation.bisect_steps
            else ""
        )
        note = (
            f"--quick: durations x {factor:g}{cap} (warm-up {self.warmup_s:g} -> {warmup:g} s, "
            f"window {self.duration_s:g} -> {duration:g} s"
            f"{', every stage alike' if stages else ''}), repeats {self.repeats} -> 1{search}; "
            "figures for smoke-testing, not conclusions"
        )
        return quick, note

    def requests(self) -> tuple[RequestSpec, ...]:
        """Every endpoint as a :class:`RequestSpec`, waits scaled by ``time_scale``."""
        specs = [RequestSpec(path=e) if isinstance(e, str) else e for e in self.endpoints]
        return tuple(s.model_copy(update={"path": _time_scaled(s.path, self.time_scale)}) for s in specs)

    def endpoint_labels(self) -> tuple[str, ...]:
        """The endpoints cells are measured on: each request's label, or the one ``mix``."""
        if self.mix:
            return (self.mix,)
        return tuple(spec.label for spec in self.requests())

    def requests_for(self, label: str) -> tuple[RequestSpec, ...]:
        """The requests one endpoint label stands for (all of them for the mix). KeyError if unknown."""
        if self.mix and label == self.mix:
            return self.requests()
        found = tuple(spec for spec in self.requests() if spec.label == label)
        if not found:
            raise KeyError(label)
        return found

    def max_level_connections(self) -> int:
        """The most connections one cell can open (for the file-descriptor check)."""
        if self.model == "closed" and self.stages:
            return int(max(max(p.start_level, p.end_level) for p in self.phases()))
        if self.model == "closed":
            return max(self.concurrency)
        return self.max_connections


class Cell(_Frozen):
    """One measurement to take: a target, an endpoint and a load level, one repeat.

    Closed model: ``concurrency`` connections. Open model: ``rate`` requests/s.
    A saturation search is planned as one cell with neither; the runner stores
    one measurement per rate it tries. A staged scenario (``staged``) is one
    cell too, stored as one measurement per phase (:func:`harness.stages.phases`).
    """

    target: str
    endpoint: str
    model: LoadModel = "closed"
    concurrency: int | None = None
    rate: float | None = None
    repeat: int
    staged: bool = False

    @property
    def level(self) -> str:
        """The load level as a short label: ``c32``, ``rate200``, ``sat``, ``stages``."""
        if self.staged:
            return "stages"
        if self.model == "closed":
            return f"c{self.concurrency}"
        if self.rate is not None:
            return f"rate{self.rate:g}"
        return "sat"

    @property
    def cell_id(self) -> str:
        """A file-name-safe unique id, e.g. ``flask-gunicorn__io-sleep-ms-50__c32__r0``."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.endpoint).strip("-")
        level = re.sub(r"[^A-Za-z0-9]+", "-", self.level)
        return f"{self.target}__{slug}__{level}__r{self.repeat}"


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


_MAX_CONFIG_BYTES = 1 << 20


def _read_toml(path: Path) -> dict[str, object]:
    """Parse a TOML file. Raises ConfigError naming the file on any problem."""
    try:
        # A size cap, so that a device or a huge file given by mistake fails quickly.
        with path.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:  # a NUL byte in the path
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {_MAX_CONFIG_BYTES} bytes, not a configuration file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from exc
    except ValueError as exc:  # int()'s digit limit, which tomllib lets through
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def suggest(name: str, known: Iterable[str]) -> str:
    """The closest known names as a phrase to append to an error, or ``""``.

    ``suggest("fastapi-uvicon", ["fastapi-uvicorn", "flask-gunicorn"])`` ->
    ``" (did you mean 'fastapi-uvicorn'?)"``. Closeness is difflib's ratio, cutoff 0.6.
    """
    matches = [repr(m) for m in difflib.get_close_matches(name, list(known), n=3)]
    if not matches:
        return ""
    listed = " or ".join(matches) if len(matches) < 3 else f"{matches[0]}, {matches[1]} or {matches[2]}"
    return f" (did you mean {listed}?)"


_MAX_GOT_CHARS = 60

# What pydantic's error types expect, phrased for a person editing a TOML file;
# ``{...}`` are filled from the error's ``ctx``.
_EXPECTED = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "literal_error": "must be one of {expected}",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
}


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``("concurrency", 1)`` -> ``concurrency[1]``; ``("workers", "a b")`` -> ``workers."a b"``."""
    parts = []
    for part in loc:
        if isinstance(part, str) and part.startswith("<"):  # a union's tag, not a key
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
            continue
        key = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
        parts.append(f".{key}" if parts else key)
    return "".join(parts) or "(file)"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_GOT_CHARS else text[: _MAX_GOT_CHARS - 3] + "..."


def _bound(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _expected(error: ErrorDetails, known_keys: Iterable[str]) -> str:
    """What the key should hold, and what it holds: ``must be >= 1, got -5``."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "levels":  # a rule across keys; the message names the key
        return error["msg"].split(": ", 1)[1]
    if kind == "missing":
        return "required, missing"
    if kind == "extra_forbidden":
        known = list(known_keys)
        hint = suggest(str(error["loc"][-1]), known) or f" (known keys: {', '.join(known)})"
        return "unknown key" + hint
    if kind in _EXPECTED:
        phrase = _EXPECTED[kind].format(**{name: _bound(v) for name, v in ctx.items()})
    elif kind == "value_error":
        phrase = str(ctx["error"])
    else:
        phrase = error["msg"].replace("Input should be", "must be")
    return f"{phrase}, got {_shown(error['input'])}"


def _after_item_errors(error: ErrorDetails) -> bool:
    # pydantic checks a list's min_length after dropping its invalid items, so a
    # list of bad items is also "too short"; the item errors say it better.
    given = error["input"]
    return (
        error["type"] == "too_short"
        and isinstance(given, Sized)
        and len(given) >= error.get("ctx", {}).get("min_length", 0)
    )


def _explain(path: Path, exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    """One line per problem, ``<file>: <key>: <expected>, got <value>``, e.g.
    ``scenarios/x.toml: concurrency[1]: must be >= 1, got -5``."""
    return ConfigError(
        "\n".join(
            f"{path}: {_error_key(error)}: {_expected(error, model.model_fields)}"
            for error in exc.errors()
            if not _after_item_errors(error)
        )
    )


def _error_key(error: ErrorDetails) -> str:
    """The key a problem is about; a rule across keys names it, relative to where it was checked."""
    if error["type"] != "levels":
        return _key_path(error["loc"])
    key = str(error.get("ctx", {})["key"])
    return f"{_key_path(error['loc'])}.{key}" if error["loc"] else key


def load_target(directory: Path) -> TargetConfig:
    """Read ``directory/target.toml``; the target's name is the folder name.

    Raises ConfigError naming the file and key on any problem.
    """
    path = directory / "target.toml"
    data = _read_toml(path)
    data.setdefault("name", directory.name)
    try:
        return TargetConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc, TargetConfig) from exc


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file; its name defaults to the file's stem.

    Raises ConfigError naming the file and key on any problem.
    """
    data = _read_toml(path)
    data.setdefault("name", path.stem)
    _read_bodies(path, data)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc, Scenario) from exc


def _read_bodies(path: Path, data: dict[str, object]) -> None:
    """Read each endpoint's ``body_file`` (relative to the scenario file) into its ``body``."""
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, list):
        return
    for index, entry in enumerate(endpoints):
        if not isinstance(entry, dict) or not isinstance(entry.get("body_file"), str):
            continue
        if entry.get("body") is not None:
            raise ConfigError(f"{path}: endpoints[{index}]: give body or body_file, not both")
        body_path = path.parent / entry["body_file"]
        try:
            size = body_path.stat().st_size
            if size > _MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: endpoints[{index}].body_file: {body_path} is over 1 MiB")
            entry["body"] = body_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: endpoints[{index}].body_file: cannot read {body_path}: {exc}"
            ) from exc


def discover_targets(root: Path) -> dict[str, TargetConfig]:
    """Every ``root/<name>/target.toml``, by name, sorted; the upstream included.

    Raises ConfigError on the first invalid file.
    """
    return {path.parent.name: load_target(path.parent) for path in sorted(root.glob("*/target.toml"))}
