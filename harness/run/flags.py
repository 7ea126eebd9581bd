"""When a cell's figures may be the load generator's or the upstream's limit, not the target's (issue 4).

The thresholds and the reasons stored with a cell (``generator_bound_reason``,
``upstream_bound``); the reason strings are part of the stored results.
"""

from __future__ import annotations

from harness.load import LoadResult

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


def generator_bound_reason(load: LoadResult, max_connections: int | None) -> str | None:
    """Why the load generator, not the target, may have limited a cell; None when it did not.

    Two rules (issue 4): the driver used more than 80% of its CPUs (one per
    driver process), or, in the open model, it sent less than 95% of the
    intended rate while it could still have opened connections (so the shortfall
    is the generator's, not the target's holding every allowed connection). The
    intended rate here is :func:`scheduled_rate`.
    """
    cpu_percent = load.generator_cpu_percent
    limit = GENERATOR_BOUND_CPU_PERCENT * max(load.processes, 1)
    reasons = []
    if cpu_percent > limit:
        reasons.append(f"the generator used {cpu_percent:.0f}% CPU (limit {limit:.0f}%)")
    intended = scheduled_rate(load)
    spare = max_connections is None or load.connections_peak < max_connections
    if intended and spare and load.achieved_rate < GENERATOR_BEHIND_RATIO * intended:
        reasons.append(
            f"it sent {load.achieved_rate:.1f} req/s, {100 * (1 - load.achieved_rate / intended):.0f}% "
            f"behind the {intended:.1f} req/s scheduled, with connections to spare"
        )
    return "; ".join(reasons) or None


def upstream_bound(upstream_cpu_percent: float | None) -> bool:
    """Whether the upstream (one process) used over 80% of a core in the window, so may have limited it."""
    return upstream_cpu_percent is not None and upstream_cpu_percent > UPSTREAM_BOUND_CPU_PERCENT
