"""Control groups: local targets under a CPU quota and a memory limit, read from the cgroup."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.cgroup import detect, parse_cpu_list, parse_mountinfo, parse_proc_cgroup
from harness.launch import CgroupUnavailable, Limits, LocalLauncher, RunningTarget
from harness.launch.cgroup import ManagedCgroup, create
from harness.model import TargetConfig
from harness.monitor import CgroupMonitor, TreeMonitor

# A target for these tests: answers /health, burns CPU in two processes when asked to,
# and allocates (and touches) N MiB on GET /hog?mb=N.
SERVER = textwrap.dedent(
    """
    import http.server, multiprocessing, sys

    def burn():
        while True:
            pass

    class Handler(http.server.BaseHTTPRequestHandler):
        hog = b""

        def do_GET(self):
            if self.path.startswith("/hog?mb="):
                Handler.hog = b"x" * (int(self.path.split("=")[1]) << 20)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    if __name__ == "__main__":
        if sys.argv[3] == "burn":
            for _ in range(2):
                multiprocessing.Process(target=burn, daemon=True).start()
        http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
    """
)


def hog_target(tmp_path: Path, mode: str) -> TargetConfig:
    script = tmp_path / "hog_server.py"
    script.write_text(SERVER)
    return TargetConfig(
        name="hog",
        description="a CPU and memory hog for limit tests",
        framework="none",
        server="http.server",
        interface="wsgi",
        worker_model="one process, plus two CPU burners",
        command=f"{{python}} {script} {{host}} {{port}} {mode}",
        default_workers=1,
        workers_rule="none",
    )


def require_cgroups(launcher: LocalLauncher) -> None:
    if launcher.cgroup_unavailable:
        pytest.skip(f"cgroups cannot be used here: {launcher.cgroup_unavailable}")


def get(target: RunningTarget, path: str) -> None:
    conn = http.client.HTTPConnection(target.host, target.port, timeout=10)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
    finally:
        conn.close()


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_cpu_bound_target_under_half_a_cpu_gets_half_a_core(tmp_path: Path) -> None:
    with LocalLauncher() as launcher:
        running = launcher.start(
            hog_target(tmp_path, "burn"),
            tmp_path,
            workers=1,
            log_path=tmp_path / "hog.log",
            limits=Limits(cpus=0.5),
        )
        require_cgroups(launcher)
        group = launcher.cgroup(running)
        assert group is not None
        assert group.limits().cpus == pytest.approx(0.5)
        time.sleep(0.5)  # the burners are running
        by_cgroup, by_tree = CgroupMonitor(group), TreeMonitor(running.pid, with_memory=False)
        by_cgroup.begin()
        by_tree.begin()
        time.sleep(3.0)
        tree = by_tree.end()
        window = by_cgroup.end()
        dirs = list(group.dirs.values())
    # Two busy processes would take both cores; the quota holds them to half of one.
    assert window.cpu_percent is not None
    assert 35 <= window.cpu_percent <= 60, window
    assert window.throttled_periods and window.throttled_periods > 10
    # The cgroup and psutil count the same CPU seconds.
    assert window.cpu_s == pytest.approx(tree.cpu_s, rel=0.2, abs=0.05)
    assert not any(d.exists() for d in dirs), "the cgroup is removed when the target stops"


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_target_over_its_memory_limit_is_reported_as_oom_killed(tmp_path: Path) -> None:
    with LocalLauncher() as launcher:
        running = launcher.start(
            hog_target(tmp_path, "idle"),
            tmp_path,
            workers=1,
            log_path=tmp_path / "hog.log",
            limits=Limits(memory_mib=64),
        )
        require_cgroups(launcher)
        group = launcher.cgroup(running)
        assert group is not None
        assert group.limits().memory_bytes == 64 << 20
        assert not launcher.oom_killed(running)
        get(running, "/hog?mb=16")  # under the limit: fine
        assert launcher.is_alive(running)
        with pytest.raises((OSError, http.client.HTTPException)):
            get(running, "/hog?mb=256")
        deadline = time.monotonic() + 5
        while launcher.is_alive(running) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not launcher.is_alive(running)
        assert launcher.oom_killed(running)
        launcher.stop(running)
    usage = launcher.usage(running)  # the last reading, kept after the group is gone
    assert usage is not None and usage.oom_kills == 1
    assert usage.memory_peak_bytes is not None and 16 << 20 < usage.memory_peak_bytes <= 64 << 20


def test_a_group_left_by_a_dead_harness_is_removed_by_the_next_one(tmp_path: Path) -> None:
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from harness.launch.cgroup import create, Limits;"
            "g = create('orphan', Limits(cpus=1.0));"
            "print(json.dumps({c: str(d) for c, d in g.dirs.items()}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    if not child.stdout.strip():
        pytest.skip(f"cgroups cannot be used here: {child.stderr.strip()}")
    orphan = {c: Path(d) for c, d in json.loads(child.stdout).items()}
    assert all(d.is_dir() for d in orphan.values())
    try:
        group = create("next", Limits(cpus=1.0))
    except CgroupUnavailable as exc:
        pytest.skip(f"cgroups cannot be used here: {exc}")
    try:
        assert not any(d.exists() for d in orphan.values())
    finally:
        assert group.remove()
        ManagedCgroup(group.version, orphan).remove()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_read_only_cgroups_fall_back_to_pinning_with_a_reason(tmp_path: Path) -> None:
    # A private mount namespace in which every cgroup mount is read-only, as in an
    # unprivileged container.
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os, sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from test_cgroup import hog_target
            from pathlib import Path
            from harness.launch import LocalLauncher, Limits
            cpu = max(os.sched_getaffinity(0))
            tmp = Path({str(tmp_path)!r})
            with LocalLauncher() as launcher:
                running = launcher.start(hog_target(tmp, "idle"), tmp, workers=1, log_path=tmp / "hog.log",
                                         limits=Limits(cpus=0.5, memory_mib=64), cpus=[cpu])
                print(json.dumps({{"reason": launcher.cgroup_unavailable, "cpu": cpu,
                                  "affinity": sorted(os.sched_getaffinity(running.pid)),
                                  "cgroup": launcher.cgroup(running) is not None}}))
            """
        )
    )
    remount = (
        'for m in $(findmnt -rn -t cgroup,cgroup2 -o TARGET); do mount -o remount,bind,ro "$m"; done; '
        f'exec "{sys.executable}" "{script}"'
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", remount],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cgroup"] is False
    assert report["affinity"] == [report["cpu"]]
    assert report["reason"].startswith("no CPU or memory limits, CPU pinning only: ")
    assert "Read-only file system" in report["reason"]
    assert "\n" not in report["reason"]


def test_the_machine_has_a_layout_and_this_process_a_group() -> None:
    hierarchy = detect()
    if hierarchy is None:
        pytest.skip("no cgroup hierarchy with the cpu and memory controllers")
    assert {"cpu", "cpuacct", "memory"} <= set(hierarchy.mounts)


def test_mountinfo_and_proc_cgroup_are_parsed_for_both_layouts() -> None:
    v1 = (
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 /docker/ab /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/my\\040dir rw,relatime - cgroup2 cgroup2 rw\n"
        "22 1 8:1 / / rw - ext4 /dev/vda rw\n"
    )
    assert parse_mountinfo(v1) == [
        ("/sys/fs/cgroup/cpu,cpuacct", "/", "cgroup", ("rw", "cpu", "cpuacct")),
        ("/sys/fs/cgroup/memory", "/docker/ab", "cgroup", ("rw", "memory")),
        ("/sys/fs/cgroup/my dir", "/", "cgroup2", ("rw",)),
    ]
    assert parse_proc_cgroup("5:cpu,cpuacct:/gwbench/x\n4:memory:/docker/ab\n0::/user.slice\n") == {
        "cpu": "/gwbench/x",
        "cpuacct": "/gwbench/x",
        "memory": "/docker/ab",
        "": "/user.slice",
    }
    assert parse_cpu_list("0-2,5\n") == (0, 1, 2, 5)
    assert parse_cpu_list("") == ()
