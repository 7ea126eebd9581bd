"""The migration-path table, its cost and its place at the end of a run (issue 12, items 2, 4, 7).

One real saturation run is shared by the module: Flask on 3 Gunicorn sync workers (3 / 50 ms
= 60 requests/s at most), the same app on gthread workers (3 x 4 threads: 240 requests/s at
most) and FastAPI on Uvicorn (far above the search's 320 requests/s bound, so it never breaks
the SLO), two repeats each, on /io/sleep?ms=50. The table is rebuilt from the stored files.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO, stray_processes

from harness import stats
from harness.analysis import cpu_us_per_request
from harness.cost import stack_cost
from harness.model import ConfigError, Measurement, RunManifest
from harness.paths import PathRow, load_paths, path_table, run_paths, tuned_name
from harness.results import load_run
from harness.runanalysis import analyse_run

SCENARIO = """
description = "path table test"
targets = ["flask-gunicorn", "flask-gunicorn-gthread", "fastapi-uvicorn"]
endpoints = ["/io/sleep?ms=50"]
model = "saturation"
arrival = "uniform"
max_connections = 128
warmup_s = 0.2
duration_s = 1.0
timeout_s = 3.0
repeats = 2
seed = 12
target_requests_per_second = 5000

[saturation]
start_rate = 40
growth = 2.0
max_rate = 320
bisect_steps = 1

[slo]
p99_ms = 200
"""

PATHS_FILE = REPO / "scenarios" / "paths" / "migrations.toml"


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("paths")
    (root / "paths.toml").write_text(SCENARIO)
    results, reports = root / "results", root / "reports"
    where = ("--results", str(results), "--reports", str(reports))
    since = time.time() - 1
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(root / "paths.toml"), "--no-verify", *where],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Only this worktree's processes: other sessions on the machine run stacks of their own.
    assert not [p for p in stray_processes(since) if _runs_here(int(p.split(":")[0]))]
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = results.iterdir()
    return run_dir, reports, done


def _runs_here(pid: int) -> bool:
    try:
        return Path(psutil.Process(pid).cwd()).is_relative_to(REPO)
    except psutil.Error:
        return False


def _rows(run_dir: Path) -> tuple[RunManifest, list[Measurement], dict[str, PathRow]]:
    manifest, measurements = load_run(run_dir)  # from the stored files alone
    rows = run_paths(analyse_run(manifest, measurements), load_paths(PATHS_FILE))
    return manifest, measurements, {row.path.name: row for row in rows}


def _held(measurements: list[Measurement], target: str) -> list[Measurement]:
    """Each repeat's highest cell that held the SLO, picked from the stored records by hand."""
    picked = []
    for repeat in sorted({m.repeat for m in measurements if m.target == target}):
        held = [m for m in measurements if m.target == target and m.repeat == repeat and m.slo_held]
        picked.append(max(held, key=lambda m: m.rate or 0.0))
    return picked


def test_the_path_table_comes_from_the_stored_run_with_the_ratios_of_stats_compare(
    stored: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    manifest, measurements, rows = _rows(stored[0])
    row = rows["flask-gthread"]
    assert row.source is not None and row.destination is not None
    assert (row.source.target, row.destination.target) == ("flask-gunicorn", "flask-gunicorn-gthread")
    sync, threads = _held(measurements, "flask-gunicorn"), _held(measurements, "flask-gunicorn-gthread")
    sync_rates, thread_rates = [float(m.rate or 0) for m in sync], [float(m.rate or 0) for m in threads]
    # 3 sync workers on a 50 ms wait hold 40/s at least and never reach 80/s; 12 threads go further.
    assert all(40 <= r < 80 for r in sync_rates), sync_rates
    assert all(r >= 80 for r in thread_rates), thread_rates
    assert row.source.capacity_values == tuple(sync_rates)
    assert row.source.capacity_median == stats.median(sync_rates)
    expected = stats.compare(thread_rates, sync_rates)
    assert row.capacity_ratio == expected
    assert row.capacity_ratio is not None and row.capacity_ratio.interval is not None
    cpu = [
        [cpu_us_per_request(m.server_cpu_percent or 0, m.requests_per_second) for m in ms]
        for ms in (threads, sync)
    ]
    assert row.cpu_ratio == stats.compare(cpu[0], cpu[1])
    assert row.memory_kind == "PSS"
    pss = [[float(m.server_pss_mib_peak or 0) for m in ms] for ms in (threads, sync)]
    assert row.memory_ratio == stats.compare(pss[0], pss[1])
    # Both searches broke the SLO and nothing bound them: the path carries a verdict.
    assert row.no_verdict == () and row.has_verdict
    # The cost, for the scenario's 5,000 requests/s on 1-CPU, 1-GiB instances.
    assert manifest.scenario.target_requests_per_second == 5000
    assert row.source_cost is not None and row.destination_cost is not None
    assert row.source_cost.instances == math.ceil(5000 / stats.median(sync_rates))
    assert row.source_cost.cores == row.source_cost.instances * (manifest.targets["flask-gunicorn"].cpus or 0)
    assert row.saving_cores == row.source_cost.cores - row.destination_cost.cores > 0


def test_a_side_that_never_broke_the_slo_gives_the_path_no_verdict(
    stored: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    _, _, rows = _rows(stored[0])
    row = rows["flask-to-fastapi"]
    # FastAPI holds every rate up to the search's bound: its capacity is that bound, a floor.
    assert row.destination is not None and row.destination.capacity_median == 320.0
    assert row.capacity_ratio is not None and row.capacity_ratio.ratio > 1  # shown ...
    assert not row.has_verdict  # ... but no verdict, and why
    assert row.no_verdict == (
        "fastapi-uvicorn: never broke the SLO in 2 repeat(s): the search's own bound, a floor",
    )
    # A path whose to-stack was not in the run is marked; one with neither stack is left out.
    assert rows["flask-to-quart"].destination is None and not rows["flask-to-quart"].measured
    assert "django-wsgi-to-asgi" not in rows


def test_tuned_figures_are_used_and_the_configured_ones_kept(
    stored: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    """A pure-function test of the table builder: the real flask-gunicorn cells are copied under
    the name flask-gunicorn@tuned (with 9 workers) as the tuned stacks' runs will store them."""
    manifest, measurements, _ = _rows(stored[0])
    copies = [
        m.model_copy(update={"target": tuned_name(m.target), "cell_id": f"tuned-{m.cell_id}"})
        for m in measurements
        if m.target == "flask-gunicorn"
    ]
    targets = dict(manifest.targets)
    targets[tuned_name("flask-gunicorn")] = targets["flask-gunicorn"].model_copy(update={"workers": 9})
    tuned_manifest = manifest.model_copy(update={"targets": targets})
    run = analyse_run(tuned_manifest, [*measurements, *copies])
    (path,) = [p for p in load_paths(PATHS_FILE) if p.name == "flask-gthread"]
    (row,) = path_table([path], run.frame, run.sustainable, targets, target_requests_per_second=5000)
    assert row.source is not None and row.source.target == "flask-gunicorn@tuned" and row.source.workers == 9
    assert row.source_configured is not None and row.source_configured.target == "flask-gunicorn"
    assert row.source_configured.workers == 3


def test_the_cost_of_a_known_capacity() -> None:
    cost = stack_cost(10_000, 2_300, cpus=1.0, memory_limit_mib=1024, measured_memory_mib=256)
    assert cost.instances == 5  # ceil(10,000 / 2,300)
    assert (cost.cores, cost.limit_gib, cost.measured_gib) == (5.0, 5.0, 1.25)
    exact = stack_cost(10_000, 2_500, cpus=2.0, memory_limit_mib=512)
    assert (exact.instances, exact.cores, exact.limit_gib) == (4, 8.0, 2.0)
    assert math.isnan(exact.measured_gib)
    # At 80% scaling efficiency, 2,500/s instances carry 2,000/s each.
    assert stack_cost(10_000, 2_500, cpus=1.0, memory_limit_mib=1024, scaling_efficiency=0.8).instances == 5
    none = stack_cost(10_000, 0.0, cpus=1.0, memory_limit_mib=1024)
    assert none.instances is None and math.isnan(none.cores)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[paths]]\nname = "a"\nfrom = "x"\nto = "y"\nstands_for = "s"\n', "paths[0].source:"),
        ('[[paths]]\nname = "a"\nfrom = "x"\nto = "y"\nstands_for = "s"\nsource = "t"\nnote = 1\n', "note"),
        ('[[paths]]\nname = "a"\nfrom = "x"\nto = "x"\nstands_for = "s"\nsource = "t"\n', "same stack"),
        ("paths = [", "invalid TOML"),
    ],
)
def test_a_bad_paths_file_is_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_paths(bad)
    assert "\n" not in str(raised.value) and str(raised.value).startswith(str(bad))
    assert message in str(raised.value)


def test_the_shipped_paths_file_names_stacks_that_exist() -> None:
    paths = load_paths(PATHS_FILE)
    stacks = {p.name for p in (REPO / "targets").iterdir() if (p / "target.toml").is_file()}
    assert {p.from_stack for p in paths} | {p.to_stack for p in paths} <= stacks
    assert len(paths) >= 7


def test_the_end_of_a_run_prints_the_path_table_and_the_report_opens_with_it(
    stored: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    run_dir, reports, done = stored
    lines = done.stdout.splitlines()
    verdict = max(i for i, line in enumerate(lines) if line.startswith("verdict:"))
    heading = lines.index("migration paths (capacity within the SLO; cores and GiB for 5,000 requests/s):")
    assert heading > verdict
    table = lines[heading:]
    assert all(len(line) <= 160 for line in table), [line for line in table if len(line) > 160]
    _, _, rows = _rows(run_dir)
    ratio = rows["flask-gthread"].capacity_ratio
    assert ratio is not None and ratio.interval is not None
    shown = f"capacity {stats.ratio_figure(ratio.ratio)}\N{MULTIPLICATION SIGN} ["
    assert any(line.strip().startswith(shown) for line in lines[heading:]), lines[heading:]
    assert any(line.startswith("flask-to-fastapi on /io/sleep?ms=50: no verdict: ") for line in lines)
    assert "flask-to-quart on /io/sleep?ms=50: not measured: quart-hypercorn" in lines
    page = (reports / run_dir.name / "index.html").read_text()
    assert '<section id="paths">' in page
    assert page.index('<section id="paths">') < page.index('<section id="verdict">')
    assert "flask-gthread" in page and "never broke the SLO" in page
