"""The Docker launcher: targets built, started with limits, verified, loaded; nothing left.

One stack per server program (:data:`IN_CONTAINERS`: Gunicorn with gevent and with
Uvicorn's worker, Daphne, Granian, Hypercorn), not all twelve: each costs an image build
and half a minute on a slow 2-core machine, and the launcher's code is the same for all.

Needs a Docker engine, the base image (``make docker-base``) and the wheelhouse (``make
wheelhouse``): ``make test`` builds both when an engine answers; with none, the tests that
need them skip, saying so (conftest.docker_missing, as tests/test_limits.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import psutil
import pytest
from conftest import ALL_TARGETS, STACKS, TARGETS_DIR, docker_missing
from docker.errors import NotFound

from harness.launch import DockerLauncher, EngineUnavailable, LaunchError, Limits, RunningTarget
from harness.launch.docker import LABEL, LABEL_OWNER, LABEL_RUN
from harness.launch.images import connect
from harness.load import ClosedLoad, run_closed
from harness.monitor import CgroupMonitor, CgroupWindowStats, TreeMonitor, WindowStats
from harness.verify import verify

RUN_ID = f"test-{os.getpid()}"
TARGET_CPU = max(os.sched_getaffinity(0))
OTHER_CPUS = sorted(os.sched_getaffinity(0) - {TARGET_CPU}) or [TARGET_CPU]
MEMORY_MB = 512
IN_CONTAINERS = (
    "flask-gunicorn-gevent",
    "django-gunicorn-uvicornworker",
    "django-daphne",
    "fastapi-granian",
    "quart-hypercorn",
)
"""The stacks run in containers here: every server program the stacks use, both interfaces."""


def stack(name: str) -> object:
    requirements = (TARGETS_DIR / name / "requirements.txt").read_text()
    if name == "flask-gunicorn-gevent" and "packaging" not in requirements:
        # Found by these tests: the harness's venv has `packaging` from other packages, the image does not.
        reason = "gunicorn's gevent worker imports `packaging`, missing from the target's requirements.txt"
        return pytest.param(name, marks=pytest.mark.xfail(reason=reason, raises=LaunchError, strict=True))
    return name


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    reason = docker_missing()
    if reason is not None:
        pytest.skip(reason)
    engine = connect(timeout_s=120)
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="module")
def launcher(client: docker.DockerClient) -> Iterator[DockerLauncher]:
    with DockerLauncher(client=client, run_id=RUN_ID, target_cpus=[TARGET_CPU]) as launcher:
        launcher.build(ALL_TARGETS["upstream"], TARGETS_DIR / "upstream")
        yield launcher
    assert not client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={RUN_ID}"})


@pytest.fixture(scope="module")
def upstream(launcher: DockerLauncher, tmp_path_factory: pytest.TempPathFactory) -> RunningTarget:
    return launcher.start(
        ALL_TARGETS["upstream"],
        TARGETS_DIR / "upstream",
        workers=1,
        log_path=tmp_path_factory.mktemp("docker-logs") / "upstream.log",
        cpus=OTHER_CPUS,
    )


def containers(client: docker.DockerClient, **labels: str) -> list[str]:
    filters = [f"{key}={value}" for key, value in labels.items()] or [LABEL]
    return [c.name or "?" for c in client.containers.list(all=True, filters={"label": filters})]


def test_no_engine_fails_at_once_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    started = time.monotonic()
    with pytest.raises(EngineUnavailable) as err:
        DockerLauncher()
    assert time.monotonic() - started < 5
    assert "\n" not in str(err.value)
    assert "no Docker engine answers at unix://" in str(err.value)
    assert "start one" in str(err.value)


def test_the_stacks_in_containers_cover_every_server_program_and_both_interfaces() -> None:
    assert set(IN_CONTAINERS) <= set(STACKS)
    def programs(names: tuple[str, ...] | list[str]) -> set[str]:
        return {word for name in names for word in ALL_TARGETS[name].server.split(" + ")}

    assert programs(IN_CONTAINERS) == programs(STACKS)
    assert any("gevent" in ALL_TARGETS[name].worker_model for name in IN_CONTAINERS)
    assert {ALL_TARGETS[name].interface for name in IN_CONTAINERS} == {"wsgi", "asgi"}


@pytest.mark.parametrize("name", [stack(name) for name in IN_CONTAINERS])
def test_a_target_runs_in_a_container_with_limits(
    name: str, client: docker.DockerClient, launcher: DockerLauncher, upstream: RunningTarget, tmp_path: Path
) -> None:
    config = ALL_TARGETS[name]
    running = launcher.start(
        config,
        TARGETS_DIR / name,
        workers=config.default_workers,
        log_path=tmp_path / f"{name}.log",
        env={"GWBENCH_UPSTREAM_URL": upstream.url},
        limits=Limits(cpus=1.0, memory_mib=MEMORY_MB),
        ready_timeout_s=60,
    )
    try:
        assert running.host == "127.0.0.1"
        assert running.pid > 0, "the container's init process is seen from the host"
        group = launcher.cgroup(running)
        assert group is not None
        applied = group.limits()
        assert applied.cpus == pytest.approx(1.0)
        assert applied.memory_bytes == MEMORY_MB << 20
        assert applied.cpuset == (() if OTHER_CPUS == [TARGET_CPU] else (TARGET_CPU,))
        report = verify(running.url)
        assert report.passed, [f"{c.name}: {c.detail}" for c in report.failures]
        cgroup_monitor, tree_monitor = CgroupMonitor(group), TreeMonitor(running.pid)
        in_cgroup: list[CgroupWindowStats] = []
        in_tree: list[WindowStats] = []

        def window(event: str) -> None:
            if event == "start":
                cgroup_monitor.begin()
                tree_monitor.begin()
            else:
                in_cgroup.append(cgroup_monitor.end())
                in_tree.append(tree_monitor.end())

        load = ClosedLoad(
            host=running.host,
            port=running.port,
            path="/io/upstream?ms=5",
            concurrency=8,
            warmup_s=0.5,
            duration_s=2.0,
        )
        result = run_closed(load, on_window=window)
        assert result.ok > 0
        assert sum(result.errors.values()) == 0, result.errors
        [group_window], [tree_window] = in_cgroup, in_tree
        assert group_window.cpu_s is not None and group_window.cpu_s > 0
        peak = group_window.memory_peak_bytes
        assert peak is not None and 0 < peak <= MEMORY_MB << 20
        assert group_window.oom_kills == 0
        assert tree_window.processes >= 1
        # The container's cgroup and psutil on the host count the same CPU seconds.
        assert tree_window.cpu_s == pytest.approx(group_window.cpu_s, rel=0.25, abs=0.1)
        assert launcher.is_alive(running)
        root = psutil.Process(running.pid)
        tree = [root, *root.children(recursive=True)]
    finally:
        launcher.stop(running)
    assert not launcher.is_alive(running)
    _gone, alive = psutil.wait_procs(tree, timeout=5)
    assert not alive, "the container's processes are gone from the host"
    usage = launcher.usage(running)
    assert usage is not None and usage.cpu_s is not None and usage.cpu_s > 0
    assert not launcher.oom_killed(running)
    assert len(containers(client, **{LABEL_RUN: RUN_ID})) == 1, "only the upstream's container is left"


def test_an_unchanged_target_is_not_rebuilt(launcher: DockerLauncher) -> None:
    first = launcher.build(ALL_TARGETS["upstream"], TARGETS_DIR / "upstream")
    again = launcher.build(ALL_TARGETS["upstream"], TARGETS_DIR / "upstream")
    assert again.tag == first.tag
    assert not again.built
    assert again.tag.startswith("gwbench/upstream:")


def test_a_target_that_exits_at_start_raises_with_its_log(
    client: docker.DockerClient, launcher: DockerLauncher, tmp_path: Path
) -> None:
    broken = ALL_TARGETS["upstream"].model_copy(
        update={"command": "{python} -m gwbench_no_such_module {host} {port}"}
    )
    with pytest.raises(LaunchError) as err:
        launcher.start(broken, TARGETS_DIR / "upstream", workers=1, log_path=tmp_path / "broken.log")
    assert "upstream: container exited with code 1" in str(err.value)
    assert "No module named gwbench_no_such_module" in str(err.value)
    assert [r.name for r in launcher.running()] == ["upstream"]
    assert len(containers(client, **{LABEL_RUN: RUN_ID})) == 1  # the upstream only


def test_containers_are_removed_on_ctrl_c(
    client: docker.DockerClient, launcher: DockerLauncher, tmp_path: Path
) -> None:
    run = f"{RUN_ID}-interrupted"
    with pytest.raises(KeyboardInterrupt), DockerLauncher(client=client, run_id=run) as interrupted:
        upstream = ALL_TARGETS["upstream"]
        interrupted.start(upstream, TARGETS_DIR / "upstream", workers=1, log_path=tmp_path / "up.log")
        assert containers(client, **{LABEL_RUN: run})
        raise KeyboardInterrupt
    assert containers(client, **{LABEL_RUN: run}) == []


def test_containers_of_a_dead_harness_are_removed_at_the_next_start(
    client: docker.DockerClient, launcher: DockerLauncher
) -> None:
    code = "import os; print(os.getpid())"
    exited = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    owner = f"{socket.gethostname()}:{exited.stdout.strip()}:0.00"
    image = launcher.build(ALL_TARGETS["upstream"], TARGETS_DIR / "upstream").tag
    orphan = client.containers.create(
        image, ["python", "-c", "pass"], labels={LABEL: "1", LABEL_OWNER: owner, LABEL_RUN: "dead"}
    )
    fresh = DockerLauncher(client=client, run_id=f"{RUN_ID}-fresh")
    assert orphan.name in fresh.removed_leftovers
    with pytest.raises(NotFound):
        client.containers.get(orphan.id or "")
    assert len(containers(client, **{LABEL_RUN: RUN_ID})) == 1, "a live harness's containers are kept"
