"""Typed, validated configuration and result records.

Every record is a frozen pydantic model with an explicit JSON round trip
(``model_dump(mode="json")`` / ``model_validate``). This module imports no other
layer of the harness.

Results format changelog (``SCHEMA_VERSION``):

- 1: first format. ``manifest.json`` holds a :class:`RunManifest`;
  ``measurements.jsonl`` holds one :class:`Measurement` per line.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 1

Interface = Literal["wsgi", "asgi", "native"]
SettingValue = str | int | float | bool


class ConfigError(Exception):
    """A target or scenario file is missing or invalid; the message names the file."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TargetConfig(_Frozen):
    """One stack, as described by ``targets/<name>/target.toml``.

    ``command`` is a shell-free argument string with the placeholders
    ``{python}`` (the harness's interpreter), ``{host}``, ``{port}`` and
    ``{workers}``; it runs with ``app_dir`` (relative to the target folder) as
    its working directory. ``settings`` records every server setting that
    matters for a fair comparison, so it lands in the results.
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
    settings: dict[str, SettingValue] = Field(default_factory=dict)
    ready_path: str = "/health"

    @field_validator("command")
    @classmethod
    def _command_has_placeholders(cls, value: str) -> str:
        for placeholder in ("{host}", "{port}"):
            if placeholder not in value:
                raise ValueError(f"must contain the placeholder {placeholder}")
        return value

    def argv(self, *, python: str, host: str, port: int, workers: int) -> list[str]:
        """Return the start command as an argument list with placeholders filled."""
        filled = self.command.format(python=python, host=host, port=port, workers=workers)
        return filled.split()


class Scenario(_Frozen):
    """A closed-model load description, as in ``scenarios/<name>.toml``.

    Durations are in seconds. ``targets`` empty means every target that has a
    ``target.toml`` (the upstream service excluded). ``workers`` overrides a
    target's ``default_workers`` by name.
    """

    name: str
    description: str
    targets: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = Field(min_length=1)
    model: Literal["closed"] = "closed"
    concurrency: tuple[int, ...] = Field(min_length=1)
    warmup_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    repeats: int = Field(default=1, ge=1)
    timeout_s: float = Field(default=10.0, gt=0)
    workers: dict[str, int] = Field(default_factory=dict)
    seed: int | None = None

    @field_validator("endpoints")
    @classmethod
    def _endpoints_are_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for endpoint in value:
            if not endpoint.startswith("/"):
                raise ValueError(f"endpoint {endpoint!r} must start with '/'")
        return value

    @field_validator("concurrency")
    @classmethod
    def _concurrency_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(c < 1 for c in value):
            raise ValueError(f"every concurrency level must be >= 1, got {list(value)}")
        return value


class Cell(_Frozen):
    """One measurement to take: a target, an endpoint and a load level, one repeat."""

    target: str
    endpoint: str
    model: Literal["closed"] = "closed"
    concurrency: int
    repeat: int

    @property
    def cell_id(self) -> str:
        """A file-name-safe unique id, e.g. ``flask-gunicorn__io-sleep-ms-50__c32__r0``."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.endpoint).strip("-")
        return f"{self.target}__{slug}__c{self.concurrency}__r{self.repeat}"


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
    """Failed requests by kind. ``status`` counts responses with status >= 400."""

    status: int = 0
    connect: int = 0
    read: int = 0
    timeout: int = 0

    @property
    def total(self) -> int:
        return self.status + self.connect + self.read + self.timeout


class Measurement(_Frozen):
    """One measured cell: a line of ``measurements.jsonl``.

    ``requests`` counts every request finished inside the measured window
    (successes and errors), ``rps`` is successful responses per second over
    ``duration_s``. CPU percentages are of one core (200 = two cores busy).
    Memory is the sum over the target's process tree, in MiB (2**20 bytes).
    ``status`` is ``failed`` when the cell could not be measured; then
    ``failure_reason`` says why and the figures are zero.
    """

    cell_id: str
    target: str
    endpoint: str
    model: Literal["closed"]
    concurrency: int
    repeat: int
    started_at: str
    warmup_s: float
    duration_s: float
    requests: int
    errors: Errors
    rps: float
    latency_ms: LatencyMs | None
    connections_opened: int
    server_cpu_percent: float
    server_rss_mb_peak: float
    server_pss_mb_peak: float | None
    server_processes: int
    generator_cpu_percent: float
    upstream_cpu_percent: float | None
    generator_bound: bool
    histogram: str | None
    status: Literal["ok", "failed"] = "ok"
    failure_reason: str | None = None


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


class TargetRun(_Frozen):
    """A target's configuration as it ran: its file plus resolved workers."""

    config: TargetConfig
    workers: int
    verified: bool | None = None
    verification_failures: tuple[str, ...] = ()


class RunFailure(_Frozen):
    """Something that went wrong but did not stop the run."""

    target: str
    cell_id: str | None
    reason: str


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
    placement: Placement
    environment: Environment
    cell_order: tuple[str, ...]
    failures: tuple[RunFailure, ...] = ()


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _explain(path: Path, exc: ValidationError) -> ConfigError:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(file)"
        lines.append(f"{path}: {where}: {error['msg']}")
    return ConfigError("\n".join(lines))


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
        raise _explain(path, exc) from exc


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file; its name defaults to the file's stem.

    Raises ConfigError naming the file and key on any problem.
    """
    data = _read_toml(path)
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc) from exc


def discover_targets(root: Path) -> dict[str, TargetConfig]:
    """Every ``root/<name>/target.toml``, by name, sorted; the upstream included.

    Raises ConfigError on the first invalid file.
    """
    return {path.parent.name: load_target(path.parent) for path in sorted(root.glob("*/target.toml"))}
