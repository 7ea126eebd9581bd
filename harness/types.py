"""Type aliases shared across layers (the bottom layer: imports nothing of the harness)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

WindowCallback: TypeAlias = Callable[[str], None]
"""Called by a driver as its load passes a mark: ``"warmup"`` when the warm-up starts,
``"measure"`` when the measured window opens, ``"done"`` when it closes (plus, in staged
runs, the stage marks the driver documents)."""
