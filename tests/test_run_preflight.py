"""What ``gwbench run`` refuses before it launches anything: one line on stderr, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def gwbench(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "harness", *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("folder", "expected"),
    [("nonexistent", "not a folder of targets"), ("empty", "no targets in it")],
)
def test_a_targets_folder_that_is_missing_or_empty_is_named(
    tmp_path: Path, folder: str, expected: str
) -> None:
    (tmp_path / "empty").mkdir()
    done = gwbench("--targets-dir", str(tmp_path / folder), "run", "scenarios/quick.toml", "--dry-run")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {tmp_path / folder}: {expected}" + (
        " (each is a folder <name>/ with a target.toml)" if folder == "empty" else ""
    )


@pytest.mark.parametrize("flag", ["--results", "--reports"])
def test_a_results_or_reports_folder_that_cannot_be_written_is_refused_before_any_load(
    tmp_path: Path, flag: str
) -> None:
    """A file where the folder should be: found before the run, not after it.

    (A file in the way, as modes do not stop root.)
    """
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folders = {"--results": str(tmp_path / "results"), "--reports": str(tmp_path / "reports")}
    folders[flag] = str(blocker / "x")
    argv = [f"{name}={folder}" for name, folder in folders.items()]
    done = gwbench("run", "scenarios/quick.toml", "--targets", "flask-gunicorn", *argv)
    assert done.returncode == 2, done.stderr
    what = "results folder" if flag == "--results" else "reports folder"
    assert done.stderr.strip() == f"error: {what} {blocker / 'x'} is not writable: Not a directory"
    # No run was started: it would have a folder of results.
    results = tmp_path / "results"
    assert not results.is_dir() or not any(results.iterdir())


def test_a_run_that_is_not_there_is_named_as_given_not_doubled(tmp_path: Path) -> None:
    done = gwbench("report", "results/doesnotexist", "--results", str(tmp_path))
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: results/doesnotexist: no such run (neither a folder nor a run id in {tmp_path})"
    )
