"""What every ``gwbench`` command shares: paths, exit codes, signals, the two consoles, and target lookup.

Exit codes: 0 success; 1 a target or cell failed, or every request of the run failed (the
run still finished, its report rendered), or the results could not be written (the run
stopped); 2 bad configuration or usage; 130 interrupted (Ctrl-C or SIGTERM); 129 hung up
(SIGHUP).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TypeAlias

from rich.console import Console

from harness.launch import LocalLauncher, RunningTarget
from harness.launch.base import HURRY
from harness.launch.services import UPSTREAM, Upstream
from harness.model import ConfigError, TargetConfig, discover_targets, suggest
from harness.paths import MigrationPath, load_paths
from harness.runanalysis import RunAnalysis

REPO = Path(__file__).resolve().parents[2]
EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_HANGUP = 0, 1, 2, 130, 129

_received: list[int] = []
"""The signals turned into an interruption, in order (the exit code tells a hang-up apart)."""


def _signal_as_interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C, SIGTERM and SIGHUP tear the run down (partial results, report, nothing left).

    The first raises KeyboardInterrupt. A later one (while that teardown runs) raises
    nothing, which could cut the teardown short (a cgroup left, no report): it sets
    :data:`~harness.launch.base.HURRY`, so what is left is killed at once and the
    teardown finishes. On a hang-up the terminal is gone and a write to it fails (EIO),
    which would also cut the clean-up short: standard output and error that are a
    terminal go to /dev/null first.
    """
    first = not _received
    _received.append(signum)
    if signum == signal.SIGHUP:
        _detach_from_terminal()
    if not first:
        HURRY.set()
        return
    raise KeyboardInterrupt(f"signal {signum}")


def _detach_from_terminal() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            if os.isatty(fd):
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)


SignalHandler: TypeAlias = "Callable[[int, FrameType | None], object] | int | signal.Handlers | None"
SignalHandlers: TypeAlias = "dict[int, SignalHandler]"
"""What :func:`interrupt_on_signals` replaced, for :func:`restore_signals`."""


def interrupt_on_signals() -> SignalHandlers:
    """Ctrl-C, SIGTERM and SIGHUP: the first raises KeyboardInterrupt in the main thread, later ones
    hurry the teardown (see :func:`_signal_as_interrupt`). Also when started from a shell that
    ignores SIGINT (a background job): Ctrl-C or kill -INT must always tear everything down.

    Starts a new count of signals; returns the handlers it replaced.
    """
    _received.clear()
    HURRY.clear()
    return {signum: signal.signal(signum, _signal_as_interrupt) for signum in _SIGNALS}


def restore_signals(previous: SignalHandlers) -> None:
    """Put back the handlers :func:`interrupt_on_signals` replaced (a command run in-process, as
    the tests do, must leave its caller's Ctrl-C as it found it)."""
    for signum, handler in previous.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def interrupted_exit_code() -> int:
    """The exit code of an interrupted command: EXIT_HANGUP after a SIGHUP, else EXIT_INTERRUPTED."""
    return EXIT_HANGUP if signal.SIGHUP in _received else EXIT_INTERRUPTED


MAX_PORT = 65_535
MAX_PID = 4_194_304
"""The largest process id Linux gives (``/proc/sys/kernel/pid_max`` at most, 2**22)."""
MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1
"""A seed is a 64-bit integer, as in a TOML file."""
MAX_LOCUST_WORKERS = 1024
"""``--locust-workers`` at most: one Locust worker per generator core of a large fleet."""

PIPE_WIDTH = 160
"""Columns of output that is not a terminal (a pipe, a CI log) unless COLUMNS says otherwise:
rich would take 80 and squeeze a wide table into one character per line."""


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


console = _console(stderr=True)
"""Progress, warnings and errors (stderr)."""
out = _console(stderr=False)
"""The command's result: plans, tables, paths of written pages (stdout)."""

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` returns: each command module adds its subcommands to it."""


def find_upstream(root: Path) -> tuple[TargetConfig, Path]:
    """The upstream service and its folder: ``root``'s own, else the harness's.

    A user's own folder of targets has none: its targets call the harness's upstream.
    Raises ConfigError when neither folder has a target with ``role = "upstream"``.
    """
    for folder in (root, REPO / "targets"):
        for name, config in discover_targets(folder).items():
            if config.role == "upstream":
                return config, folder / name
    raise ConfigError(f'{root}: no target with role = "upstream"')


def start_upstream(
    launcher: LocalLauncher, root: Path, logs: Path, cpus: Sequence[int] | None = None
) -> RunningTarget:
    """Start the upstream service (see :func:`find_upstream`) with its default workers.

    Its log goes to ``logs/upstream.log``; ``cpus`` pins it (None: not pinned).
    Raises LaunchError.
    """
    config, folder = find_upstream(root)
    return Upstream(launcher, config, folder, log_path=logs / f"{UPSTREAM}.log", cpus=cpus).start()


def in_range(flag: str, value: float | None, low: float, high: float) -> None:
    """Raise ConfigError unless ``value`` (None: the flag not given) is from ``low`` to ``high``:
    ``--locust-port: must be >= 1 and <= 65535, got 70000``."""
    if value is not None and not low <= value <= high:  # NaN is in no range
        raise ConfigError(f"{flag}: must be >= {_number(low)} and <= {_number(high)}, got {_number(value)}")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def select_targets(
    root: Path, wanted: str | None, scenario_targets: Sequence[str] = (), *, flag: str = "--targets"
) -> dict[str, TargetConfig]:
    """Targets to use: ``wanted`` (comma-separated names, of ``flag``), else the scenario's,
    else all of ``root``'s stacks.

    Raises ConfigError naming any unknown target, with a suggestion, and when
    ``wanted`` is given but names none (``--targets ''`` is not "all").
    """
    stacks = {name: t for name, t in discover_targets(root).items() if t.role == "target"}
    given = [n.strip() for n in wanted.split(",") if n.strip()] if wanted is not None else []
    names = given or list(scenario_targets)
    if wanted is not None and not names:
        raise ConfigError(f"{flag}: names no target, got {wanted!r}; known: {', '.join(stacks)}")
    if not names:
        return stacks
    unknown = [n for n in names if n not in stacks]
    if unknown:
        hints = "; ".join(f"{n!r}{suggest(n, stacks)}" for n in unknown)
        raise ConfigError(f"unknown target(s) {hints}; known: {', '.join(stacks)}")
    return {n: stacks[n] for n in names}


PATHS_FILE = REPO / "scenarios" / "paths" / "migrations.toml"
"""The migration paths whose table opens a run's report and ends ``gwbench run``."""


def migration_paths() -> tuple[MigrationPath, ...]:
    """The paths of :data:`PATHS_FILE`. Raises ConfigError (one line) for a bad file."""
    return load_paths(PATHS_FILE)


def render(
    run_dir: Path,
    reports: Path,
    *,
    paths: Sequence[MigrationPath] | None = None,
    analysed: tuple[RunAnalysis, list[str]] | None = None,
) -> Path:
    """Write the HTML report of the stored run ``run_dir`` under ``reports``; the path of its index page.

    ``paths`` default to :func:`migration_paths`; ``analysed`` is the run's analysis and the
    problems met reading it, when the caller has them (then the run is not analysed again).
    The report package is imported here, not at the top: only the commands that render need it.
    """
    from harness.report import write_reports

    chosen = migration_paths() if paths is None else paths
    return write_reports(run_dir, reports, paths=chosen, analysed=analysed)
