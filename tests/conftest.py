"""Shared fixtures: the repository's targets, a running upstream and database, process-leak checks."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.launch import EngineUnavailable, LocalLauncher, RunningTarget
from harness.launch.images import LOCAL_BASE_IMAGE, WHEELHOUSE, connect
from harness.launch.postgres import Postgres
from harness.model import TargetConfig, discover_targets
from harness.results import load_run

REPO = Path(__file__).resolve().parents[1]
TARGETS_DIR = REPO / "targets"
sys.path.insert(0, str(Path(__file__).parent))

ALL_TARGETS = discover_targets(TARGETS_DIR)
STACKS = sorted(name for name, t in ALL_TARGETS.items() if t.role == "target")
SERVER_WORDS = ("gunicorn", "uvicorn", "hypercorn", "daphne", "granian", "upstream", "http.server", "gwbench")


def docker_missing() -> str | None:
    """Why the Docker tests cannot run here (one reason), or None when they can.

    ``make test`` builds the base image and the wheelhouse whenever an engine answers,
    so only a machine with no engine skips them.
    """
    try:
        engine = connect(timeout_s=10)
    except EngineUnavailable as exc:
        return f"{exc} (`make test` builds the rest once one answers)"
    try:
        if not engine.images.list(name=LOCAL_BASE_IMAGE):
            return f"no base image {LOCAL_BASE_IMAGE}: run `make docker-base`"
    finally:
        engine.close()
    missing = [name for name in ALL_TARGETS if not (WHEELHOUSE / name / ".complete").is_file()]
    if missing:
        return f"no wheelhouse for {', '.join(missing)}: run `make wheelhouse`"
    return None


def first_cell_stored(results: Path, process: subprocess.Popen[Any], timeout_s: float = 90) -> Path | None:
    """Wait until a run under ``results`` has stored a cell; its measurements.jsonl, or None when
    ``process`` (the run) ended first or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        found = list(results.glob("*/measurements.jsonl"))
        if found and found[0].read_text().count("\n") >= 1:
            return found[0]
        time.sleep(0.05)
    return None


def held_capacities(run_dir: Path, target: str) -> tuple[float, ...]:
    """Each repeat's highest rate whose step held the SLO (0 when none held), read from the run alone."""
    _, measurements = load_run(run_dir)
    by_repeat: dict[int, float] = {}
    for m in measurements:
        if m.target == target and m.status == "ok":
            held = m.rate if m.slo_held and m.rate is not None else 0.0
            by_repeat[m.repeat] = max(by_repeat.get(m.repeat, 0.0), held)
    return tuple(by_repeat[r] for r in sorted(by_repeat))


def cgroups_of(harness_pid: int) -> list[Path]:
    """The cgroups a harness (``harness_pid``) made that are still there (v2 and v1 layouts)."""
    root = Path("/sys/fs/cgroup")
    return [*root.glob(f"gwbench/*.{harness_pid}.*"), *root.glob(f"*/gwbench/*.{harness_pid}.*")]


def stray_processes(since: float) -> list[str]:
    """Processes started after ``since`` (epoch s) that look like ours, not this process or its children."""
    me = psutil.Process()
    mine = {p.pid for p in me.children(recursive=True)} | {me.pid}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            if proc.info["create_time"] < since or proc.pid in mine:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if any(word in cmdline for word in SERVER_WORDS):
            found.append(f"{proc.pid}: {cmdline}")
    return found


@pytest.fixture
def no_leftover_processes() -> Iterator[None]:
    """Fail the test if it leaves any server process behind."""
    since = time.time() - 1
    yield
    deadline = time.monotonic() + 5
    while (left := stray_processes(since)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"


@pytest.fixture(scope="session")
def targets() -> dict[str, TargetConfig]:
    return ALL_TARGETS


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTarget]:
    """The real upstream service, on 127.0.0.1, for the module's tests."""
    config = ALL_TARGETS["upstream"]
    logs = tmp_path_factory.mktemp("upstream-logs")
    with LocalLauncher() as launcher:
        yield launcher.start(config, TARGETS_DIR / "upstream", workers=1, log_path=logs / "upstream.log")


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A throw-away PostgreSQL server, on 127.0.0.1, for the module's tests."""
    logs = tmp_path_factory.mktemp("postgres-logs")
    with Postgres(log_path=logs / "postgres.log") as server:
        yield server
