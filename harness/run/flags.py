"""When a cell's figures may be the load generator's or the upstream's limit, not the target's (issue 4).

The thresholds, and the one place a cell's :class:`~harness.model.BoundReason` records are
built (:func:`bound_reasons`); they are stored with the cell and put into words only by the
report.
"""

from __future__ import annotations

from harness.load import LoadResult
from harness.model import BoundReason

GENERATOR_BOUND_CPU_PERCENT = 80.0  # per generator process (one CPU each)
GENERATOR_BEHIND_RATIO = 0.95  # open model: sent less than this share of the intended rate
UPSTREAM_BOUND_CPU_PERCENT = 80.0  # of one core: the upstream is one process


def scheduled_rate(load: LoadResult) -> float | None:
    """Requests/s the open model scheduled in the window (None in the closed model).

    This, not the nominal rate, is what the achieved rate is judged against:
    Poisson arrivals put about ``rate x duration`` requests in a window, give or
    take its square root (17% at 30 requests), which is not the generator's fault.
    """
    if load.intended_rate is None or not load.duration_s:
        return None
    return load.scheduled / load.duration_s


def bound_reasons(
    load: LoadResult, max_connections: int | None, upstream_cpu_percent: float | None
) -> tuple[BoundReason, ...]:
    """Why the load generator or the upstream, not the target, may have limited a cell; () when neither did.

    Three rules (issue 4): the driver used more than 80% of its CPUs (one per driver
    process: ``cpu``); in the open model, it sent less than 95% of the requests/s scheduled
    (:func:`scheduled_rate`) while it could still have opened connections, so the
    shortfall is the generator's, not the target's holding every allowed connection
    (``behind``); the upstream used more than 80% of its one core (:func:`upstream_bound`).
    ``upstream_cpu_percent`` is in percent of one core (None: not monitored).
    """
    reasons = []
    cpu_percent = load.generator_cpu_percent
    processes = max(load.processes, 1)
    limit = GENERATOR_BOUND_CPU_PERCENT * processes
    if cpu_percent > limit:
        reasons.append(
            BoundReason(
                by="generator", rule="cpu", measured=round(cpu_percent, 2), limit=limit, processes=processes
            )
        )
    intended = scheduled_rate(load)
    spare = max_connections is None or load.connections_peak < max_connections
    if intended and spare and load.achieved_rate < GENERATOR_BEHIND_RATIO * intended:
        reasons.append(
            BoundReason(
                by="generator",
                rule="behind",
                measured=round(load.achieved_rate, 3),
                limit=round(GENERATOR_BEHIND_RATIO * intended, 3),
                scheduled=round(intended, 3),
            )
        )
    if upstream_bound(upstream_cpu_percent):
        assert upstream_cpu_percent is not None
        reasons.append(
            BoundReason(
                by="upstream", rule="cpu", measured=upstream_cpu_percent, limit=UPSTREAM_BOUND_CPU_PERCENT
            )
        )
    return tuple(reasons)


def upstream_bound(upstream_cpu_percent: float | None) -> bool:
    """Whether the upstream (one process) used over 80% of a core in the window, so may have limited it."""
    return upstream_cpu_percent is not None and upstream_cpu_percent > UPSTREAM_BOUND_CPU_PERCENT
