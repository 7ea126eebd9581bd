"""Smoke windows long enough to answer: a short closed-model window lengthened by Little's law.

A ``--quick`` run shortens every window (to 0.5 s at ``--quick-factor 0.05``).
A closed-model cell of C connections whose stack answers X requests per second
keeps each request for a response time R = C / X (Little's law, L = lambda W).
When R is longer than the window, the window holds few answers or none: a stack
that answers its connections in bursts (Django's ASGI stacks answer all of a
CPU-bound level's requests together) lands 0 or C answers by chance. That is a
flaky smoke test, not a finding. So such a cell is measured again, with a
warm-up of one estimated response time and a window of two, up to the
scenario's unscaled window (``Scenario.smoke_window_max_s``).
"""

from __future__ import annotations

from harness.model import Cell, Measurement, Scenario

LONGER_AT_LEAST = 2.0
"""Each new window is at least this many times the last, so the attempts end at the cap."""


def longer_window(scenario: Scenario, cell: Cell, measurement: Measurement) -> Scenario | None:
    """``scenario`` with a longer warm-up and window for ``cell``, or None when it answered enough.

    A window answered enough when it holds at least as many finished requests
    (successes and errors) as the cell has connections: at least one response
    time R = C x window / finished (Little's law with X = finished / window).
    Otherwise the new warm-up is R and the new window 2 R, at least
    :data:`LONGER_AT_LEAST` times the last window (with no answer at all, R is
    only known to exceed the window), both capped at ``smoke_window_max_s`` (s).
    None also when the scenario is not a smoke run, the cell is not a plain
    closed-model level, or the window is already at its cap.
    """
    cap = scenario.smoke_window_max_s
    connections = cell.concurrency
    if cap is None or cell.model != "closed" or cell.staged or connections is None:
        return None
    window = scenario.duration_s
    if window >= cap or measurement.requests >= connections:
        return None
    response_s = connections * window / measurement.requests if measurement.requests else window
    duration = min(cap, max(2 * response_s, LONGER_AT_LEAST * window))
    warmup = min(cap, max(response_s, scenario.warmup_s))
    return scenario.model_copy(update={"warmup_s": round(warmup, 2), "duration_s": round(duration, 2)})
