"""When a cell's figures may be the load generator's or the upstream's limit, not the target's (issue 4).

The thresholds, and the one place a cell's :class:`~harness.model.BoundReason` records are
built (:func:`bound_reasons`); they are stored with the cell and put into words only by the
report.
"""

from __future__ import annotations

from harness.load import LoadResult
from harness.model import BoundReason

GENERATOR_BOUND_CPU_PERCENT = 80.0  # of one core, for any one generator process (one CPU each)
GENERATOR_LATE_MS = 5.0  # the generator's lateness p99 may not exceed this (ms) ...
GENERATOR_LATE_SLO_SHARE = 0.05  # ... nor this share of the SLO's p99, whichever is larger
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


def lateness_limit_ms(slo_p99_ms: float | None) -> float:
    """The most the generator's lateness p99 may be (ms): max(5 ms, 5% of the SLO's p99).

    Why: the open model's latency is measured from each request's intended send time, so
    whatever the driver adds by sending late is charged to the server. Lateness within 5%
    of the latency the cell is judged against cannot move its verdict by more than that
    share; the 5 ms floor stays clear of the loop's ordinary wake-up jitter (a timer woken
    a fraction of a millisecond late, a short garbage collection) on a busy machine, while
    a loop that froze or could not keep up lags by tens or hundreds of ms. Without an SLO
    the floor alone applies.
    """
    if slo_p99_ms is None:
        return GENERATOR_LATE_MS
    return max(GENERATOR_LATE_MS, GENERATOR_LATE_SLO_SHARE * slo_p99_ms)


def bound_reasons(
    load: LoadResult,
    max_connections: int | None,
    upstream_cpu_percent: float | None,
    slo_p99_ms: float | None = None,
    p99_ms: float | None = None,
) -> tuple[BoundReason, ...]:
    """Why the load generator or the upstream, not the target, may have limited a cell; () when neither did.

    Four rules (issues 4 and 13): any one driver process used more than 80% of its core
    (``cpu``; the busiest process's percent is measured; results that know only a total,
    from wrk's threads or Locust's workers, are judged on the total against 80% per
    process); in the open model, the driver's own lateness p99 (how late its loop got to
    requests against their intended send times, see ``harness.load.open``) exceeded
    :func:`lateness_limit_ms` of ``slo_p99_ms`` (``late``; the connection cap does not
    waive it: lateness never includes a wait for a connection); it sent less than 95% of
    the requests/s scheduled (:func:`scheduled_rate`) while it could still have opened
    connections, so the shortfall is the generator's, not the target's holding every
    allowed connection (``behind``); the upstream used more than 80% of its one core
    (:func:`upstream_bound`). ``upstream_cpu_percent`` is in percent of one core (None:
    not monitored); ``slo_p99_ms`` the p99 latency SLO the cell is judged against (None: none).

    A step of a capacity search (``slo_p99_ms`` and the cell's latency ``p99_ms`` both given)
    is judged on its decision: lateness only adds to a request's latency, so a step that held
    the p99 would have held without it, and a breach stands when even the worst lateness
    cannot account for it (p99 minus the lateness maximum still above the SLO: every request's
    latency is at most its server part plus that maximum). ``late`` trips for such a step only
    when it broke the p99 and the generator's lateness could account for the breach.
    """
    reasons = []
    processes = max(load.processes, 1)
    if load.generator_cpu_percent_per_process:
        busiest = max(load.generator_cpu_percent_per_process)
        limit = GENERATOR_BOUND_CPU_PERCENT
    else:
        busiest = load.generator_cpu_percent
        limit = GENERATOR_BOUND_CPU_PERCENT * processes
    if busiest > limit:
        reasons.append(
            BoundReason(
                by="generator", rule="cpu", measured=round(busiest, 2), limit=limit, processes=processes
            )
        )
    lateness = load.generator_lateness_ms
    late_limit = lateness_limit_ms(slo_p99_ms)
    decided = slo_p99_ms is not None and p99_ms is not None
    if lateness is not None and lateness.p99 > late_limit:
        if not decided:
            reasons.append(
                BoundReason(by="generator", rule="late", measured=round(lateness.p99, 3), limit=late_limit)
            )
        elif p99_ms is not None and slo_p99_ms is not None and p99_ms - lateness.max <= slo_p99_ms < p99_ms:
            reasons.append(
                BoundReason(
                    by="generator",
                    rule="late",
                    measured=round(lateness.p99, 3),
                    limit=late_limit,
                    detail=f"its latest request ({lateness.max:.1f} ms) could account for the breach "
                    f"(p99 {p99_ms:.1f} ms, SLO {slo_p99_ms:g} ms)",
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
