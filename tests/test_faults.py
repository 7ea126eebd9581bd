"""Faults injected into real runs: nothing measured is lost, nothing is left running."""

from __future__ import annotations

import http.client
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import ALL_TARGETS, REPO, TARGETS_DIR, cgroups_of, first_cell_stored

from harness.analysis import measurements_frame
from harness.model import Scenario
from harness.net import free_port
from harness.results import load_run
from harness.run import RunSpec, descriptors_needed, preflight


def gwbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def scenario_file(tmp_path: Path, target: str, endpoint: str, concurrency: str = "[4, 8]") -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(
        f'description = "fault injection"\ntargets = ["{target}"]\nendpoints = ["{endpoint}"]\n'
        f"concurrency = {concurrency}\nwarmup_s = 0.3\nduration_s = 2.0\nseed = 1\n"
    )
    return path


def driver_started(run: subprocess.Popen[str]) -> bool:
    """Whether the run's driver process (a multiprocessing spawn child) is up, i.e. a cell is under way."""
    try:
        children = psutil.Process(run.pid).children()
    except psutil.NoSuchProcess:
        return False
    for child in children:
        try:
            if "multiprocessing" in " ".join(child.cmdline()):
                return True
        except psutil.Error:  # gone, or a zombie not yet reaped
            continue
    return False


def wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def processes_of(run: subprocess.Popen[str], word: str) -> list[psutil.Process]:
    """The run's descendants whose command line has ``word`` (targets live in their own sessions,
    but stay the harness's children)."""
    found = []
    for proc in psutil.Process(run.pid).children(recursive=True):
        try:
            if word in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def start_run(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    runs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        run = subprocess.Popen(
            gwbench(*args, "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.poll() is None:
            # SIGTERM first: a SIGKILLed harness could not tear its targets down.
            run.terminate()
            try:
                run.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                run.kill()
        run.communicate()


def kill_mid_cell(run: subprocess.Popen[str], pick: Callable[[], psutil.Process]) -> None:
    """SIGKILL the process ``pick`` returns, 1 s into the run's first cell (inside its window)."""
    wait_for(lambda: driver_started(run))
    time.sleep(1.0)
    pick().send_signal(signal.SIGKILL)


def the_one(run: subprocess.Popen[str], word: str) -> Callable[[], psutil.Process]:
    def pick() -> psutil.Process:
        (proc,) = processes_of(run, word)
        return proc

    return pick


def finish(run: subprocess.Popen[str], tmp_path: Path) -> tuple[str, Path]:
    _, stderr = run.communicate(timeout=120)
    (run_dir,) = (tmp_path / "results").iterdir()
    return stderr, run_dir


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_worker_killed_mid_cell_fails_that_cell_and_the_run_goes_on(
    tmp_path: Path, start_run: Callable[..., subprocess.Popen[str]]
) -> None:
    run = start_run("run", str(scenario_file(tmp_path, "flask-gunicorn", "/io/sleep?ms=10")))

    def a_worker() -> psutil.Process:
        (master,) = [p for p in processes_of(run, "gunicorn") if p.children()]
        return master.children()[0]

    kill_mid_cell(run, a_worker)
    stderr, run_dir = finish(run, tmp_path)
    assert run.returncode == 1, stderr
    assert "1 failure(s)" in stderr
    manifest, measurements = load_run(run_dir)
    assert manifest.status == "complete"
    first, second = measurements
    assert first.status == "failed"
    assert "died during the cell; last lines of" in (first.failure_reason or "")
    # Gunicorn replaced its worker; the next cell is measured normally.
    assert second.status == "ok" and second.requests_per_second > 100 and second.errors.total == 0
    page = (tmp_path / "reports" / run_dir.name / "index.html").read_text()
    assert "died during the cell" in page


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_server_killed_mid_cell_is_restarted_for_the_next_cell(
    tmp_path: Path, start_run: Callable[..., subprocess.Popen[str]]
) -> None:
    run = start_run("run", str(scenario_file(tmp_path, "fastapi-uvicorn", "/io/sleep?ms=10")))
    kill_mid_cell(run, the_one(run, "uvicorn"))
    stderr, run_dir = finish(run, tmp_path)
    assert run.returncode == 1, stderr
    _, measurements = load_run(run_dir)
    first, second = measurements
    assert first.status == "failed"
    assert "the target's main process died during the cell" in (first.failure_reason or "")
    assert second.status == "ok" and second.requests_per_second > 300 and second.errors.total == 0


@pytest.mark.usefixtures("no_leftover_processes")
def test_an_upstream_that_dies_gives_502s_counted_and_reported_then_comes_back(
    tmp_path: Path, start_run: Callable[..., subprocess.Popen[str]]
) -> None:
    run = start_run("run", str(scenario_file(tmp_path, "fastapi-uvicorn", "/io/upstream?ms=10")))
    kill_mid_cell(run, the_one(run, "upstream_app"))
    stderr, run_dir = finish(run, tmp_path)
    assert run.returncode == 1, stderr
    manifest, measurements = load_run(run_dir)
    first, second = measurements
    assert first.status == "ok"
    assert first.errors.by_status.get("502", 0) > 0
    assert first.errors.status == sum(first.errors.by_status.values())
    assert any("upstream service died during this cell" in f.reason for f in manifest.failures)
    # Restarted on the same port: the next cell has no errors.
    assert second.status == "ok" and second.errors.total == 0 and second.requests_per_second > 100
    page = (tmp_path / "reports" / run_dir.name / "index.html").read_text()
    assert "upstream service died" in page


STUBBORN_UPSTREAM = """
import os, subprocess, sys
# A helper that ignores SIGTERM, in the upstream's process group: teardown has to
# wait for the grace period, or be forced.
subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
os.execv(sys.executable, [sys.executable, "-m", "upstream_app", *sys.argv[1:]])
"""


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_second_ctrl_c_forces_the_teardown(
    tmp_path: Path, start_run: Callable[..., subprocess.Popen[str]]
) -> None:
    targets = tmp_path / "targets"
    shutil.copytree(TARGETS_DIR / "upstream", targets / "upstream")
    shutil.copytree(TARGETS_DIR / "fastapi-uvicorn", targets / "fastapi-uvicorn")
    (targets / "upstream" / "stubborn.py").write_text(STUBBORN_UPSTREAM)
    toml = targets / "upstream" / "target.toml"
    toml.write_text(toml.read_text().replace("-m upstream_app", "stubborn.py"))
    run = start_run(
        "--targets-dir",
        str(targets),
        "run",
        str(scenario_file(tmp_path, "fastapi-uvicorn", "/io/sleep?ms=10")),
    )
    wait_for(lambda: driver_started(run))
    run.send_signal(signal.SIGINT)
    time.sleep(0.7)
    assert run.poll() is None, "the first Ctrl-C should still be waiting for the stubborn process"
    stubborn = [p for p in psutil.process_iter(["cmdline"]) if "SIG_IGN" in " ".join(p.info["cmdline"] or [])]
    assert stubborn, "the helper that ignores SIGTERM should be running"
    second = time.monotonic()
    run.send_signal(signal.SIGINT)
    # Forced: killed at once, not after what is left of the 5 s grace period (~4.3 s).
    _, alive = psutil.wait_procs(stubborn, timeout=2.5)
    assert not alive
    stderr, run_dir = finish(run, tmp_path)
    assert time.monotonic() - second < 10  # the partial report is rendered too
    assert run.returncode == 130, stderr
    manifest, _ = load_run(run_dir)
    assert manifest.status == "interrupted"


@pytest.mark.usefixtures("no_leftover_processes")
@pytest.mark.parametrize("spacing_s", [0.15, 0.6])
def test_ctrl_c_pressed_again_and_again_still_ends_in_a_clean_teardown_and_a_report(
    tmp_path: Path, start_run: Callable[..., subprocess.Popen[str]], spacing_s: float
) -> None:
    """Ctrl-C, then again at every stage of the teardown (stacks, upstream, PostgreSQL, report)."""
    postgres_before = set(Path(tempfile.gettempdir()).glob("gwbench-postgres-*"))
    scenario = tmp_path / "db.toml"
    scenario.write_text(
        'description = "ctrl-c"\ntargets = ["flask-gunicorn"]\nendpoints = ["/db/query?ms=5"]\n'
        "concurrency = [4, 8]\nwarmup_s = 0.3\nduration_s = 2.0\nseed = 1\n"
    )
    run = start_run("run", str(scenario))
    wait_for(lambda: driver_started(run))
    for _ in range(8):
        if run.poll() is not None:
            break
        run.send_signal(signal.SIGINT)
        time.sleep(spacing_s)
    stderr, run_dir = finish(run, tmp_path)
    assert run.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    manifest, _ = load_run(run_dir)
    assert manifest.status == "interrupted"
    assert (tmp_path / "reports" / run_dir.name / "index.html").is_file(), stderr[-3000:]
    assert not cgroups_of(run.pid)
    assert set(Path(tempfile.gettempdir()).glob("gwbench-postgres-*")) <= postgres_before


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_server_frozen_mid_window_is_flagged_as_stalled(
    tmp_path: Path, start_run: Callable[..., subprocess.Popen[str]]
) -> None:
    """SIGSTOP for 2 s of a 4 s window: the cell's longest silence says so, and it is flagged."""
    scenario = tmp_path / "stall.toml"
    scenario.write_text(
        'description = "stall"\ntargets = ["flask-gunicorn"]\nendpoints = ["/json"]\n'
        "concurrency = [4, 8]\nwarmup_s = 0.3\nduration_s = 4.0\nseed = 1\n"
    )
    run = start_run("run", str(scenario))
    wait_for(lambda: driver_started(run))
    (master,) = [p for p in processes_of(run, "gunicorn") if p.children()]
    group = os.getpgid(master.pid)
    time.sleep(1.0)  # into the first cell's window
    os.killpg(group, signal.SIGSTOP)
    try:
        time.sleep(2.0)
    finally:
        os.killpg(group, signal.SIGCONT)
    stderr, run_dir = finish(run, tmp_path)
    assert run.returncode == 0, stderr[-3000:]
    _, measurements = load_run(run_dir)
    by_level = {m.concurrency: m for m in measurements}
    frozen, normal = by_level[4], by_level[8]
    assert frozen.status == normal.status == "ok"
    assert frozen.longest_silence_s is not None and frozen.longest_silence_s >= 1.8, frozen.longest_silence_s
    assert normal.longest_silence_s is not None and normal.longest_silence_s < 0.5, normal.longest_silence_s
    frame = measurements_frame(measurements)
    assert frame.set_index("concurrency")["stalled"].to_dict() == {4: True, 8: False}
    assert "stalled 2." in (tmp_path / "reports" / run_dir.name / "index.html").read_text()


def test_not_enough_file_descriptors_fails_before_launching(tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path, "fastapi-uvicorn", "/json", concurrency="[20000]")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    since = time.time()
    done = subprocess.run(
        gwbench("run", str(scenario), "--results", str(tmp_path / "results")),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
    )
    assert done.returncode == 2
    assert "concurrency 20000 needs ~40256 file descriptors; the limit is 1024" in done.stderr
    assert not list((tmp_path / "results").iterdir())
    assert not [
        p
        for p in psutil.process_iter(["create_time", "cmdline"])
        if p.info["create_time"] >= since and "uvicorn" in " ".join(p.info["cmdline"] or [])
    ]


def test_the_soft_descriptor_limit_is_raised_where_allowed(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < descriptors_needed(3000):
        pytest.skip(f"hard descriptor limit {hard} is below what this test needs")
    spec = RunSpec(
        scenario=Scenario(
            name="fd", description="d", endpoints=("/",), concurrency=(3000,), warmup_s=0, duration_s=1
        ),
        targets={},
        upstream=ALL_TARGETS["upstream"],
        targets_root=TARGETS_DIR,
        upstream_dir=TARGETS_DIR / "upstream",
        results_root=tmp_path,
        repo=REPO,
        seed=0,
    )
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        preflight(spec)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (descriptors_needed(3000), hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_unwritable_results_folder_fails_before_launching(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    done = subprocess.run(
        gwbench("run", "--results", str(a_file / "results")),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"results folder {a_file / 'results'} is not writable" in done.stderr


def test_a_full_disk_fails_before_launching(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("mounting a small tmpfs is not permitted here")
    try:
        done = subprocess.run(
            gwbench("run", "--results", str(mount / "results")),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert done.returncode == 2
    assert "MiB free; a run needs at least 50 MiB" in done.stderr


def file_server(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A user's own app: the standard library's file server on 127.0.0.1, serving ``/hello.txt``."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello")
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    app = subprocess.Popen(
        [*argv, "--directory", str(tmp_path / "www")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return app, port


@pytest.mark.usefixtures("no_leftover_processes")
def test_your_own_app_is_measured_by_url_and_monitored_by_pid(tmp_path: Path) -> None:
    app, port = file_server(tmp_path)
    try:
        wait_for(lambda: _answers(port), timeout_s=10)
        scenario = scenario_file(tmp_path, "ignored", "/ignored", concurrency="[2]")
        done = subprocess.run(
            gwbench(
                "run",
                str(scenario),
                "--url",
                f"http://127.0.0.1:{port}/hello.txt",
                "--pid",
                str(app.pid),
                "--results",
                str(tmp_path / "results"),
                "--reports",
                str(tmp_path / "reports"),
            ),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        app.terminate()
        app.wait()
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "results").iterdir()
    manifest, (m,) = load_run(run_dir)
    assert manifest.upstream is None and set(manifest.targets) == {"external"}
    assert m.target == "external" and m.endpoint == "/hello.txt"
    assert m.requests_per_second > 50 and m.errors.total == 0
    assert m.server_cpu_percent is not None and m.server_cpu_percent > 1
    assert m.server_rss_mib_peak is not None and m.server_rss_mib_peak > 5


HOSTS = Path("/etc/hosts")
REBOUND = "gwbench-rebind.test"


@pytest.mark.skipif(
    not os.access(HOSTS, os.W_OK), reason="/etc/hosts is not writable (the test renames a host)"
)
@pytest.mark.usefixtures("no_leftover_processes")
def test_a_name_that_resolves_elsewhere_mid_run_keeps_the_load_on_the_checked_address(tmp_path: Path) -> None:
    """DNS rebinding: the name is checked (127.0.0.1), then points elsewhere; the load stays put.

    The name is moved to 127.0.0.2, where nothing listens (the app is bound to
    127.0.0.1 only), so a driver that resolved the name again would get refused
    connections; the checked address keeps every cell answered.
    """
    app, port = file_server(tmp_path)
    original = HOSTS.read_text()
    results = tmp_path / "results"
    try:
        HOSTS.write_text(original + f"\n127.0.0.1 {REBOUND}\n")
        wait_for(lambda: _answers(port), timeout_s=10)
        scenario = scenario_file(tmp_path, "ignored", "/ignored", concurrency="[1, 2, 4]")
        url = f"http://{REBOUND}:{port}/hello.txt"
        argv = gwbench("run", str(scenario), "--url", url, "--results", str(results), "--no-report")
        with subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as run:
            first_cell_stored(results, run, timeout_s=60)
            HOSTS.write_text(original + f"\n127.0.0.2 {REBOUND}\n")
            _, stderr = run.communicate(timeout=120)
    finally:
        HOSTS.write_text(original)
        app.terminate()
        app.wait()
    assert run.returncode == 0, stderr[-2000:]
    (run_dir,) = results.iterdir()
    _, measurements = load_run(run_dir)
    assert len(measurements) == 3
    for m in measurements:
        assert m.errors.total == 0 and m.requests > 0, (m.cell_id, m.errors)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.1:8080/", "refusing to send load to '10.0.0.1'"),
        ("http://192.168.1.1/", "refusing to send load to '192.168.1.1'"),
        (
            "http://no-such-host.invalid/",
            "refusing to send load to 'no-such-host.invalid': it does not resolve",
        ),
        ("https://127.0.0.1/", "expected http://HOST:PORT/PATH"),
    ],
)
def test_load_to_anything_but_loopback_is_refused(url: str, why: str) -> None:
    since = time.time()
    done = subprocess.run(gwbench("run", "--url", url), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert why in done.stderr
    assert not [
        p
        for p in psutil.process_iter(["create_time", "cmdline"])
        if p.info["create_time"] >= since and "multiprocessing" in " ".join(p.info["cmdline"] or [])
    ]


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()
