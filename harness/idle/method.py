"""How an idle-connections cell is measured: the method's constants and the error it fails with.

The settling time and the length of the hold come from the scenario (its warm-up and window);
these are the samples, the refresh of idle HTTP connections, time limits and margins.
"""

from __future__ import annotations

WARMUP_CONNECTIONS = 16
"""Opened and closed before ``before``; the memory they leave free for reuse biases the figure
down by at most WARMUP_CONNECTIONS / K of itself (1.6% at K = 1000)."""
SAMPLES = 3
SAMPLE_INTERVAL_S = 0.2
HTTP_REFRESH_S = 4.0
"""An HTTP connection sends a request after this much silence (s): under the 5 s idle timeout of
the stacks that keep connections (uvicorn, Hypercorn, Gunicorn as configured; Daphne and Granian
keep them longer), and later than the driver's default (1.5 s, for Gunicorn's default 2 s), so that
no request is served while the memory is read: at 1,000 connections that default is ~670 requests/s."""
OPEN_TIMEOUT_S = 20.0
"""Opening stops after this long (s), or earlier once no connection opened for a connection timeout
(the stack accepts no more): a stack that answers connections slower than 10,000 in 20 s (500 a
second) is cut here, and says so."""
CONNECT_TIMEOUT_S = 10.0
QUIET_CPU_PERCENT = 5.0
"""A stack is idle when its tree uses at most this share of one core over QUIET_WINDOW_S."""
QUIET_WINDOW_S = 0.5
QUIET_TIMEOUT_S = 15.0
SPAWN_TIMEOUT_S = 60.0
"""For the driver process to start, import and finish its warm-up (s)."""


class IdleError(Exception):
    """An idle-connections cell could not be measured; the message says why."""
