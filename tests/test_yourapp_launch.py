"""Your own app launched by the harness: ``gwbench run SCENARIO --app NAME=wsgi|asgi:MODULE:CALLABLE``.

Real runs through the CLI on 127.0.0.1 of tests/apps/hello.py, a WSGI callable and its
ASGI port (no framework): the WSGI app under Gunicorn's sync, gthread and gevent workers
and Granian, the ASGI app under Uvicorn, Hypercorn, Granian, Daphne and Gunicorn with
Uvicorn's worker, each in its own control group with the stacks' limits, measured in one
run with a capacity search and the path table. Then what goes wrong in a user's app:
one that crashes at start (tests/apps/crashes.py), a path it answers 404, and one that
never answers: each a failed cell with its reason and a non-zero exit, nothing left
running. The flags' one-line errors come first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from harness.model import RunManifest
from harness.model.appservers import ASGI_SERVERS, WSGI_SERVERS, YOUR_APP
from harness.results import load_run
from harness.runanalysis import analyse_run

HELLO = "tests/apps/hello.py"
WSGI_NAMES = {f"w-{s.key}" for s in WSGI_SERVERS}
ASGI_NAMES = {f"a-{s.key}" for s in ASGI_SERVERS}

CAPACITY = """
description = "your WSGI app and its ASGI port under every server"
endpoints = ["{endpoint}"]
model = "saturation"
warmup_s = 0.2
duration_s = 1.0
timeout_s = 5.0
repeats = 1
seed = 11
[saturation]
method = "probe"
steps = 2
probe_concurrency = 64
probe_s = 0.5
tune_blocking = false
[slo]
p99_ms = 500
"""

CLOSED = """
description = "one closed-model cell on your app"
endpoints = ["{endpoint}"]
concurrency = [4]
warmup_s = 0.2
duration_s = 0.5
timeout_s = 2.0
repeats = 1
"""


def gwbench(
    tmp_path: Path, scenario: str, *args: str, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """``gwbench run`` of ``scenario`` (TOML text) from the repository, results under ``tmp_path``."""
    path = tmp_path / "yours.toml"
    path.write_text(scenario)
    argv = [sys.executable, "-m", "harness", "run", str(path), *args]
    argv += ["--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)


def said(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout[-4000:] + done.stderr[-4000:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "w=wsgi:hello"], "expected NAME=wsgi:MODULE:CALLABLE or NAME=asgi:MODULE:CALLABLE"),
        (["--app", "w=rsgi:hello:app"], "the interface is wsgi or asgi, got 'rsgi'"),
        (["--app", "w=wsgi:tests/apps/nowhere.py:wsgi"], "tests/apps/nowhere.py: file not found"),
        (["--app", "W=wsgi:hello:wsgi"], "a name is lowercase letters"),
        (["--app", f"w=wsgi:{HELLO}:wsgi", "--app", f"w=asgi:{HELLO}:asgi"], "'w' given twice"),
        (["--app", f"w=wsgi:{HELLO}:wsgi", "--targets", "w-uvicorn"], "--targets 'w-uvicorn': with --app"),
        (["--app", f"w=wsgi:{HELLO}:wsgi", "--url", "http://127.0.0.1:9/"], "--app: not with --url"),
        (["--app", f"w=wsgi:{HELLO}:wsgi", "--launcher", "docker"], "with the local launcher only"),
    ],
)
def test_a_bad_app_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = gwbench(tmp_path, CLOSED.format(endpoint="/work?ms=5"), *args, timeout_s=60)
    assert done.returncode == 2, said(done)
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / "results").exists()


def test_an_app_needs_a_scenario_of_its_own_endpoints(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "harness", "run", "--app", f"w=wsgi:{HELLO}:wsgi"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, said(done)
    assert done.stderr.strip().splitlines()[-1].startswith("error: --app: name a scenario whose endpoints")


@pytest.mark.usefixtures("no_leftover_processes")
def test_your_wsgi_app_and_its_asgi_port_run_under_every_server_with_capacities_and_paths(
    tmp_path: Path,
) -> None:
    done = gwbench(
        tmp_path,
        CAPACITY.format(endpoint="/work?ms=40"),
        *("--app", f"w=wsgi:{HELLO}:wsgi", "--app", f"a=asgi:{HELLO}:asgi"),
    )
    assert done.returncode == 0, said(done)
    (run_dir,) = (tmp_path / "results").iterdir()
    manifest, measurements = load_run(run_dir)
    assert set(manifest.targets) == WSGI_NAMES | ASGI_NAMES
    for name, target in manifest.targets.items():
        assert target.config.framework == YOUR_APP and target.config.interface == name[0] + "sgi"
        assert target.config.app_dir == str(REPO / "tests" / "apps")
        assert target.verified is True, (name, target.verification_failures)  # it answered before load
        assert target.limits_applied is not None and "CPU quota 1 CPU" in target.limits_applied, name
    assert {m.target for m in measurements} == set(manifest.targets)
    assert all(m.status == "ok" and m.requests > 0 for m in measurements), [
        (m.cell_id, m.failure_reason) for m in measurements if m.status != "ok" or not m.requests
    ]
    # The sync workers' search starts from their Little's-law ceiling: 3 workers / 40 ms.
    priors = {m.target: m.search_prior for m in measurements}
    assert priors["w-gunicorn"] == "Little's-law ceiling of 3 workers: 75 req/s"
    run = analyse_run(manifest, measurements)
    capacity = run.sustainable.set_index("target")["sustainable_requests_per_second"]
    steps = [(m.target, m.rate, m.slo_held) for m in measurements]
    assert capacity["w-gunicorn"] <= 1.1 * 75, steps
    assert capacity["a-uvicorn"] > 2 * capacity["w-gunicorn"], steps
    # The paths: from the WSGI app on Gunicorn sync to the ASGI port on each server, and to the
    # same WSGI app on its other servers; in the terminal and in the report.
    expected = {f"w-gunicorn -> {to}" for to in sorted(ASGI_NAMES | WSGI_NAMES - {"w-gunicorn"})}
    html = (tmp_path / "reports" / run_dir.name / "index.html").read_text()
    for name in expected:
        assert name in done.stdout, (name, done.stdout[-3000:])
        assert name.replace(">", "&gt;") in html, name


@pytest.mark.usefixtures("no_leftover_processes")
def test_an_app_that_crashes_at_start_is_a_failed_cell_with_its_log(tmp_path: Path) -> None:
    done = gwbench(
        tmp_path,
        CLOSED.format(endpoint="/work?ms=5"),
        *("--app", "c=wsgi:tests/apps/crashes.py:wsgi", "--targets", "c-gunicorn,c-granian"),
    )
    assert done.returncode == 1, said(done)
    assert "Traceback" not in done.stderr.split("failure", 1)[0]
    (run_dir,) = (tmp_path / "results").iterdir()
    _, measurements = load_run(run_dir)
    assert {m.target for m in measurements} == {"c-gunicorn", "c-granian"}
    for m in measurements:
        assert m.status == "failed" and m.requests == 0
        reason = m.failure_reason or ""
        assert "before it was ready (RuntimeError: this app fails at import" in reason, reason
    assert "2 failure(s)" in done.stdout + done.stderr, said(done)
    page = tmp_path / "reports" / run_dir.name / "index.html"  # rendered, saying why
    assert "RuntimeError: this app fails at import" in page.read_text()


def one_failed_cell(tmp_path: Path, endpoint: str) -> tuple[RunManifest, str]:
    """The ASGI app on Uvicorn alone, on ``endpoint``: its manifest and its one cell's failure."""
    app = ("--app", f"a=asgi:{HELLO}:asgi", "--targets", "a-uvicorn")
    done = gwbench(tmp_path, CLOSED.format(endpoint=endpoint), *app)
    assert done.returncode == 1, said(done)
    (run_dir,) = (tmp_path / "results").iterdir()
    manifest, (measurement,) = load_run(run_dir)
    assert measurement.status == "failed" and measurement.requests == 0
    return manifest, measurement.failure_reason or ""


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_path_your_app_answers_404_fails_its_cells_before_any_load(tmp_path: Path) -> None:
    manifest, reason = one_failed_cell(tmp_path, "/orders")
    assert reason.startswith("failed verification: answers before load: http://127.0.0.1:"), reason
    assert reason.endswith("/orders: answered 404 Not Found, expected a 2xx"), reason
    assert manifest.targets["a-uvicorn"].verified is False


@pytest.mark.usefixtures("no_leftover_processes")
def test_an_app_that_never_answers_is_a_failed_cell_saying_it_never_became_ready(tmp_path: Path) -> None:
    _, reason = one_failed_cell(tmp_path, "/hang")
    assert "GET /hang" in reason, reason
