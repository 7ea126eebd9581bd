"""The crossover map (harness.tools.crossover) from a tiny real map: one wait point, one path.

The shared run measures flask-gunicorn and fastapi-uvicorn on the 5 ms upstream call,
2 repeats of a 2-step capacity search, as the tool runs it (``gwbench run`` per point).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import held_capacities

from harness import stats
from harness.results import list_runs

REPO = Path(__file__).resolve().parent.parent

TINY = """
description = "tiny crossover map"
targets = ["flask-gunicorn", "fastapi-uvicorn"]
endpoints = ["/io/upstream?ms=5"]
model = "saturation"
warmup_s = 0.2
duration_s = 0.5
repeats = 2
timeout_s = 2.0
seed = 5
[saturation]
method = "probe"
steps = 2
probe_concurrency = 64
probe_s = 0.5
[slo]
p99_ms = 105.0
"""


def crossover(template: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "harness.tools.crossover",
        "--template",
        str(template),
        "--out",
        str(out),
    ]
    return subprocess.run(
        [*command, "--points", "upstream-5ms", "--paths", "flask", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("map")
    template = folder / "tiny.toml"
    template.write_text(TINY)
    done = crossover(template, folder / "out", "--no-verify")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder / "out"


def test_the_maps_ratio_is_stats_compare_of_the_stored_runs_per_repeat_capacities(tiny_map: Path) -> None:
    (row,) = json.loads((tiny_map / "map.json").read_text())
    (run_dir,) = list_runs(tiny_map / "results" / "upstream-5ms")
    fastapi, flask = held_capacities(run_dir, "fastapi-uvicorn"), held_capacities(run_dir, "flask-gunicorn")
    assert len(fastapi) == len(flask) == 2
    expected = stats.compare(fastapi, flask)
    assert (row["path"], row["variant"], row["wait_ms"], row["slo_p99_ms"]) == (
        "flask-gunicorn -> fastapi-uvicorn",
        "as configured",
        5.0,
        105.0,
    )
    assert tuple(row["to_values"]) == fastapi and tuple(row["from_values"]) == flask
    assert math.isclose(row["ratio"], expected.ratio)
    if expected.interval is None:  # a repeat in which nothing held on both sides: no interval
        assert math.isnan(row["ratio_ci_low"]) and math.isnan(row["ratio_ci_high"])
    else:
        assert math.isclose(row["ratio_ci_low"], expected.interval.low)
        assert math.isclose(row["ratio_ci_high"], expected.interval.high)
        assert row["interval"] == expected.interval.method
    assert row["from_requests_per_second"] == stats.median(flask)


def test_the_map_is_rebuilt_from_the_stored_runs_alone(tiny_map: Path, tmp_path: Path) -> None:
    first = json.loads((tiny_map / "map.json").read_text())
    for name in ("map.json", "map.csv", "map.svg", "index.html"):
        (tiny_map / name).unlink()
    done = crossover(tmp_path / "no-template.toml", tiny_map, "--rebuild")  # no template, no load
    assert done.returncode == 0, done.stderr
    assert json.loads((tiny_map / "map.json").read_text()) == first
    assert "flask-gunicorn -> fastapi-uvicorn" in done.stdout and f"{first[0]['ratio']:.2f}x" in done.stdout


def test_the_chart_is_written_with_the_line_at_1_and_the_page_holds_it(tiny_map: Path) -> None:
    svg = (tiny_map / "map.svg").read_text()
    assert svg.startswith("<svg") and len(svg) > 2000
    assert "migrating pays above the line" in svg and "5 ms" in svg
    page = (tiny_map / "index.html").read_text()
    assert "<svg" in page and "flask-gunicorn -&gt; fastapi-uvicorn" in page
    assert (tiny_map / "map.csv").read_text().count("\n") == 2  # header and one row


def test_a_point_whose_run_fails_stops_the_map_with_one_line_and_exit_2(tmp_path: Path) -> None:
    # 32 MiB cannot hold either stack's processes: they fail to start, the run fails.
    template = tmp_path / "failing.toml"
    memory = "[memory_mib]\nflask-gunicorn = 32\nfastapi-uvicorn = 32\n"
    template.write_text(TINY.replace("repeats = 2", "repeats = 1") + memory)
    done = crossover(template, tmp_path / "out", "--no-verify")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("bench-map: the run of point upstream-5ms failed (exit 1)"), done.stderr
    assert not (tmp_path / "out" / "map.json").exists()
