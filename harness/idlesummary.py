"""Idle-connection endpoints of a run (kinds ``idle-http`` and ``idle-websocket``): a row per stack and
level, and the run's sentence on them.

An idle cell holds ``concurrency`` connections and reads the stack's memory before and
during the hold (:mod:`harness.idle`). Its figures are counts and memory, not rates:
``connections_held`` (the driver's count at the end of the hold),
``connections_held_by_server`` (the stack's own established connections while its
memory was read) and the memory per connection (KiB: PSS, USS and the control group's
charge). Across repeats each figure is the median, with the min and max of PSS per
connection. Pure: built from the stored measurements alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

import pandas as pd

from harness.idle.method import OPEN_TIMEOUT_S
from harness.model import Measurement, Scenario, TargetRun
from harness.model.scenario import IDLE_KINDS

IDLE_COLUMNS = (
    "endpoint",
    "kind",
    "target",
    "interface",
    "workers",
    "connections",
    "repeats",
    "unsupported",
    "failed",
    "failure_reason",
    "connections_held",
    "connections_held_by_server",
    "opening_cut",
    "out_of_memory",
    "memory_limit_mib",
    "pss_kib_per_connection",
    "pss_kib_per_connection_min",
    "pss_kib_per_connection_max",
    "uss_kib_per_connection",
    "cgroup_kib_per_connection",
    "server_pss_mib_before",
    "server_pss_mib_held",
)
"""The columns of :func:`idle_summary`; counts and memory are medians over the repeats measured
(NaN when none was), ``repeats`` how many were, ``unsupported`` and ``failed`` how many were not;
``opening_cut``: a repeat's opening ran into its time limit (OPEN_TIMEOUT_S; the stack held fewer
because it answered connections slower than that allowed, not because it accepted no more);
``out_of_memory``: the kernel killed the stack for going over its memory limit (``memory_limit_mib``,
MiB) in a repeat, whose ``connections_held`` is then the most it had open before that. Memory per
connection is NaN where the median held fewer than :data:`MIN_CONNECTIONS_FOR_MEMORY`, and for a
repeat killed out of memory."""

MIN_CONNECTIONS_FOR_MEMORY = 1000
"""Fewer connections than this grow a stack's memory by less than its own sampling noise (a few
hundred KiB): their memory per connection says nothing (263 Django connections read 514 KiB each,
514 read 234)."""

OPENING_STOPPED = f"opening stopped at {OPEN_TIMEOUT_S:g} s"
"""How a stack whose opening ran into its time limit is marked beside its connections held."""

def out_of_memory(limit_mib: object) -> str:
    """How a stack killed for going over its memory limit is marked beside the connections it held:
    ``killed out of memory at 1,024 MiB``."""
    if isinstance(limit_mib, int | float) and math.isfinite(limit_mib):
        return f"killed out of memory at {int(limit_mib):,} MiB"
    return "killed out of memory"


KIND_WORDS = {"idle-http": "idle HTTP keep-alive connections", "idle-websocket": "idle WebSockets"}


def idle_kinds(scenario: Scenario) -> dict[str, str]:
    """Each idle endpoint's kind (``idle-http`` or ``idle-websocket``), by endpoint label, in order."""
    return {spec.label: spec.kind for spec in scenario.requests() if spec.kind in IDLE_KINDS}


def _median(values: Sequence[float | int | None]) -> float:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else float("nan")


def idle_summary(
    measurements: Sequence[Measurement],
    kinds: Mapping[str, str],
    targets: Mapping[str, TargetRun],
) -> pd.DataFrame:
    """One row per idle endpoint, stack and level (columns :data:`IDLE_COLUMNS`), in ``kinds``'
    order, then by stack name."""
    groups: dict[tuple[str, str, int], list[Measurement]] = {}
    for m in measurements:
        if m.endpoint in kinds and m.concurrency is not None:
            groups.setdefault((m.endpoint, m.target, m.concurrency), []).append(m)
    order = {endpoint: index for index, endpoint in enumerate(kinds)}
    rows = []
    for (endpoint, target, connections), cells in sorted(
        groups.items(), key=lambda item: (order[item[0][0]], item[0][1], item[0][2])
    ):
        ok = [m for m in cells if m.status == "ok"]
        killed = [m for m in ok if m.server_oom_kills]
        held = _median([m.connections_open_peak if m.server_oom_kills else m.connections_held for m in ok])
        memory = [m.memory_per_connection_kib for m in ok if m.memory_per_connection_kib is not None]
        if not held >= MIN_CONNECTIONS_FOR_MEMORY:
            memory = []
        pss = [x.pss for x in memory]
        run = targets.get(target)
        failed = [m for m in cells if m.status == "failed"]
        rows.append(
            {
                "endpoint": endpoint,
                "kind": kinds[endpoint],
                "target": target,
                "interface": None if run is None else run.config.interface,
                "workers": None if run is None else run.workers,
                "connections": connections,
                "repeats": len(ok),
                "unsupported": sum(m.status == "unsupported" for m in cells),
                "failed": len(failed),
                "failure_reason": failed[0].failure_reason if failed else None,
                "connections_held": held,
                "connections_held_by_server": _median([m.connections_held_by_server for m in ok]),
                "opening_cut": any(
                    (m.connections_open_s or 0.0) >= 0.95 * OPEN_TIMEOUT_S
                    for m in ok
                    if (m.connections_held or 0) < connections
                ),
                "out_of_memory": bool(killed),
                "memory_limit_mib": None if run is None else run.memory_mib,
                "pss_kib_per_connection": _median(pss),
                "pss_kib_per_connection_min": min(pss) if pss else float("nan"),
                "pss_kib_per_connection_max": max(pss) if pss else float("nan"),
                "uss_kib_per_connection": _median([x.uss for x in memory]),
                "cgroup_kib_per_connection": _median([x.cgroup for x in memory]),
                "server_pss_mib_before": _median([m.server_pss_mib_before for m in ok]),
                "server_pss_mib_held": _median([m.server_pss_mib_peak for m in ok]),
            }
        )
    return pd.DataFrame(rows, columns=list(IDLE_COLUMNS))


def idle_headline(endpoint: str, kind: str, rows: pd.DataFrame) -> str:
    """The run's sentence on one idle endpoint at its highest level, e.g. ``/health (idle HTTP
    keep-alive connections) @ 10,000: 9 of 12 stacks held them all, at 3.2 (starlette-uvicorn) to
    41 KiB PSS each (django-daphne); held fewer: flask-gunicorn 3``."""
    what = f"{endpoint} ({KIND_WORDS.get(kind, kind)})"
    if rows.empty:
        return f"{what}: no measurement"
    level = int(rows["connections"].max())
    top = rows[rows["connections"] == level]
    measured = top[top["repeats"] > 0]
    head = f"{what} @ {level:,}"
    parts = []
    unsupported = int((top["unsupported"] > 0).sum())
    if measured.empty:
        return f"{head}: no stack measured" + (f"; {unsupported} not supported" if unsupported else "")
    whole = (measured["connections_held"] >= 0.99 * level) & ~measured["out_of_memory"].astype(bool)
    full = measured[whole]
    if not full.empty:
        priced = full.dropna(subset=["pss_kib_per_connection"]).sort_values("pss_kib_per_connection")
        sentence = f"{len(full)} of {len(top)} stacks held them all"
        if not priced.empty:
            low, high = priced.iloc[0], priced.iloc[-1]
            sentence += (
                f", at {low['pss_kib_per_connection']:,.1f} ({low['target']}) to "
                f"{high['pss_kib_per_connection']:,.1f} KiB PSS each ({high['target']})"
            )
        parts.append(sentence)
    short = measured[~whole].sort_values("connections_held")
    if not short.empty:
        parts.append(
            "held fewer: "
            + ", ".join(
                f"{r['target']} {int(r['connections_held']):,}"
                + (f" ({OPENING_STOPPED})" if r["opening_cut"] else "")
                + (f" ({out_of_memory(r['memory_limit_mib'])})" if r["out_of_memory"] else "")
                for r in short.to_dict("records")
            )
        )
    if unsupported:
        parts.append(f"{unsupported} not supported")
    return f"{head}: " + "; ".join(parts)
