"""The ``gwbench`` command: one ``cmd_<name>`` function per subcommand, grouped in modules.

``run`` (a scenario, with ``progress`` its display), ``results`` (report, claims,
compare over stored runs), ``inspect`` (verify, serve, scenarios, targets),
``locust`` (locust-worker); ``parser`` builds the argument parser from their parts
and ``common`` holds what they share. Only this package prints: the modules it
calls return records, text or tables.

Exit codes: 0 success; 1 a target or cell failed, or every request of the run failed (the
run still finished, its report rendered), or the results could not be written (the run
stopped); 2 bad configuration or usage; 130 interrupted (Ctrl-C or SIGTERM); 129 hung up
(SIGHUP: the terminal closed), torn down and stored as an interruption.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape

from harness.cli.common import (
    EXIT_FAILURES,
    EXIT_HANGUP,
    EXIT_USAGE,
    console,
    interrupt_on_signals,
    interrupted_exit_code,
    restore_signals,
)
from harness.cli.parser import build_parser
from harness.launch import LaunchError
from harness.load import UnsafeTargetError
from harness.model import ConfigError
from harness.results import ResultsError, StorageError
from harness.run import PreflightError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gwbench``; returns the exit code."""
    previous = interrupt_on_signals()
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except (ConfigError, ResultsError, PreflightError, UnsafeTargetError, LaunchError) as exc:
        console.print(f"[red]error[/]: {escape(str(exc))}")
        return EXIT_FAILURES if isinstance(exc, LaunchError | StorageError) else EXIT_USAGE
    except KeyboardInterrupt:
        code = interrupted_exit_code()
        console.print("[yellow]hung up[/]" if code == EXIT_HANGUP else "[yellow]interrupted[/]")
        return code
    finally:
        restore_signals(previous)
