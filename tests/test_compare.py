"""gwbench compare: matching cells, the regression rule, shape checks, and real stored runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from cells import TARGETS, cell
from conftest import REPO
from test_report import write_run

from harness.compare import ShapeError, classify, compare_runs
from harness.model import Measurement, Scenario
from harness.results import load_run
from harness.stats import Comparison, Interval

SCENARIO = Scenario(
    name="cmp",
    description="compare test",
    endpoints=("/io/sleep?ms=20",),
    concurrency=(8, 64),
    warmup_s=0.3,
    duration_s=1.0,
    repeats=3,
)


def measurements(
    requests_per_second: dict[str, float], p99: float = 30.0, repeats: int = 3
) -> list[Measurement]:
    return [
        cell(
            name,
            endpoint=SCENARIO.endpoints[0],
            concurrency=c,
            repeat=r,
            requests_per_second=value * (1 + r / 100),
            p99_ms=p99,
        )
        for name, value in requests_per_second.items()
        for c in SCENARIO.concurrency
        for r in range(repeats)
    ]


def run(root: Path, name: str, cells: Sequence[Measurement], scenario: Scenario = SCENARIO) -> Path:
    return write_run(root / name, scenario, cells)


@pytest.mark.parametrize(
    ("requests_per_second", "p99", "status", "worse"),
    [
        (Comparison(0.8, Interval(0.75, 0.85)), None, "regression", ("requests/s",)),
        (Comparison(0.95, Interval(0.93, 0.97)), None, "no significant change", ()),  # within 10%
        (Comparison(0.8, Interval(0.6, 1.05)), None, "no significant change", ()),  # not significant
        (Comparison(1.0, Interval(0.98, 1.02)), Comparison(1.3, Interval(1.2, 1.4)), "regression", ("p99",)),
        (Comparison(1.3, Interval(1.2, 1.4)), Comparison(1.0, Interval(0.9, 1.1)), "improvement", ()),
        (Comparison(0.5, None), None, "no interval", ()),
    ],
)
def test_a_regression_is_significant_and_beyond_the_threshold(
    requests_per_second: Comparison, p99: Comparison | None, status: str, worse: tuple[str, ...]
) -> None:
    assert classify(requests_per_second, p99, 0.10) == (status, worse)


def test_cells_are_matched_and_only_the_regressed_one_gates(tmp_path: Path) -> None:
    a = run(tmp_path, "a", measurements({"fastapi-uvicorn": 1000.0, "flask-gunicorn": 140.0}))
    b = run(tmp_path, "b", measurements({"fastapi-uvicorn": 1010.0, "flask-gunicorn": 47.0}))
    result = compare_runs(load_run(a), load_run(b))
    assert len(result.changes) == 4  # 2 stacks x 2 levels
    assert {(c.target, c.level_label) for c in result.regressions} == {
        ("flask-gunicorn", "c8"),
        ("flask-gunicorn", "c64"),
    }
    fastapi = [c for c in result.changes if c.target == "fastapi-uvicorn"]
    assert {c.status for c in fastapi} == {"no significant change"}


def test_a_stack_that_stopped_running_is_a_regression_and_a_single_run_has_no_interval(
    tmp_path: Path,
) -> None:
    a = run(tmp_path, "a", measurements({"fastapi-uvicorn": 1000.0}))
    broken = [
        m.model_copy(update={"status": "failed", "requests_per_second": 0.0, "latency_ms": None})
        for m in measurements({"fastapi-uvicorn": 1.0})
    ]
    b = run(tmp_path, "b", broken)
    result = compare_runs(load_run(a), load_run(b))
    assert {c.status for c in result.changes} == {"failed"}
    assert len(result.regressions) == 2
    single = SCENARIO.model_copy(update={"repeats": 1})
    c = run(tmp_path, "c", measurements({"fastapi-uvicorn": 500.0}, repeats=1), single)
    d = run(tmp_path, "d", measurements({"fastapi-uvicorn": 250.0}, repeats=1), single)
    result = compare_runs(load_run(c), load_run(d))
    assert {c.status for c in result.changes} == {"no interval"}
    assert not result.regressions


def test_runs_of_different_shapes_are_refused_with_every_difference_named(tmp_path: Path) -> None:
    a = run(tmp_path, "a", measurements({"fastapi-uvicorn": 1000.0}))
    other = SCENARIO.model_copy(update={"concurrency": (8, 32), "endpoints": ("/io/sleep?ms=50",)})
    targets = {"flask-gunicorn": TARGETS["flask-gunicorn"]}
    b = write_run(tmp_path / "b", other, [], targets)
    with pytest.raises(ShapeError) as caught:
        compare_runs(load_run(a), load_run(b))
    message = str(caught.value)
    assert "endpoints: only in A: /io/sleep?ms=20; only in B: /io/sleep?ms=50" in message
    assert "concurrency: 8, 64 in A, 8, 32 in B" in message
    assert "stacks: only in A: django-gunicorn, fastapi-uvicorn, quart-hypercorn" in message


def gwbench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250"},  # rich's tables, unwrapped
    )


# Both stacks wait 20 ms per request at 8 connections: throughput is set by Little's law
# (fastapi-uvicorn ~8 / 20 ms = 400 requests/s; flask-gunicorn's sync workers ~1 / 20 ms
# each), not by the CPU, so it holds on a busy machine. One sync worker instead of three
# is a real regression of about two thirds.
REAL = """
description = "compare test: two fast stacks, a 20 ms wait, 3 repeats"
targets = ["flask-gunicorn", "fastapi-uvicorn"]
endpoints = ["/io/sleep?ms=20"]
concurrency = [8]
warmup_s = 0.3
duration_s = 1.0
repeats = 3
seed = 5
"""


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three real runs: ``a`` and ``again`` alike, ``fewer`` with flask-gunicorn on 1 worker instead of 3."""
    root = tmp_path_factory.mktemp("compare")
    runs = {}
    for name, extra in (("a", ""), ("again", ""), ("fewer", "\n[workers]\nflask-gunicorn = 1\n")):
        scenario = root / f"{name}.toml"
        scenario.write_text(REAL + extra)
        results = root / name
        done = gwbench("run", str(scenario), "--results", str(results), "--no-report")
        assert done.returncode == 0, done.stderr[-3000:]
        (runs[name],) = results.iterdir()
    return runs


@pytest.mark.usefixtures("no_leftover_processes")
def test_real_runs_a_rerun_passes_and_fewer_workers_is_a_regression(
    real_runs: dict[str, Path], tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    # The same configuration twice: no regression. The threshold is generous because the
    # machine is shared and p99 over 1 s windows is noisy; the real regression is ~-65%.
    same = gwbench(
        "compare",
        str(real_runs["a"]),
        str(real_runs["again"]),
        "--threshold",
        "40",
        "--reports",
        str(reports),
    )
    assert same.returncode == 0, same.stdout + same.stderr
    assert "regression" not in same.stdout.replace("No regression", "")
    worse = gwbench(
        "compare",
        str(real_runs["a"]),
        str(real_runs["fewer"]),
        "--threshold",
        "40",
        "--reports",
        str(reports),
    )
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "1 regression(s)" in worse.stderr and "flask-gunicorn /io/sleep?ms=20 c8" in worse.stderr
    assert "flask-gunicorn workers: 3 in A, 1 in B" in worse.stdout
    page = reports / "compare" / f"{real_runs['a'].name}__{real_runs['fewer'].name}.html"
    html = page.read_text()
    assert "1 regression(s)" in html and "requests/s" in html
    back = gwbench(
        "compare",
        str(real_runs["fewer"]),
        str(real_runs["a"]),
        "--threshold",
        "40",
        "--reports",
        str(reports),
    )
    assert back.returncode == 0, back.stdout + back.stderr
    assert "improvement" in back.stdout


def test_bad_input_exits_2_and_a_corrupt_line_is_reported_not_fatal(
    real_runs: dict[str, Path], tmp_path: Path
) -> None:
    unknown = gwbench("compare", "no-such-run", str(real_runs["a"]), "--results", str(tmp_path))
    assert unknown.returncode == 2
    assert (
        unknown.stderr.strip()
        == f"error: no-such-run: no such run (neither a folder nor a run id in {tmp_path})"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    not_a_run = gwbench("compare", str(empty), str(real_runs["a"]))
    assert not_a_run.returncode == 2 and "no manifest.json" in not_a_run.stderr
    other = tmp_path / "other"
    shutil.copytree(real_runs["a"], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["scenario"]["concurrency"] = [16]
    (other / "manifest.json").write_text(json.dumps(manifest))
    shape = gwbench("compare", str(real_runs["a"]), str(other), "--reports", str(tmp_path / "reports"))
    assert shape.returncode == 2
    assert "concurrency: 8 in A, 16 in B" in shape.stderr
    corrupt = tmp_path / "corrupt"
    shutil.copytree(real_runs["again"], corrupt)
    with (corrupt / "measurements.jsonl").open("a") as handle:
        handle.write('{"cell_id": "cut short\n')
    lines = len((corrupt / "measurements.jsonl").read_text().splitlines())
    done = gwbench(
        "compare",
        str(real_runs["a"]),
        str(corrupt),
        "--threshold",
        "40",
        "--reports",
        str(tmp_path / "reports"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"measurements.jsonl line {lines}: invalid JSON; line skipped" in done.stderr
