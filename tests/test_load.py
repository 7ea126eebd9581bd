"""The native driver's counts against a server whose answers the test controls."""

from __future__ import annotations

import pytest
from controlled_server import ControlledServer

from harness.histogram import decode
from harness.load import ClosedLoad, UnsafeTargetError, drive_in_subprocess, ensure_loopback, run_closed
from harness.load.summary import latency_summary


def load(port: int, path: str, concurrency: int = 4, duration_s: float = 1.0, **kw: float) -> ClosedLoad:
    return ClosedLoad(
        host="127.0.0.1",
        port=port,
        path=path,
        concurrency=concurrency,
        warmup_s=kw.pop("warmup_s", 0.0),
        duration_s=duration_s,
        **kw,
    )


def test_closed_model_throughput_and_latency_follow_the_server_delay() -> None:
    with ControlledServer(delay_s=0.02) as server:
        result = run_closed(load(server.port, "/ok", concurrency=4, duration_s=1.5))
        answered = server.total()
    summary = latency_summary(result.histogram)
    assert summary is not None
    assert result.errors == {"status": 0, "connect": 0, "read": 0, "timeout": 0}
    # 4 connections each waiting 20 ms: at most 200 requests/s (Little's law).
    requests_per_second = result.ok / result.duration_s
    assert 140 <= requests_per_second <= 200, requests_per_second
    assert 20.0 <= summary.p50 < 30.0
    assert 20.0 <= summary.min <= summary.p50 <= summary.p99 <= summary.max
    # Little's law: in flight = throughput x mean latency = the 4 connections.
    assert 3.5 <= requests_per_second * summary.mean / 1000 <= 4.05
    # The server answered everything the driver counted, plus at most the requests
    # in flight when the window closed (no warm-up here).
    assert result.ok <= answered <= result.ok + 4
    assert decode(result.histogram).get_total_count() == result.ok
    assert result.connections_opened == 4


def test_error_statuses_are_counted_and_kept_out_of_latency() -> None:
    with ControlledServer(delay_s=0.005) as server:
        result = run_closed(load(server.port, "/flaky", duration_s=1.0))
    total = result.ok + result.errors["status"]
    assert result.errors["status"] > 0
    assert abs(result.errors["status"] - total / 3) <= 3
    assert decode(result.histogram).get_total_count() == result.ok


def test_connection_close_reconnects_for_every_request() -> None:
    with ControlledServer(delay_s=0.005) as server:
        result = run_closed(load(server.port, "/close", duration_s=1.0))
        connections = server.connections
    assert result.ok > 50
    assert sum(result.errors.values()) == 0
    # Connections opened as the window closed may not have reached the server's handler yet.
    assert connections - 4 <= result.connections_opened <= connections + 4
    assert result.ok <= result.connections_opened <= result.ok + 2 * 4


def test_a_server_that_never_answers_gives_timeouts_not_latencies() -> None:
    with ControlledServer() as server:
        result = run_closed(load(server.port, "/hang", concurrency=3, duration_s=1.0, timeout_s=0.2))
    assert result.ok == 0
    assert result.errors["timeout"] >= 3 * 4
    assert latency_summary(result.histogram) is None


def test_a_closed_port_gives_connect_errors() -> None:
    with ControlledServer() as server:
        port = server.port
    result = run_closed(load(port, "/ok", concurrency=2, duration_s=0.3))
    assert result.ok == 0
    assert result.errors["connect"] > 0


def test_warm_up_is_not_counted() -> None:
    with ControlledServer(delay_s=0.01) as server:
        result = run_closed(load(server.port, "/ok", concurrency=2, duration_s=0.5, warmup_s=0.5))
        answered = server.total()
    # About half of what the server answered fell in the warm-up.
    assert 0.35 * answered <= result.ok <= 0.6 * answered
    assert 0.49 <= result.duration_s <= 0.6


def test_driver_in_a_subprocess_reports_its_window_and_cpu() -> None:
    events: list[str] = []
    with ControlledServer(delay_s=0.01) as server:
        result, pid = drive_in_subprocess(load(server.port, "/ok", duration_s=0.8), on_window=events.append)
    assert events == ["start", "end"]
    assert pid > 0
    assert result.ok > 100
    assert 0 < result.generator_cpu_s < result.duration_s


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.10", "8.8.8.8", "example.com"])
def test_non_loopback_targets_are_refused(host: str) -> None:
    with pytest.raises(UnsafeTargetError):
        ensure_loopback(host)
    with pytest.raises(UnsafeTargetError):
        run_closed(ClosedLoad(host=host, port=80, path="/", concurrency=1, warmup_s=0, duration_s=0.1))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_targets_are_allowed(host: str) -> None:
    ensure_loopback(host)


def test_a_weighted_mix_sends_each_request_in_its_share_with_its_body() -> None:
    from harness.load.requests import HttpRequest

    body = b'{"events": []}'
    mix = (HttpRequest("/ok", weight=3), HttpRequest("/ok", method="POST", body=body, weight=1))
    with ControlledServer(delay_s=0.001) as server:
        result = run_closed(
            ClosedLoad(
                host="127.0.0.1", port=server.port, path="mix", concurrency=4, warmup_s=0,
                duration_s=1.5, requests=mix, seed=3,
            )
        )  # fmt: skip
        counts = dict(server.requests)
        bodies = {key: set(value) for key, value in server.bodies.items()}
    assert sum(result.errors.values()) == 0
    gets, posts = counts["GET /ok"], counts["POST /ok"]
    assert gets + posts >= result.ok
    assert posts / (gets + posts) == pytest.approx(0.25, abs=0.04)
    assert bodies["POST /ok"] == {body}
    assert bodies["GET /ok"] == {b""}
