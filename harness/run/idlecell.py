"""An idle-connections cell (an endpoint of kind ``idle-http`` or ``idle-websocket``) as one record.

The cell holds ``concurrency`` connections on the running stack and reads its memory
before and during the hold (:func:`harness.idle.hold_and_read`); its record says how many
connections opened and stayed open (the driver's count), how many the stack held (its
own count of established connections), and the memory each cost. No throughput or
latency: nothing is served while the memory is read. A stack killed for going over its
memory limit during the hold is a finding, not a failure: the record keeps how many
connections were open at most before it (``connections_open_peak``) and the kills
(``server_oom_kills``), and no memory per connection.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.cgroup import Cgroup
from harness.idle import READINGS, IdleError, IdleHold, hold_and_read
from harness.launch import RunningTarget
from harness.load.stream import FileLimitError, HoldKind
from harness.model import Cell, Errors, Measurement, MemoryPerConnection, RequestSpec, Scenario
from harness.run.cells import identity
from harness.types import MIB

UNSUPPORTED = "answered the WebSocket upgrade with 501: no WebSocket support, nothing measured"


def hold_kind(spec: RequestSpec) -> HoldKind:
    """The driver's kind of held connection for an idle endpoint: ``http`` or ``ws``."""
    return "ws" if spec.kind == "idle-websocket" else "http"


def measure_idle(
    scenario: Scenario,
    spec: RequestSpec,
    cell: Cell,
    running: RunningTarget,
    group: Cgroup | None,
    *,
    ready_path: str,
    cpus: Sequence[int],
    started_at: str,
    allow_remote: bool,
) -> Measurement:
    """Hold ``cell.concurrency`` idle connections of ``spec`` on ``running`` and return the record.

    The scenario's warm-up is the settling time between the last connection tried and the
    memory read, its window the hold. Raises IdleError (with the reason) when the cell
    cannot be measured, FileLimitError when the connections cannot fit in this process's
    file limit.
    """
    assert cell.concurrency is not None  # idle cells run at fixed levels
    if not running.pid:
        raise IdleError("memory per connection needs the app's process (--pid)")
    try:
        held = hold_and_read(
            running, group, kind=hold_kind(spec), connections=cell.concurrency, path=spec.path,
            ready_path=ready_path, settle_s=scenario.warmup_s, hold_s=scenario.warmup_s + scenario.duration_s,
            cpus=list(cpus), timeout_s=scenario.timeout_s, allow_remote=allow_remote,
        )  # fmt: skip
    except FileLimitError:
        raise
    except (OSError, ValueError) as exc:
        raise IdleError(str(exc)) from None
    return idle_measurement(cell, spec, held, started_at=started_at, warmup_s=scenario.warmup_s)


def idle_measurement(
    cell: Cell, spec: RequestSpec, held: IdleHold, *, started_at: str, warmup_s: float
) -> Measurement:
    """The stored record of one idle cell from what :func:`~harness.idle.hold_and_read` saw."""
    hold = held.hold
    count = hold.errors.get
    by_status = {str(k): v for k, v in sorted(hold.error_statuses.items())}
    common = {
        **identity(cell),
        "workload": spec.kind,
        "started_at": started_at,
        "warmup_s": warmup_s,
        "requests_per_second": 0.0,
        "latency_ms": None,
        # While holding them: what the connections cost the generator, % of one core.
        "generator_cpu_percent": round(held.driver_cpu_percent or 0.0, 2),
        "generator_bound": False,
    }
    if hold.unsupported:
        return Measurement(
            **common, duration_s=0.0, requests=0, errors=Errors(), connections_opened=0,
            server_cpu_percent=None, server_rss_mib_peak=None, server_pss_mib_peak=None,
            server_processes=None, upstream_cpu_percent=None, histogram=None,
            status="unsupported", failure_reason=UNSUPPORTED,
        )  # fmt: skip
    per = {reading: held.per_connection_kib(reading) for reading in READINGS}
    memory = None
    if per["pss"] is not None and per["uss"] is not None:
        memory = MemoryPerConnection(
            pss=round(per["pss"], 3),
            pss_anon=None if per["pss_anon"] is None else round(per["pss_anon"], 3),
            uss=round(per["uss"], 3),
            cgroup=None if per["cgroup"] is None else round(per["cgroup"], 3),
        )
    reading = held.held
    cgroup_bytes = None if reading is None else reading.cgroup_bytes
    return Measurement(
        **common,
        duration_s=round(hold.held_s, 4),
        requests=hold.connections_opened + hold.connections_failed,
        errors=Errors(
            connect=count("connect", 0), read=count("read", 0), status=count("status", 0),
            timeout=count("timeout", 0), malformed=count("malformed", 0), by_status=by_status,
        ),
        connections_opened=hold.connections_opened,
        server_cpu_percent=None,
        server_rss_mib_peak=None if reading is None else round(reading.rss_bytes / MIB, 2),
        server_pss_mib_peak=None if reading is None else round(reading.pss_bytes / MIB, 2),
        server_processes=None if reading is None else len(reading.pids),
        upstream_cpu_percent=None,
        histogram=None,
        server_cgroup_memory_mib_peak=None if cgroup_bytes is None else round(cgroup_bytes / MIB, 2),
        connections_held=hold.connections_open_at_end,
        connections_held_by_server=held.server_connections,
        memory_per_connection_kib=memory,
        connections_open_s=round(hold.open_s, 3),
        connections_open_peak=hold.connections_open_peak,
        server_pss_mib_before=round(held.before.pss_bytes / MIB, 2),
        server_oom_kills=held.oom_kills or None,
    )
