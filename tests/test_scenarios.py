"""Every shipped scenario runs with --quick, through the CLI, and gets a report.

Each scenario is one ``gwbench run scenarios/<name>.toml --quick --quick-factor 0.05 --no-verify``
(the contract is verified by tests/test_contract.py; here it would cost two seconds per
stack per scenario): every stack is launched, loaded and stopped, every planned cell
(every phase of a staged one) is stored ok with answered requests (a closed-model window too
short to answer is measured again longer), and the report renders.

quick.toml runs against all 12 stacks. Every other scenario runs against two of them, a
WSGI and an ASGI stack (:data:`PAIRS`), chosen so that each stack is in at least one pair:
on a 2-core machine as slow as CI's, every scenario against every stack took over 15
minutes and, three runs at a time, starved Django's stacks into windows with no answer.
io-wait runs at a tenth of its delays, as its file says CI does, and must show the sync
stack at its Little's-law ceiling while the event loop serves far more; inference too (its
5 s waits on 3 sync workers, queued by 32 connections, would keep the stack busy for a
minute after each smoke window). A WSGI stack's WebSocket cells are "not supported" (the
contract's 501), never failed.

The runs are smoke runs, not measurements: to keep CI short, two run at a time (longest
first), so their figures share the machine. Only io-wait's figures are checked: it runs
alone, after the others.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ALL_TARGETS, REPO, STACKS, stray_processes

from harness.ceilings import blocking_request_slots, sync_ceiling_requests_per_second
from harness.model import Measurement, TargetRun, load_scenario
from harness.results import load_run
from harness.run.tuning import tunable, tuned_name

SHIPPED = sorted((REPO / "scenarios").glob("*.toml"))
QUICK = "0.05"
TIME_SCALE = {"io-wait": "0.1", "inference": "0.1"}
TIMEOUT_S = 420
AT_ONCE = 2
ALONE = ("io-wait",)  # its figures are checked: run after the others, with the machine to itself
LONGEST_FIRST = ("quick", "default", "map", "saturation", "fan-out", "open", "spike", "soak", "closed")
LONGEST_FIRST += ("sse", "connections", "inference", "websocket", "websocket-open")
EVERY_STACK = "quick"
PAIRS = {
    "ci": ("django-gunicorn", "django-daphne"),
    "closed": ("flask-gunicorn-gthread", "starlette-uvicorn"),
    "connections": ("flask-gunicorn-gthread", "starlette-uvicorn"),
    "cpu-bound": ("flask-granian", "fastapi-granian"),
    "db": ("django-gunicorn", "django-gunicorn-uvicornworker"),
    "default": ("flask-gunicorn", "fastapi-uvicorn"),
    "fan-out": ("flask-gunicorn-gevent", "quart-hypercorn"),
    "inference": ("flask-gunicorn", "fastapi-uvicorn"),
    "io-wait": ("flask-gunicorn", "fastapi-uvicorn"),
    "json-validate": ("flask-gunicorn-gthread", "django-uvicorn"),
    "map": ("flask-gunicorn", "fastapi-uvicorn"),
    "mixed": ("flask-gunicorn", "django-daphne"),
    "open": ("flask-gunicorn-gthread", "starlette-uvicorn"),
    "saturation": ("flask-gunicorn", "fastapi-granian"),
    "soak": ("flask-granian", "quart-hypercorn"),
    "spike": ("django-gunicorn", "fastapi-uvicorn"),
    "sse": ("flask-gunicorn-gthread", "fastapi-granian"),
    "websocket": ("flask-gunicorn-gevent", "starlette-uvicorn"),
    "websocket-open": ("flask-gunicorn", "fastapi-granian"),
}
"""The stacks each scenario runs against (a WSGI one, then an ASGI one); a scenario
missing here runs against its own ``targets``, or every stack when it names none."""


@dataclass(frozen=True)
class Done:
    """One scenario's run: its run folder, report page and the finished CLI process."""

    run_dir: Path | None
    page: Path | None
    process: subprocess.CompletedProcess[str]


def run_quick(path: Path, root: Path) -> Done:
    results, reports = root / path.stem / "results", root / path.stem / "reports"
    argv = [sys.executable, "-m", "harness", "run", str(path), "--quick", "--quick-factor", QUICK]
    argv += ["--no-verify"]
    if path.stem in PAIRS:
        argv += ["--targets", ",".join(PAIRS[path.stem])]
    argv += ["--results", str(results), "--reports", str(reports)]
    if path.stem in TIME_SCALE:
        argv += ["--time-scale", TIME_SCALE[path.stem]]
    pipe = subprocess.PIPE
    with subprocess.Popen(argv, cwd=REPO, text=True, stdout=pipe, stderr=pipe) as process:
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # torn down as by Ctrl-C: nothing left running
            stdout, stderr = process.communicate(timeout=60)
            stderr += f"\n(stopped after {TIMEOUT_S} s)"
    done = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    runs = list(results.iterdir()) if results.is_dir() else []
    run_dir = runs[0] if len(runs) == 1 else None
    return Done(run_dir, None if run_dir is None else reports / run_dir.name / "index.html", done)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Done]]:
    """Every shipped scenario, three at a time (io-wait alone); then no server may be left behind."""
    root = tmp_path_factory.mktemp("scenarios")
    order = sorted(SHIPPED, key=lambda p: LONGEST_FIRST.index(p.stem) if p.stem in LONGEST_FIRST else 99)
    since = time.time() - 1
    shared = [p for p in order if p.stem not in ALONE]
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        finished = pool.map(lambda p: run_quick(p, root), shared)
        done = dict(zip([p.stem for p in shared], finished, strict=True))
    done |= {p.stem: run_quick(p, root) for p in order if p.stem in ALONE}
    yield done
    assert not stray_processes(since), stray_processes(since)


def test_the_shipped_scenarios_are_all_here() -> None:
    names = {path.stem for path in SHIPPED}
    workloads = ("io-wait", "fan-out", "json-validate", "cpu-bound", "mixed", "soak", "spike")
    workloads = (*workloads, "default", "closed")
    for workload in workloads:
        assert workload in names


def test_every_stack_runs_in_a_pair_of_a_wsgi_and_an_asgi_stack_and_quick_runs_them_all() -> None:
    names = {path.stem for path in SHIPPED}
    assert EVERY_STACK in names and EVERY_STACK not in PAIRS
    assert not load_scenario(REPO / "scenarios" / f"{EVERY_STACK}.toml").targets
    assert set(PAIRS) <= names
    assert {name for pair in PAIRS.values() for name in pair} == set(STACKS)
    for stem, (wsgi, asgi) in PAIRS.items():
        assert (ALL_TARGETS[wsgi].interface, ALL_TARGETS[asgi].interface) == ("wsgi", "asgi"), stem
    for path in SHIPPED:  # the rest name their own stacks (or, quick, run them all)
        assert path.stem in PAIRS or path.stem == EVERY_STACK or load_scenario(path).targets, path.stem


@pytest.mark.timeout(1800)  # the first test waits for every run (the module fixture)
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_shipped_scenario_runs_against_its_stacks(path: Path, runs: dict[str, Done]) -> None:
    scenario = load_scenario(path)
    done = runs[path.stem]
    output = done.process.stdout[-3000:] + done.process.stderr[-3000:]
    assert done.process.returncode == 0, output
    run_dir, page = done.run_dir, done.page
    assert run_dir is not None and page is not None, output
    manifest, measurements = load_run(run_dir)
    assert manifest.status == "complete"
    stacks = set(PAIRS.get(path.stem, ())) or set(scenario.targets) or set(STACKS)
    expected = set(stacks)
    if scenario.model == "saturation" and scenario.saturation.tune_blocking:
        expected |= {tuned_name(t) for t in expected if tunable(manifest.targets[t].config)}
        assert len(expected) > len(stacks)  # a stack whose workers block
    assert set(manifest.targets) == expected
    assert {m.target for m in measurements} == expected
    # A WSGI stack answers the WebSocket upgrade with the contract's 501: not supported, not failed.
    unsupported = {(m.target, m.workload) for m in measurements if m.status == "unsupported"}
    websockets = ("websocket", "idle-websocket")
    assert all(manifest.targets[t].config.interface == "wsgi" and w in websockets for t, w in unsupported)
    stored = {m.cell_id for m in measurements}
    measurements = [m for m in measurements if m.status != "unsupported"]
    failed = [f"{m.cell_id}: {m.failure_reason}" for m in measurements if m.status != "ok"]
    assert not failed, failed
    phases = scenario.phases()
    for cell_id in manifest.cell_order:
        if phases:
            prefix, repeat = cell_id.rsplit("__", 1)
            assert {f"{prefix}-p{p.index}__{repeat}" for p in phases} <= stored, cell_id
        elif scenario.model != "saturation":  # a search stores a cell per rate it tried
            assert cell_id in stored, cell_id
    if phases:
        for target in expected:
            stages = sorted(m.stage for m in measurements if m.target == target and m.stage is not None)
            assert stages == [p.index for p in phases], (target, stages)
    # A closed-model smoke window shorter than one response time is measured again longer
    # (harness.run.smoke), so every cell answers.
    assert all(m.requests > 0 for m in measurements), [m.cell_id for m in measurements if m.requests == 0]
    idle = [m for m in measurements if m.workload in ("idle-http", "idle-websocket")]
    for m in measurements:
        if m not in idle:  # an idle cell reads memory before and during its hold: no time series
            assert m.timeseries is not None and (run_dir / m.timeseries).is_file(), m.cell_id
    html = page.read_text()
    for name in expected:
        assert name in html
    if phases:
        assert 'class="stages"' in html and "Memory over the staged run" in html
    if idle:
        assert 'class="memory-per-connection"' in html
    # Memory over time is drawn at a request endpoint's top load: for a search, a rate that held the
    # SLO. On a machine shared with another smoke run a search may hold none (CI saw it once).
    top = [m for m in measurements if m.workload == "http" and (m.model != "saturation" or m.slo_held)]
    if top:
        assert 'class="memory-time"' in html
    if path.stem == "io-wait":
        sync_stacks_sit_at_their_ceiling(manifest.targets, measurements)


def sync_stacks_sit_at_their_ceiling(
    targets: Mapping[str, TargetRun], measurements: list[Measurement]
) -> None:
    """The io-wait figures: sync stacks at workers x threads / service time, event loops far above it.

    The ceiling binds only where there are more connections than request slots.
    """
    three_sync_workers = {"flask-gunicorn", "django-gunicorn"} & set(targets)
    assert three_sync_workers
    checked = set()
    for m in measurements:
        run = targets[m.target]
        ceiling, slots = sync_ceiling_requests_per_second(run, m.endpoint), blocking_request_slots(run)
        if ceiling is None or slots is None or not m.concurrency or m.concurrency <= slots:
            continue
        checked.add(m.target)
        assert m.requests_per_second <= 1.1 * ceiling, (
            m.target,
            m.concurrency,
            m.requests_per_second,
            ceiling,
        )
        if m.target in three_sync_workers:
            # At the ceiling: the window is short, so a batch of answers more or less.
            assert m.requests_per_second >= 0.6 * ceiling, (
                m.target,
                m.concurrency,
                m.requests_per_second,
                ceiling,
            )
    assert three_sync_workers <= checked
    sync = sync_ceiling_requests_per_second(targets["flask-gunicorn"], measurements[0].endpoint)
    assert sync is not None
    for m in measurements:
        if targets[m.target].config.interface == "asgi" and m.concurrency == 64:
            # Far above, not by how much: the event loop is bound by its 64 connections
            # (or by CPU, Django's near 120 requests/s: 3x the ceiling of 37.5 at a tenth of
            # the delays).
            assert m.requests_per_second > 2 * sync, (m.target, m.requests_per_second, sync)
