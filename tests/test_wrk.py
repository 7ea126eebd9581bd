"""The wrk driver's numbers against a server whose answers the test controls, and against the native driver.

wrk must be installed (``apt-get install wrk``): these tests fail, not skip, without it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from controlled_server import ControlledServer

from harness.histogram import decode, encode_counts
from harness.load.native import ClosedLoad, UnsafeTargetError, run_closed
from harness.load.summary import latency_summary
from harness.load.wrk import (
    REPORT_ENV,
    WrkError,
    WrkReport,
    default_threads,
    measured_latencies,
    remove_correction,
    run_wrk,
    whole_seconds,
    wrk_command,
)


def load(
    port: int,
    path: str,
    concurrency: int = 4,
    duration_s: float = 1.0,
    warmup_s: float = 0.0,
    timeout_s: float = 10.0,
) -> ClosedLoad:
    return ClosedLoad(
        host="127.0.0.1",
        port=port,
        path=path,
        concurrency=concurrency,
        warmup_s=warmup_s,
        duration_s=duration_s,
        timeout_s=timeout_s,
    )


def wrk_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "wrk"]


@pytest.fixture(autouse=True)
def no_wrk_left_behind() -> Iterator[None]:
    yield
    assert not wrk_children(), "wrk left running"


def raw_report(the_load: ClosedLoad, tmp_path: Path, threads: int = 1) -> WrkReport:
    """One wrk run with the report script, outside run_wrk: wrk's own view of it."""
    report = tmp_path / "report.json"
    command = wrk_command(the_load, duration_s=whole_seconds(the_load.duration_s), threads=threads, wrk="wrk")
    subprocess.run(command, env={**os.environ, REPORT_ENV: str(report)}, check=True, capture_output=True)
    return WrkReport.from_json(report.read_text())


def value_at_rank(table: tuple[tuple[int, int], ...], rank: int) -> int:
    seen = 0
    for value, count in table:
        seen += count
        if seen >= rank:
            return value
    return table[-1][0]


def test_wrk_is_installed() -> None:
    assert subprocess.run(["wrk", "--version"], capture_output=True).stdout.startswith(b"wrk "), (
        "wrk is missing: apt-get install wrk"
    )


def test_counts_match_what_the_server_answered() -> None:
    window: list[int] = []
    with ControlledServer(delay_s=0.005) as server:

        def on_window(event: str) -> None:
            window.append(server.total())

        result = run_wrk(load(server.port, "/ok", warmup_s=1.0, duration_s=2.0), on_window=on_window)
        time.sleep(0.05)  # the requests in flight when wrk stopped
        answered = server.total() - window[0]
    assert result.errors == {"status": 0, "connect": 0, "read": 0, "timeout": 0}
    assert result.error_statuses == {}
    assert result.ok > 500
    # The measured run's responses, plus the requests in flight as each run stopped.
    assert result.ok <= answered <= result.ok + 2 * 4
    assert decode(result.histogram).get_total_count() == result.ok
    assert 2.0 <= result.duration_s < 2.3
    assert result.connections_opened == result.connections_peak == 4
    assert result.model == "closed"
    assert 0 < result.generator_cpu_s < result.duration_s
    summary = latency_summary(result.histogram)
    assert summary is not None and 5.0 <= summary.p50 < 15.0


def test_window_events_bracket_the_measured_run_only() -> None:
    events: list[tuple[str, float]] = []
    with ControlledServer(delay_s=0.005) as server:
        started = time.monotonic()
        result = run_wrk(
            load(server.port, "/ok", warmup_s=1.0, duration_s=1.0),
            on_window=lambda event: events.append((event, time.monotonic() - started)),
        )
    assert [event for event, _ in events] == ["start", "end"]
    assert events[0][1] >= 1.0  # after the warm-up run
    assert result.duration_s <= events[1][1] - events[0][1] < result.duration_s + 0.5


def test_the_histogram_matches_wrks_own_percentiles(tmp_path: Path) -> None:
    with ControlledServer(delay_s=0.005) as server:
        report = raw_report(load(server.port, "/ok", duration_s=1.0), tmp_path)
    assert report.distribution_source == "ffi"
    assert report.latency_us is not None
    # wrk's percentiles are of its own table (coordinated-omission correction included).
    histogram = decode(encode_counts(report.distribution_us))
    total = histogram.get_total_count()
    assert total == sum(count for _, count in report.distribution_us)
    assert histogram.values_are_equivalent(histogram.get_max_value(), int(report.latency_us["max"]))
    assert histogram.values_are_equivalent(histogram.get_min_value(), int(report.latency_us["min"]))
    for key, percent in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0)):
        # wrk ranks round(p x n + 0.5) in long double, HdrHistogram int(p x n + 0.5) in double:
        # one rank apart at most, so either side of the rank may hold either value.
        rank = int(percent / 100 * total) + 1
        near = [value_at_rank(report.distribution_us, rank + shift) for shift in (-1, 0)]
        assert int(report.latency_us[key]) in near
        ours = histogram.get_value_at_percentile(percent)
        assert any(histogram.values_are_equivalent(ours, value) for value in near), (key, ours, near)


def test_the_latency_api_and_the_ffi_read_agree_with_wrk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GWBENCH_WRK_DISTRIBUTION", "api")
    with ControlledServer(delay_s=0.005) as server:
        report = raw_report(load(server.port, "/ok", duration_s=1.0), tmp_path)
    assert report.distribution_source == "api"
    # Raises unless wrk's percentiles are read back and the counts add up.
    assert sum(count for _, count in measured_latencies(report, connections=4)) == report.requests


def test_wrks_coordinated_omission_correction_is_undone(tmp_path: Path) -> None:
    # Freezes of 0.3 s among 5 ms answers: wrk adds synthetic latencies below each freeze.
    with ControlledServer(delay_s=0.005, stall_every_s=0.7, stall_s=0.3) as server:
        report = raw_report(load(server.port, "/stall", duration_s=2.0), tmp_path)
    recorded = sum(count for _, count in report.distribution_us)
    measured = measured_latencies(report, connections=4)
    assert recorded > report.requests
    assert sum(count for _, count in measured) == report.requests
    assert measured[-1] == report.distribution_us[-1]  # the stalls themselves are kept
    assert measured[-1][0] >= 300_000


def stats_correct(table: dict[int, int], expected: int) -> dict[int, int]:
    """wrk 4.1's src/stats.c ``stats_correct``, transcribed for a sparse table."""
    data = dict(table)
    for n in range(expected * 2, max(table) + 1):
        count = table.get(n, 0)
        m = n - expected
        while count and m > expected:
            data[m] = data.get(m, 0) + count
            m -= expected
    return data


@pytest.mark.parametrize("interval", [1, 7, 100, 5_000])
def test_remove_correction_inverts_wrks_stats_correct(interval: int) -> None:
    original = {5: 3, 90: 1, 101: 40, 250: 2, 999: 1, 10_007: 5, 20_000: 1}
    corrected = stats_correct(original, interval)
    assert remove_correction(sorted(corrected.items()), interval) == sorted(original.items())


def test_error_statuses_are_status_errors_and_stay_in_latency() -> None:
    with ControlledServer(delay_s=0.005) as server:
        result = run_wrk(load(server.port, "/flaky", duration_s=1.0))
        answered = dict(server.answered)
    status = result.errors["status"]
    assert status > 0
    assert abs(status - (result.ok + status) / 3) <= 3
    assert result.ok <= answered[200] <= result.ok + 4
    assert status <= answered[500] <= status + 4
    # wrk records every response's latency, error responses included.
    assert decode(result.histogram).get_total_count() == result.ok + status
    assert result.error_statuses == {}


def test_late_answers_are_timeouts_without_latency() -> None:
    with ControlledServer(delay_s=1.3) as server:
        result = run_wrk(load(server.port, "/ok", concurrency=2, duration_s=2.0, timeout_s=1.0))
        answered = server.total()
    assert result.ok == 0
    assert result.errors["timeout"] == 2 <= answered <= 4
    assert decode(result.histogram).get_total_count() == 0


def test_requests_never_answered_are_not_counted_by_wrk() -> None:
    with ControlledServer() as server:
        result = run_wrk(load(server.port, "/hang", concurrency=2, duration_s=1.0, timeout_s=1.0))
    assert result.ok == 0
    assert result.requests == 0


def test_a_server_that_goes_away_gives_read_errors() -> None:
    server = ControlledServer(delay_s=0.005)
    server.__enter__()
    stopper = threading.Timer(1.0, server.__exit__, (None, None, None))
    stopper.start()
    try:
        result = run_wrk(load(server.port, "/ok", duration_s=2.0))
    finally:
        stopper.join()
    # wrk 4.1 connects without checking the outcome: a refused reconnection fails on read.
    assert result.ok > 100
    assert result.errors["read"] > 0


def test_a_closed_port_fails_at_start() -> None:
    with ControlledServer() as server:
        port = server.port
    with pytest.raises(WrkError, match="unable to connect"):
        run_wrk(load(port, "/ok", concurrency=2, duration_s=1.0))


def test_wrk_is_pinned_to_its_cpus() -> None:
    seen: list[list[int]] = []

    def watch() -> None:
        deadline = time.monotonic() + 3
        while not seen and time.monotonic() < deadline:
            for process in wrk_children():
                seen.append(process.cpu_affinity())
            time.sleep(0.05)

    with ControlledServer(delay_s=0.005) as server:
        watcher = threading.Thread(target=watch)
        watcher.start()
        result = run_wrk(load(server.port, "/ok", duration_s=1.0), cpus=[0])
        watcher.join()
    assert seen and seen[0] == [0]
    assert result.processes == 1


def test_interruption_stops_wrk_at_once() -> None:
    def interrupt(event: str) -> None:
        if event == "start":
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()

    with ControlledServer(delay_s=0.005) as server:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            run_wrk(load(server.port, "/ok", duration_s=5.0), on_window=interrupt)
        assert time.monotonic() - started < 2.0
    assert not wrk_children()


@pytest.mark.parametrize("host", ["10.0.0.1", "8.8.8.8", "example.com"])
def test_non_loopback_targets_are_refused(host: str) -> None:
    with pytest.raises(UnsafeTargetError):
        run_wrk(ClosedLoad(host=host, port=80, path="/", concurrency=1, warmup_s=0, duration_s=1))


def test_a_missing_wrk_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    the_load = load(9, "/ok")
    with pytest.raises(WrkError, match="apt-get install wrk"):
        run_wrk(the_load, wrk=str(tmp_path / "wrk"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WrkError, match="apt-get install wrk"):
        run_wrk(the_load)


def test_threads_divide_the_connections() -> None:
    assert default_threads(6, [0, 1, 2, 3]) == 3
    assert default_threads(4, [0, 1]) == 2
    assert default_threads(5, [0, 1]) == 1
    assert default_threads(1, [0, 1, 2]) == 1
    with pytest.raises(ValueError, match="divide"):
        run_wrk(load(9, "/ok", concurrency=4), threads=3)


@pytest.mark.parametrize(("seconds", "whole"), [(0.2, 1), (1.0, 1), (1.5, 2), (2.0, 2), (10.0, 10)])
def test_wrk_times_are_whole_seconds(seconds: float, whole: int) -> None:
    assert whole_seconds(seconds) == whole


def test_native_and_wrk_agree_on_throughput() -> None:
    # 4 connections on a 10 ms answer: about 390 requests/s whatever drives them.
    with ControlledServer(delay_s=0.01) as server:
        native = run_closed(load(server.port, "/ok", concurrency=4, duration_s=2.0))
        wrk = run_wrk(load(server.port, "/ok", concurrency=4, duration_s=2.0))
    native_requests_per_second = native.ok / native.duration_s
    wrk_requests_per_second = wrk.ok / wrk.duration_s
    assert 300 < native_requests_per_second < 400
    assert abs(wrk_requests_per_second - native_requests_per_second) <= 0.2 * native_requests_per_second, (
        native_requests_per_second,
        wrk_requests_per_second,
    )
