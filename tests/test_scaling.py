"""The scaling efficiency (harness.tools.scaling) from a tiny real pair of runs of starlette-uvicorn."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import held_capacities

from harness import stats
from harness.plan import split_cpus
from harness.results import list_runs, load_run

REPO = Path(__file__).resolve().parent.parent

TINY = """
description = "tiny scaling pair"
endpoints = ["/io/sleep?ms=50"]
model = "saturation"
max_connections = 1024
warmup_s = 0.2
duration_s = 0.5
repeats = 2
timeout_s = 2.0
seed = 7
[saturation]
method = "probe"
steps = 2
probe_concurrency = 256
probe_s = 0.5
[slo]
p99_ms = 150.0
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scaling")
    (folder / "tiny.toml").write_text(TINY)
    command = [sys.executable, "-m", "harness.tools.scaling", "--template", str(folder / "tiny.toml")]
    done = subprocess.run(
        [*command, "--out", str(folder / "out"), "--targets", "starlette-uvicorn", "--no-verify"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder / "out"


def test_the_scaling_efficiency_is_half_the_ratio_of_the_stored_capacities(pair: Path) -> None:
    (row,) = json.loads((pair / "scaling.json").read_text())["rows"]
    (small_run,) = list_runs(pair / "results" / "small")
    (large_run,) = list_runs(pair / "results" / "large")
    small, large = (held_capacities(run, "starlette-uvicorn") for run in (small_run, large_run))
    assert len(small) == len(large) == 2 and min(small) > 0
    ratio = stats.compare(large, small)
    assert ratio.interval is not None
    assert tuple(row["small_values"]) == small and tuple(row["large_values"]) == large
    assert math.isclose(row["efficiency"], ratio.ratio / 2)
    assert math.isclose(row["efficiency_ci_low"], ratio.interval.low / 2)
    assert math.isclose(row["efficiency_ci_high"], ratio.interval.high / 2)


def test_the_two_sizes_double_the_cpu_and_the_async_workers(pair: Path) -> None:
    (small_run,) = list_runs(pair / "results" / "small")
    (large_run,) = list_runs(pair / "results" / "large")
    small = load_run(small_run)[0].targets["starlette-uvicorn"]
    large = load_run(large_run)[0].targets["starlette-uvicorn"]
    assert (small.workers, large.workers) == (1, 2)
    assert small.cpus is not None and large.cpus == 2 * small.cpus
    one_target_cpu = len(split_cpus(sorted(os.sched_getaffinity(0))).target_cpus) == 1
    assert small.cpus == (0.5 if one_target_cpu else 1.0)
    notes = json.loads((pair / "scaling.json").read_text())["notes"]
    assert ("extrapolated" in notes[0]) == one_target_cpu
