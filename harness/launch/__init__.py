"""Start targets with their limits, wait until ready, tear everything down."""

from harness.launch.base import LaunchError, RunningTarget
from harness.launch.local import LocalLauncher, wait_until_idle

__all__ = ["LaunchError", "LocalLauncher", "RunningTarget", "wait_until_idle"]
