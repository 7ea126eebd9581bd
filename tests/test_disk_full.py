"""A file system that fills up mid-run: the run stops with one line, exit 1, and leaves nothing running."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, first_cell_stored, stray_processes

SCENARIO = """
description = "disk-full test: short cells"
targets = ["flask-gunicorn"]
endpoints = ["/json"]
concurrency = [1, 2, 4, 8, 16]
warmup_s = 0.1
duration_s = 0.5
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs (a run asks for 50 MiB free), mounted for the test (needs root, as CI has)."""
    mount = tmp_path / "small"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    """Write to ``folder`` until its file system is full."""
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as filler:
        chunk = b"\0" * 65536
        while True:
            filler.write(chunk)
            filler.flush()


def test_a_disk_that_fills_mid_run_stops_it_with_one_line_and_leaves_nothing(
    tmp_path: Path, small_disk: Path
) -> None:
    (tmp_path / "s.toml").write_text(SCENARIO)
    results = small_disk / "results"
    since = time.time() - 1
    argv = [sys.executable, "-m", "harness", "run", str(tmp_path / "s.toml"), "--no-verify"]
    argv += ["--results", str(results), "--reports", str(tmp_path / "reports")]
    pipe = subprocess.PIPE
    with subprocess.Popen(argv, cwd=REPO, stdout=pipe, stderr=pipe, text=True) as proc:
        try:
            first_cell_stored(results, proc)
            assert proc.poll() is None, "the run ended before a cell was stored"
            fill(small_disk)
            with pytest.raises(OSError) as full:
                (small_disk / "probe").write_bytes(b"\0" * 65536)
            assert full.value.errno == errno.ENOSPC
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write the results: No space left on device"), last
    assert "everything it started was stopped" in last
    assert not stray_processes(since)
