"""The ``gwbench`` command: one ``cmd_<name>`` function per subcommand, grouped in modules.

``run`` (a scenario, with ``progress`` its display), ``results`` (report, claims,
compare over stored runs), ``inspect`` (verify, serve, scenarios, targets),
``locust`` (locust-worker); ``parser`` builds the argument parser from their parts
and ``common`` holds what they share. Only this package prints: the modules it
calls return records, text or tables.

Exit codes: 0 success; 1 a target or cell failed (the run still finished);
2 bad configuration or usage; 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from types import FrameType

from rich.markup import escape

from harness.cli.common import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_USAGE, console
from harness.cli.parser import build_parser
from harness.launch import LaunchError
from harness.load import UnsafeTargetError
from harness.model import ConfigError
from harness.results import ResultsError
from harness.run import PreflightError

__all__ = ["build_parser", "main"]


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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
