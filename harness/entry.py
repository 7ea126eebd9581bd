"""The ``gwbench`` command's entry point, kept free of imports.

A load driver runs in a spawned process, and a spawned process first imports the
program's main module again: for the ``gwbench`` script, whatever it imports at its
top. Importing the whole CLI there (the runner, the Docker SDK, the database driver)
cost every cell a third of a second; this module defers that import to :func:`main`.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 130
"""As ``harness.cli.common.EXIT_INTERRUPTED``: not imported from there, to stay light."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI (:func:`harness.cli.main`) and return its exit code.

    A Ctrl-C while the CLI is still being imported (its first half second, before it
    handles signals itself) exits 130 with one line, not a traceback.
    """
    try:
        from harness.cli import main as cli_main  # deferred: see the module docstring
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        code = cli_main(argv)
        # Everything is done and stopped: a Ctrl-C now (one of several pressed) must not kill the
        # interpreter's shutdown, which puts back the default handlers it would die by.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
    except KeyboardInterrupt:  # between the CLI's handlers and these
        return EXIT_INTERRUPTED
    return code
