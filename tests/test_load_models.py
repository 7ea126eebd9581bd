"""Open-model and saturation runs through the CLI against real stacks on 127.0.0.1.

A sync stack (Flask on Gunicorn, 3 sync workers) cannot serve more than 3 / 50 ms =
60 requests/s of a 50 ms wait; an async stack (FastAPI on Uvicorn) serves hundreds.
The open model shows the sync stack's queue in its corrected latency, and the
saturation search finds each stack's sustainable rate on either side of that ceiling.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO, stray_processes

from harness.model import Measurement
from harness.results import load_run

OPEN = """
description = "open model test"
targets = ["flask-gunicorn", "fastapi-uvicorn"]
endpoints = ["/io/sleep?ms=50"]
model = "open"
rates = [30, 200]
arrival = "poisson"
max_connections = 64
warmup_s = 0.5
duration_s = 2.5
timeout_s = 3.0
seed = 11
"""

SATURATION = """
description = "saturation search test"
targets = ["flask-gunicorn", "fastapi-uvicorn"]
endpoints = ["/io/sleep?ms=50"]
model = "saturation"
arrival = "uniform"
max_connections = 128
warmup_s = 0.3
duration_s = 1.5
timeout_s = 3.0
seed = 5

[saturation]
start_rate = 20
growth = 2.0
max_rate = 640
bisect_steps = 1

[slo]
p99_ms = 300
"""


def run_scenario(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess[str], list[Measurement]]:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(text)
    results = tmp_path / "results"
    since = time.time() - 1
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(scenario), "--results", str(results), "--no-report"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert not stray_processes(since)
    (run_dir,) = results.iterdir()
    manifest, measurements = load_run(run_dir)
    assert manifest.status == "complete", done.stderr[-2000:]
    return done, measurements


def by(measurements: list[Measurement], target: str, rate: float) -> Measurement:
    (found,) = [m for m in measurements if m.target == target and m.rate == rate]
    return found


def test_the_open_model_shows_the_sync_queue_that_the_async_stack_does_not_have(tmp_path: Path) -> None:
    done, measurements = run_scenario(tmp_path, OPEN)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(measurements) == 4
    for m in measurements:
        assert m.model == "open" and m.concurrency is None and m.status == "ok"
        assert m.intended_rate == m.rate
        assert m.latency_ms is not None and m.latency_ms_uncorrected is not None
        assert m.histogram and m.histogram_uncorrected
        assert not m.generator_bound, m.bound_reasons
    # Below the sync ceiling both stacks keep up.
    for target in ("flask-gunicorn", "fastapi-uvicorn"):
        low = by(measurements, target, 30)
        assert low.achieved_rate == pytest.approx(30, rel=0.25)
        assert low.dropped == 0 and low.errors.total == 0
    fast, slow = by(measurements, "fastapi-uvicorn", 200), by(measurements, "flask-gunicorn", 200)
    assert fast.latency_ms is not None and slow.latency_ms is not None
    # The async stack serves the offered 200/s with latency near the 50 ms wait.
    assert fast.requests_per_second == pytest.approx(200, rel=0.25)
    assert fast.latency_ms.p99 < 200
    # The sync stack serves at most ~60/s; the rest waits (corrected latency) or is dropped.
    assert slow.requests_per_second < 70
    assert slow.latency_ms.p99 > 5 * fast.latency_ms.p99
    assert slow.connections_peak is not None and slow.connections_peak > 3


def test_the_saturation_search_brackets_each_stacks_sustainable_rate(tmp_path: Path) -> None:
    done, measurements = run_scenario(tmp_path, SATURATION)
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(m.model == "saturation" and m.slo_held is not None for m in measurements)

    def held(target: str) -> list[float]:
        return sorted(float(m.rate or 0) for m in measurements if m.target == target and m.slo_held)

    def broke(target: str) -> list[Measurement]:
        return [m for m in measurements if m.target == target and not m.slo_held]

    # Sync: 20 and 40/s hold; 80/s is above 3 workers / 50 ms = 60/s and breaks; one bisection at 60.
    rates = [m.rate for m in measurements if m.target == "flask-gunicorn"]
    assert rates[:3] == [20, 40, 80] and len(rates) == 4 and rates[3] == 60
    assert 40 <= max(held("flask-gunicorn")) < 80
    assert all(m.slo_breach for m in broke("flask-gunicorn"))
    # Async: every step up to max_rate holds, so the search stops there.
    assert held("fastapi-uvicorn") == [20, 40, 80, 160, 320, 640]
    assert not broke("fastapi-uvicorn")


DATABASE = """
description = "database test"
targets = ["flask-gunicorn", "fastapi-uvicorn"]
endpoints = ["/db/query?ms=20"]
concurrency = [8]
warmup_s = 0.3
duration_s = 1.5
seed = 3
"""


def test_a_database_run_starts_postgres_counts_its_queries_and_stops_it(tmp_path: Path) -> None:
    done, measurements = run_scenario(tmp_path, DATABASE)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    manifest, _ = load_run(run_dir)
    assert manifest.database is not None and manifest.database.server == "postgresql"
    assert manifest.database.version and manifest.database.settings["max_connections"]
    assert all(t.verified for t in manifest.targets.values())
    assert (run_dir / "logs" / "postgres.log").is_file()
    for m in measurements:
        assert m.status == "ok" and m.errors.total == 0
        assert m.db_queries is not None
        # The database's own count matches the requests the driver saw finish in the
        # window, give or take the 8 in flight at each edge of the window.
        assert abs(m.db_queries - m.requests) <= 2 * 8, m
    requests_per_second = {m.target: m.requests_per_second for m in measurements}
    # 3 sync workers with one connection each serve at most 3 / 20 ms = 150 requests/s.
    assert requests_per_second["flask-gunicorn"] < 160
    assert requests_per_second["fastapi-uvicorn"] > 1.5 * requests_per_second["flask-gunicorn"]
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any("gwbench-postgres-" in part for part in (p.info["cmdline"] or []))
    ]
    assert not leftovers


MIX = """
description = "a weighted mix with a POST body, measured as one endpoint"
targets = ["fastapi-uvicorn"]
mix = "journey"
time_scale = 0.5
endpoints = [
    { path = "/io/sleep?ms=40", weight = 3 },
    { path = "/validate", method = "POST", body_file = "trades.json", weight = 1 },
]
concurrency = [4]
warmup_s = 0.3
duration_s = 1.5
seed = 4
"""


def test_a_mix_with_a_post_body_runs_as_one_endpoint(tmp_path: Path) -> None:
    body = (REPO / "scenarios" / "bodies" / "trades-100.json").read_text()
    (tmp_path / "trades.json").write_text(body)
    done, (measurement,) = run_scenario(tmp_path, MIX)
    assert done.returncode == 0, done.stderr[-3000:]
    assert measurement.endpoint == "journey" and measurement.status == "ok"
    assert measurement.errors.total == 0  # every POST validated (a 422 would be a status error)
    latency = measurement.latency_ms
    assert latency is not None
    # Sleeps of 40 x 0.5 = 20 ms are 3/4 of the requests; validations take a few ms.
    assert 15 <= latency.p50 <= 60
    assert latency.min < 15
