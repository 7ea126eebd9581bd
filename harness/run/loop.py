"""Run a scenario end to end: plan, launch, verify, drive + monitor, store.

This module wires the layers; it prints nothing. What happens is reported to
an :class:`~harness.run.spec.Events` object (the CLI's progress display), and
the outcome is returned. A target that fails to start or to verify, or a cell
whose driver fails, is recorded as a failure and the run goes on. On
KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by the CLI) every process
is torn down, the manifest is marked ``interrupted`` and the outcome says so;
what was measured before is kept.

The collaborators: :class:`~harness.run.record.Recorder` (measurements and
failures), :class:`~harness.run.services.RunServices` (upstream, database),
:class:`~harness.run.stacks.Stacks` (images, launch, verification, crashes),
:class:`~harness.run.drive.CellMeasurer` (one cell) and
:func:`~harness.run.search.search` (the saturation search's rates).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import statistics
from pathlib import Path

from harness import ceilings, cgroup, environment
from harness.launch import DockerLauncher, LaunchError, LocalLauncher, RunningTarget
from harness.launch.base import Launcher
from harness.model import Cell, Measurement, RunManifest
from harness.plan import Block, plan, split_cpus
from harness.results import RunWriter, StorageError, utc_now
from harness.run.drive import CellMeasurer
from harness.run.record import Recorder
from harness.run.search import (
    FIRST_FRACTION,
    FIRST_WARMUP_S,
    TUNED_FIRST_FRACTION,
    StepOutcome,
    capacity_search,
    doubtful_breach,
    search,
    step_window_s,
)
from harness.run.services import RunServices
from harness.run.smoke import longer_window
from harness.run.spec import (
    Events,
    ExternalTarget,
    PreflightError,
    RunOutcome,
    RunSpec,
    new_run_id,
    preflight,
)
from harness.run.stacks import DRAIN_BEFORE_RESTART_S, Stacks
from harness.run.tuning import Tuning, derive, is_tuned, with_tuned

BUSY_NOTE = (
    f"still busy {DRAIN_BEFORE_RESTART_S:.0f} s after {{cell}} (requests queued in that cell, their clients "
    "gone, still being served): started again, so the next cell starts on an idle stack"
)

PROBE_SOURCE = "closed-model probe"
"""How the search prior of a bound that a probe measured begins (``Measurement.search_prior``)."""


class _Run:
    """One run of ``spec``: its launcher, run folder and collaborators, and the block loop."""

    def __init__(self, spec: RunSpec, events: Events) -> None:
        spec = expanded(spec)
        self.spec = spec
        self.events = events
        self.placement = split_cpus(sorted(os.sched_getaffinity(0)))
        self.blocks: list[Block] = plan(spec.scenario, list(spec.targets), spec.seed)
        run_id = new_run_id(spec.scenario.name)
        # The docker launcher connects now: with no engine, nothing is started or written.
        self.launcher: Launcher = (
            DockerLauncher(target_cpus=self.placement.target_cpus, run_id=run_id)
            if spec.launcher == "docker" and not spec.external
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
        self.recorder = Recorder(self.writer, events, spec.scenario, self.blocks)
        self.stacks = Stacks(spec, self.launcher, events, self.recorder)
        self.tunings: dict[str, Tuning] = {}
        self.probe_peaks: dict[tuple[str, str], list[float]] = {}  # by (target, endpoint), requests/s
        cpus = self.placement.generator_cpus
        self.services = (
            None
            if spec.external
            else RunServices(spec, self.launcher, self.recorder, logs=self.writer.logs, cpus=cpus)
        )
        self.measurer = CellMeasurer(
            spec, self.launcher, events, self.recorder, self.stacks, self.services, cpus=cpus
        )

    def manifest(self, status: str, finished: bool) -> RunManifest:
        """The run's manifest as of now (``finished``: with the finishing time)."""
        upstream = self.spec.upstream
        postgres = None if self.services is None else self.services.postgres
        return RunManifest.model_validate(
            {
                "run_id": self.writer.directory.name,
                "status": status,
                "started_at": self.started_at,
                "finished_at": utc_now() if finished else None,
                "scenario": self.spec.scenario.model_dump(),
                "targets": {k: v.model_dump() for k, v in self.stacks.target_runs.items()},
                "upstream": None
                if self.spec.external
                else {"config": upstream.model_dump(), "workers": upstream.default_workers},
                "database": None
                if postgres is None
                else {
                    "server": "postgresql",
                    "version": postgres.version,
                    "settings": postgres.settings,
                },
                "placement": self.placement.model_dump(),
                "environment": self.env.model_copy(
                    update={"limits_note": self.launcher.cgroup_unavailable}
                ).model_dump(),
                "cell_order": [c.cell_id for b in self.blocks for c in b.cells],
                "failures": [f.model_dump() for f in self.recorder.failures],
            }
        )

    def execute(self) -> RunOutcome:
        """Run every block; the manifest is written at the start and, whatever happens, at the end."""
        # The orchestrator, the driver and the upstream share the generator CPUs.
        own_cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(self.placement.generator_cpus))
        self.writer.write_manifest(self.manifest("running", finished=False))
        status = "failed"
        services = self.services
        storage: OSError | None = None
        try:
            with self.launcher:
                if self.spec.external:
                    for block in self.blocks:
                        self.run_external_block(block, self.spec.external[block.target])
                    status = "complete"
                elif (
                    services is not None
                    and self.stacks.build_images()
                    and services.start_database()
                    and services.start_upstream()
                ):
                    for block in self.blocks:
                        self.run_block(block, services)
                    status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
        except OSError as exc:  # the results cannot be written: stop, everything torn down (the with)
            if not self.is_storage(exc):
                raise
            storage = exc
        finally:
            if services is not None:
                services.stop()
            manifest = self.manifest(status, finished=True)
            try:
                self.writer.write_manifest(manifest)
            except OSError as exc:
                storage = storage or exc
            os.sched_setaffinity(0, own_cpus)
        if storage is not None:
            where = f" ({storage.filename})" if storage.filename else ""
            raise StorageError(
                f"cannot write the results: {storage.strerror or storage}{where}; the run stopped and "
                f"everything it started was stopped; what was stored before is in {self.writer.directory}"
            ) from None
        return RunOutcome(self.writer.directory, manifest, self.recorder.failures, status == "interrupted")

    def is_storage(self, exc: OSError) -> bool:
        """Whether ``exc`` is a failure to store the run: a full or read-only file system, or its folder."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return True
        return bool(exc.filename) and Path(str(exc.filename)).is_relative_to(self.writer.directory)

    def run_block(self, block: Block, services: RunServices) -> None:
        """One launch of a stack and its cells in order; a stack that crashed is started again."""
        name = block.target
        stacks, recorder = self.stacks, self.recorder
        self.events.target_starting(name, block.repeat)
        if name in stacks.unbuilt:
            recorder.fail_block(
                block, f"its image did not build: {stacks.unbuilt[name]}", record=block.repeat == 0
            )
            return
        previous = stacks.verified.get(name)
        if previous is not None and not previous.passed:
            recorder.fail_block(block, "failed verification earlier in this run")
            return
        try:
            running = stacks.launch(name, services.env())
        except LaunchError as exc:
            recorder.fail_block(block, str(exc))
            return
        try:
            report = stacks.verify_once(name, running, services.postgres)
            if report is not None and not report.passed:
                first = report.failures[0]
                recorder.fail_block(block, f"failed verification: {first.name}: {first.detail}")
                return
            if is_tuned(name) and stacks.target_runs[name].tuning is None:
                tuning = self.tune(block, running)
                if tuning is None:
                    return
                try:
                    running = stacks.relaunch(name, running, services.env())
                except LaunchError as exc:
                    tuned = f"{tuning.workers} workers x {tuning.threads} threads"
                    recorder.fail_block(block, f"relaunch with {tuned} failed: {exc}")
                    return
            elif is_tuned(name):
                stacks.settle(running)  # its many workers boot after the first one answers
            for index, cell in enumerate(block.cells):
                busy = False
                if self.launcher.is_alive(running) and index:
                    busy = not stacks.drain(running, block.cells[index - 1], record=False)
                if busy or not self.launcher.is_alive(running):
                    # It crashed in an earlier cell, or is still serving its requests (a sync worker
                    # serves a queued request whose client left): the next cells get a fresh one.
                    if busy:
                        self.events.notice(name, BUSY_NOTE.format(cell=block.cells[index - 1].cell_id))
                    try:
                        running = stacks.relaunch(name, running, services.env())
                    except LaunchError as exc:
                        after = "a busy cell" if busy else "a crash"
                        recorder.fail_cell(cell, f"restart after {after} failed: {exc}")
                        continue
                self.run_cell(cell, running)
        finally:
            self.launcher.stop(running)

    def run_external_block(self, block: Block, external: ExternalTarget) -> None:
        """The cells of a block on the user's app: nothing is launched, verified or restarted."""
        self.events.target_starting(block.target, block.repeat)
        running = RunningTarget(
            name=block.target,
            host=external.host,
            port=external.port,
            pid=external.pid or 0,
            log_path=self.writer.logs / f"{block.target}.log",
            workers=0,
        )
        for cell in block.cells:
            self.run_cell(cell, running)

    def run_cell(self, cell: Cell, running: RunningTarget) -> None:
        """Measure one planned cell and store it; a saturation cell runs its whole search."""
        if cell.model == "saturation":
            self.search(cell, running)
            return
        window = self.spec.scenario
        measured = self.measurer.measure(cell, running)
        while measured and (longer := longer_window(window, cell, measured[0])) is not None:
            # A smoke window shorter than one response time: measured again, each time twice as
            # long up to the scenario's own window (harness.run.smoke), so the attempts end.
            if not self.spec.external:
                self.stacks.drain(running, cell)
            window = longer
            measured = self.measurer.measure(cell, running, window)
        for measurement in measured or []:
            self.recorder.store_measured(cell, measurement)

    def probe(self, cell: Cell, running: RunningTarget) -> Measurement | None:
        """A closed-model window at the search's probe concurrency: the stack's peak throughput.

        Not stored as a measurement (its figures go into the search's steps and the
        tuning); None when it failed (then stored as a failed cell).
        """
        scenario = self.spec.scenario
        saturation = scenario.saturation
        probe_cell = Cell(
            target=cell.target,
            endpoint=cell.endpoint,
            model="closed",
            concurrency=min(saturation.probe_concurrency, scenario.max_connections),
            repeat=cell.repeat,
        )
        window = scenario.model_copy(update={"duration_s": saturation.probe_s})
        measured = self.measurer.measure(probe_cell, running, window)
        while measured and (longer := longer_window(window, probe_cell, measured[0])) is not None:
            # A smoke run's probe that held no answer: measured again, longer (harness.run.smoke).
            if not self.spec.external:
                self.stacks.drain(running, probe_cell)
            window = longer
            measured = self.measurer.measure(probe_cell, running, window)
        return measured[0] if measured else None

    def tune(self, block: Block, running: RunningTarget) -> Tuning | None:
        """A blocking stack's workers and threads within its limits, from one probe (harness.run.tuning).

        The result is kept in the manifest's target run (``workers``, its config's
        ``settings.threads``, ``tuning``)
        and used by every repeat. None (the block failed, with its reason) when the
        probe failed or lacked the figures.
        """
        name = block.target
        run = self.stacks.target_runs[name]
        probe = self.probe(block.cells[0], running)
        tuning = None if probe is None else derive(probe, run)
        if tuning is None:
            self.recorder.fail_block(block, "the probe for its workers and threads failed or lacked figures")
            return None
        config = run.config
        if tuning.threads != config.threads:
            config = config.model_copy(update={"settings": {**config.settings, "threads": tuning.threads}})
        self.stacks.target_runs[name] = run.model_copy(
            update={"workers": tuning.workers, "config": config, "tuning": tuning.describe()}
        )
        self.tunings[name] = tuning
        return tuning

    def upper_bound(self, cell: Cell, running: RunningTarget) -> tuple[float, str] | None:
        """The capacity search's upper bound (requests/s) and where it came from; None if the probe failed.

        A blocking stack on an endpoint with a declared wait: its Little's-law
        ceiling, workers x threads / wait (no load needed), lowered to the CPU's
        limit when a tuning measured CPU per request. Else a closed-model probe's
        peak throughput, from the second repeat on the median of this stack's probes
        in the run: what is known before measuring. One probe that reads low (a
        pause of the machine; measured here, Granian's three probes in one run read
        2,162, 2,193 and 1,287 requests/s) then does not cap a search that would
        end at its own bound, a floor with no verdict.
        """
        run = self.stacks.target_runs.get(cell.target)
        ceiling = None if run is None else ceilings.sync_ceiling_requests_per_second(run, cell.endpoint)
        if run is not None and ceiling is not None:
            source = f"Little's-law ceiling of {run.workers} workers: {ceiling:,.0f} req/s"
            tuning = self.tunings.get(cell.target)
            cpus = run.cpus if run.cpus is not None else 1.0
            if tuning is not None and cpus * 1e6 / tuning.cpu_us_per_request < ceiling:
                ceiling = cpus * 1e6 / tuning.cpu_us_per_request
                per_request = f"{tuning.cpu_us_per_request:.0f} us per request"
                source = f"the CPU limit at {per_request}: {ceiling:,.0f} req/s"
            return ceiling, source
        probe = self.probe(cell, running)
        if probe is None:
            return None  # already stored as failed
        if not probe.requests_per_second:
            window = f"{probe.duration_s:.2g} s"
            reason = f"the closed-model probe at {probe.concurrency} connections got no answer in {window}"
            self.recorder.fail_cell(cell, reason)
            return None
        if not self.spec.external:
            self.stacks.drain(running, cell)
        peak = probe.requests_per_second
        peaks = self.probe_peaks.setdefault((cell.target, cell.endpoint), [])
        peaks.append(peak)
        if len(peaks) == 1:
            return peak, f"{PROBE_SOURCE} at {probe.concurrency} connections: {peak:,.0f} req/s"
        bound = statistics.median(peaks)
        return bound, (
            f"{PROBE_SOURCE}s at {probe.concurrency} connections, the median of this stack's {len(peaks)} "
            f"in the run: {bound:,.0f} req/s (this repeat's: {peak:,.0f})"
        )

    def search(self, cell: Cell, running: RunningTarget) -> None:
        """Saturation search: store every step (an open-model cell at one rate, ``model = "saturation"``).

        ``method = "grow"``: grow the rate until the SLO breaks, then bisect
        (:func:`~harness.run.search.search`). ``method = "probe"``: bisect below an
        upper bound known before (:meth:`upper_bound`,
        :func:`~harness.run.search.capacity_search`). The search ends early if a
        step fails (stored as failed) or the target dies; the highest rate that held
        is the analysis's sustainable throughput (capacity).
        """
        scenario = self.spec.scenario
        saturation = scenario.saturation
        previous: Cell | None = None
        prior: dict[str, object] = {}

        probed = True  # whether a probe warmed the stack up before the search (set below)

        def measure(rate: float, again: bool) -> StepOutcome | None:
            nonlocal previous
            first = previous is None
            step_cell = cell.model_copy(update={"rate": rate, "again": again})
            if previous is not None and not self.spec.external:  # the user's app: not ours to wait on
                if not self.launcher.is_alive(running):
                    return None
                self.stacks.drain(running, previous)
            previous = step_cell
            self.events.cell_starting(step_cell)
            window = None
            if saturation.method == "probe":
                update: dict[str, object] = {"duration_s": step_window_s(rate, scenario.duration_s)}
                if first and not probed:  # the search's first load: no probe warmed the stack
                    update["warmup_s"] = max(scenario.warmup_s, FIRST_WARMUP_S)
                window = scenario.model_copy(update=update)
            measured = self.measurer.measure(step_cell, running, window)
            if not measured:
                return None
            self.recorder.store_measured(step_cell, measured[0].model_copy(update=prior), search_step=True)
            return StepOutcome(bool(measured[0].slo_held), doubtful_breach(measured[0], scenario.slo))

        if saturation.method == "grow":
            search(saturation, lambda rate: None if (done := measure(rate, False)) is None else done.held)
            return
        bound = self.upper_bound(cell, running)
        if bound is None:
            return
        upper, source = bound
        probed = source.startswith(PROBE_SOURCE)
        prior.update(search_upper_rps=round(upper, 1), search_prior=source)
        first = TUNED_FIRST_FRACTION if is_tuned(cell.target) and not probed else FIRST_FRACTION
        capacity_search(upper, saturation.steps, measure, first_fraction=first, fresh_start=not probed)


def expanded(spec: RunSpec) -> RunSpec:
    """``spec`` with each blocking stack's tuned variant added, when its scenario asks for them."""
    saturation = spec.scenario.saturation
    if spec.external or spec.scenario.model != "saturation" or not saturation.tune_blocking:
        return spec
    return dataclasses.replace(spec, targets=with_tuned(spec.targets))


def execute(spec: RunSpec, events: Events) -> RunOutcome:
    """Run ``spec`` and store it under ``spec.results_root``; see the module docstring.

    Raises PreflightError before launching anything when the run cannot be stored
    or driven (see :func:`~harness.run.spec.preflight`), and StorageError when its
    results cannot be written during the run (everything it started is stopped first).
    """
    preflight(spec)
    return _Run(spec, events).execute()


def blocks_for(spec: RunSpec) -> list[Block]:
    """The plan ``execute`` would follow, for a dry run or an estimate."""
    return plan(spec.scenario, list(expanded(spec).targets), spec.seed)
