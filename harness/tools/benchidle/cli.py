"""``make bench-idle``: the server memory each idle connection costs, per stack.

The command line (``python -m harness.tools.benchidle``): a line per round as it finishes, a
table per stack, notes, and the results file; exit 2 for bad arguments or too few files, 1 when
a round failed or the results cannot be written, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import random
import signal
from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.load.stream import FileLimitError
from harness.model import ConfigError, TargetConfig, discover_targets, suggest
from harness.stats import Spread
from harness.tools.benchidle.method import BenchError
from harness.tools.benchidle.records import (
    READINGS,
    IdleBench,
    IdleFailure,
    IdleRound,
    Reading,
    hold_counts,
    summarise,
    write_results,
)
from harness.tools.benchidle.rounds import BenchSpec, cpu_placement, run_bench, unsupported_reason

REPO = Path(__file__).resolve().parents[3]


LABELS: dict[Reading, str] = {"pss": "PSS", "pss_anon": "PSS anon", "uss": "USS", "cgroup": "cgroup"}


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _spread_cell(spread: Spread | None) -> str:
    """``"20.9 (20.1-21.7)"``: the median with min-max, or the one value when they agree."""
    if spread is None:
        return "-"
    if spread.min == spread.max:
        return _kib(spread.median)
    return f"{spread.median:.1f} ({spread.min:.1f}-{spread.max:.1f})"


def format_outcome(outcome: IdleRound | IdleFailure) -> str:
    """One line per round as it finishes."""
    label = f"round {outcome.round}: {outcome.target:<29}"
    if isinstance(outcome, IdleFailure):
        return f"{label} [red]failed:[/] {outcome.reason}"
    hold = outcome.hold
    counts = (
        f"{hold.connections_open_at_end}/{hold.connections_requested} held, "
        f"{hold.connections_failed} failed, {hold.connections_dropped} dropped"
    )
    if not hold.connections_open_at_end:
        return f"{label} {counts} [yellow](the server kept none open: {hold_counts(hold)})[/]"
    figures = ", ".join(f"{LABELS[r]} {_kib(outcome.per_connection_kib(r))}" for r in READINGS)
    return f"{label} {counts}; KiB per connection: {figures}"


def format_table(bench: IdleBench) -> Table:
    """A row per stack: medians over its rounds with min-max; unsupported and failed stacks say so."""
    title = (
        f"Memory per idle {'WebSocket' if bench.kind == 'ws' else 'HTTP keep-alive'} connection "
        f"({bench.connections} opened per round): KiB, median (min-max) over the rounds"
    )
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("stack", no_wrap=True)
    for name in ("workers", "rounds", "held", "failed", "dropped", *LABELS.values()):
        table.add_column(name, justify="right")
    summaries = summarise(bench.measurements)
    for name in sorted(bench.stacks):
        workers = str(bench.stacks[name]["workers"])
        summary = summaries.get(name)
        if name in bench.unsupported:
            table.add_row(name, workers, "", "[dim]not supported[/]")
        elif summary is None:
            failed = any(f.target == name for f in bench.failures)
            table.add_row(name, workers, f"0/{bench.rounds}", "[red]failed[/]" if failed else "not measured")
        else:
            table.add_row(
                name, workers, f"{summary.rounds}/{bench.rounds}",
                f"{summary.connections_open_at_end.median:.0f}",
                str(summary.connections_failed), str(summary.connections_dropped),
                *(_spread_cell(summary.kib[r]) for r in READINGS),
            )  # fmt: skip
    return table


def format_notes(bench: IdleBench) -> list[str]:
    lines = [f"{name}: {reason}" for name, reason in sorted(bench.unsupported.items())]
    for name, summary in summarise(bench.measurements).items():
        if not summary.connections_open_at_end.max:
            why = "it closes each after answering" if bench.kind == "http" else "see each round's errors"
            lines.append(f"{name}: kept no idle connection open ({why})")
    lines += [f"[red]{f.target}, round {f.round}, failed:[/] {f.reason}" for f in bench.failures]
    if bench.cgroup_unavailable:
        lines.append(f"[yellow]{bench.cgroup_unavailable}[/]")
    lines.append(
        "held: connections still open at the end (median); failed, dropped: summed over the rounds; "
        f"load average (1 min) {bench.load_average_start:.1f} at the start, {bench.load_average_end:.1f} "
        "at the end"
    )
    if bench.status == "interrupted":
        lines.append("[yellow]interrupted: the figures cover the rounds finished[/]")
    return lines


def _choose(stacks: dict[str, TargetConfig], names: str | None) -> dict[str, TargetConfig]:
    if not names:
        return stacks
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    for name in chosen:
        if name not in stacks:
            raise BenchError(f"unknown stack {name!r}{suggest(name, stacks)}; known: {', '.join(stacks)}")
    return {name: stacks[name] for name in chosen}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.tools.benchidle", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--connections", type=int, default=1000, help="held per stack (default 1000)")
    parser.add_argument("--kind", choices=("ws", "http"), default="ws", help="default ws")
    parser.add_argument("--rounds", type=int, default=3, help="fresh launches per stack (default 3)")
    parser.add_argument("--targets", help="comma-separated stacks (default: every stack)")
    parser.add_argument("--seed", type=int, help="for the order of the stacks (default: random)")
    parser.add_argument("--targets-dir", type=Path, default=REPO / "targets", help="folder of targets")
    parser.add_argument("--results", type=Path, default=REPO / "results", help="folder for the JSON file")
    args = parser.parse_args(argv)
    # Also when started from a shell that ignores SIGINT (a background job): Ctrl-C
    # or kill -INT must stop the stacks and the driver, as in gwbench.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    console = Console()
    if not console.is_terminal:  # a log or CI: rich would wrap the table at 80 columns
        console = Console(width=180)
    if not 1 <= args.connections <= 20_000 or not 1 <= args.rounds <= 20:
        console.print("[red]bench-idle: connections 1-20000, rounds 1-20[/]")
        return 2
    try:
        every = {n: c for n, c in discover_targets(args.targets_dir).items() if c.role == "target"}
        stacks = _choose(every, args.targets)
    except (ConfigError, BenchError) as exc:
        console.print(f"[red]bench-idle:[/] {exc}")
        return 2
    if not stacks:
        console.print(f"[red]bench-idle:[/] no stack (target.toml) in {args.targets_dir}")
        return 2
    seed = random.SystemRandom().randrange(2**31) if args.seed is None else args.seed
    spec = BenchSpec(stacks, args.targets_dir, args.kind, args.connections, args.rounds, seed)
    runs = args.rounds * sum(unsupported_reason(c, args.kind) is None for c in stacks.values())
    placement = cpu_placement()
    console.print(
        f"stacks on CPU {','.join(map(str, placement.target_cpus))}, driver on CPU "
        f"{','.join(map(str, placement.generator_cpus))}; seed {seed}"
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} rounds"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as bar:  # fmt: skip
        task = bar.add_task("starting", total=runs)

        def on_done(outcome: IdleRound | IdleFailure) -> None:
            bar.console.print(format_outcome(outcome))
            bar.advance(task)

        try:
            bench = run_bench(
                spec, on_start=lambda label: bar.update(task, description=label), on_done=on_done
            )
        except FileLimitError as exc:
            console.print(f"[red]bench-idle:[/] {exc}")
            return 2
    console.print(format_table(bench))
    for line in format_notes(bench):
        console.print(line)
    try:
        path = write_results(bench, args.results)
    except OSError as exc:
        console.print(f"[red]bench-idle: cannot write the results:[/] {exc}")
        return 1
    console.print(f"results: {path}")
    if bench.status == "interrupted":
        console.print("[red]bench-idle interrupted:[/] every stack and driver was stopped")
        return 130
    if bench.failures:
        console.print(f"[red]bench-idle: {len(bench.failures)} of {runs} rounds failed[/] (reasons above)")
        return 1
    return 0
