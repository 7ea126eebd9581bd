"""Stream endpoints as scenarios: ``gwbench run`` drives SSE and WebSocket cells and stores what
the server was asked to do, checked against what arrived.

Real runs through the CLI, each against a sync WSGI stack (flask-gunicorn, 3 workers)
and an ASGI one (starlette-uvicorn): SSE streams of a known length and spacing, and
WebSocket echoes in the closed and the open model (which the WSGI stack answers with 501:
"not supported", not a failure). And the scenario rules for stream endpoints, which need
no server.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO
from pydantic import ValidationError

from harness.model import Measurement, Scenario
from harness.results import load_run

EVENTS, INTERVAL_MS = 8, 40
STREAM_S = (EVENTS - 1) * INTERVAL_MS / 1000
"""How long one stream lasts when the server keeps pace (s): the first event at once, the rest
``INTERVAL_MS`` apart."""

SSE = f"""
description = "SSE streams of {EVENTS} events {INTERVAL_MS} ms apart"
targets = ["flask-gunicorn", "starlette-uvicorn"]
endpoints = [{{ path = "/stream/sse?events={EVENTS}&interval_ms={INTERVAL_MS}", kind = "sse" }}]
concurrency = [2, 12]
warmup_s = 0.5
duration_s = 3.0
timeout_s = 5.0
seed = 3
"""

WEBSOCKET = """
description = "WebSocket echo"
targets = ["flask-gunicorn", "starlette-uvicorn"]
endpoints = [{ path = "/ws/echo", kind = "websocket", message_bytes = 100 }]
concurrency = [4]
warmup_s = 0.3
duration_s = 1.5
timeout_s = 5.0
seed = 3
"""

OPEN_RATE, OPEN_CONNECTIONS, OPEN_WINDOW_S = 300.0, 8, 1.5
WEBSOCKET_OPEN = f"""
description = "WebSocket echo in the open model"
targets = ["flask-gunicorn", "starlette-uvicorn"]
endpoints = [{{ path = "/ws/echo", kind = "websocket", message_bytes = 100 }}]
model = "open"
rates = [{OPEN_RATE}]
max_connections = {OPEN_CONNECTIONS}
warmup_s = 0.3
duration_s = {OPEN_WINDOW_S}
timeout_s = 5.0
seed = 3
"""


def gwbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True, timeout=240
    )


def run_scenario(root: Path, text: str) -> tuple[subprocess.CompletedProcess[str], list[Measurement], Path]:
    scenario = root / "streams.toml"
    scenario.write_text(text)
    results = root / "results"
    done = gwbench("run", str(scenario), "--results", str(results), "--reports", str(root / "reports"))
    (run_dir,) = results.iterdir()
    _, measurements = load_run(run_dir)
    return done, measurements, run_dir


@pytest.fixture(scope="module")
def sse(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], list[Measurement]]:
    done, measurements, _ = run_scenario(tmp_path_factory.mktemp("sse"), SSE)
    return done, measurements


@pytest.fixture(scope="module")
def websocket(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], list[Measurement]]:
    done, measurements, _ = run_scenario(tmp_path_factory.mktemp("ws"), WEBSOCKET)
    return done, measurements


@pytest.fixture(scope="module")
def websocket_open(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], list[Measurement]]:
    done, measurements, _ = run_scenario(tmp_path_factory.mktemp("ws-open"), WEBSOCKET_OPEN)
    return done, measurements


def by_stack(measurements: list[Measurement]) -> dict[tuple[str, int | None], Measurement]:
    return {(m.target, m.concurrency): m for m in measurements}


def test_sse_cells_count_the_events_and_spacing_the_server_was_asked_for(
    sse: tuple[subprocess.CompletedProcess[str], list[Measurement]],
) -> None:
    done, measurements = sse
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    cells = by_stack(measurements)
    assert set(cells) == {(t, c) for t in ("flask-gunicorn", "starlette-uvicorn") for c in (2, 12)}
    for m in measurements:
        assert m.status == "ok" and m.workload == "sse", m
        assert (m.events_per_stream, m.event_interval_ms) == (EVENTS, INTERVAL_MS)
        assert m.streams_completed is not None and m.stream_events is not None
        assert m.streams_completed > 0 and m.errors.malformed == 0
        # Every completed stream carried all its events; streams cut by the window's ends add at most
        # one partial stream per connection on each side.
        assert m.streams_completed * EVENTS <= m.stream_events + 2 * EVENTS * (m.concurrency or 0)
        assert m.stream_events <= (m.streams_completed + 2 * (m.concurrency or 0)) * EVENTS
        assert m.stream_events_per_second == pytest.approx(m.stream_events / m.duration_s, rel=1e-3)
        # The gaps are the interval asked for. Measured at the client, one event delayed makes its
        # gap longer and the next one shorter, so the mean and median are checked, not the minimum.
        gaps = m.inter_event_gap_ms
        assert gaps is not None
        assert INTERVAL_MS * 0.97 <= gaps.mean < INTERVAL_MS * 1.25, gaps
        assert INTERVAL_MS * 0.9 <= gaps.p50 < INTERVAL_MS * 1.25, gaps


def test_an_async_stack_streams_every_connection_at_once(
    sse: tuple[subprocess.CompletedProcess[str], list[Measurement]],
) -> None:
    _, measurements = sse
    m = by_stack(measurements)[("starlette-uvicorn", 12)]
    # 12 streams at once: each connection completes a stream every STREAM_S.
    assert m.requests_per_second == pytest.approx(12 / STREAM_S, rel=0.25)
    assert m.latency_ms is not None and m.latency_ms.p99 < INTERVAL_MS, m.latency_ms
    assert m.errors.total == 0


def test_sse_capacity_is_bracketed_by_the_levels_around_a_sync_stacks_workers(
    sse: tuple[subprocess.CompletedProcess[str], list[Measurement]],
) -> None:
    done, _ = sse
    lines = [line for line in done.stdout.splitlines() if "concurrent streams within the SLO" in line]
    assert len(lines) == 1, done.stdout[-3000:]
    # The default SLO: time to first event p99 <= 100 ms. Three sync workers hold 2 streams
    # at once, not 12 (the others wait a stream's length, 280 ms, for a worker): their capacity lies
    # between the two levels, around their 3 slots. The event loop held both levels: at least 12.
    assert "(time to first event p99 <= 100 ms, errors <= 0.1%)" in lines[0]
    assert "starlette-uvicorn at least 12 (every level held), flask-gunicorn 2 to 12" in lines[0], lines[0]


def test_a_sync_stack_streams_at_most_one_per_worker(
    sse: tuple[subprocess.CompletedProcess[str], list[Measurement]],
) -> None:
    _, measurements = sse
    few, many = by_stack(measurements)[("flask-gunicorn", 2)], by_stack(measurements)[("flask-gunicorn", 12)]
    workers = many.server_processes
    assert workers is not None
    workers -= 1  # Gunicorn's master serves nothing
    assert workers == 3
    # Two streams fit in three workers: no wait for the first event.
    assert few.latency_ms is not None and few.latency_ms.p99 < INTERVAL_MS
    # Twelve do not: at most one stream per worker at a time, the rest wait in the accept queue.
    assert many.requests_per_second <= workers / STREAM_S * 1.15, many.requests_per_second
    ceiling_events = workers * 1000 / INTERVAL_MS
    assert many.stream_events_per_second is not None
    assert many.stream_events_per_second <= ceiling_events * 1.15
    assert many.latency_ms is not None and many.latency_ms.p99 > STREAM_S * 1000 / 2, many.latency_ms


def test_websocket_round_trips_and_a_stack_without_support_is_not_supported(
    websocket: tuple[subprocess.CompletedProcess[str], list[Measurement]],
) -> None:
    done, measurements = websocket
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    cells = by_stack(measurements)
    flask, starlette = cells[("flask-gunicorn", 4)], cells[("starlette-uvicorn", 4)]
    assert flask.status == "unsupported" and flask.requests == 0 and flask.latency_ms is None
    assert "501" in (flask.failure_reason or "")
    output = done.stdout + done.stderr
    assert "not supported" in output and "failure" not in output, output
    assert starlette.status == "ok" and starlette.workload == "websocket"
    assert starlette.errors.total == 0 and starlette.requests > 100
    # Four connections, one message in flight each: throughput and round trip agree (Little's law).
    latency = starlette.latency_ms
    assert latency is not None and latency.max < 5000
    assert starlette.requests_per_second * latency.mean / 1000 == pytest.approx(4, rel=0.3)


def test_websocket_messages_arrive_at_the_rate_offered_in_the_open_model(
    websocket_open: tuple[subprocess.CompletedProcess[str], list[Measurement]],
) -> None:
    done, measurements = websocket_open
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in output, output[-3000:]
    cells = {m.target: m for m in measurements}
    assert set(cells) == {"flask-gunicorn", "starlette-uvicorn"} and len(measurements) == 2
    flask, starlette = cells["flask-gunicorn"], cells["starlette-uvicorn"]
    assert flask.status == "unsupported" and flask.requests == 0 and flask.latency_ms is None
    assert "501" in (flask.failure_reason or "") and flask.dropped == 0
    # The terminal gives the level as the rate offered, and the 501 as no failure.
    line = rf"starlette-uvicorn +/ws/echo +{OPEN_RATE:,.0f} messages/s offered +[\d.]+ messages/s "
    assert re.search(line, output), output
    assert "not supported" in output and "failure" not in output, output
    m = starlette
    assert m.status == "ok" and m.workload == "websocket" and m.model == "open"
    assert m.rate == m.intended_rate == OPEN_RATE and m.concurrency is None
    assert m.cell_id == f"starlette-uvicorn__ws-echo__rate{OPEN_RATE:g}__r0"
    # Poisson arrivals: the window holds rate x window messages, give or take 4 standard deviations.
    expected = OPEN_RATE * OPEN_WINDOW_S
    assert m.scheduled is not None and abs(m.scheduled - expected) <= 4 * math.sqrt(expected), m.scheduled
    assert m.dropped == 0 and m.errors.total == 0
    assert m.requests == m.scheduled  # every message sent was echoed
    assert m.achieved_rate == pytest.approx(m.scheduled / m.duration_s, rel=1e-3)
    assert abs(m.requests_per_second * m.duration_s - m.scheduled) <= 4 * math.sqrt(expected)
    assert m.connections_peak == OPEN_CONNECTIONS
    assert m.latency_ms is not None and m.latency_ms_uncorrected is not None
    assert m.latency_ms.max < 5000 and m.histogram_uncorrected is not None
    # Corrected round trips run from the intended send time, never after the actual one.
    assert m.latency_ms.p50 >= m.latency_ms_uncorrected.p50 - 0.01
    assert m.generator_lateness_ms_p99 is not None


BASE = {"name": "s", "description": "d", "concurrency": [2], "warmup_s": 0.0, "duration_s": 1.0}


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"endpoints": [{"path": "/stream/sse?events=5", "kind": "sse"}]}, "events=N&interval_ms=M"),
        ({"endpoints": [{"path": "/stream/sse?events=0&interval_ms=5", "kind": "sse"}]}, "1 to 1000"),
        ({"endpoints": [{"path": "/ws/echo", "kind": "websocket", "method": "POST"}]}, "GET without a body"),
        ({"endpoints": [{"path": "/json", "message_bytes": 10}]}, "only a websocket endpoint"),
        (
            {
                "endpoints": [{"path": "/stream/sse?events=5&interval_ms=5", "kind": "sse"}],
                "model": "open",
                "rates": [5.0],
            },
            "only websocket endpoints run in the open model",
        ),
        (
            {"endpoints": [{"path": "/ws/echo", "kind": "idle-websocket"}], "model": "open", "rates": [5.0]},
            "only websocket endpoints run in the open model",
        ),
        (
            {"endpoints": [{"path": "/ws/echo", "kind": "websocket"}], "model": "saturation"},
            "closed model .* or open model",
        ),
        ({"endpoints": [{"path": "/ws/echo", "kind": "websocket"}], "driver": "wrk"}, "native driver"),
        (
            {"endpoints": [{"path": "/ws/echo", "kind": "websocket", "name": "a"}, "/json"], "mix": "m"},
            "not in a mix",
        ),
    ],
)
def test_stream_endpoints_refuse_what_they_cannot_run(update: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("?", r"\?")) as refused:
        Scenario.model_validate({**BASE, **update})
    # One line each, as the CLI prints it.
    assert all("\n" not in error["msg"] for error in refused.value.errors())


def test_a_websocket_endpoint_runs_in_the_open_model_at_its_rates() -> None:
    scenario = Scenario.model_validate(
        {**BASE, "concurrency": [], "endpoints": [{"path": "/ws/echo", "kind": "websocket"}],
         "model": "open", "rates": [500.0, 2000.0], "max_connections": 100}
    )  # fmt: skip
    assert scenario.model == "open" and scenario.rates == (500.0, 2000.0)


def test_the_shipped_stream_scenarios_load() -> None:
    kinds = {"sse": "sse", "websocket": "websocket", "websocket-open": "websocket", "inference": "sse"}
    for name, kind in kinds.items():
        text = (REPO / "scenarios" / f"{name}.toml").read_text()
        assert "Where it comes from" in text and "What to read" in text, name
        scenario = Scenario.model_validate({"name": name, **tomllib.loads(text)})
        assert kind in {spec.kind for spec in scenario.requests()}, name
        assert scenario.model == ("open" if name.endswith("-open") else "closed"), name


BACKLOG = """
description = "more 5 s requests than a sync stack's workers: a backlog that outlasts the cell"
targets = ["flask-gunicorn"]
endpoints = ["/io/upstream?ms=5000"]
concurrency = [40, 41]
warmup_s = 0.2
duration_s = 1.0
timeout_s = 6.0
seed = 3
"""


def test_a_stack_still_busy_after_a_cell_is_started_again_before_the_next(tmp_path: Path) -> None:
    # 40 connections of 5 s requests on 3 sync workers: the requests queued in the cell (their
    # clients gone when it ends) keep the workers busy for about a minute, beyond the 10 s wait.
    done, measurements, _ = run_scenario(tmp_path, BACKLOG)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in output, output[-3000:]
    first = sorted(measurements, key=lambda m: m.started_at)[0]
    assert f"note flask-gunicorn: still busy 10 s after {first.cell_id}" in output, output
    assert "started again" in output and "failure" not in output, output
    assert len(measurements) == 2 and all(m.status == "ok" for m in measurements)
