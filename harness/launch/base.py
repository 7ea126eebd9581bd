"""What every launcher is and hands back: the :class:`Launcher` Protocol, :class:`RunningTarget`,
and the helpers both launchers and the services share (a log's tail, a health probe); free ports
and the loopback address are :mod:`harness.net`'s."""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from harness.net import http_origin

if TYPE_CHECKING:
    from harness.cgroup import Cgroup, CgroupUsage
    from harness.launch.cgroup import Limits
    from harness.model import TargetConfig


class LaunchError(Exception):
    """A target could not be started or never became ready; the message quotes its log."""



HURRY = threading.Event()
"""Set when the user asked again to stop while a teardown runs (a second Ctrl-C, SIGTERM or SIGHUP):
launchers and services skip what is left of their grace periods and kill at once, and the
teardown goes on to its end (groups removed, results and report written) instead of being
cut short by a second KeyboardInterrupt."""


def wait_unless_hurried(done: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    """Poll ``done`` every ``step_s`` s for up to ``timeout_s`` s, or until :data:`HURRY` is set.

    Returns whether ``done()`` came true.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if done():
            return True
        if HURRY.is_set() or time.monotonic() >= deadline:
            return False
        time.sleep(step_s)

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
        return http_origin(self.host, self.port)


@dataclass(frozen=True)
class BuiltImage:
    """A target's image: ``tag`` (``gwbench/<target>:<hash>``), whether this call built it,
    and how long the build took in seconds (0 when it was already there)."""

    tag: str
    built: bool
    build_s: float


class Launcher(Protocol):
    """Starts targets with their limits and guarantees their teardown.

    Implemented by :class:`~harness.launch.local.LocalLauncher` (process groups in control
    groups) and :class:`~harness.launch.docker.DockerLauncher` (containers). Used as a
    context manager: leaving the block stops everything the launcher started.

    ``name`` is ``"local"`` or ``"docker"``; ``isolation`` says in words what holds a target
    (``"its own control group"``, ``"a container"``); ``cgroup_unavailable`` is why targets
    given limits could only be pinned (one line), or None; ``builds_images`` is True when
    :meth:`build` must run for every target before the first cell.
    """

    name: str
    isolation: str
    builds_images: bool
    cgroup_unavailable: str | None

    def __enter__(self) -> Launcher: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def build(
        self, config: TargetConfig, directory: Path, *, log_path: Path | None = None
    ) -> BuiltImage | None:
        """Build (or find unchanged) the target's image; None where the launcher needs none.

        Raises LaunchError with the build log's end when the build fails.
        """
        ...

    def start(
        self,
        config: TargetConfig,
        directory: Path,
        *,
        workers: int,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 30.0,
        cpus: Iterable[int] | None = None,
        port: int | None = None,
        limits: Limits | None = None,
    ) -> RunningTarget:
        """Start ``config`` and wait until ``GET config.ready_path`` answers 200; raises LaunchError."""
        ...

    def stop(self, target: RunningTarget) -> None:
        """Stop one target (SIGTERM, a grace period, then by force)."""
        ...

    def close(self) -> None:
        """Stop everything still running."""
        ...

    def is_alive(self, target: RunningTarget) -> bool: ...

    def running(self) -> list[RunningTarget]: ...

    def cgroup(self, target: RunningTarget) -> Cgroup | None:
        """The control group holding the target, or None where none is readable."""
        ...

    def usage(self, target: RunningTarget) -> CgroupUsage | None: ...

    def oom_killed(self, target: RunningTarget) -> bool: ...

    def engine_version(self) -> str | None:
        """The container engine's version for the environment table; None for the local launcher."""
        ...


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file, or a note that it is empty."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    selected = text.splitlines()[-lines:]
    return "\n".join(selected) if selected else "(log is empty)"


_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)): \S.*$", re.MULTILINE)


def first_error(path: Path) -> str | None:
    """The first line of a log that reads as a Python exception (``RuntimeError: ...``), or None.

    A server whose app fails at import ends its log with its own shutdown (Gunicorn's
    ``HaltServer`` traceback), so the app's error is the first exception, not the last.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = _EXCEPTION_LINE.search(text)
    return None if found is None else found.group(0).strip()[:300]


def exited_early(subject: str, code: object, log_path: Path) -> str:
    """The LaunchError text of a target that exited before it was ready (``subject``:
    ``"name:"``, or ``"name: container"``): the first exception in its log, when there is one,
    then the log's last lines."""
    error = first_error(log_path)
    cause = "" if error is None else f" ({error})"
    last = f"last lines of {log_path}:\n{tail(log_path)}"
    return f"{subject} exited with code {code} before it was ready{cause}; {last}"


def health_ok(host: str, port: int, path: str, timeout_s: float, *, any_status: bool = False) -> bool:
    """True when ``GET path`` on ``host:port`` answers 200 (any status with ``any_status``)
    within ``timeout_s`` seconds."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return any_status or response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
