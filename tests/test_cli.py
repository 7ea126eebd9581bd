"""The gwbench command: serve, dry run, listing, configuration errors."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, STACKS

from harness.plan import split_cpus


def gwbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


@pytest.mark.usefixtures("no_leftover_processes")
def test_serve_keeps_one_stack_up_until_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        gwbench("serve", "fastapi-uvicorn", "--logs", str(tmp_path)),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        with urllib.request.urlopen(f"{match.group(1)}/io/upstream?ms=5", timeout=5) as response:
            assert json.load(response) == {"delayed_ms": 5}
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr


def test_dry_run_prints_the_plan_without_launching(tmp_path: Path) -> None:
    done = subprocess.run(
        gwbench("run", "--dry-run", str(REPO / "scenarios" / "closed.toml"), "--seed", "1"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    cells = len(STACKS) * 1 * 3 * 3  # stacks x endpoints x levels x repeats
    assert len([x for x in lines if "__c" in x]) == cells
    assert lines[-1].startswith(f"{cells} cells, {cells * 6} s of load")


def test_targets_lists_every_stack() -> None:
    done = subprocess.run(gwbench("targets"), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for name in STACKS:
        assert name in done.stdout


def test_an_invalid_scenario_names_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'description = "x"\nendpoints = ["/json"]\nconcurrency = [0]\nwarmup_s = 1\nduration_s = -2\n'
    )
    done = subprocess.run(gwbench("run", str(bad)), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{bad}: duration_s:" in done.stderr
    assert f"{bad}: concurrency[0]: must be >= 1, got 0" in done.stderr


def test_an_unknown_target_is_a_usage_error() -> None:
    done = subprocess.run(
        gwbench("run", "--targets", "no-such-stack"), cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "unknown target(s) 'no-such-stack'" in done.stderr


def test_a_misspelt_target_gets_a_suggestion() -> None:
    done = subprocess.run(
        gwbench("run", "--targets", "fastapi-uvicon"), cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "unknown target(s) 'fastapi-uvicon' (did you mean 'fastapi-uvicorn'" in done.stderr


def test_scenarios_lists_every_shipped_file_with_its_description() -> None:
    done = subprocess.run(gwbench("scenarios"), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for path in sorted((REPO / "scenarios").glob("*.toml")):
        assert path.stem in done.stdout


def test_quick_scales_durations_and_says_by_how_much() -> None:
    done = subprocess.run(
        gwbench("run", "--quick", "--dry-run", str(REPO / "scenarios" / "closed.toml"), "--seed", "1"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--quick: durations x 0.2 (warm-up 1 -> 0.2 s, window 5 -> 1 s), repeats 3 -> 1" in (
        done.stdout + done.stderr
    )
    cells = len(STACKS) * 3  # one repeat
    assert done.stdout.splitlines()[-1].startswith(f"{cells} cells, {cells * 1.2:.0f} s of load")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--quick", "--quick-factor", "0.05"], "--quick: durations x 0.05, at most 2.5 s: x 0.00417"),
        (["--quick-factor", "0.05"], "--quick-factor: only with --quick"),
        (["--quick", "--quick-factor", "2"], "--quick-factor: must be > 0 and <= 1, got 2"),
    ],
)
def test_quick_factor_scales_the_soak_and_its_window_cap(flags: list[str], expected: str) -> None:
    soak = str(REPO / "scenarios" / "soak.toml")
    done = subprocess.run(
        gwbench("run", *flags, "--dry-run", soak), cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert expected in done.stdout + done.stderr
    assert done.returncode == (0 if "--quick:" in expected else 2), done.stderr


KNOWN = ", ".join(STACKS)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["run", "--locust-port", "70000"], "--locust-port: must be >= 1 and <= 65535, got 70000"),
        (["run", "--locust-workers", "0"], "--locust-workers: must be >= 1 and <= 1024, got 0"),
        (["run", "--locust-workers", "-3"], "--locust-workers: must be >= 1 and <= 1024, got -3"),
        (["run", "--url", ""], "--url '': expected http://HOST:PORT/PATH (plain HTTP/1.1)"),
        (["run", "--targets", ""], f"--targets: names no target, got ''; known: {KNOWN}"),
        (["run", "--targets", " , "], f"--targets: names no target, got ' , '; known: {KNOWN}"),
        (["verify", "--targets", ""], f"--targets: names no target, got ''; known: {KNOWN}"),
        (["run", "--pid", "5"], "--pid: only with --url (what you declare of your own app)"),
        (["run", "--workers", "4"], "--workers: only with --url (what you declare of your own app)"),
        (
            ["run", "--url", "http://127.0.0.1:9/", "--pid", "0"],
            "--pid 0: must be a whole number from 1 to 4194304",
        ),
        (
            ["run", "--url", "http://127.0.0.1:9/a", "--url", "http://127.0.0.1:9/a"],
            "--url 'http://127.0.0.1:9/a': with several apps, name each: --url NAME=URL",
        ),
        (
            ["run", "--url", "a=http://127.0.0.1:9/x", "--url", "b=http://127.0.0.1:9/y"],
            "--url: every app is measured on the same endpoint; got a: /x, b: /y",
        ),
        (
            ["run", "--url", "a=http://127.0.0.1:9/x", "--interface", "c=wsgi"],
            "--interface 'c=wsgi': 'c' is not the name of a --url (a)",
        ),
        (
            ["run", "--url", "a=http://127.0.0.1:9/x", "--interface", "a=rsgi"],
            "--interface a=rsgi: expected wsgi or asgi",
        ),
        (
            ["run", "--url", "a=http://127.0.0.1:9/x", "--interface", "a=asgi", "--workers", "a=4"],
            "--workers/--threads a: only for an app declared --interface a=wsgi",
        ),
        (
            ["run", "--url", "http://127.0.0.1:9/", "--targets", "flask-gunicorn"],
            "--targets: not with --url (the app at the URL is the one target)",
        ),
        (
            ["run", "--seed", str(2**63)],
            f"--seed: must be >= {-(2**63)} and <= {2**63 - 1}, got {2**63}",
        ),
        (
            ["claims", "--report-only", "--seed", str(-(2**63) - 1)],
            f"--seed: must be >= {-(2**63)} and <= {2**63 - 1}, got {-(2**63) - 1}",
        ),
        (
            ["locust-worker", "127.0.0.1", "--master-port", "0"],
            "--master-port: must be >= 1 and <= 65535, got 0",
        ),
        (["serve", "fastapi-uvicorn", "--workers", "-5"], "--workers: must be >= 1 and <= 1024, got -5"),
        (["serve", ""], f"target: names no target, got ''; known: {KNOWN}"),
        (
            ["serve", "fastapi-uvicorn,flask-gunicorn"],
            "target: one target to serve, got 'fastapi-uvicorn,flask-gunicorn'",
        ),
    ],
)
def test_a_flag_out_of_range_is_one_line_and_exit_2(flags: list[str], message: str) -> None:
    # --dry-run: were the flag let through, nothing would be launched.
    argv = [*flags, "--dry-run"] if flags[0] == "run" else flags
    done = subprocess.run(gwbench(*argv), cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.stderr.splitlines() == [f"error: {message}"]
    assert done.returncode == 2


def test_more_cores_than_the_machine_has_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "big.toml"
    scenario.write_text(
        'description = "d"\nendpoints = ["/json"]\nconcurrency = [1]\nwarmup_s = 0\nduration_s = 1\n'
        'targets = ["fastapi-uvicorn"]\ncpus = { fastapi-uvicorn = 1000 }\n'
    )
    done = subprocess.run(
        gwbench("run", "--dry-run", str(scenario)), cwd=REPO, capture_output=True, text=True, timeout=30
    )
    placement = split_cpus(sorted(os.sched_getaffinity(0)))
    pinned = ", ".join(map(str, placement.target_cpus))
    assert done.stderr.splitlines() == [
        f"error: {scenario}: cpus.fastapi-uvicorn: must be <= {len(placement.target_cpus)} "
        f"(the CPUs the stacks run on here: {pinned}; the load generator has the rest), got 1000"
    ]
    assert done.returncode == 2


def test_every_option_and_argument_has_help() -> None:
    """``gwbench <command> --help`` explains every option (some had none)."""
    from harness.cli.parser import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command, sub in action.choices.items():
                    walk(sub, command)
            elif not action.help:
                missing.append(f"{name} {action.option_strings or action.dest}")

    walk(build_parser(), "gwbench")
    assert not missing


def test_version_is_printed() -> None:
    done = subprocess.run(gwbench("--version"), cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and re.fullmatch(r"gwbench \d+\.\d+\.\d+\n", done.stdout), done.stdout


def test_a_table_in_a_pipe_is_not_squeezed_to_80_columns(tmp_path: Path) -> None:
    """``gwbench claims`` in a pipe (a CI log): whole words in its cells, not one character per line."""
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    done = subprocess.run(
        gwbench("claims", "--report-only", f"--results={tmp_path}", f"--reports={tmp_path / 'r'}"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "granian-sleep-100ms" in line]
    assert len(rows) == 1 and "not comparable" in rows[0], done.stdout


def test_a_command_run_in_process_leaves_ctrl_c_as_it_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's own signal handlers go when it returns: Ctrl-C then raises KeyboardInterrupt again,
    every time (a later test sending SIGINT to this process was otherwise swallowed)."""
    from harness import cli

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for _ in range(2):
        assert cli.main(["scenarios"]) == 0
    assert {signum: signal.getsignal(signum) for signum in before} == before
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
            time.sleep(1)
    capsys.readouterr()
