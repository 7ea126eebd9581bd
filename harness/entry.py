"""The ``gwbench`` command's entry point, kept free of imports.

A load driver runs in a spawned process, and a spawned process first imports the
program's main module again: for the ``gwbench`` script, whatever it imports at its
top. Importing the whole CLI there (the runner, the Docker SDK, the database driver)
cost every cell a third of a second; this module defers that import to :func:`main`.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI (:func:`harness.cli.main`) and return its exit code."""
    from harness.cli import main as cli_main  # deferred: see the module docstring

    return cli_main(argv)
