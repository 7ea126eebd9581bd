"""``make bench-idle``: the server memory each idle connection costs, per stack.

For each stack and round, on a fresh launch (target pinned to its CPU as
``split_cpus`` places it, default workers, its own control group when one can
be made): a spawned driver process, pinned to the generator CPUs, opens and
closes a few warm-up connections (so lazy imports and first-request caches
are not charged to the connections); once the server answers quickly and uses
no CPU, its memory is read (``before``); the driver opens K connections
(``hold_connections``, HTTP keep-alive or WebSocket) and, when all have been
tried, says so; after SETTLE_S its memory is read again (``held``); then the
connections close. An HTTP connection sends a request only after HTTP_REFRESH_S
of silence, a WebSocket never: nothing is served while the memory is read.
Memory per connection = (held - before) / connections_open_at_end, in KiB,
for PSS, its anonymous part and USS summed over the process tree (psutil,
``smaps_rollup``) and the control group's charge (process memory plus the
kernel memory the kernel accounts to it); what each includes is in
:class:`MemoryReading`. A reading is the highest of SAMPLES samples.

No upstream or database is started: no stack needs one to start (their pools
connect lazily or in the background), and idle connections query neither.

The orchestrator only reads /proc and the control group; the driver's event
loop runs in its own process, so nothing measured waits on this one. Every step
has a time limit; Ctrl-C stops the driver and every stack before exiting.

Results format changelog (``schema`` in ``results/bench-idle-<UTC>.json``):

- 1: first format.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

import psutil
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.cgroup import Cgroup
from harness.launch import LaunchError, Limits, LocalLauncher, RunningTarget, wait_until_idle
from harness.launch.base import tail
from harness.load.stream import (
    FileLimitError,
    HoldKind,
    HoldLoad,
    HoldResult,
    hold_connections,
    open_file_limit,
)
from harness.load.stream.link import CLOSE_WAIT_S
from harness.model import ConfigError, Placement, TargetConfig, discover_targets, suggest
from harness.monitor import sample_tree
from harness.plan import split_cpus
from harness.results import utc_now
from harness.stats import Spread

REPO = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 1
KIB = 1024
WARMUP_CONNECTIONS = 16
"""Opened and closed before ``before``; the memory they leave free for reuse biases the figure
down by at most WARMUP_CONNECTIONS / K of itself (1.6% at K = 1000)."""
SETTLE_S = 1.0
"""From the moment every connection has been tried to the first ``held`` sample (s)."""
SAMPLES = 5
SAMPLE_INTERVAL_S = 0.2
HOLD_S = SETTLE_S + SAMPLES * SAMPLE_INTERVAL_S + 4.0
"""How long the driver holds the connections: the samples with room for a busy machine (s)."""
HTTP_REFRESH_S = 4.0
"""An HTTP connection sends a request after this much silence (s): under the 5 s idle timeout of
the stacks that keep connections (uvicorn, Hypercorn, Gunicorn as configured; Daphne and Granian
keep them longer), and later than the driver's default (1.5 s, for Gunicorn's default 2 s), so that
no request is served while the memory is read: at 1,000 connections that default is ~670 requests/s."""
OPEN_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
QUIET_CPU_PERCENT = 5.0
"""A stack is idle when its tree uses at most this share of one core over QUIET_WINDOW_S."""
QUIET_WINDOW_S = 0.5
QUIET_TIMEOUT_S = 15.0
SPAWN_TIMEOUT_S = 60.0
"""For the driver process to start, import and finish its warm-up (s)."""
DESCRIPTOR_MARGIN = 256
"""Files a stack may open besides one per connection; the soft RLIMIT_NOFILE it inherits is raised."""


class BenchError(Exception):
    """A round could not be measured; the message says why."""


Reading = Literal["pss", "pss_anon", "uss", "cgroup"]
READINGS: tuple[Reading, ...] = ("pss", "pss_anon", "uss", "cgroup")


@dataclass(frozen=True)
class MemoryReading:
    """A process tree's memory in bytes, each the highest of a few samples; ``pids`` are its processes.

    PSS shares each page among every process mapping it, machine-wide: a process elsewhere that maps
    the same libraries lowers it, so on a shared machine it moves by itself. ``pss_anon_bytes``, the
    anonymous part (None before Linux 5.3), leaves those file pages out. USS counts the pages only
    the tree's processes map; a page copied on write in a forked worker counts twice (the worker's
    copy and the master's, both private now). ``cgroup_bytes`` (None without a control group) counts
    each page once and adds the kernel memory the kernel charges to the group.
    """

    pss_bytes: int
    pss_anon_bytes: int | None
    uss_bytes: int
    rss_bytes: int
    cgroup_bytes: int | None
    pids: tuple[int, ...]

    def bytes_of(self, reading: Reading) -> int | None:
        value: int | None = getattr(self, f"{reading}_bytes")
        return value

    def to_json(self) -> dict[str, Any]:
        return {**{f"{r}_bytes": self.bytes_of(r) for r in READINGS}, "rss_bytes": self.rss_bytes,
                "pids": list(self.pids)}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemoryReading:
        return cls(
            pss_bytes=data["pss_bytes"],
            pss_anon_bytes=data["pss_anon_bytes"],
            uss_bytes=data["uss_bytes"],
            rss_bytes=data["rss_bytes"],
            cgroup_bytes=data["cgroup_bytes"],
            pids=tuple(data["pids"]),
        )


def kib_per_connection(before: int | None, held: int | None, connections: int) -> float | None:
    """(held - before) / connections, bytes in, KiB out; None if a reading is missing or none was held.

    ``kib_per_connection(10 * 2**20, 30 * 2**20, 1000)`` -> 20.48.
    """
    if before is None or held is None or connections <= 0:
        return None
    return (held - before) / connections / KIB


@dataclass(frozen=True)
class IdleRound:
    """One stack's measurement in one round (1-based), with the driver's counts (``HoldResult``)."""

    target: str
    round: int
    workers: int
    hold: HoldResult
    before: MemoryReading
    held: MemoryReading

    def per_connection_kib(self, reading: Reading) -> float | None:
        before, held = self.before.bytes_of(reading), self.held.bytes_of(reading)
        return kib_per_connection(before, held, self.hold.connections_open_at_end)

    def to_json(self) -> dict[str, Any]:
        hold = self.hold
        return {
            "target": self.target,
            "round": self.round,
            "workers": self.workers,
            "kind": hold.kind,
            "connections_requested": hold.connections_requested,
            "connections_opened": hold.connections_opened,
            "connections_failed": hold.connections_failed,
            "connections_dropped": hold.connections_dropped,
            "connections_open_at_end": hold.connections_open_at_end,
            "errors": hold.errors,
            "error_statuses": {str(k): v for k, v in hold.error_statuses.items()},
            "refreshes": hold.refreshes,
            "open_s": round(hold.open_s, 3),
            "held_s": round(hold.held_s, 3),
            "before": self.before.to_json(),
            "held": self.held.to_json(),
            "memory_per_connection_kib": {r: self.per_connection_kib(r) for r in READINGS},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IdleRound:
        hold = HoldResult(
            kind=data["kind"],
            connections_requested=data["connections_requested"],
            connections_opened=data["connections_opened"],
            connections_failed=data["connections_failed"],
            connections_open_at_end=data["connections_open_at_end"],
            errors=dict(data["errors"]),
            error_statuses={int(k): v for k, v in data["error_statuses"].items()},
            refreshes=data["refreshes"],
            open_s=data["open_s"],
            held_s=data["held_s"],
        )
        before, held = MemoryReading.from_json(data["before"]), MemoryReading.from_json(data["held"])
        return cls(data["target"], data["round"], data["workers"], hold, before, held)


@dataclass(frozen=True)
class IdleFailure:
    target: str
    round: int
    reason: str


@dataclass(frozen=True)
class StackSummary:
    """One stack over its measured rounds: KiB per connection (None where no round held any or no
    control group), connections still open at the end, and failed and dropped ones in all."""

    rounds: int
    kib: dict[Reading, Spread | None]
    connections_open_at_end: Spread
    connections_failed: int
    connections_dropped: int


def _spread(values: Sequence[float | None]) -> Spread | None:
    present = [v for v in values if v is not None]
    return Spread.of(present) if present else None


def summarise(rounds: Sequence[IdleRound]) -> dict[str, StackSummary]:
    """The rounds grouped by stack, in name order."""
    summaries = {}
    for name in sorted({r.target for r in rounds}):
        mine = [r for r in rounds if r.target == name]
        summaries[name] = StackSummary(
            rounds=len(mine),
            kib={reading: _spread([r.per_connection_kib(reading) for r in mine]) for reading in READINGS},
            connections_open_at_end=Spread.of([r.hold.connections_open_at_end for r in mine]),
            connections_failed=sum(r.hold.connections_failed for r in mine),
            connections_dropped=sum(r.hold.connections_dropped for r in mine),
        )
    return summaries


@dataclass(frozen=True)
class IdleBench:
    """A whole ``bench-idle`` run. ``unsupported`` maps a stack left out to why (WebSockets not declared);
    ``status`` is ``complete`` or ``interrupted``; load averages are the machine's 1-minute ones."""

    kind: HoldKind
    connections: int
    rounds: int
    seed: int
    started_at: str
    finished_at: str
    status: str
    placement: Placement
    cgroup_unavailable: str | None
    load_average_start: float
    load_average_end: float
    stacks: dict[str, dict[str, Any]]
    unsupported: dict[str, str]
    measurements: tuple[IdleRound, ...]
    failures: tuple[IdleFailure, ...]

    def to_json(self) -> dict[str, Any]:
        def spread(value: Spread | None) -> dict[str, float] | None:
            return None if value is None else {"median": value.median, "min": value.min, "max": value.max}

        return {
            "schema": SCHEMA_VERSION,
            "benchmark": "idle-connections",
            "kind": self.kind,
            "connections": self.connections,
            "rounds": self.rounds,
            "seed": self.seed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "placement": self.placement.model_dump(mode="json"),
            "cgroup_unavailable": self.cgroup_unavailable,
            "load_average_start": self.load_average_start,
            "load_average_end": self.load_average_end,
            "method": {
                "warmup_connections": WARMUP_CONNECTIONS,
                "settle_s": SETTLE_S,
                "samples": SAMPLES,
                "sample_interval_s": SAMPLE_INTERVAL_S,
                "hold_s": HOLD_S,
                "http_refresh_s": HTTP_REFRESH_S,
            },
            "stacks": self.stacks,
            "unsupported": self.unsupported,
            "summary": {
                name: {
                    "rounds": s.rounds,
                    "memory_per_connection_kib": {r: spread(s.kib[r]) for r in READINGS},
                    "connections_open_at_end": spread(s.connections_open_at_end),
                    "connections_failed": s.connections_failed,
                    "connections_dropped": s.connections_dropped,
                }
                for name, s in summarise(self.measurements).items()
            },
            "measurements": [m.to_json() for m in self.measurements],
            "failures": [{"target": f.target, "round": f.round, "reason": f.reason} for f in self.failures],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IdleBench:
        """Read a file's contents back; ``summary`` is recomputed. ValueError for another schema."""
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"bench-idle results schema {data.get('schema')!r}; this version reads 1")
        return cls(
            kind=data["kind"],
            connections=data["connections"],
            rounds=data["rounds"],
            seed=data["seed"],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            status=data["status"],
            placement=Placement.model_validate(data["placement"]),
            cgroup_unavailable=data["cgroup_unavailable"],
            load_average_start=data["load_average_start"],
            load_average_end=data["load_average_end"],
            stacks=data["stacks"],
            unsupported=data["unsupported"],
            measurements=tuple(IdleRound.from_json(m) for m in data["measurements"]),
            failures=tuple(IdleFailure(**f) for f in data["failures"]),
        )


# --- measuring -----------------------------------------------------------------------------------


def anonymous_pss_bytes(smaps_rollup: str) -> int | None:
    """``Pss_Anon`` of a ``/proc/<pid>/smaps_rollup`` text, in bytes; None when the kernel gives none.

    ``anonymous_pss_bytes("Pss:  254 kB\\nPss_Anon:  112 kB\\n")`` -> 114688.
    """
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss_Anon:"):
            return int(line.split()[1]) * KIB
    return None


def sample_memory(root_pid: int, group: Cgroup | None) -> MemoryReading:
    """The tree's memory now (psutil, ``smaps_rollup``, the group's charge); BenchError if unreadable."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        raise BenchError("the server exited while its memory was read") from None
    pss = uss = rss = 0
    anon: int | None = 0
    pids = []
    for proc in procs:
        try:
            full = proc.memory_full_info()
            rollup = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
        except (psutil.NoSuchProcess, ProcessLookupError, FileNotFoundError):
            continue  # a process that just exited: the changed pids fail the round
        except (psutil.AccessDenied, PermissionError) as exc:
            raise BenchError(f"cannot read the memory of process {proc.pid}: {exc}") from None
        pss, uss, rss = pss + full.pss, uss + full.uss, rss + full.rss
        proc_anon = anonymous_pss_bytes(rollup)
        anon = None if anon is None or proc_anon is None else anon + proc_anon
        pids.append(proc.pid)
    charged = None if group is None else group.memory_bytes()
    return MemoryReading(pss, anon, uss, rss, charged, tuple(sorted(pids)))


def peak_of(readings: Sequence[MemoryReading]) -> MemoryReading:
    """The highest value of each field (None if any reading lacks it), the last reading's pids."""

    def most(values: Iterable[int | None]) -> int | None:
        present = list(values)
        return None if None in present else max(v for v in present if v is not None)

    return MemoryReading(
        pss_bytes=max(r.pss_bytes for r in readings),
        pss_anon_bytes=most(r.pss_anon_bytes for r in readings),
        uss_bytes=max(r.uss_bytes for r in readings),
        rss_bytes=max(r.rss_bytes for r in readings),
        cgroup_bytes=most(r.cgroup_bytes for r in readings),
        pids=readings[-1].pids,
    )


def read_memory(root_pid: int, group: Cgroup | None) -> MemoryReading:
    """The peak of SAMPLES samples SAMPLE_INTERVAL_S apart."""
    readings = []
    for index in range(SAMPLES):
        if index:
            time.sleep(SAMPLE_INTERVAL_S)
        readings.append(sample_memory(root_pid, group))
    return peak_of(readings)


def wait_quiet(root_pid: int, *, timeout_s: float = QUIET_TIMEOUT_S) -> float:
    """Wait until the tree uses <= QUIET_CPU_PERCENT of a core over QUIET_WINDOW_S; return that share.

    Raises BenchError when it is still busier than that after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    last = sample_tree(root_pid, with_memory=False).cpu_s_by_pid
    while True:
        time.sleep(QUIET_WINDOW_S)
        now = sample_tree(root_pid, with_memory=False).cpu_s_by_pid
        percent = 100 * sum(now[pid] - last.get(pid, 0.0) for pid in now) / QUIET_WINDOW_S
        if percent <= QUIET_CPU_PERCENT:
            return percent
        if time.monotonic() > deadline:
            raise BenchError(f"not idle: {percent:.0f}% of a core after {timeout_s:.0f} s with no load")
        last = now


ChildMessage = (
    tuple[Literal["warmed"], HoldResult]
    | tuple[Literal["held"], float]
    | tuple[Literal["result"], HoldResult]
    | tuple[Literal["error"], str]
)
"""What the driver process sends: the warm-up's counts, the monotonic time (s) when every
connection had been tried, the hold's counts, or why it failed."""


def _driver(warmup: HoldLoad, load: HoldLoad, cpus: frozenset[int], conn: Connection) -> None:
    """The driver process: warm up, wait for ``go``, hold ``load``; reports over ``conn``."""

    def send(message: ChildMessage) -> None:
        conn.send(message)

    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        send(("warmed", hold_connections(warmup)))
        if conn.recv() == "go":
            send(("result", hold_connections(load, lambda: send(("held", time.monotonic())))))
    except (EOFError, BrokenPipeError):
        pass  # the parent gave up on this driver
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            send(("error", "interrupted"))
    except Exception as exc:  # handed back to the parent, which reports it
        with contextlib.suppress(OSError):
            send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


@contextlib.contextmanager
def driver_process(warmup: HoldLoad, load: HoldLoad, cpus: Sequence[int]) -> Iterator[Connection]:
    """A spawned :func:`_driver` and the parent's end of its pipe; joined on leaving (stopped at once
    when leaving on an exception, as the connections need not close cleanly then)."""
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe()
    process: BaseProcess = context.Process(
        target=_driver, args=(warmup, load, frozenset(cpus), child_conn), name="gwbench-idle", daemon=True
    )
    process.start()
    child_conn.close()
    finished = False
    try:
        yield parent_conn
        finished = True
    finally:
        process.join(timeout=CLOSE_WAIT_S + 3 if finished else 0)
        if process.is_alive():
            process.terminate()
            process.join(timeout=2)
        if process.is_alive():
            process.kill()
            process.join()
        parent_conn.close()


def expect(conn: Connection, kind: str, timeout_s: float) -> Any:
    """The payload of the driver's next message, which must be ``kind``; BenchError otherwise."""
    if not conn.poll(timeout_s):
        raise BenchError(f"the driver sent nothing for {timeout_s:.0f} s (waiting for {kind!r})")
    try:
        got, payload = conn.recv()
    except EOFError:
        raise BenchError("the driver exited without a result") from None
    if got == "error":
        raise BenchError(f"driver: {payload}")
    if got != kind:
        raise BenchError(f"the driver sent {got!r} when {kind!r} was due")
    return payload


def _counts(result: HoldResult) -> str:
    errors = ", ".join(f"{kind} {n}" for kind, n in result.errors.items() if n) or "no errors"
    return f"{result.connections_opened} of {result.connections_requested} opened ({errors})"


def measure(
    launcher: LocalLauncher,
    config: TargetConfig,
    directory: Path,
    *,
    kind: HoldKind,
    connections: int,
    round_number: int,
    placement: Placement,
    log_path: Path,
) -> IdleRound:
    """One round on a fresh launch of ``config``; BenchError or LaunchError when it cannot be measured."""
    running = launcher.start(
        config,
        directory,
        workers=config.default_workers,
        log_path=log_path,
        cpus=placement.target_cpus,
        limits=Limits(cpus=config.cpus, memory_mb=config.memory_mb),
    )
    try:
        return _hold_and_read(launcher, running, kind, connections, round_number, placement)
    except BenchError as exc:
        if not launcher.is_alive(running):
            raise BenchError(
                f"{exc}; the server exited, last lines of {log_path}:\n{tail(log_path)}"
            ) from exc
        raise
    finally:
        launcher.stop(running)


def _hold_and_read(
    launcher: LocalLauncher,
    running: RunningTarget,
    kind: HoldKind,
    connections: int,
    round_number: int,
    placement: Placement,
) -> IdleRound:
    group = launcher.cgroup(running)
    load = HoldLoad(
        running.host, running.port, connections, HOLD_S, kind,
        refresh_s=HTTP_REFRESH_S if kind == "http" else None,
        timeout_s=CONNECT_TIMEOUT_S, open_timeout_s=OPEN_TIMEOUT_S,
    )  # fmt: skip
    warmup = replace(load, connections=min(WARMUP_CONNECTIONS, connections), hold_s=0.1)
    with driver_process(warmup, load, placement.generator_cpus) as conn:
        warmed: HoldResult = expect(conn, "warmed", SPAWN_TIMEOUT_S + OPEN_TIMEOUT_S)
        if warmed.unsupported:
            raise BenchError("declares WebSocket support, but answered the upgrade with 501")
        if warmed.connections_opened == 0:
            raise BenchError(f"warm-up: {_counts(warmed)}")
        if wait_until_idle(running, timeout_s=QUIET_TIMEOUT_S) is None:
            raise BenchError(f"GET /health not answered quickly within {QUIET_TIMEOUT_S:.0f} s")
        wait_quiet(running.pid)
        before = read_memory(running.pid, group)
        conn.send("go")
        held_at: float = expect(conn, "held", OPEN_TIMEOUT_S + CONNECT_TIMEOUT_S + 15)
        time.sleep(max(held_at + SETTLE_S - time.monotonic(), 0.0))
        held = read_memory(running.pid, group)
        read_until = time.monotonic()
        result: HoldResult = expect(conn, "result", HOLD_S + CLOSE_WAIT_S + 15)
    if result.connections_open_at_end and read_until > held_at + result.held_s:
        raise BenchError(
            f"the memory was read until {read_until - held_at:.1f} s into a hold of {result.held_s:.1f} s: "
            "the machine is too busy for these figures"
        )
    if set(held.pids) != set(before.pids):
        raise BenchError(f"the server's processes changed during the round: {before.pids} -> {held.pids}")
    return IdleRound(running.name, round_number, running.workers, result, before, held)


@dataclass(frozen=True)
class BenchSpec:
    """What to run: ``stacks`` by name (those without WebSockets under kind ``ws`` are listed, not run)."""

    stacks: dict[str, TargetConfig]
    targets_root: Path
    kind: HoldKind
    connections: int
    rounds: int
    seed: int


def unsupported_reason(config: TargetConfig, kind: HoldKind) -> str | None:
    """Why ``config`` is not measured under ``kind``, or None."""
    if kind != "ws" or config.websocket:
        return None
    declared = "websocket = false" if config.websocket is False else "no websocket setting"
    return f"not supported: {config.interface.upper()} stack ({declared} in target.toml)"


def cpu_placement() -> Placement:
    """The runner's: the stack on the first CPU this process may use, the driver on the others."""
    return split_cpus(sorted(os.sched_getaffinity(0)))


def run_bench(
    spec: BenchSpec,
    *,
    on_start: Callable[[str], None] = lambda _: None,
    on_done: Callable[[IdleRound | IdleFailure], None] = lambda _: None,
) -> IdleBench:
    """Measure every supported stack ``spec.rounds`` times, in a shuffled order each round.

    A stack that fails a round is recorded in ``failures`` and the run goes on. On Ctrl-C every
    process is stopped and the rounds so far are returned with status ``interrupted``. Raises
    FileLimitError when the stacks may not open enough files for the connections.
    """
    started_at, load_start = utc_now(), os.getloadavg()[0]
    unsupported = {n: r for n, c in spec.stacks.items() if (r := unsupported_reason(c, spec.kind))}
    measured = sorted(name for name in spec.stacks if name not in unsupported)
    placement = cpu_placement()
    shuffle = random.Random(spec.seed).shuffle
    rounds: list[IdleRound] = []
    failures: list[IdleFailure] = []
    status = "complete"
    launcher = LocalLauncher(target_cpus=placement.target_cpus)
    own_cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(placement.generator_cpus))
    try:
        with (
            open_file_limit(spec.connections + DESCRIPTOR_MARGIN),
            tempfile.TemporaryDirectory(prefix="gwbench-idle-") as logs,
            launcher,
        ):
            for number in range(1, spec.rounds + 1):
                order = list(measured)
                shuffle(order)
                for name in order:
                    on_start(f"round {number}/{spec.rounds}: {name}")
                    outcome: IdleRound | IdleFailure
                    try:
                        outcome = measure(
                            launcher, spec.stacks[name], spec.targets_root / name, kind=spec.kind,
                            connections=spec.connections, round_number=number, placement=placement,
                            log_path=Path(logs, f"{name}-{number}.log"),
                        )  # fmt: skip
                        rounds.append(outcome)
                    except (BenchError, LaunchError, OSError) as exc:
                        outcome = IdleFailure(name, number, str(exc))
                        failures.append(outcome)
                    on_done(outcome)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        os.sched_setaffinity(0, own_cpus)
    return IdleBench(
        kind=spec.kind,
        connections=spec.connections,
        rounds=spec.rounds,
        seed=spec.seed,
        started_at=started_at,
        finished_at=utc_now(),
        status=status,
        placement=placement,
        cgroup_unavailable=launcher.cgroup_unavailable,
        load_average_start=load_start,
        load_average_end=os.getloadavg()[0],
        stacks={
            name: {
                "interface": c.interface,
                "server": c.server,
                "workers": c.default_workers,
                "websocket": c.websocket,
            }
            for name, c in spec.stacks.items()
        },
        unsupported=unsupported,
        measurements=tuple(rounds),
        failures=tuple(failures),
    )


# --- formatting and the command line -------------------------------------------------------------


LABELS: dict[Reading, str] = {"pss": "PSS", "pss_anon": "PSS anon", "uss": "USS", "cgroup": "cgroup"}


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _spread_cell(spread: Spread | None) -> str:
    """``"20.9 (20.1-21.7)"``: the median with min-max, or the one value when they agree."""
    if spread is None:
        return "-"
    if spread.min == spread.max:
        return _kib(spread.median)
    return f"{spread.median:.1f} ({spread.min:.1f}-{spread.max:.1f})"


def format_outcome(outcome: IdleRound | IdleFailure) -> str:
    """One line per round as it finishes."""
    label = f"round {outcome.round}: {outcome.target:<29}"
    if isinstance(outcome, IdleFailure):
        return f"{label} [red]failed:[/] {outcome.reason}"
    hold = outcome.hold
    counts = (
        f"{hold.connections_open_at_end}/{hold.connections_requested} held, "
        f"{hold.connections_failed} failed, {hold.connections_dropped} dropped"
    )
    if not hold.connections_open_at_end:
        return f"{label} {counts} [yellow](the server kept none open: {_counts(hold)})[/]"
    figures = ", ".join(f"{LABELS[r]} {_kib(outcome.per_connection_kib(r))}" for r in READINGS)
    return f"{label} {counts}; KiB per connection: {figures}"


def format_table(bench: IdleBench) -> Table:
    """A row per stack: medians over its rounds with min-max; unsupported and failed stacks say so."""
    title = (
        f"Memory per idle {'WebSocket' if bench.kind == 'ws' else 'HTTP keep-alive'} connection "
        f"({bench.connections} opened per round): KiB, median (min-max) over the rounds"
    )
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("stack", no_wrap=True)
    for name in ("workers", "rounds", "held", "failed", "dropped", *LABELS.values()):
        table.add_column(name, justify="right")
    summaries = summarise(bench.measurements)
    for name in sorted(bench.stacks):
        workers = str(bench.stacks[name]["workers"])
        summary = summaries.get(name)
        if name in bench.unsupported:
            table.add_row(name, workers, "", "[dim]not supported[/]")
        elif summary is None:
            failed = any(f.target == name for f in bench.failures)
            table.add_row(name, workers, f"0/{bench.rounds}", "[red]failed[/]" if failed else "not measured")
        else:
            table.add_row(
                name, workers, f"{summary.rounds}/{bench.rounds}",
                f"{summary.connections_open_at_end.median:.0f}",
                str(summary.connections_failed), str(summary.connections_dropped),
                *(_spread_cell(summary.kib[r]) for r in READINGS),
            )  # fmt: skip
    return table


def format_notes(bench: IdleBench) -> list[str]:
    lines = [f"{name}: {reason}" for name, reason in sorted(bench.unsupported.items())]
    for name, summary in summarise(bench.measurements).items():
        if not summary.connections_open_at_end.max:
            why = "it closes each after answering" if bench.kind == "http" else "see each round's errors"
            lines.append(f"{name}: kept no idle connection open ({why})")
    lines += [f"[red]{f.target}, round {f.round}, failed:[/] {f.reason}" for f in bench.failures]
    if bench.cgroup_unavailable:
        lines.append(f"[yellow]{bench.cgroup_unavailable}[/]")
    lines.append(
        "held: connections still open at the end (median); failed, dropped: summed over the rounds; "
        f"load average (1 min) {bench.load_average_start:.1f} at the start, {bench.load_average_end:.1f} "
        "at the end"
    )
    if bench.status == "interrupted":
        lines.append("[yellow]interrupted: the figures cover the rounds finished[/]")
    return lines


def write_results(bench: IdleBench, folder: Path) -> Path:
    """``folder/bench-idle-<UTC timestamp>.json``, named after the run's start."""
    stamp = bench.started_at.replace("-", "").replace(":", "")
    path = folder / f"bench-idle-{stamp}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bench.to_json(), indent=2) + "\n")
    return path


def _choose(stacks: dict[str, TargetConfig], names: str | None) -> dict[str, TargetConfig]:
    if not names:
        return stacks
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    for name in chosen:
        if name not in stacks:
            raise BenchError(f"unknown stack {name!r}{suggest(name, stacks)}; known: {', '.join(stacks)}")
    return {name: stacks[name] for name in chosen}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.benchidle", description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000, help="held per stack (default 1000)")
    parser.add_argument("--kind", choices=("ws", "http"), default="ws", help="default ws")
    parser.add_argument("--rounds", type=int, default=3, help="fresh launches per stack (default 3)")
    parser.add_argument("--targets", help="comma-separated stacks (default: every stack)")
    parser.add_argument("--seed", type=int, help="for the order of the stacks (default: random)")
    parser.add_argument("--targets-dir", type=Path, default=REPO / "targets", help="folder of targets")
    parser.add_argument("--results", type=Path, default=REPO / "results", help="folder for the JSON file")
    args = parser.parse_args(argv)
    # Also when started from a shell that ignores SIGINT (a background job): Ctrl-C
    # or kill -INT must stop the stacks and the driver, as in gwbench.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    console = Console()
    if not console.is_terminal:  # a log or CI: rich would wrap the table at 80 columns
        console = Console(width=180)
    if not 1 <= args.connections <= 20_000 or not 1 <= args.rounds <= 20:
        console.print("[red]bench-idle: connections 1-20000, rounds 1-20[/]")
        return 2
    try:
        every = {n: c for n, c in discover_targets(args.targets_dir).items() if c.role == "target"}
        stacks = _choose(every, args.targets)
    except (ConfigError, BenchError) as exc:
        console.print(f"[red]bench-idle:[/] {exc}")
        return 2
    if not stacks:
        console.print(f"[red]bench-idle:[/] no stack (target.toml) in {args.targets_dir}")
        return 2
    seed = random.SystemRandom().randrange(2**31) if args.seed is None else args.seed
    spec = BenchSpec(stacks, args.targets_dir, args.kind, args.connections, args.rounds, seed)
    runs = args.rounds * sum(unsupported_reason(c, args.kind) is None for c in stacks.values())
    placement = cpu_placement()
    console.print(
        f"stacks on CPU {','.join(map(str, placement.target_cpus))}, driver on CPU "
        f"{','.join(map(str, placement.generator_cpus))}; seed {seed}"
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} rounds"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as bar:  # fmt: skip
        task = bar.add_task("starting", total=runs)

        def on_done(outcome: IdleRound | IdleFailure) -> None:
            bar.console.print(format_outcome(outcome))
            bar.advance(task)

        try:
            bench = run_bench(
                spec, on_start=lambda label: bar.update(task, description=label), on_done=on_done
            )
        except FileLimitError as exc:
            console.print(f"[red]bench-idle:[/] {exc}")
            return 2
    console.print(format_table(bench))
    for line in format_notes(bench):
        console.print(line)
    try:
        path = write_results(bench, args.results)
    except OSError as exc:
        console.print(f"[red]bench-idle: cannot write the results:[/] {exc}")
        return 1
    console.print(f"results: {path}")
    if bench.status == "interrupted":
        console.print("[red]bench-idle interrupted:[/] every stack and driver was stopped")
        return 130
    if bench.failures:
        console.print(f"[red]bench-idle: {len(bench.failures)} of {runs} rounds failed[/] (reasons above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
