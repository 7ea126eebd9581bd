"""The progress display of a run: a bar over the planned seconds and one line per cell.

:class:`Display` is the callback object the runner reports to (see ``harness.run.execute``);
the ``*_line`` functions format what it prints, as rich markup. In a terminal a bar shows
the time left; where the output is not a terminal (a pipe, a CI log) the bar is not drawn,
so each cell's line ends with the run's elapsed time and an estimate of the time left, and
each stack's start is a line of its own.
"""

from __future__ import annotations

import time

from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.cli.common import console
from harness.model import Cell, Measurement, RunFailure
from harness.model.scenario import IDLE_KINDS
from harness.plan import planned_seconds
from harness.run import RunOutcome, RunSpec, blocks_for, execute
from harness.verify import VerificationReport


def verified_line(target: str, report: VerificationReport) -> str:
    """``verify <target>: passed``, or FAILED with the number of failed checks."""
    verdict = "[green]passed[/]" if report.passed else f"[red]FAILED ({len(report.failures)} checks)[/]"
    return f"verify {target}: {verdict}"


_UNITS = {
    "http": ("req/s", "p99"),
    "sse": ("streams/s", "first event p99"),
    "websocket": ("messages/s", "round trip p99"),
}
"""How a cell line names its throughput and latency, by workload."""


def cell_line(cell: Cell, m: Measurement) -> str:
    """One measured cell (or one phase of a staged cell): req/s, p99 in ms, errors and its flags
    (streams: streams/s and time to first event, or messages/s and round trip, and SSE events/s).
    An open-model WebSocket cell's level is its arrival rate: ``2,000 messages/s offered``."""
    level = cell.level if m.stage is None else f"{m.stage}: {m.stage_kind}"
    if m.workload == "websocket" and m.model == "open" and m.rate is not None:
        level = f"{m.rate:,.0f} messages/s offered"
    if m.status == "failed":
        return f"  {cell.target:<18} {cell.endpoint:<22} {level:<14} [red]failed[/]"
    if m.status == "unsupported":
        return f"  {cell.target:<18} {cell.endpoint:<22} {level:<14} [yellow]not supported[/] (501)"
    if m.workload in IDLE_KINDS:
        return f"  {cell.target:<18} {cell.endpoint:<22} {level:<14} " + idle_figures(m)
    p99 = f"{m.latency_ms.p99:9.1f} ms" if m.latency_ms else "        -"
    errors = m.errors.total
    rate, latency = _UNITS[m.workload]
    events = "" if m.stream_events_per_second is None else f"  {m.stream_events_per_second:,.0f} events/s"
    return (
        f"  {cell.target:<18} {cell.endpoint:<22} {level:<14} "
        f"{m.requests_per_second:10.1f} {rate}  {latency} {p99}  errors {errors}{events}"
        + (f"  dropped {m.dropped}" if m.dropped else "")
        + ("  [yellow]generator-bound[/]" if m.generator_bound else "")
        + ("  [yellow]upstream-bound[/]" if m.upstream_bound else "")
        + ("" if m.slo_held is None else "  SLO " + ("held" if m.slo_held else f"broken: {m.slo_breach}"))
    )


def idle_figures(m: Measurement) -> str:
    """An idle cell's figures: ``held 10,000 of 10,000 (server 10,000)  PSS 4.1 KiB/connection``, or
    ``killed out of memory with up to 6,128 of 10,000 open``."""
    asked = f"{m.concurrency:,}" if m.concurrency else "?"
    if m.server_oom_kills:
        return f"[yellow]killed out of memory[/] with up to {m.connections_open_peak or 0:,} of {asked} open"
    server = "" if m.connections_held_by_server is None else f" (server {m.connections_held_by_server:,})"
    memory = m.memory_per_connection_kib
    per = "" if memory is None else f"  PSS {memory.pss:,.1f} KiB/connection, USS {memory.uss:,.1f}"
    driver = f"  driver {m.generator_cpu_percent:.0f}% CPU" if m.connections_held else ""
    return f"held {m.connections_held or 0:,} of {asked}{server}{per}{driver}"


def failure_line(failure: RunFailure) -> str:
    """``failure <cell or target>: <reason>``."""
    where = failure.cell_id or failure.target
    return f"[red]failure[/] {escape(where)}: {escape(failure.reason)}"


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour: a duration in seconds as a clock."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_left_s(elapsed_s: float, done_s: float, total_s: float) -> float | None:
    """Wall seconds left, estimated from the run so far; None before any load is done.

    ``done_s`` of the ``total_s`` planned load seconds took ``elapsed_s`` wall seconds,
    start-up, verification and drains included, so the rest is expected to take the
    same wall time per planned second: (total - done) x elapsed / done.
    """
    if done_s <= 0:
        return None
    return max(total_s - done_s, 0.0) * elapsed_s / done_s


class Display:
    """Progress display for a run: a bar over planned seconds and one line per cell.

    ``cells`` is the number planned; ``planned_s_per_cell`` each one's planned load
    (warm-up and window, s); ``phases`` a staged cell's phase count (0: unstaged).
    """

    def __init__(
        self, progress: Progress, task: TaskID, cells: int, planned_s_per_cell: float, phases: int = 0
    ) -> None:
        self.progress = progress
        self.task = task
        self.cells = cells
        self.cell_number = 0
        self.planned = planned_s_per_cell
        self.phases = phases
        self.started = time.monotonic()
        self.in_terminal = progress.console.is_terminal

    def target_starting(self, target: str, repeat: int) -> None:
        self.progress.update(self.task, description=f"{target} (repeat {repeat + 1}): starting")
        if not self.in_terminal:
            self.progress.console.print(f"starting {target} (repeat {repeat + 1}) " + escape(self.elapsed()))

    def elapsed(self) -> str:
        """``[elapsed 1:02, ~4:10 left]``: the run's wall time, and the estimate of what is left."""
        elapsed = time.monotonic() - self.started
        total = next((t.total or 0.0 for t in self.progress.tasks if t.id == self.task), 0.0)
        left = time_left_s(elapsed, self.cell_number * self.planned, total)
        return f"[elapsed {clock(elapsed)}" + ("]" if left is None else f", ~{clock(left)} left]")

    def verified(self, target: str, report: VerificationReport) -> None:
        self.progress.console.print(verified_line(target, report))

    def cell_starting(self, cell: Cell) -> None:
        self.progress.update(
            self.task,
            description=f"[{self.cell_number + 1}/{self.cells}] {cell.target} {cell.endpoint} "
            f"{cell.level} repeat {cell.repeat + 1}",
        )

    def cell_done(self, cell: Cell, m: Measurement) -> None:
        # A staged cell reports once per phase; it is done with its last.
        if m.stage is None or m.stage + 1 >= self.phases:
            self.cell_number += 1
            self.progress.advance(self.task, self.planned)
        line = f"{self.cell_number}/{self.cells}" + cell_line(cell, m)
        if not self.in_terminal:
            line += "  " + escape(self.elapsed())
        self.progress.console.print(line)

    def failure(self, failure: RunFailure) -> None:
        self.progress.console.print(failure_line(failure))

    def notice(self, target: str, text: str) -> None:
        self.progress.console.print(f"[yellow]note[/] {escape(target)}: {escape(text)}")


def execute_with_progress(spec: RunSpec, total_s: float, cells: int) -> RunOutcome:
    """Run ``spec`` as ``gwbench run`` does: a bar over ``total_s`` planned seconds, time left, cell lines."""
    scenario = spec.scenario
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task("starting", total=total_s)
        display = Display(
            progress, task, cells, scenario.warmup_s + scenario.duration_s, len(scenario.phases())
        )
        return execute(spec, display)


def execute_quietly(spec: RunSpec) -> RunOutcome:
    """Run ``spec`` with a progress bar and one line per cell (as ``gwbench run``)."""
    blocks = blocks_for(spec)
    scenario = spec.scenario
    cells = sum(len(b.cells) for b in blocks)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    )
    with progress:
        task = progress.add_task("starting", total=planned_seconds(scenario, blocks))
        return execute(spec, Display(progress, task, cells, scenario.warmup_s + scenario.duration_s))
