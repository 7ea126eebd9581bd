"""A figure set by the load, not the stack (issue 12, item 6): when a cell's throughput says
nothing about the server because the test itself capped it.

Closed model: C connections that each wait ``ms`` by design can carry at most
``C / (ms / 1000)`` requests/s whatever the server does (Little's law, L = lambda W:
J. D. C. Little, Operations Research 9(3), 1961). A cell within 10% of that ceiling
(:data:`CEILING_SHARE`) measured the test's ceiling. Open model: a cell that served its
offered rate (achieved >= 95% of intended, :data:`ACHIEVED_SHARE`) within the SLO measured
the arrival rate the test chose; the stack was not the limit. Either way the cell carries no
verdict (:mod:`harness.verdict` leaves the stack out of the ranking with a ``set_by_load``
flag). Saturation cells are not judged here: a capacity search looks for the rate where the
stack stops keeping up, and :mod:`harness.saturation` flags the searches that never broke.
Pure functions; rates in requests/s, times in ms.
"""

from __future__ import annotations

import math

from harness.model import Slo

CEILING_SHARE = 0.9
"""A closed cell at or above this share of its test's ceiling is set by the load."""
ACHIEVED_SHARE = 0.95
"""An open cell that achieved this share of its offered rate (within the SLO) is set by the load."""


def closed_ceiling_requests_per_second(
    concurrency: int | None, service_time_ms: float | None
) -> float | None:
    """The most a closed test can measure: ``concurrency / service time``, requests/s.

    None without a concurrency or a declared wait (``/json`` has none).

    >>> closed_ceiling_requests_per_second(128, 50.0)
    2560.0
    """
    if not concurrency or service_time_ms is None or service_time_ms <= 0:
        return None
    return concurrency * 1000.0 / service_time_ms


def closed_set_by_load(requests_per_second: float, ceiling_requests_per_second: float | None) -> bool:
    """Whether a closed cell served within 10% of its test's ceiling (or above it).

    >>> closed_set_by_load(2362.0, 2560.0), closed_set_by_load(1899.0, 2560.0)
    (True, False)
    """
    if ceiling_requests_per_second is None or math.isnan(requests_per_second):
        return False
    return requests_per_second >= CEILING_SHARE * ceiling_requests_per_second


def open_set_by_load(
    *,
    intended_rate: float,
    achieved_rate: float,
    latency_ms_p99: float,
    failed: int,
    scheduled: int,
    slo: Slo,
) -> bool:
    """Whether an open cell served the rate it was offered: achieved >= 95% of intended and no
    breach of ``slo`` (``failed`` counts errors plus dropped requests out of ``scheduled``).

    False when the rate is unknown (NaN) or not positive.
    """
    if math.isnan(intended_rate) or intended_rate <= 0 or math.isnan(achieved_rate):
        return False
    if achieved_rate < ACHIEVED_SHARE * intended_rate:
        return False
    p99 = None if math.isnan(latency_ms_p99) else latency_ms_p99
    breach = slo.breach(
        p99_ms=p99,
        failed=failed,
        scheduled=scheduled,
        achieved_rate=achieved_rate,
        intended_rate=intended_rate,
    )
    return breach is None
