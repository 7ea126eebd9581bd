"""Commands over stored runs: ``gwbench report``, ``claims`` and ``compare``.

The analysis and report modules they use are imported inside the commands: the
other commands (``run`` above all) do not pay for importing them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from harness.cli.common import (
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_USAGE,
    MAX_SEED,
    MIN_SEED,
    REPO,
    SubParsers,
    console,
    find_upstream,
    in_range,
    interrupted_exit_code,
    out,
    render,
    select_targets,
)
from harness.cli.progress import execute_quietly
from harness.model import ConfigError, Measurement, RunManifest, suggest
from harness.results import read_measurements
from harness.run import RunSpec, every_request_failed

if TYPE_CHECKING:
    from harness.claims import Claim
    from harness.claimverdict import ClaimVerdict, Measured
    from harness.compare import RunComparison


def _run_dir(run: str, results: Path) -> Path:
    """A run named on the command line: ``run`` itself if it is a directory, else ``results / run``.

    Raises ConfigError naming what was given when neither is a folder.
    """
    path = Path(run)
    if path.is_dir():
        return path
    if (results / run).is_dir():
        return results / run
    raise ConfigError(f"{run}: no such run (neither a folder nor a run id in {results})")


def cmd_report(args: argparse.Namespace) -> int:
    """``gwbench report``: re-render a stored run's report, warning of each unreadable file and of a
    run in which every request failed (the report renders: exit 0)."""
    run_dir = _run_dir(args.run, Path(args.results))
    measurements, problems = read_measurements(run_dir)
    for problem in problems:
        console.print(f"[yellow]warning[/]: {escape(str(run_dir / problem))}")
    out.print(f"report: {render(run_dir, Path(args.reports))}")
    all_failed = every_request_failed(measurements)
    if all_failed:
        console.print(f"[yellow]warning[/]: {all_failed}")
    return EXIT_OK


def _rerun_claims(
    args: argparse.Namespace, claims: Mapping[str, Claim], names: Sequence[str]
) -> tuple[int, bool]:
    """Run each named claim's scenario and render its report: (failures, whether interrupted).

    It stops at the first interrupted run.
    """
    root, results, reports = Path(args.targets_dir), Path(args.results), Path(args.reports)
    failures = 0
    upstream, upstream_dir = find_upstream(root)
    for number, name in enumerate(names, start=1):
        scenario = claims[name].scenario(quick=args.quick)
        spec = RunSpec(
            scenario=scenario,
            targets=select_targets(root, None, scenario.targets),
            upstream=upstream,
            targets_root=root,
            upstream_dir=upstream_dir,
            results_root=results,
            repo=REPO,
            seed=args.seed if args.seed is not None else int(time.time()),
        )
        console.print(f"claim [bold]{name}[/] ({number}/{len(names)}): {escape(claims[name].title)}")
        outcome = execute_quietly(spec)
        render(outcome.run_dir, reports)
        if outcome.interrupted:
            return failures, True
        failures += len(outcome.failures)
    return failures, False


def claims_table(verdicts: Sequence[tuple[Claim, Measured | None, ClaimVerdict]]) -> Table:
    """Claimed ratio, measured ratio with its 95% interval, verdict and reason: one row per claim."""
    from harness.claims import ratio_text

    table = Table()
    for column in ("claim", "claimed", "measured (95% CI)", "verdict"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for claim, measured, verdict in verdicts:
        comparison = measured.comparison if measured else None
        ours = "-"
        if comparison is not None:
            interval = comparison.interval
            ours = ratio_text(comparison.ratio) + (
                f" [{ratio_text(interval.low)}-{ratio_text(interval.high)}]" if interval else ""
            )
        claimed = "-" if claim.claimed.ratio is None else ratio_text(claim.claimed.ratio)
        table.add_row(claim.name, claimed, ours, verdict.kind, escape(verdict.reason))
    return table


def cmd_claims(args: argparse.Namespace) -> int:
    """``gwbench claims``: rerun the named claims (unless ``--report-only``), print their verdicts,
    write the claims page."""
    from harness.claims import load_claims
    from harness.report.claims import claim_verdicts, write_claims_page

    in_range("--seed", args.seed, MIN_SEED, MAX_SEED)
    claims = load_claims(Path(args.claims_dir))
    names = args.names or list(claims)
    unknown = [n for n in names if n not in claims]
    if unknown:
        hints = "; ".join(f"{n!r}{suggest(n, claims)}" for n in unknown)
        raise ConfigError(f"unknown claim(s) {hints}; known: {', '.join(claims)}")
    results, reports = Path(args.results), Path(args.reports)
    failures = 0
    if not args.report_only:
        failures, interrupted = _rerun_claims(args, claims, names)
        if interrupted:
            console.print("[yellow]interrupted[/]: partial results kept")
            return interrupted_exit_code()
    out.print(claims_table(claim_verdicts({n: claims[n] for n in names}, results)))
    out.print(f"claims page: {write_claims_page(claims, results, reports)}")
    return EXIT_FAILURES if failures else EXIT_OK


def _read_runs(
    args: argparse.Namespace,
) -> tuple[list[tuple[RunManifest, list[Measurement]]], list[str]]:
    """Runs A and B as (manifest, measurements), and the unreadable files (each warned of) for the page."""
    from harness.results import load_manifest

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
    return runs, problems


def compare_table(comparison: RunComparison) -> Table:
    """Per cell: req/s and p99 in A and B with their changes, and the status, coloured."""
    from harness.report.compare import change_row

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
            *(
                escape(str(row[k]))
                for k in (
                    "target",
                    "endpoint",
                    "level",
                    "requests_per_second_a",
                    "requests_per_second_b",
                    "requests_per_second_change",
                )
            ),
            *(escape(str(row[k])) for k in ("p99_a", "p99_b", "p99_change")),
            status,
        )
    return table


def cmd_compare(args: argparse.Namespace) -> int:
    """``gwbench compare``: the change per cell from run A to run B, its page; 1 on a regression."""
    from harness.compare import ShapeError, compare_runs
    from harness.report.compare import write_compare_page

    if not 0 <= args.threshold < 100:
        raise ConfigError(f"--threshold {args.threshold:g}: must be a percentage from 0 to 100")
    runs, problems = _read_runs(args)
    try:
        comparison = compare_runs(runs[0], runs[1], threshold=args.threshold / 100)
    except ShapeError as exc:
        console.print(f"[red]error[/]: {escape(str(exc))}")
        return EXIT_USAGE
    out.print(compare_table(comparison))
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
    if all(
        c.requests_per_second is None or c.requests_per_second.interval is None for c in comparison.changes
    ):
        console.print("[yellow]warning[/]: no cell has 2 repeats on both sides, so no change can be called")
    return EXIT_OK


def add_report_parser(sub: SubParsers) -> None:
    """The ``report`` subcommand and its options."""
    report = sub.add_parser("report", help="re-render the report of a stored run")
    report.add_argument("run", help="run directory or run id under --results")
    report.add_argument("--results", default=str(REPO / "results"), help="folder of stored runs")
    report.add_argument("--reports", default=str(REPO / "reports"), help="folder the HTML report goes to")
    report.set_defaults(func=cmd_report)


def add_claims_parser(sub: SubParsers) -> None:
    """The ``claims`` subcommand and its options."""
    claims = sub.add_parser("claims", help="rerun published claims, scaled; write the claims page")
    claims.add_argument("names", nargs="*", help="claims to run (default: every file in --claims-dir)")
    claims.add_argument("--quick", action="store_true", help="durations x0.25 (stated on the page)")
    claims.add_argument("--report-only", action="store_true", help="run nothing: render from stored runs")
    claims.add_argument(
        "--claims-dir", default=str(REPO / "scenarios" / "claims"), help="folder of claim files"
    )
    claims.add_argument("--seed", type=int, help="seed of the randomised order")
    claims.add_argument("--results", default=str(REPO / "results"), help="folder of stored runs")
    claims.add_argument("--reports", default=str(REPO / "reports"), help="folder the claims page goes to")
    claims.set_defaults(func=cmd_claims)


def add_compare_parser(sub: SubParsers) -> None:
    """The ``compare`` subcommand and its options."""
    cmp = sub.add_parser("compare", help="change per cell from run A to run B; exit 1 on a regression")
    cmp.add_argument("run_a", help="the baseline: run directory or run id under --results")
    cmp.add_argument("run_b", help="the run to judge: run directory or run id under --results")
    cmp.add_argument(
        "--threshold",
        type=float,
        default=10.0,
        help="percent: a significant change worse than this is a regression (default 10)",
    )
    cmp.add_argument("--results", default=str(REPO / "results"), help="folder of stored runs")
    cmp.add_argument("--reports", default=str(REPO / "reports"), help="folder the comparison page goes to")
    cmp.set_defaults(func=cmd_compare)
