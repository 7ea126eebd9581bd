"""Run a scenario end to end: plan, launch, verify, drive + monitor, store.

This module wires the layers; it prints nothing. What happens is reported to
an :class:`Events` object (the CLI's progress display), and the outcome is
returned. A target that fails to start or to verify, or a cell whose driver
fails, is recorded as a failure and the run goes on. On KeyboardInterrupt
(Ctrl-C, or SIGTERM turned into one by the CLI) every process is torn down,
the manifest is marked ``interrupted`` and the outcome says so; what was
measured before is kept.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg

from harness import cgroup, environment
from harness.launch import (
    DockerLauncher,
    LaunchError,
    Limits,
    LocalLauncher,
    RunningTarget,
    wait_until_idle,
)
from harness.launch.base import Launcher, tail
from harness.launch.postgres import Postgres
from harness.load import ClosedLoad, DriverError, LoadResult, drive_in_subprocess
from harness.load.arrivals import OpenLoad
from harness.load.locust import LocustLoad, run_locust
from harness.load.locust_stats import LocustError
from harness.load.profile import Segment
from harness.load.requests import HttpRequest
from harness.load.summary import latency_summary
from harness.load.wrk import WrkError, run_wrk
from harness.model import (
    Cell,
    DriverName,
    Errors,
    Measurement,
    Phase,
    RunFailure,
    RunManifest,
    Scenario,
    Slo,
    TargetConfig,
    TargetRun,
)
from harness.monitor import CgroupMonitor, CgroupWindowStats, TreeMonitor, WindowStats
from harness.plan import Block, plan, split_cpus
from harness.results import RunWriter, utc_now
from harness.timeseries import Row, Slope, memory_slope, rows_from, to_csv
from harness.types import MIB
from harness.verify import VerificationReport, verify

UPSTREAM = "upstream"
_T = TypeVar("_T")
GENERATOR_BOUND_CPU_PERCENT = 80.0  # per generator process (one CPU each)
GENERATOR_BEHIND_RATIO = 0.95  # open model: sent less than this share of the intended rate
UPSTREAM_BOUND_CPU_PERCENT = 80.0  # of one core: the upstream is one process


def new_run_id(scenario: str) -> str:
    """``<UTC timestamp>-<scenario>``, e.g. ``20261124T020000Z-default``."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{scenario}"


class Events(Protocol):
    """Progress callbacks; the CLI implements them to display a run."""

    def target_starting(self, target: str, repeat: int) -> None: ...
    def verified(self, target: str, report: VerificationReport) -> None: ...
    def cell_starting(self, cell: Cell) -> None: ...
    def cell_done(self, cell: Cell, measurement: Measurement) -> None:
        """Called for every planned cell, measured or failed (``measurement.status``)."""

    def failure(self, failure: RunFailure) -> None: ...


@dataclass
class RunOutcome:
    """Where the run was stored and what went wrong."""

    run_dir: Path
    manifest: RunManifest
    failures: list[RunFailure] = field(default_factory=list)
    interrupted: bool = False


@dataclass(frozen=True)
class ExternalTarget:
    """An app the user started: measured at ``host:port``, monitored through ``pid`` if given."""

    host: str
    port: int
    pid: int | None = None


class PreflightError(Exception):
    """The run cannot start (results folder, disk space, descriptor limit); nothing was launched."""


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs. ``targets`` are the stacks to measure, by name.

    With ``external`` set, the single target is an app the user runs: nothing is
    launched or verified, and no upstream is started. Under the ``locust``
    driver, ``locustfile`` replaces the generated one, and ``locust_workers`` > 0
    makes this run a Locust master that waits for that many workers on
    ``locust_bind_host:locust_port`` (started with ``gwbench locust-worker``).
    ``verify`` False skips the contract check of each stack (the manifest then
    records them as not verified).
    """

    scenario: Scenario
    targets: dict[str, TargetConfig]
    upstream: TargetConfig
    targets_root: Path
    upstream_dir: Path
    results_root: Path
    repo: Path
    seed: int
    ready_timeout_s: float = 30.0
    external: ExternalTarget | None = None
    allow_remote: bool = False
    launcher: str = "local"
    locustfile: Path | None = None
    locust_workers: int = 0
    locust_bind_host: str = "127.0.0.1"
    locust_port: int = 5557
    verify: bool = True


MIN_FREE_BYTES = 50 * 2**20
DESCRIPTORS_PER_CONNECTION = 2  # a target holds the client's socket and one to the upstream
DESCRIPTOR_MARGIN = 256


def descriptors_needed(max_concurrency: int) -> int:
    """File descriptors a target needs at ``max_concurrency`` connections (our estimate, with margin)."""
    return DESCRIPTORS_PER_CONNECTION * max_concurrency + DESCRIPTOR_MARGIN


def preflight(spec: RunSpec) -> None:
    """Check, before anything is launched, that the run can be stored and driven.

    Raises the soft RLIMIT_NOFILE of this process (inherited by everything it
    starts) when the scenario needs more descriptors. Raises PreflightError when
    the results folder is not writable, has less than 50 MiB free, or the hard
    descriptor limit is too low.
    """
    root = spec.results_root
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".gwbench-probe-") as probe:
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise PreflightError(f"results folder {root} is not writable: {exc.strerror or exc}") from exc
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        raise PreflightError(
            f"results folder {root} has {free / 2**20:.1f} MiB free; a run needs at least "
            f"{MIN_FREE_BYTES / 2**20:.0f} MiB"
        )
    connections = spec.scenario.max_level_connections()
    needed = descriptors_needed(connections)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise PreflightError(
            (
                f"concurrency {connections}"
                if spec.scenario.model == "closed"
                else f"max_connections {connections}"
            )
            + f" needs ~{needed} file descriptors; "
            f"the limit is {soft} (hard limit {hard}); raise it (ulimit -n) or lower the concurrency"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _workers(spec: RunSpec, name: str) -> int:
    return spec.scenario.workers.get(name, spec.targets[name].default_workers)


def _identity(cell: Cell) -> dict[str, Any]:
    """The fields that name a cell in its Measurement."""
    return {
        "cell_id": cell.cell_id,
        "target": cell.target,
        "endpoint": cell.endpoint,
        "model": cell.model,
        "concurrency": cell.concurrency,
        "rate": cell.rate,
        "repeat": cell.repeat,
    }


def _phase_identity(cell: Cell, phase: Phase) -> dict[str, Any]:
    """A staged cell's fields for one of its phases: its own id, the phase's mean level."""
    prefix, repeat = cell.cell_id.rsplit("__", 1)
    closed = cell.model == "closed"
    return {
        **_identity(cell),
        "cell_id": f"{prefix}-p{phase.index}__{repeat}",
        "concurrency": round(phase.mean_level) if closed else None,
        "rate": None if closed else round(phase.mean_level, 3),
        "stage": phase.index,
        "stage_kind": phase.kind,
        "stage_start_s": phase.start_s,
        "stage_levels": (phase.start_level, phase.end_level),
    }


def profile_for(phases: Sequence[Phase], *, closed: bool) -> tuple[Segment, ...]:
    """The driver's load profile for a staged cell: one linear segment per phase.

    Closed model: levels rounded to whole connections.
    """
    return tuple(
        Segment(
            duration_s=p.duration_s,
            start=float(round(p.start_level)) if closed else p.start_level,
            end=float(round(p.end_level)) if closed else p.end_level,
            stage=p.index,
        )
        for p in phases
    )


def slope_of(rows: Sequence[Row], begin_s: float = 0.0, end_s: float = float("inf")) -> Slope | None:
    """The memory trend of the rows in [begin_s, end_s] (PSS where every row has it, else RSS)."""
    picked = [r for r in rows if begin_s <= r.t_s <= end_s]
    pss = all(r.server_pss_mb is not None for r in picked)
    values = [float((r.server_pss_mb if pss else r.server_rss_mb) or 0.0) for r in picked]
    return memory_slope([r.t_s for r in picked], values)


def _failed(cell: Cell, scenario: Scenario, reason: str) -> Measurement:
    return Measurement(
        **_identity(cell),
        started_at=utc_now(),
        warmup_s=scenario.warmup_s,
        duration_s=0.0,
        requests=0,
        errors=Errors(),
        rps=0.0,
        latency_ms=None,
        connections_opened=0,
        server_cpu_percent=None,
        server_rss_mb_peak=None,
        server_pss_mb_peak=None,
        server_processes=None,
        generator_cpu_percent=0.0,
        upstream_cpu_percent=None,
        generator_bound=False,
        histogram=None,
        status="failed",
        failure_reason=reason,
    )


def scheduled_rate(load: LoadResult) -> float | None:
    """Requests/s the open model scheduled in the window (None in the closed model).

    This, not the nominal rate, is what the achieved rate is judged against:
    Poisson arrivals put about ``rate x duration`` requests in a window, give or
    take its square root (17% at 30 requests), which is not the generator's fault.
    """
    if load.intended_rate is None or not load.duration_s:
        return None
    return load.scheduled / load.duration_s


def generator_bound_reason(load: LoadResult, max_connections: int | None) -> str | None:
    """Why the load generator, not the target, may have limited a cell; None when it did not.

    Two rules (issue 4): the driver used more than 80% of its CPUs (one per
    driver process), or, in the open model, it sent less than 95% of the
    intended rate while it could still have opened connections (so the shortfall
    is the generator's, not the target's holding every allowed connection). The
    intended rate here is :func:`scheduled_rate`.
    """
    cpu_percent = load.generator_cpu_percent
    limit = GENERATOR_BOUND_CPU_PERCENT * max(load.processes, 1)
    reasons = []
    if cpu_percent > limit:
        reasons.append(f"the generator used {cpu_percent:.0f}% CPU (limit {limit:.0f}%)")
    intended = scheduled_rate(load)
    spare = max_connections is None or load.connections_peak < max_connections
    if intended and spare and load.achieved_rate < GENERATOR_BEHIND_RATIO * intended:
        reasons.append(
            f"it sent {load.achieved_rate:.1f} req/s, {100 * (1 - load.achieved_rate / intended):.0f}% "
            f"behind the {intended:.1f} req/s scheduled, with connections to spare"
        )
    return "; ".join(reasons) or None


def build_measurement(
    cell: Cell,
    *,
    started_at: str,
    warmup_s: float,
    load: LoadResult,
    server: WindowStats | None,
    upstream: WindowStats | None,
    histogram_path: str,
    histogram_uncorrected_path: str | None = None,
    driver: DriverName = "native",
    max_connections: int | None = None,
    slo: Slo | None = None,
    db_queries: int | None = None,
    group: CgroupWindowStats | None = None,
    phase: Phase | None = None,
    timeseries_path: str | None = None,
    slope: Slope | None = None,
) -> Measurement:
    """Combine what the driver and the monitors saw into one stored record.

    ``max_connections`` is the open model's connection cap (for the
    generator-bound rule); ``slo``, when given, is judged on this cell
    (saturation cells). ``phase``: the record is one phase of a staged cell.
    ``timeseries_path`` and ``slope``: the server's samples and memory trend.
    """
    upstream_cpu = None if upstream is None else round(upstream.cpu_percent, 2)
    latency = latency_summary(load.histogram)
    reason = generator_bound_reason(load, max_connections)
    breach = None
    if slo is not None:
        breach = slo.breach(
            p99_ms=None if latency is None else latency.p99,
            failed=sum(load.errors.values()) + load.dropped,
            scheduled=load.scheduled if load.model == "open" else load.requests,
            achieved_rate=load.achieved_rate,
            intended_rate=scheduled_rate(load) or 0.0,
        )
    return Measurement(
        **(_identity(cell) if phase is None else _phase_identity(cell, phase)),
        started_at=started_at,
        warmup_s=warmup_s,
        duration_s=round(load.duration_s, 4),
        requests=load.requests,
        errors=Errors(**load.errors, by_status={str(k): v for k, v in sorted(load.error_statuses.items())}),
        rps=round(load.throughput, 3),
        latency_ms=latency,
        connections_opened=load.connections_opened,
        server_cpu_percent=None if server is None else round(server.cpu_percent, 2),
        server_rss_mb_peak=None if server is None else round(server.rss_peak_bytes / MIB, 2),
        server_pss_mb_peak=None
        if server is None or server.pss_peak_bytes is None
        else round(server.pss_peak_bytes / MIB, 2),
        server_processes=None if server is None else server.processes,
        generator_cpu_percent=round(load.generator_cpu_percent, 2),
        upstream_cpu_percent=upstream_cpu,
        generator_bound=reason is not None,
        generator_bound_reason=reason,
        upstream_bound=upstream_cpu is not None and upstream_cpu > UPSTREAM_BOUND_CPU_PERCENT,
        histogram=histogram_path,
        driver=driver,
        intended_rate=load.intended_rate,
        achieved_rate=round(load.achieved_rate, 3),
        scheduled=load.scheduled if load.intended_rate is not None else None,
        dropped=load.dropped,
        connections_peak=load.connections_peak,
        latency_ms_uncorrected=None
        if load.histogram_uncorrected is None
        else latency_summary(load.histogram_uncorrected),
        histogram_uncorrected=histogram_uncorrected_path,
        slo_held=None if slo is None else breach is None,
        slo_breach=breach,
        db_queries=db_queries,
        server_cgroup_cpu_percent=None
        if group is None or group.cpu_percent is None
        else round(group.cpu_percent, 2),
        server_cgroup_memory_mb_peak=None
        if group is None or group.memory_peak_bytes is None
        else round(group.memory_peak_bytes / MIB, 2),
        server_oom_kills=None if group is None else group.oom_kills,
        server_throttled_s=None
        if group is None or group.throttled_s is None
        else round(group.throttled_s, 3),
        timeseries=timeseries_path,
        server_memory_slope_mb_per_min=None if slope is None else slope.mb_per_min,
        server_memory_slope_ci=None if slope is None else (slope.low, slope.high),
    )


class _Run:
    def __init__(self, spec: RunSpec, events: Events) -> None:
        self.spec = spec
        self.events = events
        self.placement = split_cpus(sorted(os.sched_getaffinity(0)))
        self.blocks: list[Block] = plan(spec.scenario, list(spec.targets), spec.seed)
        run_id = new_run_id(spec.scenario.name)
        # The docker launcher connects now: with no engine, nothing is started or written.
        self.launcher: Launcher = (
            DockerLauncher(target_cpus=self.placement.target_cpus, run_id=run_id)
            if spec.launcher == "docker" and spec.external is None
            else LocalLauncher(target_cpus=self.placement.target_cpus)
        )
        try:
            self.writer = RunWriter(spec.results_root, run_id)
        except OSError as exc:
            self.launcher.close()
            raise PreflightError(f"cannot create the run folder in {spec.results_root}: {exc}") from exc
        configs = [*spec.targets.values(), *([] if spec.external else [spec.upstream])]
        self.started_at = utc_now()
        hierarchy = cgroup.detect()
        self.env = environment.collect(
            packages=[p for t in configs for p in t.packages],
            repo=spec.repo,
            launcher="external" if spec.external else spec.launcher,
        ).model_copy(
            update={
                "cgroup_version": None if hierarchy is None else hierarchy.version,
                "docker_engine": self.launcher.engine_version(),
            }
        )
        self.target_runs = {
            name: TargetRun(
                config=config,
                workers=_workers(spec, name),
                cpus=spec.scenario.cpus.get(name, config.cpus),
                memory_mb=spec.scenario.memory_mb.get(name, config.memory_mb),
            )
            for name, config in spec.targets.items()
        }
        self.unbuilt: dict[str, str] = {}
        self.failures: list[RunFailure] = []
        self.verified: dict[str, VerificationReport] = {}
        self.upstream: RunningTarget | None = None
        # A database only for scenarios that query one (contract v2's /db/ endpoints).
        self.postgres: Postgres | None = None
        if spec.external is None and any(r.path.startswith("/db/") for r in spec.scenario.requests()):
            self.postgres = Postgres(
                log_path=self.writer.logs / "postgres.log", cpus=self.placement.generator_cpus
            )

    def manifest(self, status: str, finished: bool) -> RunManifest:
        upstream = self.spec.upstream
        return RunManifest.model_validate(
            {
                "run_id": self.writer.directory.name,
                "status": status,
                "started_at": self.started_at,
                "finished_at": utc_now() if finished else None,
                "scenario": self.spec.scenario.model_dump(),
                "targets": {k: v.model_dump() for k, v in self.target_runs.items()},
                "upstream": None
                if self.spec.external
                else {"config": upstream.model_dump(), "workers": upstream.default_workers},
                "database": None
                if self.postgres is None
                else {
                    "server": "postgresql",
                    "version": self.postgres.version,
                    "settings": self.postgres.settings,
                },
                "placement": self.placement.model_dump(),
                "environment": self.env.model_copy(
                    update={"limits_note": self.launcher.cgroup_unavailable}
                ).model_dump(),
                "cell_order": [c.cell_id for b in self.blocks for c in b.cells],
                "failures": [f.model_dump() for f in self.failures],
            }
        )

    def fail(self, target: str, cell: Cell | None, reason: str) -> None:
        failure = RunFailure(target=target, cell_id=None if cell is None else cell.cell_id, reason=reason)
        self.failures.append(failure)
        self.events.failure(failure)

    def store(self, cell: Cell, measurement: Measurement) -> None:
        self.writer.add_measurement(measurement)
        self.events.cell_done(cell, measurement)

    def fail_cell(self, cell: Cell, reason: str) -> None:
        self.fail(cell.target, cell, reason)
        self.store(cell, _failed(cell, self.spec.scenario, reason))

    def fail_block(self, block: Block, reason: str, *, record: bool = True) -> None:
        if record:
            self.fail(block.target, None, reason)
        for cell in block.cells:
            self.store(cell, _failed(cell, self.spec.scenario, reason))

    def execute(self) -> RunOutcome:
        # The orchestrator, the driver and the upstream share the generator CPUs.
        own_cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(self.placement.generator_cpus))
        self.writer.write_manifest(self.manifest("running", finished=False))
        status = "failed"
        try:
            with self.launcher:
                if self.spec.external is not None:
                    for block in self.blocks:
                        self.run_external_block(block, self.spec.external)
                    status = "complete"
                elif self.build_images() and self.start_database() and self.start_upstream():
                    for block in self.blocks:
                        self.run_block(block)
                    status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            if self.postgres is not None:
                self.postgres.stop()
            manifest = self.manifest(status, finished=True)
            self.writer.write_manifest(manifest)
            os.sched_setaffinity(0, own_cpus)
        return RunOutcome(self.writer.directory, manifest, self.failures, status == "interrupted")

    def build_images(self) -> bool:
        """Docker only: build (or find unchanged) every image before the first cell.

        A stack whose image fails to build has its cells failed with the build
        log's end; False (every cell failed) when the upstream's fails.
        """
        launcher = self.launcher
        if not launcher.builds_images:
            return True
        spec = self.spec
        for name, config in [*spec.targets.items(), (UPSTREAM, spec.upstream)]:
            directory = spec.upstream_dir if name == UPSTREAM else spec.targets_root / name
            self.events.target_starting(f"{name} (image)", 0)
            try:
                image = launcher.build(config, directory, log_path=self.writer.logs / f"{name}.build.log")
            except LaunchError as exc:
                if name == UPSTREAM:
                    self.fail(UPSTREAM, None, str(exc))
                    for block in self.blocks:
                        self.fail_block(block, f"the upstream's image did not build: {exc}", record=False)
                    return False
                self.unbuilt[name] = str(exc)
                continue
            if image is not None and name in self.target_runs:
                self.target_runs[name] = self.target_runs[name].model_copy(
                    update={"image": image.tag, "image_build_s": round(image.build_s, 2)}
                )
        return True

    def start_database(self) -> bool:
        """Start the run's PostgreSQL if the scenario queries one; False (every cell failed) if it cannot."""
        if self.postgres is None:
            return True
        try:
            self.postgres.start()
        except LaunchError as exc:
            self.fail("postgres", None, str(exc))
            for block in self.blocks:
                for cell in block.cells:
                    self.store(cell, _failed(cell, self.spec.scenario, f"the database did not start: {exc}"))
            return False
        return True

    def check_database(self, cell: Cell) -> None:
        """After a cell: if PostgreSQL died, say so and start it again on the same port."""
        postgres = self.postgres
        if postgres is None or postgres.is_alive():
            return
        self.fail(
            "postgres",
            cell,
            f"PostgreSQL died during this cell; last lines of {postgres.log_path}:\n"
            f"{tail(postgres.log_path, 5)}",
        )
        postgres.stop()
        try:
            postgres.start()
        except LaunchError as exc:
            self.fail("postgres", cell, f"restart failed: {exc}")

    def start_upstream(self, port: int | None = None) -> bool:
        """Start the upstream (again, on ``port``, after it died); False if it failed to start."""
        upstream = self.spec.upstream
        # The upstream stands in for a remote service: it runs beside the generator,
        # not on the target's CPU.
        try:
            self.upstream = self.launcher.start(
                upstream,
                self.spec.upstream_dir,
                workers=upstream.default_workers,
                log_path=self.writer.logs / f"{upstream.name}.log",
                ready_timeout_s=self.spec.ready_timeout_s,
                cpus=self.placement.generator_cpus,
                port=port,
            )
        except LaunchError as exc:
            self.fail(UPSTREAM, None, str(exc))
            if port is None:
                for block in self.blocks:
                    for cell in block.cells:
                        self.store(cell, _failed(cell, self.spec.scenario, f"upstream did not start: {exc}"))
            return False
        return True

    def launch(self, name: str) -> RunningTarget:
        """Start a stack within its limits; raises LaunchError."""
        assert self.upstream is not None
        run = self.target_runs[name]
        running = self.launcher.start(
            self.spec.targets[name],
            self.spec.targets_root / name,
            workers=self.target_runs[name].workers,
            log_path=self.writer.logs / f"{name}.log",
            env={
                "GWBENCH_UPSTREAM_URL": self.upstream.url,
                **({} if self.postgres is None else {"GWBENCH_DATABASE_URL": self.postgres.url}),
            },
            ready_timeout_s=self.spec.ready_timeout_s,
            limits=Limits(cpus=run.cpus, memory_mb=run.memory_mb),
        )
        if run.limits_applied is None:
            self.target_runs[name] = run.model_copy(update={"limits_applied": self.limits_applied(running)})
        return running

    def limits_applied(self, running: RunningTarget) -> str:
        """How the limits were enforced on a started target, in words for the report."""
        group = self.launcher.cgroup(running)
        how = self.launcher.isolation
        if group is None:
            reason = self.launcher.cgroup_unavailable or "no control group readable"
            return f"CPU pinning only ({reason})"
        applied = group.limits()
        cpus = "unlimited" if applied.cpus is None else f"{applied.cpus:g} CPU"
        memory = "unlimited" if applied.memory_bytes is None else f"{applied.memory_bytes / MIB:.0f} MiB"
        cpuset = cgroup.format_cpu_list(applied.cpuset) if applied.cpuset else "all"
        return f"{how}: CPU quota {cpus}, cpuset {cpuset}, memory {memory}"

    def verify_once(self, name: str, running: RunningTarget) -> VerificationReport | None:
        """Check the contract on the first launch of a stack; None for a user's app without it."""
        if not self.spec.verify or not self.spec.targets[name].verify_contract:
            return None
        report = self.verified.get(name)
        if report is None:
            config = self.spec.targets[name]
            report = verify(
                running.url, postgres=self.postgres, websocket=config.websocket, interface=config.interface
            )
            self.verified[name] = report
            self.target_runs[name] = self.target_runs[name].model_copy(
                update={
                    "verified": report.passed,
                    "verification_failures": tuple(f"{c.name}: {c.detail}" for c in report.failures),
                }
            )
            self.events.verified(name, report)
        return report

    def run_block(self, block: Block) -> None:
        name = block.target
        self.events.target_starting(name, block.repeat)
        if name in self.unbuilt:
            self.fail_block(block, f"its image did not build: {self.unbuilt[name]}", record=block.repeat == 0)
            return
        previous = self.verified.get(name)
        if previous is not None and not previous.passed:
            self.fail_block(block, "failed verification earlier in this run")
            return
        try:
            running = self.launch(name)
        except LaunchError as exc:
            self.fail_block(block, str(exc))
            return
        try:
            report = self.verify_once(name, running)
            if report is not None and not report.passed:
                first = report.failures[0]
                self.fail_block(block, f"failed verification: {first.name}: {first.detail}")
                return
            for index, cell in enumerate(block.cells):
                if not self.launcher.is_alive(running):
                    # It crashed in an earlier cell: the next cells get a fresh one.
                    self.launcher.stop(running)
                    try:
                        running = self.launch(name)
                    except LaunchError as exc:
                        self.fail_cell(cell, f"restart after a crash failed: {exc}")
                        continue
                elif index:
                    self.drain(running, block.cells[index - 1])
                self.run_cell(cell, running)
        finally:
            self.launcher.stop(running)

    def run_external_block(self, block: Block, external: ExternalTarget) -> None:
        self.events.target_starting(block.target, block.repeat)
        running = RunningTarget(
            name=block.target,
            host=external.host,
            port=external.port,
            pid=external.pid or 0,
            log_path=self.writer.logs / "external.log",
            workers=0,
        )
        for cell in block.cells:
            self.run_cell(cell, running)

    def drain(self, running: RunningTarget, previous: Cell) -> None:
        """Let the target finish the previous cell's orphaned requests before the next cell."""
        if wait_until_idle(running, self.spec.targets[running.name].ready_path) is None:
            self.fail(
                running.name, previous, "target still busy 30 s after the cell; the next cell may be affected"
            )

    def check_upstream(self, cell: Cell) -> None:
        """After a cell: if the upstream died, say so and start it again on the same port."""
        upstream = self.upstream
        if upstream is None or self.launcher.is_alive(upstream):
            return
        self.launcher.stop(upstream)
        self.fail(
            UPSTREAM,
            cell,
            f"the upstream service died during this cell (the stack's /io/upstream answers were "
            f"errors); last lines of {upstream.log_path}:\n{tail(upstream.log_path, 5)}",
        )
        self.start_upstream(port=upstream.port)

    def run_cell(self, cell: Cell, running: RunningTarget) -> None:
        """Measure one planned cell and store it; a saturation cell runs its whole search."""
        if cell.model == "saturation":
            self.search(cell, running)
            return
        for measurement in self.measure(cell, running) or []:
            self.store(cell, measurement)

    def search(self, cell: Cell, running: RunningTarget) -> None:
        """Saturation search: grow the rate until the SLO breaks, then bisect; store every step.

        Each step is an open-model cell at one rate (``model = "saturation"``).
        The search ends early if a step fails (stored as failed) or the target
        dies; the highest rate that held is the analysis's sustainable throughput.
        """
        saturation = self.spec.scenario.saturation
        held, broke = 0.0, None
        rate = saturation.start_rate
        previous: Cell | None = None

        def step(rate: float) -> bool | None:
            nonlocal previous
            step_cell = cell.model_copy(update={"rate": rate})
            if previous is not None:
                if not self.launcher.is_alive(running):
                    return None
                self.drain(running, previous)
            previous = step_cell
            self.events.cell_starting(step_cell)
            measured = self.measure(step_cell, running)
            if not measured:
                return None
            self.store(step_cell, measured[0])
            return bool(measured[0].slo_held)

        while rate <= saturation.max_rate:
            result = step(rate)
            if result is None:
                return
            if not result:
                broke = rate
                break
            held = rate
            rate = _round_rate(rate * saturation.growth)
        if broke is None:
            return  # max_rate held: the sustainable throughput is at least that
        for _ in range(saturation.bisect_steps):
            middle = _round_rate((held + broke) / 2)
            if middle in (held, broke):
                break
            result = step(middle)
            if result is None:
                return
            if result:
                held = middle
            else:
                broke = middle

    def load_for(self, cell: Cell, running: RunningTarget) -> ClosedLoad | OpenLoad:
        """The driver's load description for one cell."""
        scenario = self.spec.scenario
        requests = self.requests_for(cell)
        # The same schedule and mix draws for every stack at this cell: a fair comparison.
        seed = zlib.crc32(f"{self.spec.seed}/{cell.endpoint}/{cell.level}/{cell.repeat}".encode())
        profile = profile_for(scenario.phases(), closed=cell.model == "closed") if cell.staged else ()
        peak = max((max(seg.start, seg.end) for seg in profile), default=0.0)
        if cell.model == "closed":
            concurrency = max(1, round(peak)) if profile else cell.concurrency
            assert concurrency is not None
            return ClosedLoad(
                host=running.host,
                port=running.port,
                path=requests[0].path if len(requests) == 1 else cell.endpoint,
                requests=requests,
                seed=seed,
                concurrency=concurrency,
                profile=profile,
                warmup_s=scenario.warmup_s,
                duration_s=scenario.duration_s,
                timeout_s=scenario.timeout_s,
                allow_remote=self.spec.allow_remote,
            )
        rate = peak if profile else cell.rate
        assert rate is not None
        return OpenLoad(
            host=running.host,
            port=running.port,
            path=requests[0].path if len(requests) == 1 else cell.endpoint,
            requests=requests,
            rate=rate,
            profile=profile,
            warmup_s=scenario.warmup_s,
            duration_s=scenario.duration_s,
            arrival=scenario.arrival,
            max_connections=scenario.max_connections,
            timeout_s=scenario.timeout_s,
            allow_remote=self.spec.allow_remote,
            seed=seed,
        )

    def requests_for(self, cell: Cell) -> tuple[HttpRequest, ...]:
        """The driver's requests for a cell's endpoint label (one, or the whole mix)."""
        return tuple(
            HttpRequest(
                path=spec.path,
                method=spec.method,
                body=(spec.body or "").encode(),
                content_type=spec.content_type,
                weight=spec.weight,
            )
            for spec in self.spec.scenario.requests_for(cell.endpoint)
        )

    def measure(self, cell: Cell, running: RunningTarget) -> list[Measurement] | None:
        """Drive and monitor one cell; None when it failed (then it is already stored as failed).

        One measurement, or one per phase for a staged cell. The server's
        samples over the window are written to ``timeseries/<cell_id>.csv``.
        """
        scenario = self.spec.scenario
        load = self.load_for(cell, running)
        phases = scenario.phases() if cell.staged else []
        monitors = {}
        if running.pid:
            monitors["server"] = TreeMonitor(running.pid)
        if self.upstream is not None:
            monitors["upstream"] = TreeMonitor(self.upstream.pid, with_memory=False)
        stats: dict[str, list[WindowStats]] = {key: [] for key in monitors}
        windows: list[str] = []
        db_queries: list[int] = []
        postgres = self.postgres
        group = None if self.spec.external else self.launcher.cgroup(running)
        group_monitor = None if group is None else CgroupMonitor(group)
        group_stats: list[CgroupWindowStats] = []

        def on_window(event: str) -> None:
            windows.append(event)
            for key, monitor in monitors.items():
                if event == "start":
                    monitor.begin()
                else:
                    stats[key].append(monitor.mark() if event == "mark" else monitor.end())
            if group_monitor is not None:
                if event == "start":
                    group_monitor.begin()
                else:
                    group_stats.append(group_monitor.mark() if event == "mark" else group_monitor.end())
            if postgres is not None:
                with contextlib.suppress(psycopg.Error):  # a dead database is reported after the cell
                    if event != "start":
                        db_queries.append(postgres.calls())
                    if event != "end":
                        postgres.reset_statistics()

        if cell.model != "saturation":
            self.events.cell_starting(cell)
        started_at = utc_now()
        try:
            if scenario.driver == "wrk":
                assert isinstance(load, ClosedLoad)
                result = run_wrk(load, cpus=self.placement.generator_cpus, on_window=on_window)
            elif scenario.driver == "locust":
                assert isinstance(load, ClosedLoad)
                result = self.run_locust(load, cell, on_window)
            else:
                result, _ = drive_in_subprocess(
                    load,
                    cpus=self.placement.generator_cpus,
                    on_window=on_window,
                    processes=scenario.generator_processes,
                )
        except (DriverError, WrkError, LocustError) as exc:
            self.fail_cell(cell, f"{scenario.driver} driver failed: {exc}")
            return None
        finally:
            self.check_upstream(cell)
            self.check_database(cell)
        marks = max(len(phases) - 1, 0)
        if windows != ["start", *["mark"] * marks, "end"]:
            self.fail_cell(cell, "driver finished without reporting its measured window")
            return None
        server_windows = stats.get("server", [])
        crash = self.crash(running, tuple(pid for w in server_windows for pid in w.vanished))
        if crash:
            self.fail_cell(cell, crash)
            return None
        if phases and len(result.stages) != len(phases):
            self.fail_cell(cell, f"driver reported {len(result.stages)} stages, expected {len(phases)}")
            return None
        timeseries_path, rows = None, []
        if "server" in monitors:
            rows = rows_from(
                monitors["server"].samples, () if group_monitor is None else group_monitor.samples
            )
            timeseries_path = self.writer.write_timeseries(cell.cell_id, to_csv(rows))
        parts = [(None, result)] if not phases else list(zip(phases, result.stages, strict=True))
        measurements = []
        for index, (phase, part) in enumerate(parts):
            cell_id = cell.cell_id if phase is None else _phase_identity(cell, phase)["cell_id"]
            histogram_path = self.writer.write_histogram(cell_id, part.histogram)
            uncorrected_path = None
            if part.histogram_uncorrected is not None:
                uncorrected_path = self.writer.write_histogram(
                    f"{cell_id}.uncorrected", part.histogram_uncorrected
                )
            span = (0.0, float("inf")) if phase is None else (phase.start_s, phase.start_s + phase.duration_s)
            measurements.append(
                build_measurement(
                    cell,
                    started_at=started_at,
                    warmup_s=scenario.warmup_s,
                    load=part,
                    server=server_windows[index] if index < len(server_windows) else None,
                    upstream=_nth(stats.get("upstream", []), index),
                    histogram_path=histogram_path,
                    histogram_uncorrected_path=uncorrected_path,
                    driver=scenario.driver,
                    max_connections=scenario.max_connections if isinstance(load, OpenLoad) else None,
                    slo=scenario.slo if cell.model == "saturation" else None,
                    db_queries=_nth(db_queries, index),
                    group=_nth(group_stats, index),
                    phase=phase,
                    timeseries_path=timeseries_path,
                    slope=slope_of(rows, *span),
                )
            )
        return measurements

    def run_locust(self, load: ClosedLoad, cell: Cell, on_window: Callable[[str], None]) -> LoadResult:
        """One closed-model cell under Locust: the generated or the user's locustfile, alone or as master."""
        spec = self.spec
        locust = LocustLoad.from_closed(load)
        if spec.locustfile is not None:
            locust = replace(locust, locustfile=spec.locustfile, endpoints=())
        return run_locust(
            locust,
            cpus=self.placement.generator_cpus,
            on_window=on_window,
            processes=spec.scenario.generator_processes,
            master=spec.locust_workers > 0,
            expect_workers=spec.locust_workers,
            master_bind_host=spec.locust_bind_host,
            master_bind_port=spec.locust_port,
            output_dir=self.writer.directory / "locust" / cell.cell_id,
        )

    def crash(self, running: RunningTarget, vanished: tuple[int, ...]) -> str | None:
        """Why the cell cannot count because the target lost processes (``vanished`` pids), or None."""
        if self.spec.external is not None:
            return None
        alive = self.launcher.is_alive(running)
        if alive and not vanished:
            return None
        what = "the target's main process died" if not alive else f"target process(es) {list(vanished)} died"
        if self.launcher.oom_killed(running):
            limit = self.target_runs[running.name].memory_mb if running.name in self.target_runs else None
            what = f"the target was OOM-killed (over its memory limit of {limit} MiB): {what}"
        return f"{what} during the cell; last lines of {running.log_path}:\n{tail(running.log_path, 10)}"


def _nth(items: Sequence[_T], index: int) -> _T | None:
    """``items[index]``, or None when there are not that many (a monitor that was not running)."""
    return items[index] if index < len(items) else None


def _round_rate(rate: float) -> float:
    """A rate rounded to 3 significant digits, so cell ids and tables stay readable."""
    return float(f"{rate:.3g}")


def execute(spec: RunSpec, events: Events) -> RunOutcome:
    """Run ``spec`` and store it under ``spec.results_root``; see the module docstring.

    Raises PreflightError before launching anything when the run cannot be stored
    or driven (see :func:`preflight`).
    """
    preflight(spec)
    return _Run(spec, events).execute()


def blocks_for(spec: RunSpec) -> list[Block]:
    """The plan ``execute`` would follow, for a dry run or an estimate."""
    return plan(spec.scenario, list(spec.targets), spec.seed)
