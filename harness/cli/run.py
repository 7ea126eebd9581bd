"""``gwbench run``: a scenario against the stacks (or the user's own app), then its report.

The command goes in steps: the scenario with the command line's overrides, the
targets (the stacks, or ``--url``), the run's spec, then either the plan
(``--dry-run``) or the run itself with its progress display, and the exit code.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from harness import cost
from harness.cli.common import (
    EXIT_FAILURES,
    EXIT_OK,
    MAX_LOCUST_WORKERS,
    MAX_PORT,
    MAX_SEED,
    MIN_SEED,
    REPO,
    SubParsers,
    console,
    find_upstream,
    in_range,
    interrupted_exit_code,
    migration_paths,
    out,
    render,
    select_targets,
)
from harness.cli.progress import execute_with_progress
from harness.cli.yourapp import launched_apps, your_apps
from harness.idlesummary import idle_headline
from harness.launch import leftovers
from harness.model import (
    QUICK_FACTOR,
    QUICK_MAX_WINDOW_S,
    ConfigError,
    Scenario,
    TargetConfig,
    load_scenario,
    suggest,
)
from harness.paths import MigrationPath, PathRow, run_paths
from harness.plan import Block, planned_seconds, split_cpus
from harness.report.formats import format_headline
from harness.report.paths import PATH_COLUMNS, format_path_lines, path_cells
from harness.report.streamwords import stream_headline
from harness.results import read_measurements
from harness.run import (
    ExternalTarget,
    RunOutcome,
    RunSpec,
    blocks_for,
    check_external,
    check_writable,
    every_request_failed,
    preflight,
)
from harness.runanalysis import RunAnalysis, analyse_run
from harness.streamcapacity import capacity_sentence


def with_endpoint(scenario: Scenario, endpoint: str, targets: list[str], *, origin: str) -> Scenario:
    """The scenario aimed at one endpoint of ``targets``, validated like a scenario file.

    Raises ConfigError naming ``origin`` when the endpoint is not a valid one.
    """
    data = {**scenario.model_dump(), "endpoints": [endpoint], "targets": targets}
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {exc.errors()[0]['msg']}") from exc


def check_flags(args: argparse.Namespace) -> None:
    """Raise ConfigError for a numeric flag out of range, a declaration of your app (``--pid``,
    ``--interface``, ``--workers``, ``--threads``) without ``--url``, ``--targets`` with it, or
    ``--app`` with ``--url``, with the Docker launcher, or without a scenario of its own."""
    in_range("--locust-port", args.locust_port, 1, MAX_PORT)
    in_range("--locust-workers", args.locust_workers, 1, MAX_LOCUST_WORKERS)
    in_range("--seed", args.seed, MIN_SEED, MAX_SEED)
    for flag in ("pid", "interface", "workers", "threads"):
        if getattr(args, flag) is not None and args.url is None:
            raise ConfigError(f"--{flag}: only with --url (what you declare of your own app)")
    if args.targets is not None and args.url is not None:
        raise ConfigError("--targets: not with --url (the app at the URL is the one target)")
    if args.app is not None:
        if args.url is not None:
            raise ConfigError("--app: not with --url (apps you started and apps launched here: two runs)")
        if args.launcher != "local":
            raise ConfigError("--app: with the local launcher only (your app is not built into an image)")
        if args.scenario == DEFAULT_SCENARIO:
            raise ConfigError("--app: name a scenario whose endpoints are your app's (as examples/ has)")


def _scenario_for(args: argparse.Namespace) -> Scenario:
    """The scenario file with ``--quick`` (its note printed), ``--time-scale`` and ``--driver`` applied.

    Raises ConfigError for an unreadable scenario or an option out of range or not
    fitting the scenario.
    """
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
    return scenario


def _locustfile(args: argparse.Namespace, scenario: Scenario) -> Path | None:
    """``--locustfile`` if given; raises ConfigError for Locust options without the Locust driver
    or a locustfile that is not a file."""
    locust_options = (args.locustfile, args.locust_workers)
    if any(option is not None for option in locust_options) and scenario.driver != "locust":
        raise ConfigError("--locustfile and --locust-workers need --driver locust")
    if not args.locustfile:
        return None
    locustfile = Path(args.locustfile)
    if not locustfile.is_file():
        raise ConfigError(f"--locustfile: {locustfile}: file not found")
    return locustfile


def _targets_for(
    args: argparse.Namespace, scenario: Scenario
) -> tuple[Scenario, dict[str, TargetConfig], dict[str, ExternalTarget]]:
    """(the scenario, the targets to load, the user's apps of ``--url`` by name, or none).

    With ``--url`` the scenario is aimed at that URL's endpoint. Raises ConfigError for
    an unknown target, or a per-target setting of the scenario naming a target not in this run.
    """
    if args.url is not None:  # --url '' is a bad URL, not "no URL"
        external, endpoint, configs = your_apps(args)
        scenario = with_endpoint(scenario, endpoint, list(configs), origin=f"--url {args.url[0]!r}")
        return scenario, configs, external
    if args.app is not None:
        targets = launched_apps(args, scenario, Path(args.targets_dir))
        scenario = scenario.model_copy(update={"targets": tuple(targets)})
    else:
        targets = select_targets(Path(args.targets_dir), args.targets, scenario.targets)
    for key in ("workers", "cpus", "memory_mib"):
        extra = [name for name in getattr(scenario, key) if name not in targets]
        if extra:
            raise ConfigError(
                f"{args.scenario}: {key}: "
                + "; ".join(f"{n!r} is not a target of this run{suggest(n, targets)}" for n in extra)
            )
    _cpus_fit(args, scenario, targets)
    return scenario, targets, {}


def _cpus_fit(args: argparse.Namespace, scenario: Scenario, targets: dict[str, TargetConfig]) -> None:
    """Raise ConfigError for a stack given more cores of CPU time than the stacks' CPUs hold.

    A cgroup's quota cannot give more CPU time than the CPUs the stack is pinned to: the
    target's share of the CPUs this machine lets the harness use (:func:`harness.plan.split_cpus`:
    the load generator and the upstream have the rest)."""
    placement = split_cpus(sorted(os.sched_getaffinity(0)))
    available = len(placement.target_cpus)
    for name, config in targets.items():
        cpus = scenario.cpus.get(name, config.cpus)
        if cpus > available:
            where = f"{args.scenario}: cpus.{name}" if name in scenario.cpus else f"{name}: target.toml: cpus"
            pinned = ", ".join(map(str, placement.target_cpus))
            raise ConfigError(
                f"{where}: must be <= {available} (the CPUs the stacks run on here: "
                f"{pinned}; the load generator has the rest), got {cpus:g}"
            )


def _spec(
    args: argparse.Namespace,
    scenario: Scenario,
    targets: dict[str, TargetConfig],
    external: dict[str, ExternalTarget],
    locustfile: Path | None,
) -> RunSpec:
    """The run's spec; its seed is ``--seed``, else the scenario's, else the current time."""
    upstream, upstream_dir = find_upstream(Path(args.targets_dir))
    seed = (
        args.seed
        if args.seed is not None
        else (scenario.seed if scenario.seed is not None else int(time.time()))
    )
    return RunSpec(
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


def plan_lines(scenario: Scenario, blocks: Sequence[Block], total_s: float) -> list[str]:
    """The plan of ``--dry-run``, one printed line each: every cell id, every phase, then the totals."""
    lines = [cell.cell_id for block in blocks for cell in block.cells]
    unit = "connections" if scenario.model == "closed" else "requests/s"
    for phase in scenario.phases():
        lines.append(
            f"  phase {phase.index} (stage {phase.stage}, {phase.kind}): "
            f"{phase.start_s:g}-{phase.start_s + phase.duration_s:g} s, "
            f"{phase.start_level:g} -> {phase.end_level:g} {unit}"
        )
    searches = (
        f"; each saturation search takes up to {scenario.saturation.max_steps()} steps"
        if scenario.model == "saturation"
        else ""
    )
    cells = sum(len(b.cells) for b in blocks)
    lines.append(f"{cells} cells, {total_s:.0f} s of load at most (plus start-up and verification){searches}")
    return lines


def verdict_lines(run: RunAnalysis) -> list[str]:
    """The run's verdict, one line per endpoint (as the list of runs shows it; a stream endpoint in
    its own terms, :func:`harness.report.streamwords.stream_headline`, and an idle-connections one
    in its own, :func:`harness.idlesummary.idle_headline`)."""
    lines = [
        f"verdict: {escape(format_headline([v]))}"
        for v in run.verdicts_in_order
        if v.endpoint not in run.apart
    ]
    streams, idle = run.streams, run.idle
    return (
        lines
        + [
            f"verdict: {escape(stream_headline(endpoint, kind, streams[streams['endpoint'] == endpoint]))}"
            for endpoint, kind in run.stream_kinds.items()
        ]
        + [
            f"verdict: {escape(capacity_sentence(endpoint, run.stream_capacity, run.manifest.scenario.slo))}"
            for endpoint, kind in run.stream_kinds.items()
            if kind == "sse"
        ]
        + [
            f"verdict: {escape(idle_headline(endpoint, kind, idle[idle['endpoint'] == endpoint]))}"
            for endpoint, kind in run.idle_kinds.items()
        ]
    )


def path_table(rows: Sequence[PathRow]) -> Table:
    """The migration-path table for a terminal (:func:`harness.report.paths.path_cells`)."""
    table = Table(title="migration paths: capacity within the SLO", title_justify="left")
    for key, heading in PATH_COLUMNS:
        table.add_column(heading, overflow="fold", justify="right" if key.endswith("ratio") else "left")
    for row in rows:
        cells = path_cells(row)
        table.add_row(*(escape(cells[key]) for key, _ in PATH_COLUMNS))
    return table


def print_paths(run: RunAnalysis, paths: Sequence[MigrationPath]) -> None:
    """The path table after the verdict lines: a rich table in a terminal, plain lines of at most
    160 columns otherwise (:func:`harness.report.paths.format_path_lines`); nothing without rows."""
    rows = run_paths(run, paths)
    if not rows:
        return
    load = run.manifest.scenario.target_requests_per_second
    if out.is_terminal:
        out.print(path_table(rows))
        out.print(escape(f"cost for {load:,.0f} requests/s: {cost.assumption(1.0)}"))
        return
    for line in format_path_lines(rows, load, cost.assumption(1.0)):
        out.print(line, markup=False)


def _finish(args: argparse.Namespace, outcome: RunOutcome, paths: Sequence[MigrationPath]) -> int:
    """Print where the results (and the report, unless ``--no-report``) went, the verdict and the
    migration-path table; the exit code.

    The run is read and analysed once, for the report, the verdict, the paths and the all-failed
    check. A run in which every request failed exits with EXIT_FAILURES, as a failed cell does.
    """
    console.print(f"results: {outcome.run_dir}")
    measurements, problems = read_measurements(outcome.run_dir)
    run = analyse_run(outcome.manifest, measurements)
    if not args.no_report:
        page = render(outcome.run_dir, Path(args.reports), paths=paths, analysed=(run, problems))
        out.print(f"report: {page}")
    for line in verdict_lines(run):
        out.print(line)
    print_paths(run, paths)
    if outcome.interrupted:
        console.print("[yellow]interrupted[/]: partial results kept")
        return interrupted_exit_code()
    all_failed = every_request_failed(measurements)
    if all_failed:
        console.print(f"[red]{all_failed}[/]")
    if outcome.failures:
        console.print(
            f"[red]{len(outcome.failures)} failure(s)[/]: "
            + "; ".join(f"{f.cell_id or f.target}" for f in outcome.failures[:5])
        )
    return EXIT_FAILURES if all_failed or outcome.failures else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """``gwbench run``: the plan with ``--dry-run``, else the run and its report."""
    check_flags(args)
    if args.scenario == DEFAULT_SCENARIO and not args.dry_run:
        console.print(
            "no scenario given: the default suite (scenarios/default.toml, every stack); `gwbench "
            "scenarios` lists the others, `--dry-run` shows the plan, Ctrl-C stops and keeps what was "
            "measured"
        )
    scenario = _scenario_for(args)
    locustfile = _locustfile(args, scenario)
    scenario, targets, external = _targets_for(args, scenario)
    spec = _spec(args, scenario, targets, external, locustfile)
    blocks = blocks_for(spec)
    total_s = planned_seconds(scenario, blocks)
    if args.dry_run:
        for line in plan_lines(scenario, blocks, total_s):
            out.print(line)
        return EXIT_OK
    preflight(spec)  # before the plan is printed: a refusal is the only line (run again by execute)
    check_external(spec)  # your app answers each endpoint once, before any load
    paths = migration_paths()  # a bad paths file is said before the load, not after it
    others = leftovers.other_harnesses()
    if others:
        console.print(
            f"[yellow]warning[/]: another gwbench run is under way on this machine (pid "
            f"{', '.join(map(str, others))}): the runs share its CPUs, so the figures of both are distorted"
        )
    if not args.no_report:
        check_writable(Path(args.reports), "reports folder")
    cells = sum(len(b.cells) for b in blocks)
    stacks = len({b.target for b in blocks})
    what = f"{cells} cells"
    if scenario.model == "saturation":  # progress counts the search's steps, each a measured cell
        what = f"{cells} searches of up to {scenario.saturation.max_steps()} steps"
        cells *= scenario.saturation.max_steps()
    console.print(
        f"scenario [bold]{scenario.name}[/]: {stacks} stacks, {what}, "
        f"~{total_s / 60:.1f} min of load at most (seed {spec.seed})"
    )
    return _finish(args, execute_with_progress(spec, total_s, cells), paths)


DEFAULT_SCENARIO = str(REPO / "scenarios" / "default.toml")


def add_run_parser(sub: SubParsers) -> None:
    """The ``run`` subcommand and its options."""
    run = sub.add_parser("run", help="run a scenario and render its report")
    run.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help="scenario file (default: scenarios/default.toml, the capacity of every stack, about 17 minutes)",
    )
    run.add_argument("--targets", help="comma-separated target names (default: the scenario's, else all)")
    run.add_argument("--seed", type=int, help="seed of the randomised order (a 64-bit integer)")
    run.add_argument("--results", default=str(REPO / "results"), help="folder the run is stored in")
    run.add_argument("--reports", default=str(REPO / "reports"), help="folder the HTML report goes to")
    run.add_argument("--no-report", action="store_true", help="store the results, render no report")
    run.add_argument("--dry-run", action="store_true", help="print the plan, launch nothing")
    run.add_argument(
        "--url",
        action="append",
        metavar="[NAME=]URL",
        help="measure your own running app at this URL instead of the stacks; repeat as NAME=URL for "
        "several apps on the same endpoint",
    )
    run.add_argument(
        "--app",
        action="append",
        metavar="NAME=wsgi|asgi:MODULE:CALLABLE",
        help="launch your own app under each server of its interface, with the stacks' limits; MODULE "
        "may be a .py file; repeat for your WSGI app and its ASGI port (with a scenario of your endpoints)",
    )
    run.add_argument(
        "--pid",
        action="append",
        metavar="[NAME=]PID",
        help="with --url: the app's process, to monitor its CPU and memory",
    )
    run.add_argument(
        "--interface",
        action="append",
        metavar="[NAME=]wsgi|asgi",
        help="with --url: the app's interface (the path table compares each WSGI app with each ASGI app)",
    )
    run.add_argument(
        "--workers",
        action="append",
        metavar="[NAME=]N",
        help="with --url and --interface wsgi: the app's worker processes (with --threads: its ceiling)",
    )
    run.add_argument(
        "--threads", action="append", metavar="[NAME=]N", help="with --workers: threads per worker"
    )
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
        help="with --driver locust: be a Locust master and wait for N workers (gwbench locust-worker), "
        f"1 to {MAX_LOCUST_WORKERS}",
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
