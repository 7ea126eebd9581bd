"""The Locust driver's numbers against servers that count their answers, and Locust's own output."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
from conftest import ALL_TARGETS, REPO, TARGETS_DIR
from controlled_server import ControlledServer

from harness.histogram import decode
from harness.launch import LocalLauncher, RunningTarget
from harness.load.locust import (
    LocustLoad,
    default_locustfile,
    run_locust,
    start_workers,
    worker_command,
)
from harness.load.locust_stats import (
    LocustError,
    StatsEntry,
    error_kind,
    latency_distribution,
    to_load_result,
)
from harness.load.native import ClosedLoad, UnsafeTargetError
from harness.load.summary import latency_summary
from harness.net import free_port

if TYPE_CHECKING:  # importing the plugin imports Locust, which patches the process for gevent
    from harness.load.locust_plugin import Report

JOURNEY = REPO / "scenarios" / "locust" / "journey.py"
NO_ERRORS = {"status": 0, "connect": 0, "read": 0, "timeout": 0}


def load(port: int, *endpoints: tuple[str, int], users: int = 4, **times: float) -> LocustLoad:
    return LocustLoad(
        host="127.0.0.1",
        port=port,
        users=users,
        warmup_s=times.get("warmup_s", 0.5),
        duration_s=times.get("duration_s", 2.0),
        timeout_s=times.get("timeout_s", 10.0),
        endpoints=endpoints or (("/ok", 1),),
    )


def locust_processes(since: float) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "create_time"]):
        try:
            if process.info["create_time"] >= since and "locust" in " ".join(process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return [p for p in found if p.pid != os.getpid()]


@pytest.fixture(autouse=True)
def no_locust_left_behind() -> Iterator[None]:
    since = time.time() - 0.5
    yield
    deadline = time.monotonic() + 3
    while (left := locust_processes(since)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"Locust left running: {[p.cmdline() for p in left]}"


def locusts_own_totals(output_dir: Path) -> tuple[int, int]:
    """Requests and failures as Locust's own --json-file has them."""
    entries: list[StatsEntry] = json.loads((output_dir / "locust.json").read_text())
    return sum(e["num_requests"] for e in entries), sum(e["num_failures"] for e in entries)


class Counted:
    """The server's count of answers when the window opened, and the window events in order."""

    def __init__(self, server: ControlledServer) -> None:
        self.server = server
        self.events: list[str] = []
        self.at_start = 0

    def __call__(self, event: str) -> None:
        self.events.append(event)
        if event == "start":
            self.at_start = self.server.total()

    def answered(self) -> int:
        time.sleep(0.05)  # answers still on their way when Locust stopped
        return self.server.total() - self.at_start


# Mapping, without Locust running.


@pytest.mark.parametrize(
    ("text", "kind", "status"),
    [
        ("LocustBadStatusCode(code=500)", "status", 500),
        ("HTTPError('503 Server Error: Service Unavailable for url: /x')", "status", 503),
        ("RetriesExceeded('http://127.0.0.1:1/hang', 0, original=timed out)", "timeout", None),
        ("ConnectTimeout(MaxRetryError(...))", "timeout", None),
        ("ConnectionRefusedError(111, 'Connection refused')", "connect", None),
        ("gaierror(-2, 'Name or service not known')", "connect", None),
        ("HTTPConnectionClosed('connection closed.')", "read", None),
        ("HTTPParseError('Expected HTTP/, RTSP/ or ICE/', 8)", "read", None),
        ("CatchResponseError('body did not match')", "read", None),
    ],
)
def test_failure_texts_map_to_error_kinds(text: str, kind: str, status: int | None) -> None:
    assert error_kind(text) == (kind, status)


def entry(
    name: str, times: dict[str, int], failures: int = 0, untimed: int = 0, **extra: float
) -> StatsEntry:
    values = [float(k) for k in times]
    return {
        "name": name,
        "method": "GET",
        "num_requests": sum(times.values()) + untimed,
        "num_none_requests": untimed,
        "num_failures": failures,
        "min_response_time": extra.get("low", min(values, default=0.0)),
        "max_response_time": extra.get("high", max(values, default=0.0)),
        "response_times": times,
    }


def report(**changes: object) -> Report:
    base: Report = {
        "format": 1,
        "locust_version": "2.47.0",
        "role": "master",
        "window_start_ns": 1_000_000_000,
        "window_end_ns": 3_500_000_000,
        "cpu_s": 0.1,
        "workers": {"a": {"cpu_s": 0.5, "final": True}, "b": {"cpu_s": 0.25, "final": True}},
        "errors": [
            {"method": "GET", "name": "/x", "error": "LocustBadStatusCode(code=502)", "occurrences": 2},
            {"method": "GET", "name": "/x", "error": "LocustBadStatusCode(code=500)", "occurrences": 1},
            {
                "method": "GET",
                "name": "/y",
                "error": "RetriesExceeded('u', 0, original=timed out)",
                "occurrences": 4,
            },
        ],
        "exceptions": [],
        "peak_users": 8,
        "shape": False,
    }
    return {**base, **changes}  # type: ignore[typeddict-item]


def test_locusts_totals_map_into_a_load_result() -> None:
    entries = [
        entry("/x", {"3": 10, "150": 2}, failures=3, untimed=3),
        entry("/y", {"7": 5}, failures=4, untimed=4),
    ]
    result = to_load_result(entries, report())
    assert result.ok == 17 and result.requests == 24
    assert result.errors == {"status": 3, "connect": 0, "read": 0, "timeout": 4}
    assert result.error_statuses == {500: 1, 502: 2}
    assert result.duration_s == 2.5
    assert result.generator_cpu_s == pytest.approx(0.85)
    assert result.processes == 2 and result.connections_peak == result.connections_opened == 8
    assert decode(result.histogram).get_total_count() == 17 == result.ok


def test_rounded_buckets_stay_within_the_exact_min_and_max() -> None:
    # Locust rounds 0.4 ms to 0 and 147.3 ms to 150; it keeps the min and max exact.
    distribution = latency_distribution([entry("/x", {"0": 3, "12": 5, "150": 1}, low=0.4, high=147.3)])
    assert distribution == [(400, 3), (12_000, 5), (147_300, 1)]
    with pytest.raises(LocustError, match="hold 9 values for 10 timed"):
        broken = entry("/x", {"0": 3, "12": 5, "150": 1})
        latency_distribution([{**broken, "num_requests": 10}])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window_start_ns": None}, "before its measured window"),
        ({"exceptions": ["division by zero at File (3x)"]}, "the locustfile raised: division by zero"),
        ({"workers": {"a": {"cpu_s": 0.5, "final": False}}}, "worker.* a did not reach"),
        ({"errors": []}, "counted 7 failures but listed 0"),
        ({"format": 2}, "unknown .* format 2"),
    ],
)
def test_numbers_that_do_not_add_up_are_refused(changes: dict[str, object], message: str) -> None:
    entries = [entry("/x", {"3": 10}, failures=3, untimed=3), entry("/y", {"7": 5}, failures=4, untimed=4)]
    with pytest.raises(LocustError, match=message):
        to_load_result(entries, report(**changes))


def test_the_generated_locustfile_is_python_with_the_weights() -> None:
    source = default_locustfile([("/json", 3), ("/io/sleep?ms=5", 1)], timeout_s=2.5)
    compile(source, "gwbench_locustfile.py", "exec")
    assert '[["/json", 3], ["/io/sleep?ms=5", 1]]' in source
    assert "network_timeout = 2.5" in source and "FastHttpUser" in source


def test_a_load_is_checked_and_matches_the_native_one() -> None:
    native = ClosedLoad(host="127.0.0.1", port=80, path="/json", concurrency=16, warmup_s=2, duration_s=5)
    converted = LocustLoad.from_closed(native)
    assert (converted.users, converted.endpoints, converted.spawn_rate) == (16, (("/json", 1),), 16.0)
    assert load(80, warmup_s=0).spawn_rate == 4.0
    with pytest.raises(ValueError, match="endpoints or a locustfile"):
        LocustLoad(host="127.0.0.1", port=80, users=1, warmup_s=0, duration_s=1)
    with pytest.raises(ValueError, match="weight"):
        load(80, ("/x", 0))
    with pytest.raises(ValueError, match="processes"):
        run_locust(load(80), master=True, expect_workers=2, processes=2)


@pytest.mark.parametrize("host", ["10.0.0.1", "8.8.8.8", "example.com"])
def test_non_loopback_targets_and_masters_are_refused(host: str) -> None:
    with pytest.raises(UnsafeTargetError):
        run_locust(LocustLoad(host=host, port=80, users=1, warmup_s=0, duration_s=1, endpoints=(("/", 1),)))
    with pytest.raises(UnsafeTargetError):
        run_locust(load(80), master=True, expect_workers=1, master_bind_host=host)
    with pytest.raises(UnsafeTargetError):
        start_workers(1, master_host=host, master_port=5557)


def test_the_worker_command_downloads_the_locustfile_from_the_master() -> None:
    command = worker_command("10.1.2.3", 6000)
    assert command[-5:] == ["--worker", "--master-host=10.1.2.3", "--master-port=6000", "-f", "-"]


# Locust against real servers.


def test_counts_match_the_server_and_locusts_own_totals(tmp_path: Path) -> None:
    with ControlledServer(delay_s=0.002) as server:
        counted = Counted(server)
        result = run_locust(
            load(server.port, ("/ok", 2), ("/flaky", 1)), on_window=counted, output_dir=tmp_path
        )
        answered = counted.answered()
    requests, failures = locusts_own_totals(tmp_path)
    assert counted.events == ["start", "end"]
    assert result.requests == requests > 500
    assert result.ok == requests - failures
    # Requests in flight as the window opened and closed fall on either side of the two counts.
    assert abs(answered - result.requests) <= 2 * 4
    # Every third /flaky answer is a 500; failures are untimed, so the histogram holds the successes.
    assert result.errors == {**NO_ERRORS, "status": failures} and result.error_statuses == {500: failures}
    assert failures == pytest.approx(requests / 9, rel=0.25)
    assert decode(result.histogram).get_total_count() == result.ok
    summary = latency_summary(result.histogram)
    assert summary is not None and 2.0 <= summary.min <= summary.p50 < 20.0
    assert 2.0 <= result.duration_s < 2.2
    assert 0 < result.generator_cpu_s < result.duration_s
    assert result.processes == 1 and result.connections_peak == 4


def test_timeouts_and_refused_connections_are_counted_by_kind() -> None:
    with ControlledServer() as server:
        hung = run_locust(load(server.port, ("/ok", 1), ("/hang", 1), warmup_s=0, timeout_s=0.3))
    assert hung.errors["timeout"] > 0 and hung.errors["status"] == hung.errors["connect"] == 0
    assert hung.ok > 0 and decode(hung.histogram).get_total_count() == hung.ok
    refused = run_locust(load(free_port(), ("/ok", 1), users=2, warmup_s=0, duration_s=1.0))
    assert refused.ok == 0 and refused.errors["connect"] == refused.requests > 0


def test_processes_share_the_load_pinned_and_their_totals_add_up(tmp_path: Path) -> None:
    pinned: dict[int, list[int]] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            for process in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "locust" in " ".join(process.cmdline()):
                        pinned[process.pid] = process.cpu_affinity()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ControlledServer(delay_s=0.002) as server:
            counted = Counted(server)
            result = run_locust(
                load(server.port, users=4), processes=2, cpus=[1], on_window=counted, output_dir=tmp_path
            )
            answered = counted.answered()
    finally:
        done.set()
        watcher.join()
    requests, failures = locusts_own_totals(tmp_path)
    assert result.processes == 2
    assert result.requests == requests > 500 and failures == 0 and result.errors == NO_ERRORS
    assert abs(answered - result.requests) <= 2 * 4
    assert decode(result.histogram).get_total_count() == result.ok
    assert len(pinned) == 3 and all(cpus == [1] for cpus in pinned.values())  # the master and two workers


def test_a_master_and_two_workers_on_loopback(tmp_path: Path) -> None:
    port = free_port()
    with ControlledServer(delay_s=0.002) as server:
        counted = Counted(server)
        with start_workers(2, master_port=port, cpus=[0, 1], log_dir=tmp_path):
            result = run_locust(
                load(server.port, users=4),
                master=True,
                expect_workers=2,
                master_bind_port=port,
                on_window=counted,
                output_dir=tmp_path,
            )
        answered = counted.answered()
    requests, failures = locusts_own_totals(tmp_path)
    assert result.processes == 2 and result.connections_peak == 4
    assert result.requests == requests > 500 and failures == 0
    assert abs(answered - result.requests) <= 2 * 4
    assert decode(result.histogram).get_total_count() == result.ok
    workers = json.loads((tmp_path / "report.json").read_text())["workers"]
    assert all(cpu["cpu_s"] > 0 for cpu in workers.values())


@pytest.fixture
def fastapi(tmp_path: Path, upstream: RunningTarget) -> Iterator[RunningTarget]:
    with LocalLauncher() as launcher:
        yield launcher.start(
            ALL_TARGETS["fastapi-uvicorn"],
            TARGETS_DIR / "fastapi-uvicorn",
            workers=1,
            log_path=tmp_path / "fastapi.log",
            env={"GWBENCH_UPSTREAM_URL": upstream.url},
        )


def test_the_journey_steps_up_and_holds_against_fastapi(tmp_path: Path, fastapi: RunningTarget) -> None:
    journey = LocustLoad(
        host=fastapi.host, port=fastapi.port, users=8, warmup_s=2.0, duration_s=2.0, locustfile=JOURNEY
    )
    result = run_locust(journey, output_dir=tmp_path / "locust")
    entries: list[StatsEntry] = json.loads((tmp_path / "locust" / "locust.json").read_text())
    by_name = {e["name"]: e for e in entries}
    assert {"/health", "/json", "/io/upstream?ms=[ms]"} <= set(by_name)
    assert by_name["/validate"]["num_failures"] == 0  # contract v3: every stack validates
    assert result.errors == NO_ERRORS and result.ok == sum(e["num_requests"] for e in entries)
    assert result.connections_peak == 8  # the shape's plateau
    upstream_calls = by_name["/io/upstream?ms=[ms]"]
    # The upstream waits 20 ms; uvloop's timers have 1 ms resolution and may fire a little early.
    assert upstream_calls["min_response_time"] is not None and upstream_calls["min_response_time"] >= 19.0
    # One journey is a round: each step as often as the others, give or take the users' last rounds.
    counts = [by_name[name]["num_requests"] for name in ("/health", "/json", "/io/upstream?ms=[ms]")]
    assert max(counts) - min(counts) <= 8
    assert decode(result.histogram).get_total_count() == result.ok


def test_an_interruption_stops_locust_at_once() -> None:
    def interrupt(event: str) -> None:
        if event == "start":
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    with ControlledServer(delay_s=0.002) as server:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            run_locust(load(server.port, warmup_s=0, duration_s=10.0), processes=2, on_window=interrupt)
        assert time.monotonic() - started < 8.0


def test_a_locustfile_that_raises_fails_the_run(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        "from locust import FastHttpUser, constant, task\n"
        "class Broken(FastHttpUser):\n"
        "    wait_time = constant(0.1)\n"
        "    @task\n"
        "    def divide(self):\n"
        "        1 / 0\n"
    )
    with pytest.raises(
        LocustError, match=r"the locustfile raised: division by zero at File .*broken.py\", line 6"
    ):
        run_locust(
            LocustLoad(host="127.0.0.1", port=9, users=1, warmup_s=0, duration_s=0.5, locustfile=broken)
        )


def test_a_master_gives_up_when_its_workers_do_not_come() -> None:
    started = time.monotonic()
    with pytest.raises(LocustError, match="Gave up waiting for workers"):
        run_locust(load(9), master=True, expect_workers=1, master_bind_port=free_port(), workers_timeout_s=1)
    assert time.monotonic() - started < 5.0


def test_a_run_that_overstays_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.load.locust._EXIT_GRACE_S", -9.0)  # a limit of 2 s for a 10 s run
    with ControlledServer() as server:
        started = time.monotonic()
        with pytest.raises(LocustError, match="did not exit after its duration"):
            run_locust(load(server.port, warmup_s=0, duration_s=10.0, timeout_s=1.0))
        assert time.monotonic() - started < 4.0
