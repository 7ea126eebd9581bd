"""The saturation search's steps: grow the arrival rate until the SLO breaks, then bisect.

Which rates are tried lives here; running one step (an open-model cell at one
rate, stored with whether the SLO held) is the caller's. The highest rate that
held is what the analysis reports as the sustainable throughput
(:mod:`harness.saturation`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from harness.model import Saturation

Step: TypeAlias = Callable[[float], bool | None]
"""Runs one step at a rate (requests/s): True when the SLO held, False when it broke,
None when the search must end (the step failed or the target died)."""


def round_rate(rate: float) -> float:
    """A rate rounded to 3 significant digits, so cell ids and tables stay readable."""
    return float(f"{rate:.3g}")


def search(saturation: Saturation, step: Step) -> None:
    """Step from ``saturation.start_rate``, multiplying by ``growth``, until a step breaks the SLO.

    Stops when ``max_rate`` is passed with every step held (the sustainable
    throughput is at least that), or when a step returns None. After the first
    break, ``bisect_steps`` bisections between the last rate that held and the
    first that broke (fewer when the rounded middle repeats an end).
    """
    held, broke = 0.0, None
    rate = saturation.start_rate
    while rate <= saturation.max_rate:
        result = step(rate)
        if result is None:
            return
        if not result:
            broke = rate
            break
        held = rate
        rate = round_rate(rate * saturation.growth)
    if broke is None:
        return  # max_rate held: the sustainable throughput is at least that
    for _ in range(saturation.bisect_steps):
        middle = round_rate((held + broke) / 2)
        if middle in (held, broke):
            break
        result = step(middle)
        if result is None:
            return
        if result:
            held = middle
        else:
            broke = middle
