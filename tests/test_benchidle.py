"""make bench-idle: the arithmetic, the results file, and real stacks holding idle connections."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import ALL_TARGETS, REPO, TARGETS_DIR
from rich.console import Console

from harness.load.stream import HoldResult
from harness.model import Placement, TargetConfig
from harness.tools import benchidle
from harness.tools.benchidle import (
    READINGS,
    BenchSpec,
    IdleBench,
    IdleFailure,
    IdleRound,
    MemoryReading,
    anonymous_pss_bytes,
    format_notes,
    format_table,
    kib_per_connection,
    peak_of,
    run_bench,
    summarise,
)

MIB = 2**20
PLAUSIBLE_KIB = (0.5, 1024.0)
"""An idle connection costs a server more than half a KiB and less than a MiB."""


def reading(mib: float, cgroup_mib: float | None = None) -> MemoryReading:
    size = int(mib * MIB)
    cgroup = None if cgroup_mib is None else int(cgroup_mib * MIB)
    return MemoryReading(size, size, size, size + MIB, cgroup, (10, 11))


def hold(open_at_end: int, *, opened: int = 1000, requested: int = 1000) -> HoldResult:
    errors = {"connect": requested - opened, "read": 0, "status": 0, "timeout": 0, "malformed": 0}
    return HoldResult(
        kind="ws",
        connections_requested=requested,
        connections_opened=opened,
        connections_failed=requested - opened,
        connections_open_at_end=open_at_end,
        errors={**errors, "closed": opened - open_at_end},
        error_statuses={},
        refreshes=0,
        open_s=0.5,
        held_s=6.0,
    )


def bench(rounds: list[IdleRound], failures: tuple[IdleFailure, ...] = ()) -> IdleBench:
    stacks = {"a-asgi": "asgi", "b-asgi": "asgi", "c-wsgi": "wsgi", "d-asgi": "asgi"}
    return IdleBench(
        kind="ws",
        connections=1000,
        rounds=3,
        seed=7,
        started_at="2026-11-24T04:00:00Z",
        finished_at="2026-11-24T04:05:00Z",
        status="complete",
        placement=Placement(target_cpus=(0,), generator_cpus=(1,)),
        cgroup_unavailable=None,
        load_average_start=1.5,
        load_average_end=1.7,
        stacks={
            name: {"interface": interface, "server": "s", "workers": 1, "websocket": interface == "asgi"}
            for name, interface in stacks.items()
        },
        unsupported={"c-wsgi": "not supported: WSGI stack (websocket = false in target.toml)"},
        measurements=tuple(rounds),
        failures=failures,
    )


def test_memory_per_connection_is_the_growth_over_the_connections_still_open() -> None:
    assert kib_per_connection(10 * MIB, 30 * MIB, 1000) == pytest.approx(20.48)
    assert kib_per_connection(10 * MIB, 30 * MIB, 0) is None
    assert kib_per_connection(None, 30 * MIB, 1000) is None
    measured = IdleRound("a-asgi", 1, 1, hold(800, opened=900), reading(50, 60), reading(66, 76))
    assert measured.hold.connections_dropped == 100
    assert measured.per_connection_kib("pss") == pytest.approx(16 * 1024 / 800)
    assert measured.per_connection_kib("cgroup") == pytest.approx(16 * 1024 / 800)
    assert IdleRound("a-asgi", 1, 1, hold(800), reading(50), reading(66)).per_connection_kib("cgroup") is None


def test_a_reading_is_the_peak_of_its_samples_field_by_field() -> None:
    samples = [
        MemoryReading(5, 3, 4, 9, 7, (1, 2)),
        MemoryReading(6, 2, 4, 8, 9, (1, 2, 3)),
        MemoryReading(4, 3, 5, 8, None, (1, 2, 3)),
    ]
    assert peak_of(samples) == MemoryReading(6, 3, 5, 9, None, (1, 2, 3))
    assert peak_of(samples[:2]).cgroup_bytes == 9
    assert anonymous_pss_bytes("Rss:  1696 kB\nPss:  254 kB\nPss_Anon:  112 kB\n") == 112 * 1024
    assert anonymous_pss_bytes("Rss:  1696 kB\nPss:  254 kB\n") is None


def test_summary_table_and_notes_show_medians_unsupported_failed_and_silent_stacks() -> None:
    rounds = [
        IdleRound("a-asgi", 1, 1, hold(1000), reading(50), reading(70)),
        IdleRound("a-asgi", 2, 1, hold(1000), reading(50), reading(60)),
        IdleRound("a-asgi", 3, 1, hold(990, opened=995), reading(50), reading(90)),
        IdleRound("d-asgi", 1, 1, hold(0), reading(50), reading(50)),
    ]
    failures = (IdleFailure("b-asgi", 1, "not ready after 30 s"),)
    summary = summarise(rounds)["a-asgi"]
    assert summary.rounds == 3
    assert summary.kib["pss"] is not None and summary.kib["pss"].median == pytest.approx(20.48)
    assert (summary.kib["pss"].min, summary.kib["pss"].max) == pytest.approx((10.24, 40 * 1024 / 990))
    assert summary.kib["cgroup"] is None
    assert (summary.connections_failed, summary.connections_dropped) == (5, 5)
    assert summarise(rounds)["d-asgi"].kib["uss"] is None
    console = Console(width=200, record=True)
    console.print(format_table(bench(rounds, failures)))
    table = console.export_text()
    assert "20.5 (10.2-41.4)" in table
    assert "not supported" in table.split("c-wsgi")[1].splitlines()[0]
    assert "failed" in table.split("b-asgi")[1].splitlines()[0]
    notes = "\n".join(format_notes(bench(rounds, failures)))
    assert "c-wsgi: not supported: WSGI stack" in notes
    assert "b-asgi, round 1, failed:[/] not ready after 30 s" in notes
    assert "d-asgi: kept no idle connection open (see each round's errors)" in notes


def test_the_results_file_round_trips_and_refuses_another_schema(tmp_path: Path) -> None:
    rounds = [IdleRound("a-asgi", 1, 1, hold(990, opened=995), reading(50, 55), reading(70, 76))]
    original = bench(rounds, (IdleFailure("b-asgi", 2, "driver: interrupted"),))
    path = benchidle.write_results(original, tmp_path)
    assert path.name == "bench-idle-20261124T040000Z.json"
    data = json.loads(path.read_text())
    assert data["schema"] == 1
    assert data["summary"]["a-asgi"]["memory_per_connection_kib"]["pss"]["median"] == pytest.approx(
        20 * 1024 / 990
    )
    assert data["measurements"][0]["memory_per_connection_kib"]["cgroup"] == pytest.approx(21 * 1024 / 990)
    assert IdleBench.from_json(data) == original
    with pytest.raises(ValueError, match="schema 2"):
        IdleBench.from_json({**data, "schema": 2})


def test_an_unknown_stack_is_refused_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert benchidle.main(["--targets", "fastapi-uvicon"]) == 2
    assert "did you mean 'fastapi-uvicorn'" in capsys.readouterr().out


# --- real stacks ---------------------------------------------------------------------------------


@pytest.fixture
def nothing_left_running() -> Iterator[None]:
    """Fail the test if a process it started (a stack, a driver) outlives it.

    Not conftest's ``no_leftover_processes``: that one sees every server started on the machine in the
    meantime, other people's test runs included.
    """

    def left() -> list[str]:
        commands = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
        # multiprocessing's resource tracker serves this process until it exits, then exits too.
        return [c for c in commands if "multiprocessing.resource_tracker" not in c]

    yield
    deadline = time.monotonic() + 5
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left(), f"processes left behind: {left()}"


def stacks(*names: str) -> dict[str, TargetConfig]:
    return {name: ALL_TARGETS[name] for name in names}


def assert_plausible(measured: IdleRound, connections: int) -> None:
    """Connections held, and a plausible cost for each in the readings that do not move by themselves.

    PSS is left out: it shares library pages with every process on the machine that maps them, so
    another process starting elsewhere lowers it (by MiBs on a busy machine, see MemoryReading).
    """
    assert measured.hold.connections_opened == measured.hold.connections_open_at_end == connections
    assert measured.hold.connections_failed == measured.hold.connections_dropped == 0
    low, high = PLAUSIBLE_KIB
    for name in ("pss_anon", "uss", "cgroup"):
        kib = measured.per_connection_kib(name)
        if kib is None and name in ("pss_anon", "cgroup"):
            continue  # an old kernel, or no control group here
        assert kib is not None and low < kib < high, (name, kib, measured)


@pytest.mark.usefixtures("nothing_left_running")
def test_websockets_held_by_an_asgi_stack_and_a_wsgi_stack_listed_as_unsupported() -> None:
    spec = BenchSpec(
        stacks=stacks("fastapi-uvicorn", "flask-gunicorn"),
        targets_root=TARGETS_DIR,
        kind="ws",
        connections=200,
        rounds=1,
        seed=1,
    )
    started: list[str] = []
    result = run_bench(spec, on_start=started.append)
    assert result.status == "complete" and not result.failures, result.failures
    assert started == ["round 1/1: fastapi-uvicorn"]
    assert result.unsupported == {
        "flask-gunicorn": "not supported: WSGI stack (websocket = false in target.toml)"
    }
    [measured] = result.measurements
    assert measured.target == "fastapi-uvicorn" and measured.hold.kind == "ws"
    assert_plausible(measured, 200)
    assert set(measured.before.pids) == set(measured.held.pids)


@pytest.mark.usefixtures("nothing_left_running")
def test_keep_alive_connections_held_by_gunicorn_gthread(tmp_path: Path) -> None:
    assert ALL_TARGETS["flask-gunicorn-gthread"].settings["keep_alive"] is True
    code = benchidle.main(
        ["--kind", "http", "--connections", "200", "--rounds", "1", "--targets", "flask-gunicorn-gthread",
         "--results", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    [path] = tmp_path.glob("bench-idle-*.json")
    stored = IdleBench.from_json(json.loads(path.read_text()))
    [measured] = stored.measurements
    assert measured.hold.kind == "http" and measured.workers == 3
    # Three workers and their master: the tree is summed.
    assert len(measured.held.pids) == 4
    assert_plausible(measured, 200)
    assert set(READINGS) == set(json.loads(path.read_text())["summary"][measured.target][
        "memory_per_connection_kib"
    ])  # fmt: skip


def command(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.usefixtures("nothing_left_running")
def test_ctrl_c_stops_the_driver_and_the_stack(tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "harness.tools.benchidle", "--targets", "fastapi-uvicorn",
        "--connections", "200", "--rounds", "3", "--results", str(tmp_path),
    ]  # fmt: skip
    # A session of its own, so the signal reaches it and its driver as a terminal's Ctrl-C would.
    child = subprocess.Popen(
        argv, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    started: dict[psutil.Process, str] = {}
    try:
        deadline = time.monotonic() + 60
        # The stack starts first, then the driver.
        while time.monotonic() < deadline and not any("multiprocessing" in c for c in started.values()):
            time.sleep(0.1)
            started |= {p: command(p) for p in psutil.Process(child.pid).children(recursive=True)}
        time.sleep(0.5)
    finally:
        # Also when the test fails: an interrupted run stops what it started, a killed one would not.
        os.killpg(child.pid, signal.SIGINT)
        try:
            output, _ = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert any("uvicorn" in c for c in started.values()), started
    deadline = time.monotonic() + 5  # multiprocessing's resource tracker exits once its pipe closes
    while (left := [c for p, c in started.items() if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left
    assert child.returncode == 130, output.decode()
    assert b"every stack and driver was stopped" in output
    [path] = tmp_path.glob("bench-idle-*.json")
    assert json.loads(path.read_text())["status"] == "interrupted"
