"""The local launcher: each target is its own process group on 127.0.0.1.

A target runs in a new session (so Ctrl-C in the terminal reaches the harness,
which then tears the target down in order), pinned to the target CPUs, with its
stdout and stderr appended to a log file. Given ``limits``, it also runs in a
control group of its own (:mod:`harness.launch.cgroup`) with a CPU quota, the
CPU set and a memory limit; where no group can be made, it is only pinned and
:attr:`LocalLauncher.cgroup_unavailable` says why. Stopping sends SIGTERM to the whole
group, waits a grace period, then SIGKILLs the group and any descendant that
left it. The launcher remembers everything it started, so :meth:`close` (or
leaving the ``with`` block, also on an exception) leaves no process behind.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import psutil

from harness.cgroup import Cgroup, CgroupUsage
from harness.launch import leftovers
from harness.launch.base import (
    BuiltImage,
    LaunchError,
    RunningTarget,
    exited_early,
    health_ok,
    tail,
    wait_unless_hurried,
)
from harness.launch.cgroup import CgroupUnavailable, Limits, ManagedCgroup, create
from harness.model import TargetConfig
from harness.net import LOOPBACK, free_port


def wait_until_idle(
    target: RunningTarget, path: str = "/health", *, quick_s: float = 0.05, timeout_s: float = 30.0
) -> float | None:
    """Wait until ``GET path`` answers 200 within ``quick_s`` seconds; return the seconds waited.

    After a cell the client closes its connections, but a sync server still holds
    the ones queued in its listen backlog and serves them, unseen, for up to
    backlog x service time. Measuring the next cell before that drains would
    charge it for the previous one. Returns None if not idle within ``timeout_s``.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        asked = time.monotonic()
        remaining = max(deadline - asked, 0.1)
        if health_ok(target.host, target.port, path, timeout_s=remaining):
            if time.monotonic() - asked <= quick_s:
                return time.monotonic() - started
        else:
            time.sleep(0.05)
    return None


MARK_ENV = "GWBENCH_TARGET_MARK"
"""Set in each target's environment to a token of its own: its descendants inherit it, even those
that leave its process group and session (a daemon that double-forks and calls setsid), so
:func:`marked` finds them where no cgroup holds them."""

_marks = itertools.count()


def marked(token: str) -> list[psutil.Process]:
    """Every process whose environment has :data:`MARK_ENV` set to ``token`` (those it can read)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARK_ENV) == token:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


class _Started:
    def __init__(
        self,
        target: RunningTarget,
        process: subprocess.Popen[bytes],
        cgroup: ManagedCgroup | None = None,
        mark: str = "",
    ) -> None:
        self.target = target
        self.process = process
        self.cgroup = cgroup
        self.mark = mark
        self.final: CgroupUsage | None = None
        self.record = leftovers.record(target.name, process.pid)  # for a later run, if we are killed


def _enter(procs_files: list[str], cpus: frozenset[int]) -> None:
    """Runs in the child between fork and exec: join the control group, then pin."""
    pid = str(os.getpid()).encode()
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
    if cpus:
        os.sched_setaffinity(0, cpus)


class LocalLauncher:
    """Starts targets as local process groups and guarantees their teardown.

    ``target_cpus`` is the CPU set every target is pinned to (empty: no
    pinning). ``grace_s`` is how long a target gets between SIGTERM and SIGKILL.
    """

    name = "local"
    builds_images = False
    isolation = "its own control group"

    def __init__(
        self,
        *,
        target_cpus: Iterable[int] = (),
        grace_s: float = 5.0,
        python: str = sys.executable,
    ) -> None:
        self.target_cpus = frozenset(target_cpus)
        self.grace_s = grace_s
        self.python = python
        self._started: dict[int, _Started] = {}
        self._stopped: dict[int, _Started] = {}
        self.cgroup_unavailable: str | None = None
        """Why targets given limits could only be pinned (first failure, one line), or None."""
        self.reaped = leftovers.reap()
        """What killed harnesses had left running, removed now (:mod:`harness.launch.leftovers`)."""

    def build(
        self, config: TargetConfig, directory: Path, *, log_path: Path | None = None
    ) -> BuiltImage | None:
        """Nothing to build: a local target runs from the harness's own environment."""
        return None

    def engine_version(self) -> str | None:
        """No container engine: None."""
        return None

    def __enter__(self) -> LocalLauncher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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
        """Start ``config`` (whose folder is ``directory``) and wait until it is ready.

        Ready means ``GET config.ready_path`` answers 200 within
        ``ready_timeout_s`` seconds. Raises LaunchError, quoting the last lines
        of the target's log, when the command cannot start, exits early or
        never becomes ready; nothing is left running in that case. ``cpus``
        overrides the launcher's ``target_cpus`` for this process; ``port``
        (default: a free one) is where it must listen. ``limits`` (default: none,
        and no control group) puts the target in a control group of its own with
        that CPU quota and memory limit, confined to the CPU set; if none can be
        made it is only pinned, and :attr:`cgroup_unavailable` says why.
        """
        port = free_port() if port is None else port
        argv = config.argv(python=self.python, host=LOOPBACK, port=port, workers=workers)
        cwd = (directory / config.app_dir).resolve()
        child_env = dict(os.environ)
        child_env.update(config.env)
        child_env.update(env or {})
        child_env["PYTHONUNBUFFERED"] = "1"
        mark = f"{os.getpid()}.{next(_marks)}"
        child_env[MARK_ENV] = mark
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pinned = self.target_cpus if cpus is None else frozenset(cpus)
        group = None if limits is None else self._make_cgroup(config.name, limits, pinned)
        procs_files = [] if group is None else group.procs_files()

        def enter() -> None:
            _enter(procs_files, pinned)

        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(argv)}  (cwd {cwd})\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=enter,
                )
            except BaseException as exc:  # a Ctrl-C here too: the group is not tracked yet
                if group is not None:
                    group.remove()
                if isinstance(exc, OSError | subprocess.SubprocessError):
                    raise LaunchError(f"{config.name}: cannot start {argv[0]!r}: {exc}") from exc
                raise
        running = RunningTarget(
            name=config.name,
            host=LOOPBACK,
            port=port,
            pid=process.pid,
            log_path=log_path,
            workers=workers,
        )
        self._started[process.pid] = _Started(running, process, group, mark)
        deadline = time.monotonic() + ready_timeout_s
        while True:
            code = process.poll()
            if code is not None:
                self.stop(running)
                raise LaunchError(exited_early(f"{config.name}:", code, log_path))
            answered = config.ready_any_answer
            if health_ok(LOOPBACK, port, config.ready_path, timeout_s=1.0, any_status=answered):
                return running
            if time.monotonic() > deadline:
                self.stop(running)
                raise LaunchError(
                    f"{config.name}: not ready after {ready_timeout_s:.0f} s "
                    f"(GET {config.ready_path} on port {port}); last lines of {log_path}:\n"
                    f"{tail(log_path)}"
                )
            time.sleep(0.05)

    def _make_cgroup(self, name: str, limits: Limits, cpus: frozenset[int]) -> ManagedCgroup | None:
        try:
            return create(name, limits, cpuset=cpus)
        except CgroupUnavailable as exc:
            if self.cgroup_unavailable is None:
                self.cgroup_unavailable = f"no CPU or memory limits, CPU pinning only: {exc}"
            return None

    def stop(self, target: RunningTarget) -> None:
        """Stop a target's whole process tree: SIGTERM, grace period, SIGKILL.

        Safe to call twice. Returns when no process of the tree is left.
        """
        started = self._started.get(target.pid)
        if started is not None:
            self._terminate([started])

    def close(self) -> None:
        """Stop every target this launcher started and has not stopped yet, all at once.

        With :data:`~harness.launch.base.HURRY` set (a second Ctrl-C) or a
        KeyboardInterrupt during the grace period, everything is killed at once.
        """
        self._terminate(list(self._started.values()))

    def is_alive(self, target: RunningTarget) -> bool:
        """Whether the target's root process is still running."""
        started = self._started.get(target.pid)
        return started is not None and started.process.poll() is None

    def _terminate(self, started: list[_Started]) -> None:
        trees: list[psutil.Process] = []
        for item in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(item.process.pid)
                trees.extend([root, *root.children(recursive=True)])
        # Descendants that left the tree and the group (double fork, setsid), where no cgroup holds them.
        known = {p.pid for p in trees}
        escaped = [p for item in started for p in marked(item.mark) if p.pid not in known]
        trees.extend(escaped)
        try:
            for item in started:
                self._signal_group(item.process.pid, signal.SIGTERM)
            for process in escaped:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.terminate()
            pending = list(trees)

            def all_gone() -> bool:
                nonlocal pending
                for item in started:
                    item.process.poll()  # reap our own children, so they count as gone
                _, pending = psutil.wait_procs(pending, timeout=0)
                return not pending

            wait_unless_hurried(all_gone, self.grace_s)  # a second Ctrl-C: kill at once
        finally:
            # Also reached on a second Ctrl-C: whatever is left is killed now.
            self._kill(started, trees)

    def _kill(self, started: list[_Started], trees: list[psutil.Process]) -> None:
        for item in started:
            # Only while the leader is unreaped can its pid (the group id) not be reused.
            if item.process.poll() is None:
                self._signal_group(item.process.pid, signal.SIGKILL)
        for proc in trees:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        for item in started:
            item.process.wait()
            self._started.pop(item.process.pid, None)
        psutil.wait_procs(trees, timeout=self.grace_s)
        for item in started:
            if item.cgroup is not None:
                item.final = item.cgroup.usage()
                item.cgroup.remove(timeout_s=self.grace_s)  # kills any process that left the group
            leftovers.forget(item.record)
            self._stopped[item.process.pid] = item

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def running(self) -> list[RunningTarget]:
        """Targets started and not yet stopped."""
        return [started.target for started in self._started.values()]

    def cgroup(self, target: RunningTarget) -> Cgroup | None:
        """The target's control group while it runs; None without limits, on fallback, or once stopped."""
        started = self._started.get(target.pid)
        return None if started is None else started.cgroup

    def usage(self, target: RunningTarget) -> CgroupUsage | None:
        """The target's cgroup counters: live while it runs, the last reading once stopped.

        None when the target has no control group.
        """
        started = self._started.get(target.pid)
        if started is not None:
            return None if started.cgroup is None else started.cgroup.usage()
        stopped = self._stopped.get(target.pid)
        return None if stopped is None else stopped.final

    def oom_killed(self, target: RunningTarget) -> bool:
        """Whether the kernel killed a process of the target for going over its memory limit."""
        usage = self.usage(target)
        return bool(usage is not None and usage.oom_kills)
