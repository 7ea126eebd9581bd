"""The saturation search's steps: which arrival rates are tried, and in what order.

Two searches: :func:`search` grows the rate from a start until the SLO breaks,
then bisects; :func:`capacity_search` starts from an upper bound known before
(a blocking stack's Little's-law ceiling, or a closed-model probe's peak) and
bisects below it in at most a given number of steps. Which rates are tried lives
here; running one step (an open-model cell at one rate, stored with whether the
SLO held) is the caller's. The highest rate that held is what the analysis
reports as the sustainable throughput, the capacity (:mod:`harness.saturation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from harness.model import Measurement, Saturation, Slo

Step: TypeAlias = Callable[[float], bool | None]
"""Runs one step at a rate (requests/s): True when the SLO held, False when it broke,
None when the search must end (the step failed or the target died)."""


@dataclass(frozen=True)
class StepOutcome:
    """One measured window: ``held`` the SLO, or broke it (``doubtful``: :func:`doubtful_breach`)."""

    held: bool
    doubtful: bool = False


Measure: TypeAlias = Callable[[float, bool], StepOutcome | None]
"""Measures one window at a rate (requests/s); the flag is True for the second window at a
rate (:func:`capacity_search`). None when the search must end (the step failed, the target died)."""


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


FIRST_FRACTION = 0.6
"""The capacity search's first rate, as a fraction of the upper bound. Under an SLO on the
p99 a stack serves less than its peak: an M/D/c queue's wait grows without bound as the
load nears the peak, and a stack's own pauses (a collection, a busy event loop) add to the
tail. Measured here on the 50 ms upstream call (p99 <= 100 ms): 3 sync workers held about
0.5 of their Little's-law ceiling, a tuned pool about 0.8 of it, and the async stacks
0.35-0.6 of a closed-model probe's peak; 0.6 is where one step up or down lands close."""
TUNED_FIRST_FRACTION = 0.8
"""The first rate of a tuned stack's search (:mod:`harness.run.tuning`), as a fraction of its
ceiling: tuned within its limits, a blocking stack serves most of its ceiling (workers x
threads / wait, or the CPU limit at the CPU per request its tuning probe measured). Measured
here, in one ``make bench`` run: django-gunicorn and flask-gunicorn tuned to 25 workers held
433-475 requests/s under a ceiling of 500, flask-gunicorn-gthread tuned to 3 x 23 threads
866-1,140 under a CPU limit read as 1,001; from 0.6 the searches spent 3 of their 5 windows
climbing, and one ended at 1,140 still climbing (a floor, no verdict)."""
DESCENT = 0.7
"""While no step has held, the next rate after a doubtful breach (:func:`doubtful_breach`) is
this fraction of the lowest that broke. Not 0.5: a search whose first step broke by chance
(a pause of the machine) then ends within 0.7 of that rate, not within half of it. In the
seeded simulation of tests/test_capacity.py (5 windows, second windows on) the spread of
the searches' results (the standard deviation of their log) is 0.17 with 0.5 and 0.13 with 0.7."""
CLEAR_DESCENT = 0.5
"""The same after a clear breach (errors, a stack that fell behind the rate, or a p99 over
:data:`DOUBTFUL_P99_FACTOR` x the SLO's): the capacity is then likely far below. Measured
here: a Gunicorn gthread stack tuned to 18 workers of 4 threads broke at 654 and 458
requests/s with p99 200-470 ms; descending by 0.7, with second windows, its 5 windows
ended at 321 with nothing held, in 2 of 3 repeats."""
DOUBTFUL_P99_FACTOR = 2.0
"""A breach on the p99 alone is doubtful up to this factor of the SLO's p99. Measured here, in
one ``make bench`` run of 45 searches: the first windows that a second window at the same
rate then held had p99 102-196 ms under an SLO of 100 ms, once 280 ms, and about 610 ms
twice (a Django stack's first window after its launch: see :data:`FIRST_WARMUP_S`); those
whose second window broke as well, up to 473 ms."""
HIGH_FRACTION = 1.25
"""The highest rate the capacity search goes to, as a fraction of the upper bound: a
stack that holds the SLO up there ends the search without a break, so its capacity is
the search's own bound (a floor, flagged), not the stack's. Above 1: a closed-model probe
at a finite concurrency reads a little under the peak (464 requests/s for a server of
500 at 64 connections)."""


FIRST_WARMUP_S = 2.0
"""The warm-up (s) of a capacity search's first window when no probe ran before it (its bound is
a Little's-law ceiling): the stack's workers then meet their first requests there. Measured
here, in one ``make bench`` run: django-gunicorn tuned to 25 workers broke its first window
at 300 requests/s with p99 445-617 ms after the scenario's 0.5 s warm-up, then held the
same rate at 58-60 ms in the next window. The longer warm-up is not always enough, so such a
first window that breaks is measured again (``fresh_start`` in :func:`capacity_search`): in
a later run, after the 2 s warm-up, the same stack's first window at 300 requests/s had a
p99 of 748 ms and a mean of 352 ms at 57% of its CPU (a backlog from the warm-up, not its
load), a clear breach that sent the search down to 150 and ended it at 275, where its
other two repeats held 433 and 475."""


def capacity_search(
    upper: float,
    steps: int,
    measure: Measure,
    *,
    first_fraction: float = FIRST_FRACTION,
    fresh_start: bool = False,
) -> None:
    """Search below ``upper`` (requests/s) in at most ``steps`` measured windows.

    The first window is at ``first_fraction`` of ``upper`` (:data:`FIRST_FRACTION`;
    :data:`TUNED_FIRST_FRACTION` for a tuned stack). With ``fresh_start`` (the stack was
    just launched and no load warmed it up before this search) a first window that broke
    the SLO in any way is measured once more, as a doubtful one is: see
    :data:`FIRST_WARMUP_S`. A window whose
    breach is doubtful (:func:`doubtful_breach`: the p99 alone broke the SLO while
    the stack kept up with the rate, which a pause of the machine explains as well
    as the load) is measured once more at the same rate while windows are left, and
    the second window decides; each window counts against ``steps``. While nothing
    has broken, each next rate is the geometric mean of the highest rate that held
    and ``HIGH_FRACTION x upper``; while nothing has held, :data:`DESCENT` times the
    lowest rate that broke; then the geometric mean of the two (a bisection on a log
    scale). After a clear breach the descent is :data:`CLEAR_DESCENT`. The search ends
    early when ``measure`` returns None or the rounded next rate repeats one already
    tried. Each bisection halves the log of the bracket's ratio: a bracket of 1/0.7
    (one descent) is within 5% after 3 bisections.

    Second windows lean upward: a rate just above the capacity, whose breach is
    doubtful too, gets a second chance to hold. In the seeded simulation of
    tests/test_capacity.py (a pause breaks a window below the capacity C with
    probability 0.2; up to 1.15 C a window holds with probability 0.3) the searches
    ending below 0.8 C fall from 23% (halving, no second windows) to 5%, those
    ending between C and 1.15 C rise from 31% to 48%, and none ends above 1.15 C.
    Raises ValueError when ``upper`` is not positive and finite.
    """
    if not math.isfinite(upper) or upper <= 0:
        raise ValueError(f"the search's upper bound must be a positive rate, not {upper!r}")
    held: float | None = None
    broke: float | None = None
    rate = round_rate(upper * first_fraction)
    tried: set[float] = set()
    left = steps
    while left > 0:
        first = not tried
        tried.add(rate)
        outcome = measure(rate, False)
        left -= 1
        suspect = outcome is not None and (outcome.doubtful or (first and fresh_start))
        if outcome is not None and not outcome.held and suspect and left > 0:
            outcome = measure(rate, True)  # the second window decides
            left -= 1
        if outcome is None:
            return
        if outcome.held:
            held = rate
        else:
            broke = rate
        if broke is None:
            following = round_rate(math.sqrt(rate * upper * HIGH_FRACTION))
        elif held is None:  # this window broke, at the lowest rate yet
            following = round_rate(broke * (DESCENT if outcome.doubtful else CLEAR_DESCENT))
        else:
            following = round_rate(math.sqrt(held * broke))
        if following in tried or following <= 0:
            return
        rate = following


MIN_STEP_REQUESTS = 150
"""Requests a capacity step should hold: its p99 is then the 2nd-worst of 150, so one
late or slow request (a collection, a scheduling hiccup) does not decide the SLO alone;
at 75 requests (30 req/s for 2.5 s) the p99 is the worst. Not 200: in ``make bench`` the
two sync stacks as configured (about 30 requests/s) then took 206 s of its 694 s of windows."""
MAX_WINDOW_FACTOR = 4.0
"""A step's window grows for :data:`MIN_STEP_REQUESTS` up to this many times the scenario's."""


def step_window_s(rate: float, duration_s: float) -> float:
    """The measured window (s) of a step at ``rate`` (requests/s): ``duration_s``, longer at low rates.

    max(duration_s, MIN_STEP_REQUESTS / rate), at most MAX_WINDOW_FACTOR x duration_s.

    >>> step_window_s(1000, 2.5), step_window_s(30, 2.5), step_window_s(5, 2.5)
    (2.5, 5.0, 10.0)
    """
    return min(max(duration_s, MIN_STEP_REQUESTS / rate), MAX_WINDOW_FACTOR * duration_s)


def doubtful_breach(measurement: Measurement, slo: Slo) -> bool:
    """Whether ``measurement`` broke ``slo`` in a way one pause of the machine explains: worth a
    second window at the same rate (:func:`capacity_search`).

    True when the SLO broke on the p99 alone (the error budget held: errors are checked
    first, :meth:`~harness.model.Slo.breach`), by at most :data:`DOUBTFUL_P99_FACTOR`, and
    the served rate (the lower of the rate sent and the rate answered) reached the SLO's
    share of the intended rate: the stack kept up with the arrivals and only its tail was
    late. A pause of the shared 2-core
    machine does that at any rate: a 2 s window's p99 rests on its ~1% worst requests, and
    a pause of 100 ms holds back every request that arrives in it. A stack over its
    capacity in the open model falls behind instead: its queue grows through the window
    and it answers fewer than arrive. Measured here, in ``make bench`` runs: fastapi-uvicorn
    broke at 505 req/s with p99 108 ms and ended at 357, then held 1,160 in the next repeat.
    False otherwise, held windows included.
    """
    latency = measurement.latency_ms
    if measurement.slo_held is not False or latency is None or measurement.slo_breach is None:
        return False
    if not measurement.slo_breach.startswith("p99 ") or latency.p99 > DOUBTFUL_P99_FACTOR * slo.p99_ms:
        return False
    intended = measurement.intended_rate or measurement.rate or 0.0
    served = min(measurement.achieved_rate or 0.0, measurement.requests_per_second)
    return served >= slo.min_achieved_ratio * intended
