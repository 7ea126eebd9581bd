"""``bench-idle``'s run loop: every supported stack, round after round, each round on a fresh launch."""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from harness.launch import LaunchError, Limits, LocalLauncher, RunningTarget, wait_until_idle
from harness.launch.base import Launcher, tail
from harness.load.stream import HoldKind, HoldLoad, HoldResult, open_file_limit
from harness.load.stream.link import CLOSE_WAIT_S
from harness.model import Placement, TargetConfig
from harness.plan import split_cpus
from harness.results import utc_now
from harness.tools.benchidle.driver import driver_process, expect
from harness.tools.benchidle.memory import read_memory, wait_quiet
from harness.tools.benchidle.method import (
    CONNECT_TIMEOUT_S,
    DESCRIPTOR_MARGIN,
    HOLD_S,
    HTTP_REFRESH_S,
    OPEN_TIMEOUT_S,
    QUIET_TIMEOUT_S,
    SETTLE_S,
    SPAWN_TIMEOUT_S,
    WARMUP_CONNECTIONS,
    BenchError,
)
from harness.tools.benchidle.records import IdleBench, IdleFailure, IdleRound, hold_counts


def measure(
    launcher: Launcher,
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
        limits=Limits(cpus=config.cpus, memory_mib=config.memory_mib),
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
    launcher: Launcher,
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
            raise BenchError(f"warm-up: {hold_counts(warmed)}")
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
