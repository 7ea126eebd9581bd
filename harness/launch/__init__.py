"""Start targets with their limits, wait until ready, tear everything down."""

from harness.cgroup import CgroupUsage
from harness.launch.base import LaunchError, RunningTarget
from harness.launch.cgroup import CgroupUnavailable, Limits
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
