"""Smoke windows long enough to answer: a closed-model window with no answer measured again, longer.

A ``--quick`` run shortens every window (to 0.5 s at ``--quick-factor 0.05``). A
closed-model cell of C connections whose stack answers X requests per second keeps each
request for a response time R = C / X (Little's law, L = lambda W). When R is longer
than the window, the window may hold no answer at all: a stack that answers its
connections in bursts (Django's ASGI stacks answer all of a CPU-bound level's requests
together) lands 0 or C answers by chance, and a stack whose every request waits longer
than the window answers none. That is a flaky smoke test, not a finding. A window with
no answer says only that R exceeds it, so such a cell is measured again with a window
twice as long, until one answers or the window reaches the scenario's unscaled one
(``Scenario.smoke_window_max_s``). Any window at least R long holds an answer from
every connection in steady state, so the doubling ends within log2(R / window) steps.

Cells that answered keep their short window, however few the answers: a smoke run's
figures are for smoke-testing (the quick note says so), and lengthening every cell
whose window holds fewer answers than connections made CI's smoke runs several times
longer.
"""

from __future__ import annotations

from harness.model import Cell, Measurement, Scenario
from harness.model.scenario import IDLE_KINDS

GROWTH = 2.0
"""Each new window is this many times the last, so the attempts end at the cap."""


def longer_window(scenario: Scenario, cell: Cell, measurement: Measurement) -> Scenario | None:
    """``scenario`` with a window :data:`GROWTH` times longer for ``cell``, or None when it answered.

    A window answered when it holds at least one finished request (a success or an
    error). The new window is capped at ``smoke_window_max_s`` (s); the warm-up stays.
    None also when the scenario is not a smoke run, the cell is not a plain
    closed-model level, or the window is already at its cap.
    """
    cap = scenario.smoke_window_max_s
    if cap is None or cell.model != "closed" or cell.staged or cell.concurrency is None:
        return None
    if measurement.status != "ok" or measurement.workload in IDLE_KINDS:
        return None  # not supported (a 501), or connections held: no answers to wait for
    window = scenario.duration_s
    if window >= cap or measurement.requests > 0:
        return None
    return scenario.model_copy(update={"duration_s": round(min(cap, GROWTH * window), 2)})
