"""A --quick window too short to answer is measured again with a Little's-law window.

flask-gunicorn has 3 sync workers: on ``/io/sleep?ms=100`` it answers at most 30
requests/s, so 32 connections keep each request about 32 / 30 s = 1.07 s (Little's
law). A 0.5 s quick window then holds about 15 answers, fewer than its 32
connections, and the cell is measured again with a longer warm-up and window; 2
connections are answered within 0.1 s, so their 0.5 s window stands.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from harness.results import load_run

SCENARIO = """
description = "smoke window test: 3 sync workers, 100 ms waits"
targets = ["flask-gunicorn"]
endpoints = ["/io/sleep?ms=100"]
model = "closed"
concurrency = [2, 32]
warmup_s = 1.0
duration_s = 4.0
repeats = 1
timeout_s = 10.0
"""


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_window_shorter_than_one_response_time_is_measured_again_longer(tmp_path: Path) -> None:
    scenario = tmp_path / "smoke-window.toml"
    scenario.write_text(SCENARIO)
    argv = [sys.executable, "-m", "harness", "run", str(scenario), "--quick", "--quick-factor", "0.05"]
    argv += ["--no-verify", "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "measured again longer (up to 4 s)" in done.stdout + done.stderr
    (run_dir,) = (tmp_path / "results").iterdir()
    _, measurements = load_run(run_dir)
    by_level = {m.concurrency: m for m in measurements}
    few, many = by_level[2], by_level[32]
    assert few.status == many.status == "ok"
    assert few.duration_s < 0.7, few.duration_s  # 2 connections answered many times in 0.5 s
    assert few.requests >= 2
    # 32 connections: lengthened to at least twice the first window, until it held 32 answers or hit 4 s.
    assert many.duration_s >= 1.0, many.duration_s
    assert many.requests >= 32 or many.duration_s >= 3.9, (many.requests, many.duration_s)
    assert many.warmup_s is not None and many.warmup_s >= 0.5
