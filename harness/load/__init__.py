"""Load generation: drivers that record every latency into an HdrHistogram."""

from harness.load.arrivals import OpenLoad
from harness.load.native import ClosedLoad, UnsafeTargetError, checked_address, ensure_loopback, run_closed
from harness.load.open import run_open
from harness.load.process import DriverError, drive_in_subprocess
from harness.load.result import LoadResult, merge_results

__all__ = [
    "ClosedLoad",
    "DriverError",
    "LoadResult",
    "OpenLoad",
    "UnsafeTargetError",
    "checked_address",
    "drive_in_subprocess",
    "ensure_loopback",
    "merge_results",
    "run_closed",
    "run_open",
]
