"""Which stored cells ran load: :func:`ran_load`, over :func:`harness.analysis.measurements_frame` rows.

A cell is stored ``ok`` when it was measured and a request succeeded, and
``failed`` either before any load (a stack that would not start, a driver that
could not run: no figures) or when every request it sent failed (its figures
are those measured: requests, errors, CPU and memory, no latency; see
:func:`harness.run.measure.every_request_failed`). The charts, the error counts
and a capacity search's steps keep the second kind; no statistic of latency or
throughput can come from it, as it has none.
"""

from __future__ import annotations

import pandas as pd


def ran_load(frame: pd.DataFrame) -> pd.Series:
    """Which rows of a measurements frame ran load (a boolean Series on its index): the ok cells,
    and the failed ones that sent (or dropped) requests."""
    return frame["status"].eq("ok") | (frame["requests"] + frame["dropped"]).gt(0)
