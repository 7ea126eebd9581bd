"""Idle connections as a scenario (endpoint kinds ``idle-http`` and ``idle-websocket``).

Real runs of ``gwbench run`` on 127.0.0.1 against an ASGI stack (starlette-uvicorn, one
event loop) and a WSGI stack whose workers block (flask-gunicorn, 3 sync workers): the
event loop holds every connection asked, as the driver and the server itself count
them, at a memory per connection of a few KiB; the sync workers hold no more than one
connection each, and the WebSocket upgrade is answered 501 (not supported). The
arithmetic of memory per connection is checked on readings made by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_capacity import serving

from harness import cgroup
from harness.idle import IdleHold, MemoryReading, anonymous_pss_bytes, kib_per_connection, peak_of
from harness.load.stream import HoldLoad, HoldResult, hold_connections
from harness.results import load_run

MIB = 2**20
PLAUSIBLE_KIB = (0.5, 1024.0)
"""An idle connection costs a server more than half a KiB and less than a MiB."""
CONNECTIONS = 1000

SCENARIO = f"""
description = "idle connections test: {CONNECTIONS} per stack, HTTP keep-alive and WebSockets"
targets = ["flask-gunicorn", "starlette-uvicorn"]
endpoints = [
    {{ path = "/health", kind = "idle-http" }},
    {{ path = "/ws/echo", kind = "idle-websocket" }},
]
model = "closed"
concurrency = [{CONNECTIONS}]
warmup_s = 1.0
duration_s = 4.0
repeats = 1
timeout_s = 5.0
"""


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


def test_memory_per_connection_is_the_growth_over_the_connections_still_open() -> None:
    assert kib_per_connection(10 * MIB, 30 * MIB, 1000) == pytest.approx(20.48)
    assert kib_per_connection(10 * MIB, 30 * MIB, 0) is None
    assert kib_per_connection(None, 30 * MIB, 1000) is None
    measured = IdleHold(hold(800, opened=900), reading(50, 60), reading(66, 76), 800)
    assert measured.hold.connections_dropped == 100
    assert measured.per_connection_kib("pss") == pytest.approx(16 * 1024 / 800)
    assert measured.per_connection_kib("cgroup") == pytest.approx(16 * 1024 / 800)
    assert IdleHold(hold(800), reading(50), reading(66), None).per_connection_kib("cgroup") is None


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


@pytest.fixture(scope="module")
def idle_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("idle")
    scenario = root / "idle.toml"
    scenario.write_text(SCENARIO)
    argv = [sys.executable, "-m", "harness", "run", str(scenario), "--no-verify"]
    argv += ["--results", str(root / "results"), "--reports", str(root / "reports")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = (root / "results").iterdir()
    return run_dir, done


@pytest.mark.usefixtures("no_leftover_processes")
def test_an_event_loop_holds_every_connection_as_the_server_counts_them(
    idle_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run_dir, _ = idle_run
    manifest, measurements = load_run(run_dir)
    assert manifest.status == "complete" and manifest.failures == ()
    asgi = {m.workload: m for m in measurements if m.target == "starlette-uvicorn"}
    assert set(asgi) == {"idle-http", "idle-websocket"}
    for workload, m in asgi.items():
        assert m.status == "ok", (workload, m.failure_reason)
        assert m.connections_held == CONNECTIONS, (workload, m.connections_held, m.errors)
        # The server's own count of established connections on its port.
        assert m.connections_held_by_server == CONNECTIONS, (workload, m.connections_held_by_server)
        memory = m.memory_per_connection_kib
        assert memory is not None
        assert PLAUSIBLE_KIB[0] < memory.pss < PLAUSIBLE_KIB[1], (workload, memory)
        assert m.server_pss_mib_before is not None and m.server_pss_mib_peak is not None
        assert m.server_pss_mib_peak > m.server_pss_mib_before
        assert m.requests_per_second == 0.0 and m.latency_ms is None
        # Holding idle connections costs the driver little: no request is sent while they are held.
        assert 0.0 <= m.generator_cpu_percent < 50.0, (workload, m.generator_cpu_percent)


def test_sync_workers_hold_one_connection_each_and_answer_websockets_501(
    idle_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run_dir, _ = idle_run
    manifest, measurements = load_run(run_dir)
    wsgi = {m.workload: m for m in measurements if m.target == "flask-gunicorn"}
    workers = manifest.targets["flask-gunicorn"].workers
    http = wsgi["idle-http"]
    assert http.status == "ok", http.failure_reason
    # A sync worker serves one connection and closes it after its answer: it holds none idle.
    assert http.connections_held_by_server is not None and http.connections_held_by_server <= workers
    assert http.connections_held is not None and http.connections_held <= workers
    assert wsgi["idle-websocket"].status == "unsupported"


def test_the_report_and_the_terminal_show_connections_held_and_memory_per_connection(
    idle_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run_dir, done = idle_run
    page = run_dir.parent.parent / "reports" / run_dir.name / "index.html"
    html = page.read_text()
    assert 'id="idle"' in html and "Idle connections" in html
    assert html.count('class="memory-per-connection"') == 2  # one chart per endpoint
    assert html.count('class="connections-held"') == 2
    assert "not supported" in html
    # Every cell held idle connections: the cells section points to their tables, not left empty.
    cells = html[html.index('<section id="cells">') : html.index('<section id="stacks">')]
    assert 'href="#idle"' in cells, cells
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("verdict:")]
    http = f"/health (idle HTTP keep-alive connections) @ {CONNECTIONS:,}"
    assert any(http in v for v in verdicts), verdicts
    assert any("held fewer: flask-gunicorn" in v for v in verdicts), verdicts
    assert any("/ws/echo (idle WebSockets)" in v and "1 not supported" in v for v in verdicts), verdicts


def test_opening_stops_once_the_server_accepts_no_more() -> None:
    # One slot of 60 s: the first GET is answered at once, every other one waits. With a 1 s
    # timeout and stall_s = 1 s the opening stops about 2 s in, not at its 60 s limit.
    with serving(1, 60_000, first_free=True) as port:
        load = HoldLoad(
            "127.0.0.1", port, 200, 0.5, "http", refresh_s=None, timeout_s=1.0, open_concurrency=20,
            open_timeout_s=60.0, stall_s=1.0,
        )  # fmt: skip
        result = hold_connections(load)
    assert result.connections_opened == 1, result
    assert result.open_s < 5, result.open_s  # without the rule: 199 tries / 20 at a time x 1 s = 10 s
    # Every connection not tried counts as a timeout, beside those that timed out.
    assert result.connections_failed == 199 and result.errors["timeout"] == 199, result.errors


OOM_CONNECTIONS = 6000
OOM_SCENARIO = f"""
description = "idle WebSockets on a stack whose memory limit cannot hold them"
targets = ["starlette-uvicorn"]
endpoints = [{{ path = "/ws/echo", kind = "idle-websocket" }}]
model = "closed"
concurrency = [{OOM_CONNECTIONS}]
memory_mib = {{ starlette-uvicorn = 80 }}
warmup_s = 1.0
duration_s = 3.0
repeats = 1
timeout_s = 5.0
"""


@pytest.mark.skipif(cgroup.detect() is None, reason="no cgroup hierarchy on this machine")
@pytest.mark.usefixtures("no_leftover_processes")
def test_a_stack_killed_out_of_memory_is_a_finding_with_the_connections_it_held(tmp_path: Path) -> None:
    # 80 MiB holds uvicorn (about 40 MiB) and a few thousand WebSockets of 15-25 KiB, not 6,000.
    scenario = tmp_path / "oom.toml"
    scenario.write_text(OOM_SCENARIO)
    argv = [sys.executable, "-m", "harness", "run", str(scenario), "--no-verify"]
    argv += ["--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    manifest, (cell,) = load_run(run_dir)
    assert manifest.failures == ()
    assert cell.status == "ok" and cell.server_oom_kills, (cell.status, cell.failure_reason)
    assert cell.connections_open_peak is not None and 0 < cell.connections_open_peak < OOM_CONNECTIONS
    assert cell.memory_per_connection_kib is None
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("verdict:")]
    marked = f"held fewer: starlette-uvicorn {cell.connections_open_peak:,} (killed out of memory at 80 MiB)"
    assert any(marked in v for v in verdicts), verdicts
    page = tmp_path / "reports" / run_dir.name / "index.html"
    assert "killed out of memory at 80 MiB" in page.read_text()


def test_once_opening_stops_the_tries_in_flight_stop_too_counted_as_timeouts() -> None:
    # One slot of 60 s again, 20 tries in flight, each allowed 4 s. Opening stops 1 s after the
    # first connection (stall_s); the 19 tries then waiting for their answer are closed at once,
    # not waited for until their 4 s timeout.
    with serving(1, 60_000, first_free=True) as port:
        load = HoldLoad(
            "127.0.0.1", port, 200, 0.5, "http", refresh_s=None, timeout_s=4.0, open_concurrency=20,
            open_timeout_s=60.0, stall_s=1.0,
        )  # fmt: skip
        result = hold_connections(load)
    assert result.connections_opened == 1, result
    assert result.open_s < 2.5, result.open_s  # waiting for the tries in flight: over 4 s
    assert result.connections_failed == 199 and result.errors["timeout"] == 199, result.errors
