"""What every ``gwbench`` command shares: paths, exit codes, the two consoles, and target lookup.

Exit codes: 0 success; 1 a target or cell failed, or every request of the run
failed (the run still finished, its report rendered); 2 bad configuration or
usage; 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from rich.console import Console

from harness.launch import LocalLauncher, RunningTarget
from harness.launch.services import UPSTREAM, Upstream
from harness.model import ConfigError, TargetConfig, discover_targets, suggest

REPO = Path(__file__).resolve().parents[2]
EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

console = Console(stderr=True, highlight=False, soft_wrap=True)
"""Progress, warnings and errors (stderr)."""
out = Console(highlight=False, soft_wrap=True)
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


def select_targets(
    root: Path, wanted: str | None, scenario_targets: Sequence[str] = ()
) -> dict[str, TargetConfig]:
    """Targets to use: by --targets, else the scenario's, else all of ``root``'s stacks.

    Raises ConfigError naming any unknown target, with a suggestion.
    """
    stacks = {name: t for name, t in discover_targets(root).items() if t.role == "target"}
    names = [n.strip() for n in wanted.split(",") if n.strip()] if wanted else list(scenario_targets)
    if not names:
        return stacks
    unknown = [n for n in names if n not in stacks]
    if unknown:
        hints = "; ".join(f"{n!r}{suggest(n, stacks)}" for n in unknown)
        raise ConfigError(f"unknown target(s) {hints}; known: {', '.join(stacks)}")
    return {n: stacks[n] for n in names}


def render(run_dir: Path, reports: Path) -> Path:
    """Write the HTML report of the stored run ``run_dir`` under ``reports``; the path of its index page.

    The report package is imported here, not at the top: only the commands that render need it.
    """
    from harness.report import write_reports

    return write_reports(run_dir, reports)
