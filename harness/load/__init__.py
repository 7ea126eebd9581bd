"""Load generation: drivers that record every latency into an HdrHistogram."""

from harness.load.native import ClosedLoad, LoadResult, UnsafeTargetError, ensure_loopback, run_closed
from harness.load.process import DriverError, drive_in_subprocess

__all__ = [
    "ClosedLoad",
    "DriverError",
    "LoadResult",
    "UnsafeTargetError",
    "drive_in_subprocess",
    "ensure_loopback",
    "run_closed",
]
