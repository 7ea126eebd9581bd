"""A run in which every request failed: its report renders, saying so, and ``gwbench run`` exits 1.

One real run through the CLI (flask-gunicorn answering 404 to every request),
re-rendered by ``gwbench report``; and stored runs of every load model whose
every request failed, or whose one stack of two had no successful request.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cells import cell, histogram_of
from conftest import REPO
from test_report import CLOSED, OPEN, SATURATION, closed_measurements, figures, latencies, section, write_run

from harness.model import Errors, Measurement, Scenario
from harness.report import render_run
from harness.report.svg import NO_SUCCESS, StackStyle
from harness.report.timecharts import stages_chart
from harness.results import load_run
from harness.runanalysis import analyse_run

SCENARIO = """
description = "every request answered 404"
targets = ["flask-gunicorn"]
endpoints = ["/does-not-exist"]
concurrency = [4]
warmup_s = 0.3
duration_s = 1.5
seed = 7
"""


def gwbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("all-failed")
    scenario = root / "all-404.toml"
    scenario.write_text(SCENARIO)
    results, reports = root / "results", root / "reports"
    done = gwbench(
        "run",
        str(scenario),
        "--quick",
        "--quick-factor",
        "0.05",
        "--no-verify",
        "--results",
        str(results),
        "--reports",
        str(reports),
    )
    return results, reports, done


def test_a_run_whose_every_request_failed_renders_its_report_and_exits_1(
    run: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    results, reports, done = run
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]
    reason = r"every request failed: [\d,]+ requests \(HTTP 404: [\d,]+\)"
    (run_dir,) = results.iterdir()
    _, measurements = load_run(run_dir)
    # Each cell is a failed cell with its reason and what was measured: its requests, no latency.
    assert measurements
    for m in measurements:
        assert m.status == "failed" and re.fullmatch(reason, m.failure_reason or ""), m
        assert m.requests == m.errors.status > 0 and m.latency_ms is None and m.duration_s > 0
    # A failure line per cell as it happens, and the run's total once at the end.
    lines = done.stderr.splitlines()
    failures = [line for line in lines if line.startswith("failure ")]
    assert [line.split(": ", 1)[0] for line in failures] == [f"failure {m.cell_id}" for m in measurements]
    assert all(re.fullmatch(reason, line.split(": ", 1)[1]) for line in failures), failures
    assert len([line for line in lines if re.fullmatch(reason, line)]) == 1, done.stderr
    assert f"{len(measurements)} failure(s)" in done.stderr
    page = reports / run_dir.name / "index.html"
    assert f"report: {page}" in done.stdout
    html = page.read_text()
    charts = section(html, "charts")
    assert figures(charts) == ["throughput", "cpu", "latency", "spectrum", "memory", "errors"]
    assert f"flask-gunicorn (WSGI): {NO_SUCCESS}" in charts
    # The failed cells' table names each with its reason.
    assert len(re.findall(r"every request failed: [\d,]+ requests \(HTTP 404: [\d,]+\)", html)) >= len(
        measurements
    )


SEARCH = """
description = "a capacity search whose every request is answered 404"
targets = ["flask-gunicorn"]
endpoints = ["/does-not-exist"]
model = "saturation"
warmup_s = 0.3
duration_s = 1.0
seed = 7

[saturation]
method = "grow"
start_rate = 20
bisect_steps = 1
"""


def test_a_search_step_whose_every_request_failed_is_failed_and_broke_the_slo(tmp_path: Path) -> None:
    """Its steps are failed cells with their reason, yet no failure of the run: each broke the SLO."""
    scenario = tmp_path / "search-404.toml"
    scenario.write_text(SEARCH)
    results = tmp_path / "results"
    done = gwbench(
        "run", str(scenario), "--no-verify", "--results", str(results), "--reports", str(tmp_path / "reports")
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]
    reason = r"every request failed: [\d,]+ requests \(HTTP 404: [\d,]+\)"
    (run_dir,) = results.iterdir()
    manifest, measurements = load_run(run_dir)
    assert [m.rate for m in measurements] == [20.0, 10.0], measurements
    for m in measurements:
        assert m.model == "saturation" and m.status == "failed" and m.slo_held is False, m
        assert re.fullmatch(reason, m.failure_reason or "") and m.requests > 0, m
    assert not manifest.failures
    lines = done.stderr.splitlines()
    assert not [line for line in lines if line.startswith("failure ")], done.stderr
    assert len([line for line in lines if re.fullmatch(reason, line)]) == 1, done.stderr
    (found,) = analyse_run(manifest, measurements).sustainable.itertuples()
    assert found.steps == 2 and found.broke and pd.isna(found.sustainable_requests_per_second)
    page = (tmp_path / "reports" / run_dir.name / "index.html").read_text()
    assert len(re.findall(reason, page)) >= 2


def test_gwbench_report_renders_the_stored_run_and_warns(
    run: tuple[Path, Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    results, _, _ = run
    (run_dir,) = results.iterdir()
    done = gwbench("report", str(run_dir), "--reports", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"warning: every request failed: [\d,]+ requests \(HTTP 404", done.stderr), done.stderr
    page = tmp_path / run_dir.name / "index.html"
    assert f"report: {page}" in done.stdout
    assert NO_SUCCESS in page.read_text()


def every_request_failed(m: Measurement) -> Measurement:
    """The cell as if every request had been answered 404: no latency, no throughput, an empty histogram."""
    return m.model_copy(
        update={
            "errors": Errors(status=m.requests, by_status={"404": m.requests}, by_class={"4xx": m.requests}),
            "requests_per_second": 0.0,
            "latency_ms": None,
            "latency_ms_uncorrected": None,
            "histogram": histogram_of([]),
        }
    )


def made_up(scenario: Scenario) -> list[Measurement]:
    """Two stacks, two levels, with a histogram each, in ``scenario``'s model."""
    endpoint = scenario.endpoints[0]
    out = []
    for name in ("fastapi-uvicorn", "flask-gunicorn"):
        if scenario.model == "closed":
            levels = [{"concurrency": c} for c in scenario.concurrency]
        else:
            levels = [{"rate": 50.0, "slo_held": True}, {"rate": 100.0, "slo_held": False}]
        for level in levels:
            out.append(
                cell(
                    name,
                    endpoint=endpoint,
                    model=scenario.model,
                    uncorrected_p99_ms=70.0,
                    histogram=histogram_of(latencies(60.0)),
                    **level,  # type: ignore[arg-type]
                )
            )
    return out


@pytest.mark.parametrize("scenario", [CLOSED, OPEN, SATURATION], ids=lambda s: s.name)
def test_a_run_whose_every_request_failed_renders_for_every_model(tmp_path: Path, scenario: Scenario) -> None:
    measurements = [every_request_failed(m) for m in made_up(scenario)]
    html = render_run(write_run(tmp_path / "results", scenario, measurements))
    charts = section(html, "charts")
    assert figures(charts), charts
    for name in ("fastapi-uvicorn (ASGI)", "flask-gunicorn (WSGI)"):
        if scenario.model != "saturation":
            assert f"{name}: {NO_SUCCESS}" in charts
    assert NO_SUCCESS in charts
    if scenario.model != "saturation":
        assert "no stack had a successful request." in section(html, "verdict")
        assert "served the most" not in html


def test_a_stack_without_a_successful_request_is_named_not_drawn_beside_one_that_had(tmp_path: Path) -> None:
    measurements = [
        every_request_failed(m) if m.target == "flask-gunicorn" else m for m in closed_measurements()
    ]
    html = render_run(write_run(tmp_path / "results", CLOSED, measurements))
    charts = section(html, "charts")
    assert figures(charts)[:3] == ["throughput", "cpu", "latency"]
    assert f"flask-gunicorn (WSGI): {NO_SUCCESS}" in charts
    assert "fastapi-uvicorn (ASGI)" in charts and f"fastapi-uvicorn (ASGI): {NO_SUCCESS}" not in charts
    # Only a plot with nothing in it says so in its middle: here every plot has fastapi-uvicorn's line.
    assert charts.count(NO_SUCCESS) == charts.count(f"flask-gunicorn (WSGI): {NO_SUCCESS}")


def test_a_staged_chart_without_a_successful_request_says_so() -> None:
    rows = pd.DataFrame(
        {
            "target": ["flask-gunicorn"] * 2,
            "n": [1, 1],
            "stage": [0, 1],
            "stage_start_s": [0.0, 5.0],
            "stage_duration_s": [5.0, 5.0],
            "stage_level_start": [4.0, 8.0],
            "stage_level_end": [4.0, 8.0],
            "requests_per_second_median": [0.0, 0.0],
            "latency_ms_p50_median": [float("nan")] * 2,
            "latency_ms_p99_median": [float("nan")] * 2,
        }
    )
    styles = {"flask-gunicorn": StackStyle("#1f77b4", "--", "s", "///")}
    svg = stages_chart(rows, styles, {"flask-gunicorn": "wsgi"}, "g", unit="connections")
    assert f"flask-gunicorn (WSGI): {NO_SUCCESS}" in svg
    assert svg.count(NO_SUCCESS) == 3  # the legend, and both plots
