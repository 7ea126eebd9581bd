"""Drive and monitor one cell, and turn what was seen into its stored measurements.

:class:`WindowMonitors` follows the driver's window events (``"start"``, one
``"mark"`` between phases of a staged cell, ``"end"``) with the server's and the
upstream's process trees, the server's control group and PostgreSQL's query
count. :class:`CellMeasurer` runs the scenario's driver (native, wrk or Locust)
and checks that the window was reported and the target survived it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

import psycopg

from harness.cgroup import Cgroup
from harness.idle import IdleError
from harness.launch import RunningTarget
from harness.launch.base import Launcher
from harness.launch.postgres import Postgres
from harness.load import ClosedLoad, DriverError, LoadResult, drive_in_subprocess
from harness.load.arrivals import OpenLoad
from harness.load.locust import LocustLoad, run_locust
from harness.load.locust_stats import LocustError
from harness.load.stream import FileLimitError, WsOpenLoad
from harness.load.stream.results import StreamLoad
from harness.load.wrk import WrkError, run_wrk
from harness.model import Cell, Measurement, RequestSpec, Scenario
from harness.model.scenario import IDLE_KINDS
from harness.monitor import CgroupMonitor, CgroupWindowStats, TreeMonitor, WindowStats
from harness.results import RunWriter, utc_now
from harness.run.cells import load_for, phase_cell_id
from harness.run.idlecell import measure_idle
from harness.run.measure import CellContext, Observed, build_measurement, slope_of
from harness.run.record import Recorder
from harness.run.services import RunServices
from harness.run.spec import Events, RunSpec
from harness.run.stacks import Stacks
from harness.timeseries import Row, rows_from, to_csv
from harness.types import WindowCallback

_T = TypeVar("_T")


def _nth(items: Sequence[_T], index: int) -> _T | None:
    """``items[index]``, or None when there are not that many (a monitor that was not running)."""
    return items[index] if index < len(items) else None


def _connection_cap(load: ClosedLoad | OpenLoad | StreamLoad, result: LoadResult) -> int | None:
    """The open model's connection cap, for the generator-bound rule ``behind`` (None: closed model).

    The WebSocket open model keeps every one of its connections open, or opening again, all
    along: a message it dropped found none open because the server closed or refused them,
    never because a cap held one back. Its cap counts as reached (its peak), so ``behind``
    does not blame the generator for the server's dropped messages.
    """
    if isinstance(load, OpenLoad):
        return load.max_connections
    if isinstance(load, WsOpenLoad):
        return result.connections_peak
    return None


class WindowMonitors:
    """The monitors of one cell: a window's stats per ``"mark"``/``"end"`` event, in order.

    ``server_pid``/``upstream_pid``: process trees to follow (0 or None: none);
    ``group``: the server's control group; ``postgres``: the database whose
    queries are counted (reset at ``"start"`` and each ``"mark"``).
    """

    def __init__(
        self,
        *,
        server_pid: int,
        upstream_pid: int | None,
        group: Cgroup | None,
        postgres: Postgres | None,
    ) -> None:
        self.server = TreeMonitor(server_pid) if server_pid else None
        self.upstream = None if upstream_pid is None else TreeMonitor(upstream_pid, with_memory=False)
        self.group = None if group is None else CgroupMonitor(group)
        self.postgres = postgres
        self.events: list[str] = []
        self.server_stats: list[WindowStats] = []
        self.upstream_stats: list[WindowStats] = []
        self.group_stats: list[CgroupWindowStats] = []
        self.db_queries: list[int] = []

    def on_window(self, event: str) -> None:
        """The driver's callback (a :data:`~harness.types.WindowCallback`)."""
        self.events.append(event)
        for monitor, stats in ((self.server, self.server_stats), (self.upstream, self.upstream_stats)):
            if monitor is None:
                continue
            if event == "start":
                monitor.begin()
            else:
                stats.append(monitor.mark() if event == "mark" else monitor.end())
        if self.group is not None:
            if event == "start":
                self.group.begin()
            else:
                self.group_stats.append(self.group.mark() if event == "mark" else self.group.end())
        postgres = self.postgres
        if postgres is not None:
            with contextlib.suppress(psycopg.Error):  # a dead database is reported after the cell
                if event != "start":
                    self.db_queries.append(postgres.calls())
                if event != "end":
                    postgres.reset_statistics()

    def rows(self) -> list[Row]:
        """The server's samples over the window (with its control group's), for the time series."""
        if self.server is None:
            return []
        return rows_from(self.server.samples, () if self.group is None else self.group.samples)


class CellMeasurer:
    """Measures cells of ``spec`` on the generator's ``cpus``; a failed cell is stored as failed."""

    def __init__(
        self,
        spec: RunSpec,
        launcher: Launcher,
        events: Events,
        recorder: Recorder,
        stacks: Stacks,
        services: RunServices | None,
        *,
        cpus: Sequence[int],
    ) -> None:
        self.spec = spec
        self.launcher = launcher
        self.events = events
        self.recorder = recorder
        self.writer: RunWriter = recorder.writer
        self.stacks = stacks
        self.services = services
        self.cpus = cpus

    def measure(
        self, cell: Cell, running: RunningTarget, scenario: Scenario | None = None
    ) -> list[Measurement] | None:
        """Drive and monitor one cell; None when it failed (then it is already stored as failed).

        One measurement, or one per phase for a staged cell. The server's
        samples over the window are written to ``timeseries/<cell_id>.csv``.
        ``scenario``, when given, replaces the run's (a smoke cell's longer window).
        """
        scenario = self.spec.scenario if scenario is None else scenario
        spec = scenario.requests_for(cell.endpoint)[0]
        if spec.kind in IDLE_KINDS:
            return self.measure_idle(cell, running, scenario, spec)
        services = self.services
        load = load_for(scenario, cell, running, seed=self.spec.seed, allow_remote=self.spec.allow_remote)
        phases = scenario.phases() if cell.staged else []
        upstream = None if services is None else services.running_upstream
        monitors = WindowMonitors(
            server_pid=running.pid,
            upstream_pid=None if upstream is None else upstream.pid,
            group=None if self.spec.external else self.launcher.cgroup(running),
            postgres=None if services is None else services.postgres,
        )
        if cell.model != "saturation":
            self.events.cell_starting(cell)
        started_at = utc_now()
        try:
            result = self.drive(load, cell, monitors.on_window)
        except (DriverError, WrkError, LocustError) as exc:
            self.recorder.fail_cell(cell, f"{scenario.driver} driver failed: {exc}")
            return None
        finally:
            if services is not None:
                services.check(cell)
        marks = max(len(phases) - 1, 0)
        if monitors.events != ["start", *["mark"] * marks, "end"]:
            self.recorder.fail_cell(cell, "driver finished without reporting its measured window")
            return None
        server_windows = monitors.server_stats
        crash = self.stacks.crash(running, tuple(pid for w in server_windows for pid in w.vanished))
        if crash:
            self.recorder.fail_cell(cell, crash)
            return None
        if phases and len(result.stages) != len(phases):
            self.recorder.fail_cell(
                cell, f"driver reported {len(result.stages)} stages, expected {len(phases)}"
            )
            return None
        timeseries_path, rows = None, monitors.rows()
        if monitors.server is not None:
            timeseries_path = self.writer.write_timeseries(cell.cell_id, to_csv(rows))
        parts = [(None, result)] if not phases else list(zip(phases, result.stages, strict=True))
        measurements = []
        for index, (phase, part) in enumerate(parts):
            cell_id = cell.cell_id if phase is None else phase_cell_id(cell, phase)
            histogram_path = self.writer.write_histogram(cell_id, part.histogram)
            uncorrected_path = None
            if part.histogram_uncorrected is not None:
                uncorrected_path = self.writer.write_histogram(
                    f"{cell_id}.uncorrected", part.histogram_uncorrected
                )
            span = (0.0, float("inf")) if phase is None else (phase.start_s, phase.start_s + phase.duration_s)
            context = CellContext(
                cell=cell,
                started_at=started_at,
                warmup_s=scenario.warmup_s,
                driver=scenario.driver,
                max_connections=_connection_cap(load, part),
                slo=scenario.slo if cell.model == "saturation" else None,
                phase=phase,
            )
            observed = Observed(
                load=part,
                server=_nth(server_windows, index),
                upstream=_nth(monitors.upstream_stats, index),
                histogram_path=histogram_path,
                histogram_uncorrected_path=uncorrected_path,
                db_queries=_nth(monitors.db_queries, index),
                group=_nth(monitors.group_stats, index),
                timeseries_path=timeseries_path,
                slope=slope_of(rows, *span),
            )
            measurements.append(build_measurement(context, observed))
        return measurements

    def measure_idle(
        self, cell: Cell, running: RunningTarget, scenario: Scenario, spec: RequestSpec
    ) -> list[Measurement] | None:
        """An idle-connections cell (harness.run.idlecell); None when it failed (stored as failed)."""
        self.events.cell_starting(cell)
        started_at = utc_now()
        external = self.spec.external
        try:
            measurement = measure_idle(
                scenario, spec, cell, running, None if external else self.launcher.cgroup(running),
                ready_path=self.spec.targets[running.name].ready_path if not external else spec.path,
                cpus=self.cpus, started_at=started_at, allow_remote=self.spec.allow_remote,
            )  # fmt: skip
        except (IdleError, FileLimitError) as exc:
            crash = self.stacks.crash(running, ())
            self.recorder.fail_cell(cell, crash or f"idle connections: {exc}")
            return None
        if measurement.server_oom_kills:
            # Killed out of memory while holding connections: how many it held is the finding. A
            # stack left without its processes is started again before its next cell.
            return [measurement]
        crash = self.stacks.crash(running, ())
        if crash:
            self.recorder.fail_cell(cell, crash)
            return None
        return [measurement]

    def drive(
        self, load: ClosedLoad | OpenLoad | StreamLoad, cell: Cell, on_window: WindowCallback
    ) -> LoadResult:
        """Run the scenario's driver over ``load``; raises DriverError, WrkError or LocustError."""
        scenario = self.spec.scenario
        if scenario.driver == "wrk":
            assert isinstance(load, ClosedLoad)
            return run_wrk(load, cpus=self.cpus, on_window=on_window)
        if scenario.driver == "locust":
            assert isinstance(load, ClosedLoad)
            return self.run_locust(load, cell, on_window)
        result, _ = drive_in_subprocess(
            load,
            cpus=self.cpus,
            on_window=on_window,
            processes=scenario.generator_processes,
        )
        return result

    def run_locust(self, load: ClosedLoad, cell: Cell, on_window: WindowCallback) -> LoadResult:
        """One closed-model cell under Locust: the generated or the user's locustfile, alone or as master."""
        spec = self.spec
        locust = LocustLoad.from_closed(load)
        if spec.locustfile is not None:
            locust = replace(locust, locustfile=spec.locustfile, endpoints=())
        return run_locust(
            locust,
            cpus=self.cpus,
            on_window=on_window,
            processes=spec.scenario.generator_processes,
            master=spec.locust_workers > 0,
            expect_workers=spec.locust_workers,
            master_bind_host=spec.locust_bind_host,
            master_bind_port=spec.locust_port,
            output_dir=self.writer.directory / "locust" / cell.cell_id,
        )
