"""The open-model driver's own lateness, and the rule that calls a cell generator-bound for it (issue 13).

A driver whose loop froze sends late, and the corrected latency would charge that to the
server: the driver measures how late it got to each request and ``bound_reasons`` flags the
cell. A server that stalls makes requests wait for connections, which is not lateness.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from controlled_server import ControlledServer

from harness import histogram
from harness.load import LoadResult, merge_results
from harness.load.arrivals import OpenLoad
from harness.load.process import drive_in_subprocess
from harness.load.summary import latency_summary
from harness.report.formats import format_bound_reason
from harness.run.flags import bound_reasons, lateness_limit_ms

FREEZE_S = 1.0


def open_load(port: int, **kw: object) -> OpenLoad:
    settings: dict[str, object] = {
        "rate": 200.0,
        "warmup_s": 0.5,
        "duration_s": 3.0,
        "arrival": "uniform",
        "timeout_s": 5.0,
    }
    settings.update(kw)
    return OpenLoad(host="127.0.0.1", port=port, path="/ok", **settings)  # type: ignore[arg-type]


def freeze_later(pid: int, after_s: float) -> threading.Thread:
    """SIGSTOP ``pid`` after ``after_s`` seconds and SIGCONT it FREEZE_S later, in a thread."""

    def freeze() -> None:
        time.sleep(after_s)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(FREEZE_S)
        finally:
            os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    return thread


@contextmanager
def server_process(delay_s: float = 0.001) -> Iterator[tuple[int, int]]:
    """A ControlledServer in a process of its own (so it can be stopped): its port and pid."""
    code = (
        "import sys, time\n"
        "from controlled_server import ControlledServer\n"
        f"server = ControlledServer(delay_s={delay_s}).__enter__()\n"
        "print(server.port, flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            yield port, process.pid
        finally:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait()


def test_a_driver_frozen_for_a_second_is_flagged_late() -> None:
    """One of two driver processes is stopped for 1 s mid-window: the merged cell is generator-bound."""
    frozen: list[threading.Thread] = []

    def on_window(event: str) -> None:
        if event == "start":
            drivers = sorted(
                (p for p in multiprocessing.active_children() if p.name.startswith("gwbench-driver-")),
                key=lambda p: p.name,
            )
            assert drivers and drivers[0].pid is not None
            frozen.append(freeze_later(drivers[0].pid, after_s=0.8))

    with ControlledServer(delay_s=0.001) as server:
        result, _ = drive_in_subprocess(open_load(server.port), on_window=on_window, processes=2)
    frozen[0].join()
    lateness = result.generator_lateness_ms
    assert lateness is not None
    print(f"frozen driver: lateness p50 {lateness.p50} ms, p99 {lateness.p99} ms, max {lateness.max} ms")
    assert lateness.p99 > 500
    assert FREEZE_S * 1000 * 0.8 < lateness.max < FREEZE_S * 1000 * 1.5
    assert len(result.generator_cpu_percent_per_process) == 2
    reasons = bound_reasons(result, max_connections=1000, upstream_cpu_percent=None)
    late = [r for r in reasons if r.rule == "late"]
    assert len(late) == 1
    assert (late[0].by, late[0].measured, late[0].limit) == ("generator", round(lateness.p99, 3), 5.0)
    assert format_bound_reason(late[0]).startswith("it sent requests ")


def test_a_server_stalled_for_a_second_is_not_the_drivers_lateness() -> None:
    """The server is stopped for 1 s: latency shows the stall, the driver was not late."""
    with server_process() as (port, pid):
        stalled: list[threading.Thread] = []

        def on_window(event: str) -> None:
            if event == "start":
                stalled.append(freeze_later(pid, after_s=0.8))

        load = open_load(port, max_connections=20)
        result, _ = drive_in_subprocess(load, on_window=on_window)
        stalled[0].join()
    lateness = result.generator_lateness_ms
    latency = latency_summary(result.histogram)
    assert lateness is not None and latency is not None
    print(f"stalled server: lateness p50 {lateness.p50} ms, p99 {lateness.p99} ms, max {lateness.max} ms;")
    print(f"latency p99 {latency.p99} ms")
    assert latency.p99 > 500
    assert lateness.p99 <= lateness_limit_ms(None)
    assert not [r for r in bound_reasons(result, load.max_connections, None) if r.rule == "late"]


def _result(lateness_us: list[int], cpu_s: float = 0.1, **kw: object) -> LoadResult:
    fields: dict[str, object] = {
        "duration_s": 1.0,
        "ok": len(lateness_us),
        "errors": {},
        "error_statuses": {},
        "connections_opened": 1,
        "generator_cpu_s": cpu_s,
        "histogram": histogram.encode([1000] * len(lateness_us)),
        "model": "open",
        "intended_rate": float(len(lateness_us)),
        "scheduled": len(lateness_us),
        "histogram_lateness": histogram.encode(lateness_us),
    }
    fields.update(kw)
    return LoadResult(**fields)  # type: ignore[arg-type]


def test_the_lateness_bound_is_5_ms_or_5_percent_of_the_slo() -> None:
    assert lateness_limit_ms(None) == 5.0
    assert lateness_limit_ms(50.0) == 5.0
    assert lateness_limit_ms(400.0) == pytest.approx(20.0)
    result = _result([100] * 98 + [12_000] * 2)  # p99 12 ms
    assert [r.rule for r in bound_reasons(result, None, None)] == ["late"]
    assert [r.rule for r in bound_reasons(result, None, None, slo_p99_ms=400.0)] == []


def test_a_capacity_step_is_generator_bound_only_when_lateness_could_have_decided_it() -> None:
    result = _result([100] * 98 + [12_000] * 2)  # p99 12 ms, max 12 ms: over the 5 ms limit
    rules = [r.rule for r in bound_reasons(result, None, None, slo_p99_ms=100.0, p99_ms=80.0)]
    assert rules == []  # held: late requests only made its latency worse
    rules = [r.rule for r in bound_reasons(result, None, None, slo_p99_ms=100.0, p99_ms=150.0)]
    assert rules == []  # broke by 50 ms: 12 ms of lateness cannot account for that
    (reason,) = bound_reasons(result, None, None, slo_p99_ms=100.0, p99_ms=105.0)
    assert reason.rule == "late" and reason.detail is not None and "could account" in reason.detail


def test_the_connection_cap_does_not_waive_lateness() -> None:
    # Every allowed connection open and far behind the schedule: "behind" is waived, "late" is not.
    result = _result([900_000] * 100, connections_peak=10, dropped=80)
    reasons = bound_reasons(result, max_connections=10, upstream_cpu_percent=None)
    assert [r.rule for r in reasons] == ["late"]
    assert format_bound_reason(reasons[0]) == "it sent requests 900 ms late at p99 (limit 5 ms)"


def test_the_cpu_rule_judges_the_busiest_process() -> None:
    busy = _result([100] * 10, cpu_s=1.0)  # 100% of a core
    calm = _result([100] * 10, cpu_s=0.5)  # 50%
    merged = merge_results([busy, calm], duration_s=1.0)
    assert merged.generator_cpu_percent_per_process == (100.0, 50.0)
    assert merged.generator_cpu_percent == pytest.approx(150.0)  # under 80% x 2: the old rule passed it
    (cpu,) = bound_reasons(merged, None, None)
    assert (cpu.rule, cpu.measured, cpu.limit, cpu.processes) == ("cpu", 100.0, 80.0, 2)
    assert format_bound_reason(cpu) == "one of its 2 driver processes used 100% CPU (limit 80% each)"
    assert bound_reasons(merge_results([calm, calm], duration_s=1.0), None, None) == ()
    lateness = merged.generator_lateness_ms
    assert lateness is not None and lateness.max == pytest.approx(0.1)
