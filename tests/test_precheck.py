"""Before any load on your own app (``--url``) each endpoint is asked once: a wrong answer is one line.

Real servers on 127.0.0.1: nothing listening, Python's file server answering 404,
a socket that takes the request and never answers, and a file that is there.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

from harness.net import free_port

SCENARIO = """
description = "your own app, checked before load"
targets = ["ignored"]
endpoints = ["/ignored"]
concurrency = [2]
warmup_s = 0.2
duration_s = 1.0
timeout_s = 1.5
seed = 1
"""


def run(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    scenario = tmp_path / "app.toml"
    scenario.write_text(SCENARIO)
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", str(scenario), "--url", url, "--no-report", "--results",
         str(tmp_path / "results")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(done: subprocess.CompletedProcess[str], tmp_path: Path) -> str:
    """The one error line of a run refused before load (exit 2, no traceback, nothing stored)."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert not list((tmp_path / "results").glob("*/manifest.json"))  # no run was started
    prefix = "error: your app did not answer as expected before any load: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(prefix)


@pytest.fixture
def files(tmp_path: Path) -> Iterator[int]:
    """Python's file server over a folder holding hello.txt; yields its port."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello")
    port = free_port()
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with subprocess.Popen(
        [*command, "--directory", str(tmp_path / "www")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as server:
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield port
        finally:
            server.terminate()
            server.wait(10)


def test_a_port_where_nothing_listens_is_refused_before_load(tmp_path: Path) -> None:
    port = free_port()
    said = refused(run(tmp_path, f"http://127.0.0.1:{port}/hello.txt"), tmp_path)
    assert said == f"http://127.0.0.1:{port}/hello.txt: nothing listens there (connection refused)"


def test_a_path_that_answers_404_is_refused_before_load(tmp_path: Path, files: int) -> None:
    said = refused(run(tmp_path, f"http://127.0.0.1:{files}/missing.txt"), tmp_path)
    assert said == f"http://127.0.0.1:{files}/missing.txt: answered 404 File not found, expected a 2xx"


def test_an_app_that_never_answers_is_refused_after_the_scenarios_timeout(tmp_path: Path) -> None:
    with socket.socket() as listener:  # the kernel accepts the connection; nobody reads or answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        said = refused(run(tmp_path, f"http://127.0.0.1:{port}/slow"), tmp_path)
    assert said == f"http://127.0.0.1:{port}/slow: no answer within 1.5 s"


def test_an_app_that_answers_is_measured(tmp_path: Path, files: int) -> None:
    done = run(tmp_path, f"http://127.0.0.1:{files}/hello.txt")
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((tmp_path / "results").glob("*/manifest.json"))) == 1
