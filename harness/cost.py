"""Cost (issue 12, item 4): the cores and memory a stack needs to carry a target load.

The assumption, stated wherever a cost is shown: capacity grows linearly with cores. One
instance is one stack at its limits (``cpus`` cores, ``memory_limit_mib``), serving its
measured capacity ``C`` within the SLO; ``N`` instances serve ``N x C x e``, where ``e`` is
the scaling efficiency (1.0 until measured: a capacity measured at 2 CPUs over twice the
capacity at 1 CPU). So the load ``L`` needs ``N = ceil(L / (C x e))`` instances,
``N x cpus`` cores and ``N x memory_limit_mib / 1024`` GiB of limit, or ``N x measured
peak / 1024`` GiB of memory measured at the capacity rate. Blocking stacks are assumed to be
tuned alike at every size. What the measurement says is one instance's capacity; the rest
is extrapolation. Pure functions; rates in requests/s, memory in MiB and GiB (2**30 bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_TARGET_REQUESTS_PER_SECOND = 10_000.0
ASSUMPTION = (
    "capacity grows linearly with cores: N instances at the measured limits serve N x capacity "
    "x scaling efficiency (efficiency {efficiency:g}{measured}); one instance's capacity is "
    "measured, the rest is extrapolated"
)


def assumption(scaling_efficiency: float, *, measured: bool = False) -> str:
    """The cost's assumption in words, for a report or a terminal."""
    note = ", measured" if measured else ", assumed until measured"
    return ASSUMPTION.format(efficiency=scaling_efficiency, measured=note)


@dataclass(frozen=True)
class Cost:
    """What one stack needs for ``target_requests_per_second``.

    ``instances`` is None when the capacity is 0 or unknown (no number of instances
    serves the load); ``cores``, ``limit_gib`` and ``measured_gib`` are NaN when
    ``instances`` or the per-instance figure is unknown.
    """

    target_requests_per_second: float
    capacity_requests_per_second: float
    scaling_efficiency: float
    instances: int | None
    cores: float
    limit_gib: float
    measured_gib: float


def instances_needed(
    target_requests_per_second: float, capacity_requests_per_second: float, scaling_efficiency: float = 1.0
) -> int | None:
    """``ceil(load / (capacity x efficiency))``; None when capacity or efficiency is not positive.

    >>> instances_needed(10_000, 2_300), instances_needed(10_000, 2_500, 0.8), instances_needed(100, 0)
    (5, 5, None)
    """
    per_instance = capacity_requests_per_second * scaling_efficiency
    if not per_instance > 0 or math.isinf(per_instance):
        return None
    # A float quotient that lands a hair above an integer (10000 / 2500.0000001) is that integer.
    return max(1, math.ceil(round(target_requests_per_second / per_instance, 9)))


def stack_cost(
    target_requests_per_second: float,
    capacity_requests_per_second: float,
    *,
    cpus: float | None,
    memory_limit_mib: float | None,
    measured_memory_mib: float | None = None,
    scaling_efficiency: float = 1.0,
) -> Cost:
    """The :class:`Cost` of carrying ``target_requests_per_second`` on instances of one stack.

    ``cpus`` (cores) and ``memory_limit_mib`` are one instance's limits (None: none set, so
    unknown), ``measured_memory_mib`` its peak memory at its capacity rate. Raises ValueError
    for a target load or a scaling efficiency that is not positive.
    """
    if not target_requests_per_second > 0:
        raise ValueError(f"target load must be > 0 requests/s, got {target_requests_per_second}")
    if not 0 < scaling_efficiency <= 1:
        raise ValueError(f"scaling efficiency must be > 0 and <= 1, got {scaling_efficiency}")
    n = instances_needed(target_requests_per_second, capacity_requests_per_second, scaling_efficiency)

    def times(per_instance: float | None, unit: float = 1.0) -> float:
        if n is None or per_instance is None or math.isnan(per_instance):
            return math.nan
        return n * per_instance / unit

    return Cost(
        target_requests_per_second=target_requests_per_second,
        capacity_requests_per_second=capacity_requests_per_second,
        scaling_efficiency=scaling_efficiency,
        instances=n,
        cores=times(cpus),
        limit_gib=times(memory_limit_mib, 1024.0),
        measured_gib=times(measured_memory_mib, 1024.0),
    )
