"""Typed, validated configuration records: a target, a scenario's SLO and search, a cell.

Every record is a frozen pydantic model with an explicit JSON round trip
(``model_dump(mode="json")`` / ``model_validate``). Also here: the names shared
by configuration and results (:data:`Interface`, :data:`LoadModel`,
:data:`DriverName`, :data:`SettingValue`) and the bounds that keep every load
loop, and the plan, finite (``MAX_*``, ``QUICK_*``). The scenario itself is in
:mod:`harness.model.scenario`. This module imports no other module of the harness.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

Interface = Literal["wsgi", "asgi", "native"]
LoadModel = Literal["closed", "open", "saturation"]
DriverName = Literal["native", "wrk", "locust"]
SettingValue = str | int | float | bool


def _one_setting_error(value: object, handler: ValidatorFunctionWrapHandler) -> Any:
    # Without this, a bad setting gets one error per member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("setting_type", "must be a string, number or boolean") from None


_Setting = Annotated[SettingValue, WrapValidator(_one_setting_error)]
# Bounds that keep every load loop, and the plan itself, finite and sane.
MAX_CONCURRENCY = 100_000
MAX_DURATION_S = 86_400.0
MAX_REPEATS = 100
MAX_RATE = 1_000_000.0
MAX_LEVELS = 100
"""At most this many levels (``concurrency``, ``rates``), stages or endpoints in one scenario."""
MAX_WORKERS = 1024
"""At most this many worker processes for one stack (a scenario's ``workers``, a target's
``default_workers``, ``gwbench serve --workers``): far more than any core count the harness
gives a stack, few enough that a typo (100000) is refused instead of forking the machine to death."""
MAX_CPUS = 1024.0
"""At most this many cores of CPU time for one stack. A cgroup's quota cannot give more CPU time
than the CPUs it may run on, so ``gwbench run`` also refuses more than the machine's CPUs."""
MAX_MEMORY_MIB = 1_048_576
"""At most this much memory for one stack, in MiB (1 TiB)."""
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


def cell_slug(text: str) -> str:
    """``text`` as a part of a cell id: each run of other than letters and digits is one ``-``,
    none at the ends (``/io/sleep?ms=50`` -> ``io-sleep-ms-50``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


class Frozen(BaseModel):
    """Base of every record: immutable, and unknown keys are errors (a typo in a file is named)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class TargetConfig(Frozen):
    """One stack, as described by ``targets/<name>/target.toml``.

    ``command`` is a shell-free argument string with the placeholders
    ``{python}`` (the harness's interpreter), ``{host}``, ``{port}`` and
    ``{workers}``; it runs with ``app_dir`` (relative to the target folder) as
    its working directory. ``settings`` records every server setting that
    matters for a fair comparison, so it lands in the results. A user's own
    app sets ``verify_contract = false``: it is then only required to answer
    ``ready_path`` with 200, and is not checked against ``targets/CONTRACT.md``.
    ``ready_any_answer``: any HTTP answer on ``ready_path`` means started (the user's
    app launched with ``--app``, whose first answers are checked after it started).
    ``cpus`` (cores of CPU time) and ``memory_mib`` (MiB) are the default limits
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
    default_workers: StrictInt = Field(ge=1, le=MAX_WORKERS)
    workers_rule: str
    app_dir: str = "."
    requirements: str = "requirements.txt"
    packages: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, _Setting] = Field(default_factory=dict)
    ready_path: str = "/health"
    ready_any_answer: StrictBool = False
    verify_contract: StrictBool = True
    cpus: StrictFloat = Field(default=1.0, gt=0, le=MAX_CPUS, allow_inf_nan=False)
    memory_mib: StrictInt = Field(default=1024, ge=32, le=MAX_MEMORY_MIB)

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

    @model_validator(mode="after")
    def _threads_placeholder_has_a_count(self) -> TargetConfig:
        if self.threads_settable and self.threads is None:
            raise ValueError("a command with {threads} needs settings.threads, a whole number >= 1")
        return self

    @property
    def threads(self) -> int | None:
        """Threads per worker from ``settings.threads`` (a whole number >= 1), else None."""
        value = self.settings.get("threads")
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None

    @property
    def threads_settable(self) -> bool:
        """Whether the start command takes the thread count (``{threads}``), so a run may change it."""
        return "{threads}" in self.command

    def argv(self, *, python: str, host: str, port: int, workers: int) -> list[str]:
        """Return the start command as an argument list with placeholders filled.

        ``{threads}`` is filled from ``settings.threads`` (a tuned run changes that setting).
        """
        filled = self.command.format(
            python=python, host=host, port=port, workers=workers, threads=self.threads
        )
        return filled.split()


class Slo(Frozen):
    """A service-level objective a cell must meet: the saturation search's stopping rule.

    A cell breaks it when its p99 latency (corrected, in the open model) exceeds
    ``p99_ms``, when failed plus dropped requests exceed ``error_rate`` of the
    requests scheduled, or when the achieved rate (the lower of the rates sent and
    answered successfully) is below ``min_achieved_ratio`` of the intended rate.
    """

    p99_ms: StrictFloat = Field(default=100.0, gt=0, le=MAX_DURATION_S * 1000, allow_inf_nan=False)
    error_rate: StrictFloat = Field(default=0.001, ge=0, le=1, allow_inf_nan=False)
    min_achieved_ratio: StrictFloat = Field(default=0.95, gt=0, le=1, allow_inf_nan=False)

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


class Saturation(Frozen):
    """How the saturation (capacity) search steps the arrival rate (requests/s).

    ``method = "grow"``: rates start at ``start_rate`` and are multiplied by
    ``growth`` until the SLO breaks or ``max_rate`` is passed; then
    ``bisect_steps`` bisections between the last rate that held and the first
    that broke narrow the result.

    ``method = "probe"`` (capacity, :func:`harness.run.search.capacity_search`):
    what is known before measuring sets an upper bound, a blocking stack's
    Little's-law ceiling (workers x threads / the endpoint's wait) or else the
    peak of a closed-model probe of ``probe_s`` seconds at ``probe_concurrency``
    connections; then at most ``steps`` measured windows bisect (geometrically)
    below it, a step whose breach was doubtful (the p99 alone, the rate kept up
    with) measured once more while windows are left, the second window deciding
    (:func:`harness.run.search.capacity_search`).
    ``tune_blocking`` adds, for every stack whose workers block, a
    second search at the worker count that serves it best within the same
    limits (:mod:`harness.run.tuning`), stored as ``<stack>@tuned``.
    """

    method: Literal["grow", "probe"] = "grow"
    start_rate: StrictFloat = Field(default=50.0, gt=0, le=MAX_RATE, allow_inf_nan=False)
    growth: StrictFloat = Field(default=2.0, gt=1, le=10, allow_inf_nan=False)
    max_rate: StrictFloat = Field(default=20_000.0, gt=0, le=MAX_RATE, allow_inf_nan=False)
    bisect_steps: StrictInt = Field(default=3, ge=0, le=10)
    steps: StrictInt = Field(default=5, ge=1, le=10)
    probe_concurrency: StrictInt = Field(default=256, ge=1, le=MAX_CONCURRENCY)
    probe_s: StrictFloat = Field(default=2.0, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    tune_blocking: StrictBool = False

    def max_steps(self) -> int:
        """The most cells one search can take: growth steps plus bisections; or ``steps``, second
        windows included (:func:`harness.run.search.capacity_search`)."""
        if self.method == "probe":
            return self.steps
        steps, rate = 1, self.start_rate
        while rate < self.max_rate:
            rate *= self.growth
            steps += 1
        return steps + self.bisect_steps


class Cell(Frozen):
    """One measurement to take: a target, an endpoint and a load level, one repeat.

    Closed model: ``concurrency`` connections. Open model: ``rate`` requests/s.
    A saturation search is planned as one cell with neither; the runner stores
    one measurement per rate it tries. A staged scenario (``staged``) is one
    cell too, stored as one measurement per phase (:func:`harness.model.stages.phases`).
    ``again`` marks a capacity search's second window at a rate whose first
    broke the SLO doubtfully (:func:`harness.run.search.doubtful_breach`): its level
    reads ``rate505-again``.
    """

    target: str
    endpoint: str
    model: LoadModel = "closed"
    concurrency: int | None = None
    rate: float | None = None
    repeat: int
    staged: bool = False
    again: bool = False

    @property
    def level(self) -> str:
        """The load level as a short label: ``c32``, ``rate200``, ``sat``, ``stages``."""
        if self.staged:
            return "stages"
        if self.model == "closed":
            return f"c{self.concurrency}"
        if self.rate is not None:
            return f"rate{self.rate:g}" + ("-again" if self.again else "")
        return "sat"

    @property
    def cell_id(self) -> str:
        """A file-name-safe unique id, e.g. ``flask-gunicorn__io-sleep-ms-50__c32__r0``."""
        return f"{self.target}__{cell_slug(self.endpoint)}__{cell_slug(self.level)}__r{self.repeat}"
