"""The ``gwbench`` command: one ``cmd_<name>`` function per subcommand.

Exit codes: 0 success; 1 a target or cell failed (the run still finished);
2 bad configuration or usage; 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import psutil
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from harness.launch import LaunchError, LocalLauncher, RunningTarget
from harness.launch.postgres import Postgres
from harness.load import UnsafeTargetError, ensure_loopback
from harness.load.locust import worker_command
from harness.model import (
    QUICK_FACTOR,
    QUICK_MAX_WINDOW_S,
    Cell,
    ConfigError,
    Measurement,
    RunFailure,
    Scenario,
    TargetConfig,
    discover_targets,
    load_scenario,
    suggest,
)
from harness.plan import planned_seconds, split_cpus
from harness.results import ResultsError, read_measurements
from harness.run import (
    UPSTREAM,
    ExternalTarget,
    PreflightError,
    RunOutcome,
    RunSpec,
    blocks_for,
    execute,
)
from harness.verify import VerificationReport, verify

REPO = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _external_target(
    url: str, pid: int | None, allow_remote: bool
) -> tuple[ExternalTarget, str, TargetConfig]:
    """Parse ``--url``: (where to send load, the endpoint, a config describing the user's app).

    Raises ConfigError for a URL that is not plain HTTP with a host, and
    UnsafeTargetError for a non-loopback host without ``allow_remote``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError as exc:
        raise ConfigError(f"--url {url!r}: {exc}") from exc
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"--url {url!r}: expected http://HOST:PORT/PATH (plain HTTP/1.1)")
    ensure_loopback(parts.hostname, allow_remote=allow_remote)
    try:
        exists = pid is None or psutil.pid_exists(pid)
    except (OverflowError, ValueError):
        exists = False
    if not exists:
        raise ConfigError(f"--pid {pid}: no such process")
    endpoint = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    config = TargetConfig(
        name="external",
        description=f"an app started by the user, measured at {url}",
        framework="unknown",
        server="unknown",
        interface="native",
        worker_model="unknown (not started by the harness)",
        command="(started by the user) {host}:{port}",
        default_workers=1,
        workers_rule="not applicable",
        settings={"monitored_pid": pid if pid is not None else "none (server CPU and memory not measured)"},
    )
    return ExternalTarget(host=parts.hostname, port=port, pid=pid), endpoint, config


def with_endpoint(scenario: Scenario, endpoint: str, target: str, *, origin: str) -> Scenario:
    """The scenario aimed at one endpoint of one target, validated like a scenario file.

    Raises ConfigError naming ``origin`` when the endpoint is not a valid one.
    """
    data = {**scenario.model_dump(), "endpoints": [endpoint], "targets": [target]}
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {exc.errors()[0]['msg']}") from exc


def _find_upstream(root: Path) -> tuple[TargetConfig, Path]:
    """The upstream service and its folder: ``root``'s own, else the harness's.

    A user's own folder of targets has none: its targets call the harness's upstream.
    """
    for folder in (root, REPO / "targets"):
        for name, config in discover_targets(folder).items():
            if config.role == "upstream":
                return config, folder / name
    raise ConfigError(f'{root}: no target with role = "upstream"')


def _start_upstream(
    launcher: LocalLauncher, root: Path, logs: Path, cpus: Sequence[int] | None = None
) -> RunningTarget:
    config, folder = _find_upstream(root)
    return launcher.start(
        config, folder, workers=config.default_workers, log_path=logs / f"{UPSTREAM}.log", cpus=cpus
    )


def _select_targets(
    root: Path, wanted: str | None, scenario_targets: Sequence[str] = ()
) -> dict[str, TargetConfig]:
    """Targets to use: by --targets, else the scenario's, else all of ``root``'s stacks."""
    stacks = {name: t for name, t in discover_targets(root).items() if t.role == "target"}
    names = [n.strip() for n in wanted.split(",") if n.strip()] if wanted else list(scenario_targets)
    if not names:
        return stacks
    unknown = [n for n in names if n not in stacks]
    if unknown:
        hints = "; ".join(f"{n!r}{suggest(n, stacks)}" for n in unknown)
        raise ConfigError(f"unknown target(s) {hints}; known: {', '.join(stacks)}")
    return {n: stacks[n] for n in names}


class _Display:
    """Progress display for a run: a bar over planned seconds and one line per cell."""

    def __init__(
        self, progress: Progress, task: TaskID, cells: int, planned_s_per_cell: float, phases: int = 0
    ) -> None:
        self.progress = progress
        self.task = task
        self.cells = cells
        self.cell_number = 0
        self.planned = planned_s_per_cell
        self.phases = phases

    def target_starting(self, target: str, repeat: int) -> None:
        self.progress.update(self.task, description=f"{target} (repeat {repeat + 1}): starting")

    def verified(self, target: str, report: VerificationReport) -> None:
        verdict = "[green]passed[/]" if report.passed else f"[red]FAILED ({len(report.failures)} checks)[/]"
        self.progress.console.print(f"verify {target}: {verdict}")

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
        level = cell.level if m.stage is None else f"{m.stage}: {m.stage_kind}"
        if m.status == "failed":
            self.progress.console.print(f"  {cell.target:<18} {cell.endpoint:<22} {level:<14} [red]failed[/]")
            return
        p99 = f"{m.latency_ms.p99:9.1f} ms" if m.latency_ms else "        -"
        errors = m.errors.total
        self.progress.console.print(
            f"  {cell.target:<18} {cell.endpoint:<22} {level:<14} "
            f"{m.rps:10.1f} req/s  p99 {p99}  errors {errors}"
            + (f"  dropped {m.dropped}" if m.dropped else "")
            + ("  [yellow]generator-bound[/]" if m.generator_bound else "")
            + ("  [yellow]upstream-bound[/]" if m.upstream_bound else "")
            + ("" if m.slo_held is None else "  SLO " + ("held" if m.slo_held else f"broken: {m.slo_breach}"))
        )

    def failure(self, failure: RunFailure) -> None:
        where = failure.cell_id or failure.target
        self.progress.console.print(f"[red]failure[/] {escape(where)}: {escape(failure.reason)}")


def cmd_run(args: argparse.Namespace) -> int:
    scenario = load_scenario(Path(args.scenario))
    if args.quick_factor is not None and not args.quick:
        raise ConfigError("--quick-factor: only with --quick")
    if args.quick:
        factor = QUICK_FACTOR if args.quick_factor is None else args.quick_factor
        if not 0 < factor <= 1:
            raise ConfigError(f"--quick-factor: must be > 0 and <= 1, got {factor:g}")
        scenario, note = scenario.quick(factor)
        console.print(note)
    if args.time_scale is not None:
        if not 0 < args.time_scale <= 100:
            raise ConfigError(f"--time-scale: must be > 0 and <= 100, got {args.time_scale}")
        scenario = scenario.model_copy(update={"time_scale": args.time_scale})
    if args.driver and args.driver != scenario.driver:
        if args.driver != "native" and scenario.model != "closed":
            raise ConfigError(
                f"--driver {args.driver}: it runs the closed model only; {args.scenario} has "
                f"model = {scenario.model!r}"
            )
        scenario = scenario.model_copy(update={"driver": args.driver})
    locust_options = (args.locustfile, args.locust_workers)
    if any(locust_options) and scenario.driver != "locust":
        raise ConfigError("--locustfile and --locust-workers need --driver locust")
    locustfile = None
    if args.locustfile:
        locustfile = Path(args.locustfile)
        if not locustfile.is_file():
            raise ConfigError(f"--locustfile: {locustfile}: file not found")
    external = None
    if args.url:
        external, endpoint, config = _external_target(args.url, args.pid, args.allow_remote)
        scenario = with_endpoint(scenario, endpoint, config.name, origin=f"--url {args.url!r}")
        targets = {config.name: config}
    else:
        targets = _select_targets(Path(args.targets_dir), args.targets, scenario.targets)
        for key in ("workers", "cpus", "memory_mb"):
            extra = [name for name in getattr(scenario, key) if name not in targets]
            if extra:
                raise ConfigError(
                    f"{args.scenario}: {key}: "
                    + "; ".join(f"{n!r} is not a target of this run{suggest(n, targets)}" for n in extra)
                )
    upstream, upstream_dir = _find_upstream(Path(args.targets_dir))
    seed = (
        args.seed
        if args.seed is not None
        else (scenario.seed if scenario.seed is not None else int(time.time()))
    )
    spec = RunSpec(
        scenario=scenario,
        targets=targets,
        upstream=upstream,
        targets_root=Path(args.targets_dir),
        upstream_dir=upstream_dir,
        results_root=Path(args.results),
        repo=REPO,
        seed=seed,
        external=external,
        allow_remote=args.allow_remote,
        launcher=args.launcher,
        locustfile=locustfile,
        locust_workers=args.locust_workers or 0,
        locust_bind_host=args.locust_bind_host,
        locust_port=args.locust_port,
        verify=not args.no_verify,
    )
    blocks = blocks_for(spec)
    total_s = planned_seconds(scenario, blocks)
    cells = sum(len(b.cells) for b in blocks)
    if args.dry_run:
        for block in blocks:
            for cell in block.cells:
                out.print(cell.cell_id)
        unit = "connections" if scenario.model == "closed" else "requests/s"
        for phase in scenario.phases():
            out.print(
                f"  phase {phase.index} (stage {phase.stage}, {phase.kind}): "
                f"{phase.start_s:g}-{phase.start_s + phase.duration_s:g} s, "
                f"{phase.start_level:g} -> {phase.end_level:g} {unit}"
            )
        searches = (
            f"; each saturation search takes up to {scenario.saturation.max_steps()} steps"
            if scenario.model == "saturation"
            else ""
        )
        out.print(
            f"{cells} cells, {total_s:.0f} s of load at most (plus start-up and verification){searches}"
        )
        return EXIT_OK
    console.print(
        f"scenario [bold]{scenario.name}[/]: {len(targets)} stacks, {cells} cells, "
        f"~{total_s / 60:.1f} min of load (seed {seed})"
    )
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
        display = _Display(
            progress, task, cells, scenario.warmup_s + scenario.duration_s, len(scenario.phases())
        )
        outcome = execute(spec, display)
    console.print(f"results: {outcome.run_dir}")
    if not args.no_report:
        out.print(f"report: {_render(outcome.run_dir, Path(args.reports))}")
    if outcome.interrupted:
        console.print("[yellow]interrupted[/]: partial results kept")
        return EXIT_INTERRUPTED
    if outcome.failures:
        console.print(
            f"[red]{len(outcome.failures)} failure(s)[/]: "
            + "; ".join(f"{f.cell_id or f.target}" for f in outcome.failures[:5])
        )
        return EXIT_FAILURES
    return EXIT_OK


def _render(run_dir: Path, reports: Path) -> Path:
    from harness.report import write_reports

    return write_reports(run_dir, reports)


def cmd_report(args: argparse.Namespace) -> int:
    run = Path(args.run)
    run_dir = run if run.is_dir() else Path(args.results) / args.run
    for problem in read_measurements(run_dir)[1]:
        console.print(f"[yellow]warning[/]: {escape(str(run_dir / problem))}")
    out.print(f"report: {_render(run_dir, Path(args.reports))}")
    return EXIT_OK


def _execute_quietly(spec: RunSpec) -> RunOutcome:
    """Run ``spec`` with a progress bar and one line per cell (as ``gwbench run``)."""
    blocks = blocks_for(spec)
    scenario = spec.scenario
    cells = sum(len(b.cells) for b in blocks)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    )
    with progress:
        task = progress.add_task("starting", total=planned_seconds(scenario, blocks))
        return execute(spec, _Display(progress, task, cells, scenario.warmup_s + scenario.duration_s))


def cmd_claims(args: argparse.Namespace) -> int:
    from harness.claims import load_claims, ratio_text
    from harness.report.claims import claim_verdicts, write_claims_page

    claims = load_claims(Path(args.claims_dir))
    names = args.names or list(claims)
    unknown = [n for n in names if n not in claims]
    if unknown:
        hints = "; ".join(f"{n!r}{suggest(n, claims)}" for n in unknown)
        raise ConfigError(f"unknown claim(s) {hints}; known: {', '.join(claims)}")
    root, results, reports = Path(args.targets_dir), Path(args.results), Path(args.reports)
    failures = 0
    if not args.report_only:
        upstream, upstream_dir = _find_upstream(root)
        for number, name in enumerate(names, start=1):
            scenario = claims[name].scenario(quick=args.quick)
            spec = RunSpec(
                scenario=scenario,
                targets=_select_targets(root, ",".join(scenario.targets)),
                upstream=upstream,
                targets_root=root,
                upstream_dir=upstream_dir,
                results_root=results,
                repo=REPO,
                seed=args.seed if args.seed is not None else int(time.time()),
            )
            console.print(f"claim [bold]{name}[/] ({number}/{len(names)}): {escape(claims[name].title)}")
            outcome = _execute_quietly(spec)
            _render(outcome.run_dir, reports)
            if outcome.interrupted:
                console.print("[yellow]interrupted[/]: partial results kept")
                return EXIT_INTERRUPTED
            failures += len(outcome.failures)
    table = Table()
    for column in ("claim", "claimed", "measured (95% CI)", "verdict"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for claim, measured, verdict in claim_verdicts({n: claims[n] for n in names}, results):
        comparison = measured.comparison if measured else None
        ours = "-"
        if comparison is not None:
            interval = comparison.interval
            ours = ratio_text(comparison.ratio) + (
                f" [{ratio_text(interval.low)}-{ratio_text(interval.high)}]" if interval else ""
            )
        table.add_row(claim.name, ratio_text(claim.claimed.ratio), ours, verdict.kind, escape(verdict.reason))
    out.print(table)
    out.print(f"claims page: {write_claims_page(claims, results, reports)}")
    return EXIT_FAILURES if failures else EXIT_OK


def _run_dir(run: str, results: Path) -> Path:
    path = Path(run)
    return path if path.is_dir() else results / run


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.compare import ShapeError, compare_runs
    from harness.report.compare import change_row, write_compare_page
    from harness.results import load_manifest

    if not 0 <= args.threshold < 100:
        raise ConfigError(f"--threshold {args.threshold:g}: must be a percentage from 0 to 100")
    runs = []
    problems = []
    for label, run in (("A", args.run_a), ("B", args.run_b)):
        run_dir = _run_dir(run, Path(args.results))
        manifest = load_manifest(run_dir)
        measurements, unreadable = read_measurements(run_dir)
        for problem in unreadable:
            console.print(f"[yellow]warning[/] (run {label}): {escape(str(run_dir / problem))}")
            problems.append(f"run {label}: {run_dir.name}/{problem}")
        runs.append((manifest, measurements))
    try:
        comparison = compare_runs(runs[0], runs[1], threshold=args.threshold / 100)
    except ShapeError as exc:
        console.print(f"[red]error[/]: {escape(str(exc))}")
        return EXIT_USAGE
    table = Table(title=f"B = {comparison.run_b} over A = {comparison.run_a}")
    for column in ("stack", "endpoint", "level", "req/s A", "req/s B", "change", "p99 A", "p99 B", "change"):
        table.add_column(column, justify="left" if column in ("stack", "endpoint") else "right")
    table.add_column("status", no_wrap=True)
    colours = {"regression": "red", "failed": "red", "improvement": "green", "recovered": "green"}
    for change in comparison.changes:
        row = change_row(change)
        colour = colours.get(change.status, "default")
        status = f"[{colour}]{row['status']}[/]" + (f" ({row['worse']})" if row["worse"] else "")
        table.add_row(
            *(escape(str(row[k])) for k in ("target", "endpoint", "level", "rps_a", "rps_b", "rps_change")),
            *(escape(str(row[k])) for k in ("p99_a", "p99_b", "p99_change")),
            status,
        )
    out.print(table)
    for note in comparison.notes:
        out.print(f"note: {escape(note)}")
    page = write_compare_page(comparison, problems, Path(args.reports), Path(args.results))
    out.print(f"compare page: {page}")
    regressions = comparison.regressions
    if regressions:
        console.print(
            f"[red]{len(regressions)} regression(s)[/] beyond {args.threshold:g}%: "
            + "; ".join(f"{c.target} {c.endpoint} {c.level_label}" for c in regressions)
        )
        return EXIT_FAILURES
    if all(c.rps is None or c.rps.interval is None for c in comparison.changes):
        console.print("[yellow]warning[/]: no cell has 2 repeats on both sides, so no change can be called")
    return EXIT_OK


def _print_report(name: str, report: VerificationReport) -> None:
    table = Table(title=f"{name}: {'passed' if report.passed else 'FAILED'}", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        table.add_row(
            check.name, "ok" if check.passed else "[red]FAIL[/]", "" if check.passed else escape(check.detail)
        )
    out.print(table)


def cmd_verify(args: argparse.Namespace) -> int:
    targets = _select_targets(Path(args.targets_dir), args.targets)
    root = Path(args.targets_dir)
    logs = Path(args.logs)
    failed = []
    with LocalLauncher() as launcher, Postgres(log_path=logs / "postgres.log") as postgres:
        up = _start_upstream(launcher, root, logs)
        for name, config in targets.items():
            try:
                running = launcher.start(
                    config,
                    root / name,
                    workers=config.default_workers,
                    log_path=logs / f"{name}.log",
                    env={"GWBENCH_UPSTREAM_URL": up.url, "GWBENCH_DATABASE_URL": postgres.url},
                )
            except LaunchError as exc:
                console.print(f"[red]{escape(str(exc))}[/]")
                failed.append(name)
                continue
            try:
                report = verify(
                    running.url, postgres=postgres, websocket=config.websocket, interface=config.interface
                )
            finally:
                launcher.stop(running)
            if args.verbose or not report.passed:
                _print_report(name, report)
            out.print(f"{name}: {'passed' if report.passed else 'FAILED'} ({len(report.checks)} checks)")
            if not report.passed:
                failed.append(name)
    if failed:
        console.print(f"[red]verification failed[/]: {', '.join(failed)}")
        return EXIT_FAILURES
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    ((name, config),) = _select_targets(Path(args.targets_dir), args.target).items()
    root = Path(args.targets_dir)
    logs = Path(args.logs)
    placement = split_cpus(sorted(os.sched_getaffinity(0)))
    with (
        LocalLauncher(target_cpus=placement.target_cpus) as launcher,
        Postgres(log_path=logs / "postgres.log", cpus=placement.generator_cpus) as postgres,
    ):
        up = _start_upstream(launcher, root, logs, cpus=placement.generator_cpus)
        running = launcher.start(
            config,
            root / name,
            workers=args.workers or config.default_workers,
            log_path=logs / f"{name}.log",
            env={"GWBENCH_UPSTREAM_URL": up.url, "GWBENCH_DATABASE_URL": postgres.url},
        )
        out.print(
            f"{name} ({running.workers} workers) at {running.url}  "
            f"(upstream {up.url}, database {postgres.url})"
        )
        out.print(f"try: curl '{running.url}/io/upstream?ms=50'   logs: {logs}   Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("stopping")
    return EXIT_OK


def cmd_locust_worker(args: argparse.Namespace) -> int:
    """Run one Locust worker until its master ends the run; the locustfile comes from the master."""
    ensure_loopback(args.master_host, allow_remote=args.allow_remote)
    command = worker_command(args.master_host, args.master_port)
    console.print(f"locust worker for {args.master_host}:{args.master_port}: {' '.join(command)}")
    return subprocess.call(command)


def cmd_scenarios(args: argparse.Namespace) -> int:
    """List ``scenarios/*.toml``: name, model, and the one-line description; invalid files say why."""
    table = Table()
    table.add_column("scenario", no_wrap=True)
    table.add_column("model")
    table.add_column("description")
    broken = []
    for path in sorted(Path(args.scenarios_dir).glob("*.toml")):
        try:
            scenario = load_scenario(path)
        except ConfigError as exc:
            broken.append(str(exc))
            continue
        table.add_row(
            scenario.name,
            scenario.model + (f", {len(scenario.stages)} stages" if scenario.stages else ""),
            scenario.description,
        )
    out.print(table)
    for problem in broken:
        console.print(f"[red]invalid[/]: {escape(problem)}")
    return EXIT_USAGE if broken else EXIT_OK


def cmd_targets(args: argparse.Namespace) -> int:
    table = Table()
    table.add_column("target", no_wrap=True)
    for column in ("interface", "server", "workers", "worker model"):
        table.add_column(column)
    for name, t in discover_targets(Path(args.targets_dir)).items():
        if t.role == "target":
            table.add_row(name, t.interface, t.server, str(t.default_workers), t.worker_model)
    out.print(table)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gwbench", description="Benchmark WSGI and ASGI Python stacks.")
    parser.add_argument("--targets-dir", default=str(REPO / "targets"), help="folder of targets")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and render its report")
    run.add_argument("scenario", nargs="?", default=str(REPO / "scenarios" / "default.toml"))
    run.add_argument("--targets", help="comma-separated target names (default: the scenario's, else all)")
    run.add_argument("--seed", type=int, help="seed of the randomised order")
    run.add_argument("--results", default=str(REPO / "results"))
    run.add_argument("--reports", default=str(REPO / "reports"))
    run.add_argument("--no-report", action="store_true")
    run.add_argument("--dry-run", action="store_true", help="print the plan, launch nothing")
    run.add_argument("--url", help="measure your own running app at this URL instead of the stacks")
    run.add_argument("--pid", type=int, help="with --url: the app's process, to monitor its CPU and memory")
    run.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow load to a non-loopback address (only to machines you own and are allowed to load)",
    )
    run.add_argument(
        "--driver",
        choices=("native", "wrk", "locust"),
        help="load generator (default: the scenario's; wrk and locust: closed model only, to cross-check)",
    )
    run.add_argument("--locustfile", help="with --driver locust: your own locustfile (see scenarios/locust/)")
    run.add_argument(
        "--locust-workers",
        type=int,
        metavar="N",
        help="with --driver locust: be a Locust master and wait for N workers (gwbench locust-worker)",
    )
    run.add_argument("--locust-bind-host", default="127.0.0.1", help="the Locust master's address")
    run.add_argument("--locust-port", type=int, default=5557, help="the Locust master's port")
    run.add_argument(
        "--launcher",
        choices=("local", "docker"),
        default="local",
        help="local process groups (default) or Docker containers (needs a running engine)",
    )
    run.add_argument(
        "--time-scale",
        type=float,
        metavar="F",
        help="multiply every ms= wait in the scenario's endpoints by F (0.1: a tenth of the delays)",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: every duration x {QUICK_FACTOR:g} (at most {QUICK_MAX_WINDOW_S:g} s of window per "
        "cell), one repeat (the plan says so)",
    )
    run.add_argument(
        "--quick-factor",
        type=float,
        metavar="F",
        help=f"with --quick: multiply durations by F instead of {QUICK_FACTOR:g} "
        "(the window cap scales alike: 50 x F s)",
    )
    run.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the contract check of each stack before its load (for repeated smoke runs; "
        "the report then says the stacks were not verified)",
    )
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="re-render the report of a stored run")
    report.add_argument("run", help="run directory or run id under --results")
    report.add_argument("--results", default=str(REPO / "results"))
    report.add_argument("--reports", default=str(REPO / "reports"))
    report.set_defaults(func=cmd_report)

    ver = sub.add_parser("verify", help="check targets against targets/CONTRACT.md")
    ver.add_argument("--targets", help="comma-separated target names (default: all)")
    ver.add_argument("--logs", default="/tmp/gwbench-verify-logs")
    ver.add_argument("-v", "--verbose", action="store_true", help="show every check")
    ver.set_defaults(func=cmd_verify)

    serve = sub.add_parser("serve", help="start one target (and its upstream) until Ctrl-C")
    serve.add_argument("target")
    serve.add_argument("--workers", type=int)
    serve.add_argument("--logs", default="/tmp/gwbench-serve-logs")
    serve.set_defaults(func=cmd_serve)

    claims = sub.add_parser("claims", help="rerun published claims, scaled; write the claims page")
    claims.add_argument("names", nargs="*", help="claims to run (default: every file in --claims-dir)")
    claims.add_argument("--quick", action="store_true", help="durations x0.25 (stated on the page)")
    claims.add_argument("--report-only", action="store_true", help="run nothing: render from stored runs")
    claims.add_argument("--claims-dir", default=str(REPO / "scenarios" / "claims"))
    claims.add_argument("--seed", type=int, help="seed of the randomised order")
    claims.add_argument("--results", default=str(REPO / "results"))
    claims.add_argument("--reports", default=str(REPO / "reports"))
    claims.set_defaults(func=cmd_claims)

    cmp = sub.add_parser("compare", help="change per cell from run A to run B; exit 1 on a regression")
    cmp.add_argument("run_a", help="the baseline: run directory or run id under --results")
    cmp.add_argument("run_b", help="the run to judge: run directory or run id under --results")
    cmp.add_argument(
        "--threshold",
        type=float,
        default=10.0,
        help="percent: a significant change worse than this is a regression (default 10)",
    )
    cmp.add_argument("--results", default=str(REPO / "results"))
    cmp.add_argument("--reports", default=str(REPO / "reports"))
    cmp.set_defaults(func=cmd_compare)

    lw = sub.add_parser("locust-worker", help="run a Locust worker for a gwbench master (distributed load)")
    lw.add_argument("master_host", help="the master's address (of gwbench run --locust-workers N)")
    lw.add_argument("--master-port", type=int, default=5557)
    lw.add_argument(
        "--allow-remote", action="store_true", help="allow a master that is not on a loopback address"
    )
    lw.set_defaults(func=cmd_locust_worker)

    scn = sub.add_parser("scenarios", help="list the scenario files with their descriptions")
    scn.add_argument("--scenarios-dir", default=str(REPO / "scenarios"))
    scn.set_defaults(func=cmd_scenarios)

    tgt = sub.add_parser("targets", help="list the stacks")
    tgt.set_defaults(func=cmd_targets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gwbench``; returns the exit code."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    # Also when started from a shell that ignores SIGINT (a background job): Ctrl-C
    # or kill -INT must always tear everything down.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code: int = args.func(args)
        return code
    except (ConfigError, ResultsError, PreflightError, UnsafeTargetError, LaunchError) as exc:
        console.print(f"[red]error[/]: {escape(str(exc))}")
        return EXIT_USAGE if not isinstance(exc, LaunchError) else EXIT_FAILURES
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
