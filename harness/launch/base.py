"""What every launcher hands back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class LaunchError(Exception):
    """A target could not be started or never became ready; the message quotes its log."""


@dataclass(frozen=True)
class RunningTarget:
    """A started target: where to send requests and what to monitor.

    ``url`` has no trailing slash, e.g. ``http://127.0.0.1:40123``. ``pid`` is
    the root of the target's process tree (its process group leader for the
    local launcher). ``log_path`` receives the target's stdout and stderr.
    """

    name: str
    host: str
    port: int
    pid: int
    log_path: Path
    workers: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
