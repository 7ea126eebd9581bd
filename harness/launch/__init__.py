"""Start targets with their limits, wait until ready, tear everything down."""

from harness.launch.base import LaunchError, RunningTarget
from harness.launch.cgroup import CgroupUnavailable, CgroupUsage, Limits
from harness.launch.docker import DockerLauncher
from harness.launch.images import EngineUnavailable
from harness.launch.local import LocalLauncher, wait_until_idle

__all__ = [
    "CgroupUnavailable",
    "CgroupUsage",
    "DockerLauncher",
    "EngineUnavailable",
    "LaunchError",
    "Limits",
    "LocalLauncher",
    "RunningTarget",
    "wait_until_idle",
]
