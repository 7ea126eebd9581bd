"""`gwbench run --driver locust`: one process, and a master with two workers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

from harness.model import Measurement
from harness.net import free_port
from harness.results import load_run

SCENARIO = """
description = "locust through the CLI"
targets = ["fastapi-uvicorn"]
endpoints = ["/json"]
concurrency = [4]
warmup_s = 0.5
duration_s = 2.0
seed = 1
"""


def gwbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def locust_totals(run_dir: Path, measurement: Measurement) -> tuple[int, int]:
    stats = json.loads((run_dir / "locust" / measurement.cell_id / "locust.json").read_text())
    return sum(s["num_requests"] for s in stats), sum(s["num_failures"] for s in stats)


def stored(results: Path) -> tuple[Path, list[Measurement]]:
    (run_dir,) = results.iterdir()
    manifest, measurements = load_run(run_dir)
    assert manifest.status == "complete"
    return run_dir, measurements


def test_a_locust_cell_stores_locusts_own_totals(tmp_path: Path) -> None:
    scenario = tmp_path / "locust.toml"
    scenario.write_text(SCENARIO)
    results = tmp_path / "results"
    done = subprocess.run(
        gwbench("run", str(scenario), "--driver", "locust", "--results", str(results), "--no-report"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir, (measurement,) = stored(results)
    assert measurement.driver == "locust" and measurement.status == "ok"
    requests, failures = locust_totals(run_dir, measurement)
    assert requests > 100 and failures == 0
    assert measurement.requests == requests
    assert measurement.requests_per_second > 0 and measurement.latency_ms is not None


def test_a_master_with_two_workers_measures_the_same_way(tmp_path: Path) -> None:
    scenario = tmp_path / "locust.toml"
    scenario.write_text(SCENARIO)
    results = tmp_path / "results"
    port = free_port()
    shared_tmp = tmp_path / "tmp"  # the workers' temporary folder, as /tmp is
    shared_tmp.mkdir()
    master = subprocess.Popen(
        gwbench(
            "run", str(scenario), "--driver", "locust", "--locust-workers", "2",
            "--locust-port", str(port), "--results", str(results), "--no-report",
        ),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            gwbench("locust-worker", "127.0.0.1", "--master-port", str(port)),
            cwd=tmp_path,
            env={**os.environ, "TMPDIR": str(shared_tmp)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        _, stderr = master.communicate(timeout=180)
        assert master.returncode == 0, stderr[-3000:]
        deadline = time.monotonic() + 30
        for worker in workers:
            worker.wait(timeout=max(deadline - time.monotonic(), 1))  # the master's end stops them
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
                process.wait()
    run_dir, (measurement,) = stored(results)
    requests, failures = locust_totals(run_dir, measurement)
    assert requests > 100 and failures == 0
    assert measurement.requests == requests
    report = json.loads((run_dir / "locust" / measurement.cell_id / "report.json").read_text())
    assert report["role"] == "master" and len(report["workers"]) == 2
    assert not list(shared_tmp.iterdir()), "the workers left the files they downloaded"
