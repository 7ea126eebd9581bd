"""Every stack implements targets/CONTRACT.md: launched for real, checked by verify()."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import STACKS, TARGETS_DIR
from controlled_server import ControlledServer
from harness.verify import verify, verify_upstream_down

from harness.launch import LocalLauncher, RunningTarget
from harness.launch.local import free_port
from harness.model import TargetConfig


def test_there_are_five_stacks_and_an_upstream(targets: dict[str, TargetConfig]) -> None:
    assert STACKS == [
        "django-gunicorn",
        "django-uvicorn",
        "fastapi-uvicorn",
        "flask-gunicorn",
        "quart-hypercorn",
    ]
    assert targets["upstream"].role == "upstream"
    assert {targets[s].interface for s in STACKS} == {"wsgi", "asgi"}


@pytest.mark.usefixtures("no_leftover_processes")
@pytest.mark.parametrize("name", STACKS)
def test_stack_passes_the_contract(
    name: str, tmp_path: Path, targets: dict[str, TargetConfig], upstream: RunningTarget
) -> None:
    config = targets[name]
    with LocalLauncher() as launcher:
        running = launcher.start(
            config,
            TARGETS_DIR / name,
            workers=config.default_workers,
            log_path=tmp_path / f"{name}.log",
            env={"GWBENCH_UPSTREAM_URL": upstream.url},
        )
        report = verify(running.url)
    failures = [f"{c.name}: {c.detail}" for c in report.failures]
    assert report.passed, failures
    assert len(report.checks) >= 15


@pytest.mark.usefixtures("no_leftover_processes")
@pytest.mark.parametrize("name", STACKS)
def test_stack_answers_502_quickly_when_the_upstream_is_down(
    name: str, tmp_path: Path, targets: dict[str, TargetConfig]
) -> None:
    config = targets[name]
    with LocalLauncher() as launcher:
        running = launcher.start(
            config,
            TARGETS_DIR / name,
            workers=1,
            log_path=tmp_path / f"{name}.log",
            env={"GWBENCH_UPSTREAM_URL": f"http://127.0.0.1:{free_port()}"},
        )
        report = verify_upstream_down(running.url)
    assert report.passed, [f"{c.name}: {c.detail}" for c in report.failures]


def test_verify_fails_a_server_that_breaks_the_contract() -> None:
    # The controlled server answers 404 to /health and "ok" without headers elsewhere.
    with ControlledServer() as server:
        report = verify(f"http://127.0.0.1:{server.port}", check_date_changes=False)
    assert not report.passed
    names = {c.name for c in report.failures}
    assert any("health" in n for n in names), names


def test_verify_reports_a_dead_target_as_failed_checks() -> None:
    report = verify(f"http://127.0.0.1:{free_port()}", check_date_changes=False, timeout_s=1)
    assert not report.passed
    assert all(not c.passed for c in report.checks)
