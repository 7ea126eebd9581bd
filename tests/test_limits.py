"""Limits through a whole run: a stack over its memory limit is reported OOM-killed; docker runs.

The memory hog is a user's own target folder (no contract): ``/hog`` allocates and
touches 300 MiB, far over the 64 MiB the scenario allows it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from conftest import REPO, docker_missing, stray_processes

from harness import cgroup
from harness.results import load_run

HOG_APP = """
import http.server, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/hog":
            hog = bytearray(300 * 2**20)
            for i in range(0, len(hog), 4096):
                hog[i] = 1
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""

HOG_TARGET = """
description = "allocates 300 MiB on /hog"
framework = "http.server"
server = "http.server"
interface = "native"
worker_model = "a thread per connection"
command = "{python} hog.py {host} {port}"
default_workers = 1
workers_rule = "one process"
verify_contract = false
memory_mib = 64
"""

SCENARIO = """
description = "memory limit"
endpoints = ["/hog"]
concurrency = [1]
warmup_s = 0
duration_s = 1.0
timeout_s = 5.0
"""


def gwbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


@pytest.mark.skipif(cgroup.detect() is None, reason="no cgroup hierarchy on this machine")
def test_a_stack_over_its_memory_limit_is_reported_oom_killed(tmp_path: Path) -> None:
    targets = tmp_path / "targets"
    (targets / "hog").mkdir(parents=True)
    (targets / "hog" / "hog.py").write_text(HOG_APP)
    (targets / "hog" / "target.toml").write_text(HOG_TARGET)
    (tmp_path / "hog.toml").write_text(SCENARIO)
    since = time.time() - 1
    done = subprocess.run(
        gwbench(
            "--targets-dir", str(targets), "run", str(tmp_path / "hog.toml"),
            "--results", str(tmp_path / "results"), "--no-report",
        ),
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert not stray_processes(since)
    assert done.returncode == 1, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    manifest, (measurement,) = load_run(run_dir)
    assert manifest.targets["hog"].memory_mib == 64
    applied = manifest.targets["hog"].limits_applied or ""
    assert "memory 64 MiB" in applied, applied
    assert measurement.status == "failed"
    assert "OOM-killed (over its memory limit of 64 MiB)" in (measurement.failure_reason or "")


DOCKER_MISSING = docker_missing()


QUICK = """
description = "docker run"
targets = ["fastapi-uvicorn", "flask-gunicorn"]
endpoints = ["/io/upstream?ms=20"]
concurrency = [8]
warmup_s = 0.3
duration_s = 1.5
seed = 2

[cpus]
flask-gunicorn = 0.5
"""


@pytest.mark.skipif(DOCKER_MISSING is not None, reason=str(DOCKER_MISSING))
def test_a_docker_run_measures_every_stack_in_a_container_and_leaves_none(tmp_path: Path) -> None:
    (tmp_path / "quick.toml").write_text(QUICK)
    done = subprocess.run(
        gwbench("run", str(tmp_path / "quick.toml"), "--launcher", "docker", "--results", str(tmp_path / "r"),
                "--no-report"),
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "r").iterdir()
    manifest, measurements = load_run(run_dir)
    assert manifest.environment.launcher == "docker" and manifest.environment.docker_engine
    for name, run in manifest.targets.items():
        assert run.verified and run.image and run.image.startswith(f"gwbench/{name}:")
        assert (run.limits_applied or "").startswith("a container: CPU quota")
    assert "CPU quota 0.5 CPU" in (manifest.targets["flask-gunicorn"].limits_applied or "")
    for m in measurements:
        assert m.status == "ok" and m.errors.total == 0, m
        assert m.server_cgroup_cpu_percent is not None and m.server_cgroup_memory_mib_peak
        assert m.server_oom_kills == 0
    left = docker.from_env().containers.list(all=True, filters={"label": f"gwbench.run={run_dir.name}"})
    assert not left
