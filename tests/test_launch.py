"""The local launcher starts real targets and leaves nothing behind."""

from __future__ import annotations

import http.client
import os
import socket
import time
from pathlib import Path

import psutil
import pytest
from conftest import TARGETS_DIR

from harness.launch import LaunchError, LocalLauncher, wait_until_idle
from harness.model import TargetConfig


def fake_target(tmp_path: Path, command: str) -> TargetConfig:
    return TargetConfig(
        name="broken",
        description="d",
        framework="none",
        server="none",
        interface="wsgi",
        worker_model="none",
        command=command,
        default_workers=1,
        workers_rule="none",
    )


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_gunicorn_target_starts_pinned_and_its_whole_tree_stops(
    tmp_path: Path, targets: dict[str, TargetConfig]
) -> None:
    cpu = min(os.sched_getaffinity(0))
    with LocalLauncher(target_cpus=[cpu]) as launcher:
        running = launcher.start(
            targets["flask-gunicorn"],
            TARGETS_DIR / "flask-gunicorn",
            workers=2,
            log_path=tmp_path / "flask.log",
        )
        conn = http.client.HTTPConnection(running.host, running.port, timeout=5)
        conn.request("GET", "/health")
        assert conn.getresponse().read() == b"ok"
        conn.close()
        root = psutil.Process(running.pid)
        # Ready means one worker answers; the master may still be forking the other.
        deadline = time.monotonic() + 10
        while len(tree := [root, *root.children(recursive=True)]) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(tree) == 3  # master + 2 workers
        assert all(p.cpu_affinity() == [cpu] for p in tree)
        assert os.getpgid(running.pid) == running.pid
        launcher.stop(running)
        _gone, alive = psutil.wait_procs(tree, timeout=1)
        assert not alive
        assert launcher.running() == []
    assert (tmp_path / "flask.log").read_text().startswith("$ ")


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_target_that_exits_at_start_raises_with_its_log(tmp_path: Path) -> None:
    config = fake_target(tmp_path, "{python} -m gwbench_no_such_module {host} {port}")
    with LocalLauncher() as launcher, pytest.raises(LaunchError) as err:
        launcher.start(config, tmp_path, workers=1, log_path=tmp_path / "broken.log")
    assert "broken: exited with code 1" in str(err.value)
    assert "No module named gwbench_no_such_module" in str(err.value)


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_target_that_never_becomes_ready_is_stopped(tmp_path: Path) -> None:
    # http.server answers 404 on /health: it runs but never becomes ready.
    config = fake_target(tmp_path, "{python} -m http.server --bind {host} {port}")
    with LocalLauncher() as launcher:
        with pytest.raises(LaunchError, match="not ready after 2 s"):
            launcher.start(config, tmp_path, workers=1, log_path=tmp_path / "slow.log", ready_timeout_s=2)
        assert launcher.running() == []


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_target_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, sys, http.server\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers()\n"
        "        self.wfile.write(b'ok')\n"
        "http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()\n"
    )
    config = fake_target(tmp_path, "{python} stubborn.py {host} {port}")
    with LocalLauncher(grace_s=0.5) as launcher:
        running = launcher.start(config, tmp_path, workers=1, log_path=tmp_path / "s.log")
        proc = psutil.Process(running.pid)
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


def test_a_missing_executable_is_a_launch_error(tmp_path: Path) -> None:
    config = fake_target(tmp_path, "/nonexistent/gwbench-server {host} {port}")
    with LocalLauncher() as launcher, pytest.raises(LaunchError, match="cannot start"):
        launcher.start(config, tmp_path, workers=1, log_path=tmp_path / "x.log")


@pytest.mark.usefixtures("no_leftover_processes")
def test_wait_until_idle_waits_for_a_sync_backlog_to_drain(
    tmp_path: Path, targets: dict[str, TargetConfig]
) -> None:
    with LocalLauncher() as launcher:
        running = launcher.start(
            targets["flask-gunicorn"], TARGETS_DIR / "flask-gunicorn", workers=1, log_path=tmp_path / "f.log"
        )
        # 30 requests of 50 ms each, whose clients hang up at once: the single sync
        # worker still serves them one by one (about 1.5 s of work).
        for _ in range(30):
            with socket.create_connection((running.host, running.port)) as sock:
                sock.sendall(b"GET /io/sleep?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n")
        waited = wait_until_idle(running)
        assert waited is not None and waited >= 0.8, waited
        again = wait_until_idle(running)
        assert again is not None and again < 0.5


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_port_already_taken_is_a_launch_error_quoting_the_log(
    tmp_path: Path, targets: dict[str, TargetConfig]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with LocalLauncher() as launcher, pytest.raises(LaunchError) as err:
            launcher.start(
                targets["fastapi-uvicorn"],
                TARGETS_DIR / "fastapi-uvicorn",
                workers=1,
                log_path=tmp_path / "f.log",
                port=port,
            )
    message = str(err.value)
    assert message.startswith("fastapi-uvicorn: exited with code")
    assert "address already in use" in message.lower()


DAEMONIZING = """
import http.server, os, sys, time
if os.fork() == 0:  # a daemon: double fork, its own session, no tie to the target's tree
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[3], "w") as out:
            out.write(str(os.getpid()))
        time.sleep(600)
    os._exit(0)
os.wait()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers()
        self.wfile.write(b'ok')
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_daemon_that_left_the_targets_tree_and_session_is_stopped_with_it(tmp_path: Path) -> None:
    """No cgroup (no limits given, as where cgroups cannot be written): the escaped daemon still goes."""
    (tmp_path / "daemonizing.py").write_text(DAEMONIZING)
    pid_file = tmp_path / "daemon.pid"
    config = fake_target(tmp_path, "{python} daemonizing.py {host} {port} " + str(pid_file))
    with LocalLauncher(grace_s=1.0) as launcher:
        running = launcher.start(config, tmp_path, workers=1, log_path=tmp_path / "d.log")
        deadline = time.monotonic() + 10
        while not pid_file.is_file() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the daemon never wrote its pid"
            time.sleep(0.05)
        daemon = psutil.Process(int(pid_file.read_text()))
        tree = {p.pid for p in psutil.Process(running.pid).children(recursive=True)}
        assert daemon.pid not in tree and os.getsid(daemon.pid) != os.getsid(running.pid)
        assert launcher.cgroup(running) is None
        launcher.stop(running)
    _, alive = psutil.wait_procs([daemon], timeout=5)
    assert not alive, "the daemon outlived its target"
