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

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from harness import environment
from harness.launch import LaunchError, LocalLauncher, RunningTarget, wait_until_idle
from harness.load import ClosedLoad, DriverError, LoadResult, drive_in_subprocess
from harness.load.histogram import latency_summary
from harness.model import (
    Cell,
    Errors,
    Measurement,
    Placement,
    RunFailure,
    RunManifest,
    Scenario,
    TargetConfig,
    TargetRun,
)
from harness.monitor import MIB, TreeMonitor, WindowStats
from harness.plan import Block, plan
from harness.results import RunWriter
from harness.verify import VerificationReport, verify

UPSTREAM = "upstream"
GENERATOR_BOUND_CPU_PERCENT = 80.0


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds, e.g. ``2026-11-24T02:00:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(scenario: str) -> str:
    """``<UTC timestamp>-<scenario>``, e.g. ``20261124T020000Z-default``."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{scenario}"


def split_cpus(available: Sequence[int]) -> Placement:
    """Give the target the first CPU and the generator (and upstream) the rest.

    On a one-CPU machine both share it; the report shows the placement.
    """
    cpus = sorted(available)
    if len(cpus) < 2:
        return Placement(target_cpus=tuple(cpus), generator_cpus=tuple(cpus))
    return Placement(target_cpus=(cpus[0],), generator_cpus=tuple(cpus[1:]))


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
class RunSpec:
    """Everything a run needs. ``targets`` are the stacks to measure, by name."""

    scenario: Scenario
    targets: dict[str, TargetConfig]
    upstream: TargetConfig
    targets_root: Path
    results_root: Path
    repo: Path
    seed: int
    ready_timeout_s: float = 30.0


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
        "repeat": cell.repeat,
    }


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
        server_cpu_percent=0.0,
        server_rss_mb_peak=0.0,
        server_pss_mb_peak=None,
        server_processes=0,
        generator_cpu_percent=0.0,
        upstream_cpu_percent=None,
        generator_bound=False,
        histogram=None,
        status="failed",
        failure_reason=reason,
    )


def build_measurement(
    cell: Cell,
    *,
    started_at: str,
    warmup_s: float,
    load: LoadResult,
    server: WindowStats,
    upstream: WindowStats | None,
    histogram_path: str,
) -> Measurement:
    """Combine what the driver and the monitors saw into one stored record."""
    generator_cpu_percent = 100.0 * load.generator_cpu_s / load.duration_s if load.duration_s else 0.0
    return Measurement(
        **_identity(cell),
        started_at=started_at,
        warmup_s=warmup_s,
        duration_s=round(load.duration_s, 4),
        requests=load.requests,
        errors=Errors(**load.errors),
        rps=round(load.ok / load.duration_s, 3) if load.duration_s else 0.0,
        latency_ms=latency_summary(load.histogram),
        connections_opened=load.connections_opened,
        server_cpu_percent=round(server.cpu_percent, 2),
        server_rss_mb_peak=round(server.rss_peak_bytes / MIB, 2),
        server_pss_mb_peak=None if server.pss_peak_bytes is None else round(server.pss_peak_bytes / MIB, 2),
        server_processes=server.processes,
        generator_cpu_percent=round(generator_cpu_percent, 2),
        upstream_cpu_percent=None if upstream is None else round(upstream.cpu_percent, 2),
        generator_bound=generator_cpu_percent > GENERATOR_BOUND_CPU_PERCENT,
        histogram=histogram_path,
    )


class _Run:
    def __init__(self, spec: RunSpec, events: Events) -> None:
        self.spec = spec
        self.events = events
        placement = split_cpus(sorted(os.sched_getaffinity(0)))
        self.placement = placement
        self.blocks: list[Block] = plan(spec.scenario, list(spec.targets), spec.seed)
        self.writer = RunWriter(spec.results_root, new_run_id(spec.scenario.name))
        packages = [p for t in (*spec.targets.values(), spec.upstream) for p in t.packages]
        self.started_at = utc_now()
        self.env = environment.collect(packages=packages, repo=spec.repo, launcher="local")
        self.target_runs = {
            name: TargetRun(config=config, workers=_workers(spec, name))
            for name, config in spec.targets.items()
        }
        self.failures: list[RunFailure] = []
        self.verified: dict[str, VerificationReport] = {}

    def manifest(self, status: str, finished: bool) -> RunManifest:
        return RunManifest.model_validate(
            {
                "run_id": self.writer.directory.name,
                "status": status,
                "started_at": self.started_at,
                "finished_at": utc_now() if finished else None,
                "scenario": self.spec.scenario.model_dump(),
                "targets": {k: v.model_dump() for k, v in self.target_runs.items()},
                "upstream": {
                    "config": self.spec.upstream.model_dump(),
                    "workers": self.spec.upstream.default_workers,
                },
                "placement": self.placement.model_dump(),
                "environment": self.env.model_dump(),
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

    def fail_block(self, block: Block, reason: str) -> None:
        self.fail(block.target, None, reason)
        for cell in block.cells:
            self.store(cell, _failed(cell, self.spec.scenario, reason))

    def execute(self) -> RunOutcome:
        # The orchestrator, the driver and the upstream share the generator CPUs.
        own_cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(self.placement.generator_cpus))
        self.writer.write_manifest(self.manifest("running", finished=False))
        status = "failed"
        launcher = LocalLauncher(target_cpus=self.placement.target_cpus)
        try:
            with launcher:
                upstream = self.start_upstream(launcher)
                if upstream is not None:
                    env = {"GWBENCH_UPSTREAM_URL": upstream.url}
                    for block in self.blocks:
                        self.run_block(launcher, block, env, upstream)
                    status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            manifest = self.manifest(status, finished=True)
            self.writer.write_manifest(manifest)
            os.sched_setaffinity(0, own_cpus)
        return RunOutcome(self.writer.directory, manifest, self.failures, status == "interrupted")

    def start_upstream(self, launcher: LocalLauncher) -> RunningTarget | None:
        upstream = self.spec.upstream
        # The upstream stands in for a remote service: it runs beside the generator,
        # not on the target's CPU.
        try:
            running = launcher.start(
                upstream,
                self.spec.targets_root / upstream.name,
                workers=upstream.default_workers,
                log_path=self.writer.logs / f"{upstream.name}.log",
                ready_timeout_s=self.spec.ready_timeout_s,
                cpus=self.placement.generator_cpus,
            )
        except LaunchError as exc:
            self.fail(UPSTREAM, None, str(exc))
            for block in self.blocks:
                for cell in block.cells:
                    self.store(cell, _failed(cell, self.spec.scenario, f"upstream did not start: {exc}"))
            return None
        return running

    def run_block(
        self, launcher: LocalLauncher, block: Block, env: dict[str, str], upstream: RunningTarget
    ) -> None:
        spec = self.spec
        name = block.target
        self.events.target_starting(name, block.repeat)
        previous = self.verified.get(name)
        if previous is not None and not previous.passed:
            self.fail_block(block, "failed verification earlier in this run")
            return
        try:
            running = launcher.start(
                spec.targets[name],
                spec.targets_root / name,
                workers=self.target_runs[name].workers,
                log_path=self.writer.logs / f"{name}.log",
                env=env,
                ready_timeout_s=spec.ready_timeout_s,
            )
        except LaunchError as exc:
            self.fail_block(block, str(exc))
            return
        try:
            if previous is None:
                report = verify(running.url)
                self.verified[name] = report
                self.target_runs[name] = self.target_runs[name].model_copy(
                    update={
                        "verified": report.passed,
                        "verification_failures": tuple(f"{c.name}: {c.detail}" for c in report.failures),
                    }
                )
                self.events.verified(name, report)
                if not report.passed:
                    first = report.failures[0]
                    self.fail_block(block, f"failed verification: {first.name}: {first.detail}")
                    return
            for index, cell in enumerate(block.cells):
                if index:
                    self.drain(running, block.cells[index - 1])
                self.run_cell(cell, running, upstream)
        finally:
            launcher.stop(running)

    def drain(self, running: RunningTarget, previous: Cell) -> None:
        """Let the target finish the previous cell's orphaned requests before the next cell."""
        if wait_until_idle(running, self.spec.targets[running.name].ready_path) is None:
            self.fail(
                running.name, previous, "target still busy 30 s after the cell; the next cell may be affected"
            )

    def run_cell(self, cell: Cell, running: RunningTarget, upstream: RunningTarget) -> None:
        scenario = self.spec.scenario
        load = ClosedLoad(
            host=running.host,
            port=running.port,
            path=cell.endpoint,
            concurrency=cell.concurrency,
            warmup_s=scenario.warmup_s,
            duration_s=scenario.duration_s,
            timeout_s=scenario.timeout_s,
        )
        server_monitor = TreeMonitor(running.pid)
        upstream_monitor = TreeMonitor(upstream.pid, with_memory=False)
        stats: dict[str, WindowStats] = {}

        def on_window(event: str) -> None:
            if event == "start":
                server_monitor.begin()
                upstream_monitor.begin()
            else:
                stats["server"] = server_monitor.end()
                stats["upstream"] = upstream_monitor.end()

        self.events.cell_starting(cell)
        started_at = utc_now()
        try:
            result, _ = drive_in_subprocess(load, cpus=self.placement.generator_cpus, on_window=on_window)
        except DriverError as exc:
            self.fail(cell.target, cell, f"driver failed: {exc}")
            self.store(cell, _failed(cell, scenario, f"driver failed: {exc}"))
            return
        if "server" not in stats:
            reason = "driver finished without reporting its measured window"
            self.fail(cell.target, cell, reason)
            self.store(cell, _failed(cell, scenario, reason))
            return
        histogram_path = self.writer.write_histogram(cell.cell_id, result.histogram)
        measurement = build_measurement(
            cell,
            started_at=started_at,
            warmup_s=scenario.warmup_s,
            load=result,
            server=stats["server"],
            upstream=stats.get("upstream"),
            histogram_path=histogram_path,
        )
        self.store(cell, measurement)


def execute(spec: RunSpec, events: Events) -> RunOutcome:
    """Run ``spec`` and store it under ``spec.results_root``; see the module docstring."""
    return _Run(spec, events).execute()


def blocks_for(spec: RunSpec) -> list[Block]:
    """The plan ``execute`` would follow, for a dry run or an estimate."""
    return plan(spec.scenario, list(spec.targets), spec.seed)
