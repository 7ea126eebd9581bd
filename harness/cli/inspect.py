"""Commands about the stacks and scenarios: ``gwbench verify``, ``serve``, ``scenarios``, ``targets``.

``verify`` and ``serve`` start stacks (with the upstream service and PostgreSQL);
``scenarios`` and ``targets`` only read files.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from harness.cli.common import (
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_USAGE,
    REPO,
    SubParsers,
    console,
    in_range,
    out,
    select_targets,
    start_upstream,
)
from harness.launch import LaunchError, LocalLauncher
from harness.launch.postgres import Postgres
from harness.launch.services import stack_env
from harness.model import MAX_WORKERS, ConfigError, TargetConfig, discover_targets, load_scenario
from harness.plan import split_cpus
from harness.verify import VerificationReport, verify


def verification_table(name: str, report: VerificationReport) -> Table:
    """Every check of ``report``: ok, or FAIL with its detail."""
    table = Table(title=f"{name}: {'passed' if report.passed else 'FAILED'}", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        table.add_row(
            check.name, "ok" if check.passed else "[red]FAIL[/]", "" if check.passed else escape(check.detail)
        )
    return table


def cmd_verify(args: argparse.Namespace) -> int:
    """``gwbench verify``: start each target in turn and check it against the contract; 1 if any failed."""
    targets = select_targets(Path(args.targets_dir), args.targets)
    root = Path(args.targets_dir)
    logs = Path(args.logs)
    failed = []
    with LocalLauncher() as launcher, Postgres(log_path=logs / "postgres.log") as postgres:
        up = start_upstream(launcher, root, logs)
        for name, config in targets.items():
            try:
                running = launcher.start(
                    config,
                    root / name,
                    workers=config.default_workers,
                    log_path=logs / f"{name}.log",
                    env=stack_env(up, postgres),
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
                out.print(verification_table(name, report))
            out.print(f"{name}: {'passed' if report.passed else 'FAILED'} ({len(report.checks)} checks)")
            if not report.passed:
                failed.append(name)
    if failed:
        console.print(f"[red]verification failed[/]: {', '.join(failed)}")
        return EXIT_FAILURES
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """``gwbench serve``: one target, its upstream and PostgreSQL, on split CPUs, until Ctrl-C."""
    in_range("--workers", args.workers, 1, MAX_WORKERS)
    chosen = select_targets(Path(args.targets_dir), args.target, flag="target")
    if len(chosen) != 1:
        raise ConfigError(f"target: one target to serve, got {args.target!r}")
    ((name, config),) = chosen.items()
    root = Path(args.targets_dir)
    logs = Path(args.logs)
    placement = split_cpus(sorted(os.sched_getaffinity(0)))
    with (
        LocalLauncher(target_cpus=placement.target_cpus) as launcher,
        Postgres(log_path=logs / "postgres.log", cpus=placement.generator_cpus) as postgres,
    ):
        up = start_upstream(launcher, root, logs, cpus=placement.generator_cpus)
        running = launcher.start(
            config,
            root / name,
            workers=args.workers or config.default_workers,
            log_path=logs / f"{name}.log",
            env=stack_env(up, postgres),
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


def scenarios_table(scenarios_dir: Path) -> tuple[Table, list[str]]:
    """(a table of the valid ``scenarios_dir/*.toml``: name, model, description; why each other is not)."""
    table = Table()
    table.add_column("scenario", no_wrap=True)
    table.add_column("model")
    table.add_column("description")
    broken = []
    for path in sorted(scenarios_dir.glob("*.toml")):
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
    return table, broken


def cmd_scenarios(args: argparse.Namespace) -> int:
    """List ``scenarios/*.toml``: name, model, and the one-line description; invalid files say why."""
    table, broken = scenarios_table(Path(args.scenarios_dir))
    out.print(table)
    for problem in broken:
        console.print(f"[red]invalid[/]: {escape(problem)}")
    return EXIT_USAGE if broken else EXIT_OK


def targets_table(targets: dict[str, TargetConfig]) -> Table:
    """One row per stack (``role = "target"``): interface, server, default workers, worker model."""
    table = Table()
    table.add_column("target", no_wrap=True)
    for column in ("interface", "server", "workers", "worker model"):
        table.add_column(column)
    for name, t in targets.items():
        if t.role == "target":
            table.add_row(name, t.interface, t.server, str(t.default_workers), t.worker_model)
    return table


def cmd_targets(args: argparse.Namespace) -> int:
    """List the stacks of ``--targets-dir``."""
    out.print(targets_table(discover_targets(Path(args.targets_dir))))
    return EXIT_OK


def add_verify_parser(sub: SubParsers) -> None:
    """The ``verify`` subcommand and its options."""
    ver = sub.add_parser("verify", help="check targets against targets/CONTRACT.md")
    ver.add_argument("--targets", help="comma-separated target names (default: all)")
    ver.add_argument("--logs", default="/tmp/gwbench-verify-logs", help="folder for the stacks' logs")
    ver.add_argument("-v", "--verbose", action="store_true", help="show every check")
    ver.set_defaults(func=cmd_verify)


def add_serve_parser(sub: SubParsers) -> None:
    """The ``serve`` subcommand and its options."""
    serve = sub.add_parser("serve", help="start one target (and its upstream) until Ctrl-C")
    serve.add_argument("target", help="the stack to start (gwbench targets lists them)")
    serve.add_argument(
        "--workers",
        type=int,
        help=f"worker processes, 1 to {MAX_WORKERS} (default: the target's default_workers)",
    )
    serve.add_argument("--logs", default="/tmp/gwbench-serve-logs", help="folder for its log")
    serve.set_defaults(func=cmd_serve)


def add_scenarios_parser(sub: SubParsers) -> None:
    """The ``scenarios`` subcommand and its option."""
    scn = sub.add_parser("scenarios", help="list the scenario files with their descriptions")
    scn.add_argument("--scenarios-dir", default=str(REPO / "scenarios"), help="folder of scenario files")
    scn.set_defaults(func=cmd_scenarios)


def add_targets_parser(sub: SubParsers) -> None:
    """The ``targets`` subcommand."""
    tgt = sub.add_parser("targets", help="list the stacks")
    tgt.set_defaults(func=cmd_targets)
