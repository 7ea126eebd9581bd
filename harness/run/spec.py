"""What a run is asked to do and what it hands back: :class:`RunSpec`, :class:`Events`, :class:`RunOutcome`.

:func:`preflight` checks, before anything is launched, that the run can be
stored and driven (results folder, disk space, file descriptors).
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from harness.model import Cell, Measurement, RunFailure, RunManifest, Scenario, TargetConfig
from harness.model.scenario import IDLE_KINDS
from harness.verify import VerificationReport


def new_run_id(scenario: str) -> str:
    """``<UTC timestamp>-<scenario>``, e.g. ``20261124T020000Z-default``."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{scenario}"


class Events(Protocol):
    """Progress callbacks; the CLI implements them to display a run."""

    def target_starting(self, target: str, repeat: int) -> None: ...
    def verified(self, target: str, report: VerificationReport) -> None: ...
    def cell_starting(self, cell: Cell) -> None: ...
    def cell_done(self, cell: Cell, measurement: Measurement) -> None:
        """Called for every planned cell, measured or failed (``measurement.status``)."""

    def failure(self, failure: RunFailure) -> None: ...
    def notice(self, target: str, text: str) -> None:
        """Something the run did about ``target`` that a reader should know, and no failure."""


@dataclass
class RunOutcome:
    """Where the run was stored and what went wrong."""

    run_dir: Path
    manifest: RunManifest
    failures: list[RunFailure] = field(default_factory=list)
    interrupted: bool = False


@dataclass(frozen=True)
class ExternalTarget:
    """An app the user started: measured at ``host:port``, monitored through ``pid`` if given."""

    host: str
    port: int
    pid: int | None = None


class PreflightError(Exception):
    """The run cannot start (results folder, disk space, descriptor limit); nothing was launched."""


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs. ``targets`` are the stacks to measure, by name.

    With ``external`` given (by target name: every target is then an app the user
    runs), nothing is launched or verified, and no upstream is started. Under the ``locust``
    driver, ``locustfile`` replaces the generated one, and ``locust_workers`` > 0
    makes this run a Locust master that waits for that many workers on
    ``locust_bind_host:locust_port`` (started with ``gwbench locust-worker``).
    ``verify`` False skips the contract check of each stack (the manifest then
    records them as not verified).
    """

    scenario: Scenario
    targets: dict[str, TargetConfig]
    upstream: TargetConfig
    targets_root: Path
    upstream_dir: Path
    results_root: Path
    repo: Path
    seed: int
    ready_timeout_s: float = 30.0
    external: Mapping[str, ExternalTarget] = field(default_factory=dict)
    allow_remote: bool = False
    launcher: str = "local"
    locustfile: Path | None = None
    locust_workers: int = 0
    locust_bind_host: str = "127.0.0.1"
    locust_port: int = 5557
    verify: bool = True


MIN_FREE_BYTES = 50 * 2**20
DESCRIPTORS_PER_CONNECTION = 2  # a target holds the client's socket and one to the upstream
DESCRIPTOR_MARGIN = 256


def descriptors_needed(max_concurrency: int, per_connection: int = DESCRIPTORS_PER_CONNECTION) -> int:
    """File descriptors a target needs at ``max_concurrency`` connections (our estimate, with margin);
    ``per_connection``: 1 where a connection asks nothing upstream (idle connections)."""
    return per_connection * max_concurrency + DESCRIPTOR_MARGIN


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` (and its parents) and write and sync a probe file in it.

    Raises PreflightError (``<what> <folder> is not writable: <reason>``) when it cannot
    be created or written: a file in the way, a read-only or full file system.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".gwbench-probe-") as probe:
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise PreflightError(f"{what} {folder} is not writable: {exc.strerror or exc}") from exc


def preflight(spec: RunSpec) -> None:
    """Check, before anything is launched, that the run can be stored and driven.

    Raises the soft RLIMIT_NOFILE of this process (inherited by everything it
    starts) when the scenario needs more descriptors. Raises PreflightError when
    the results folder is not writable, has less than 50 MiB free, or the hard
    descriptor limit is too low.
    """
    root = spec.results_root
    check_writable(root, "results folder")
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        raise PreflightError(
            f"results folder {root} has {free / 2**20:.1f} MiB free; a run needs at least "
            f"{MIN_FREE_BYTES / 2**20:.0f} MiB"
        )
    connections = spec.scenario.max_level_connections()
    idle_only = all(request.kind in IDLE_KINDS for request in spec.scenario.requests())
    needed = descriptors_needed(connections, 1 if idle_only else DESCRIPTORS_PER_CONNECTION)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise PreflightError(
            (
                f"concurrency {connections}"
                if spec.scenario.model == "closed"
                else f"max_connections {connections}"
            )
            + f" needs ~{needed} file descriptors; "
            f"the limit is {soft} (hard limit {hard}); raise it (ulimit -n) or lower the concurrency"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
