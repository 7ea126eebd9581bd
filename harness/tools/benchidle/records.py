"""``bench-idle``'s records: memory readings, rounds, failures, a whole run, its summary and its JSON file.

Results format changelog (``schema`` in ``results/bench-idle-<UTC>.json``):

- 1: first format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.load.stream import HoldKind, HoldResult
from harness.model import Placement
from harness.stats import Spread
from harness.tools.benchidle.method import (
    HOLD_S,
    HTTP_REFRESH_S,
    SAMPLE_INTERVAL_S,
    SAMPLES,
    SETTLE_S,
    WARMUP_CONNECTIONS,
)

SCHEMA_VERSION = 1
KIB = 1024


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


def hold_counts(result: HoldResult) -> str:
    """How many connections opened, and why the others failed: ``"990 of 1000 opened (connect 10)"``."""
    errors = ", ".join(f"{kind} {n}" for kind, n in result.errors.items() if n) or "no errors"
    return f"{result.connections_opened} of {result.connections_requested} opened ({errors})"


def write_results(bench: IdleBench, folder: Path) -> Path:
    """``folder/bench-idle-<UTC timestamp>.json``, named after the run's start."""
    stamp = bench.started_at.replace("-", "").replace(":", "")
    path = folder / f"bench-idle-{stamp}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bench.to_json(), indent=2) + "\n")
    return path
