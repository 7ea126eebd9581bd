"""Type aliases, plain records and units shared across layers (the bottom layer: imports nothing
of the harness)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

MIB = 2**20
"""Bytes in a mebibyte (MiB), the unit memory is reported in."""

WindowCallback: TypeAlias = Callable[[str], None]
"""Called by a driver as its load passes a window boundary: ``"start"`` when the measured
window opens, ``"end"`` when it closes and, in a staged run (a profile), ``"mark"`` at each
boundary between stages."""


@dataclass(frozen=True)
class TimedSample:
    """A process tree at ``t_s`` seconds after the monitor's :meth:`~harness.monitor.TreeMonitor.begin`.

    ``cpu_s`` is the tree's CPU seconds (user + system) used since ``begin``;
    memory in bytes, ``pss_bytes`` None when unreadable. Taken by
    :class:`~harness.monitor.TreeMonitor`, stored by :func:`harness.timeseries.rows_from`.
    """

    t_s: float
    cpu_s: float
    rss_bytes: int
    pss_bytes: int | None
