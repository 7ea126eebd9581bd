"""The stacks a run measures: their images, their launch within limits, their contract check, and
what a lost process means for a cell.

:attr:`Stacks.target_runs` is what the manifest stores of each stack; it gains
the image, the limits as applied and the verification as they happen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import psutil

from harness import cgroup
from harness.launch import LaunchError, Limits, RunningTarget, wait_until_idle
from harness.launch.base import Launcher, health_ok, tail
from harness.launch.postgres import Postgres
from harness.launch.services import UPSTREAM
from harness.model import Cell, TargetRun
from harness.model.appservers import YOUR_APP
from harness.run.cells import http_requests
from harness.run.precheck import first_answer_problem
from harness.run.record import Recorder
from harness.run.spec import Events, RunSpec
from harness.run.tuning import is_tuned, stack_of
from harness.types import MIB
from harness.verify import Check, VerificationReport, verify


def _workers(spec: RunSpec, name: str) -> int:
    return spec.scenario.workers.get(name, spec.targets[name].default_workers)


SETTLE_INTERVAL_S = 0.5
#: Seconds of readiness wait a stack gets per worker, beyond the run's ``ready_timeout_s``.
#: Workers fork at once and import the app side by side within one CPU quota, so the first
#: one answers only when most have booted: 25 Django workers on 1 CPU took over 30 s on a
#: loaded 2-core machine. Three seconds each is about three times one Django import there.
READY_S_PER_WORKER = 3.0
SETTLED_CPU_SHARE = 0.1
IDLE_S = 0.05
"""A stack is idle after a cell when its ``/health`` answers within this many seconds."""
DRAIN_S = 30.0
"""How long a stack may take to become idle after a cell when it cannot be started again."""
DRAIN_BEFORE_RESTART_S = 10.0
"""How long a stack may take to become idle after a cell before it is started again instead
(a restart takes a few seconds; 3 sync workers serving 29 orphaned 5 s requests take 50)."""
IDLE_FACTOR = 2.0
"""The user's app is idle when its ready path (one of its endpoints) answers within this
many times its quickest unloaded answer."""


class Stacks:
    """Launches, verifies and diagnoses the stacks of ``spec`` on ``launcher``, into ``recorder``'s run."""

    def __init__(self, spec: RunSpec, launcher: Launcher, events: Events, recorder: Recorder) -> None:
        self.spec = spec
        self.launcher = launcher
        self.events = events
        self.recorder = recorder
        self.logs = recorder.writer.logs
        self.target_runs = {
            name: TargetRun(
                config=config,
                workers=_workers(spec, name),
                cpus=spec.scenario.cpus.get(name, config.cpus),
                memory_mib=spec.scenario.memory_mib.get(name, config.memory_mib),
            )
            for name, config in spec.targets.items()
        }
        self.unbuilt: dict[str, str] = {}
        self.idle_s: dict[str, float] = {}  # the user's apps' idle answer time (drain), by config name
        self.verified: dict[str, VerificationReport] = {}

    def build_images(self) -> bool:
        """Docker only: build (or find unchanged) every image before the first cell.

        A stack whose image fails to build has its cells failed with the build
        log's end; False (every cell failed) when the upstream's fails.
        """
        launcher = self.launcher
        if not launcher.builds_images:
            return True
        spec = self.spec
        for name, config in [*spec.targets.items(), (UPSTREAM, spec.upstream)]:
            directory = spec.upstream_dir if name == UPSTREAM else spec.targets_root / stack_of(name)
            self.events.target_starting(f"{name} (image)", 0)
            try:
                image = launcher.build(config, directory, log_path=self.logs / f"{name}.build.log")
            except LaunchError as exc:
                if name == UPSTREAM:
                    self.recorder.fail(UPSTREAM, None, str(exc))
                    self.recorder.fail_all(f"the upstream's image did not build: {exc}")
                    return False
                self.unbuilt[name] = str(exc)
                continue
            if image is not None and name in self.target_runs:
                self.target_runs[name] = self.target_runs[name].model_copy(
                    update={"image": image.tag, "image_build_s": round(image.build_s, 2)}
                )
        return True

    def launch(self, name: str, env: Mapping[str, str]) -> RunningTarget:
        """Start a stack within its limits, with ``env`` (where its services are); raises LaunchError.

        It must answer within the run's ``ready_timeout_s``, or :data:`READY_S_PER_WORKER`
        per worker when that is longer (a tuned stack's many workers boot side by side).
        """
        run = self.target_runs[name]
        running = self.launcher.start(
            run.config,  # a tuned run's, with its own thread count
            self.spec.targets_root / stack_of(name),
            workers=run.workers,
            log_path=self.logs / f"{name}.log",
            env=env,
            ready_timeout_s=max(self.spec.ready_timeout_s, READY_S_PER_WORKER * run.workers),
            limits=Limits(cpus=run.cpus, memory_mib=run.memory_mib),
        )
        if run.limits_applied is None:
            self.target_runs[name] = run.model_copy(update={"limits_applied": self.limits_applied(running)})
        return running

    def relaunch(self, name: str, running: RunningTarget, env: Mapping[str, str]) -> RunningTarget:
        """Stop ``running`` and launch the run's stack ``name`` again (:meth:`launch`), settled when tuned.

        ``name`` is the run's target name (``flask-gunicorn-gthread@tuned``), whose
        worker count the run holds; ``running.name`` is the stack's own and would
        launch it as configured. A tuned stack's many workers boot after the first
        one answers, so it is given :meth:`settle` as at its first launch. Raises
        LaunchError as :meth:`launch`.
        """
        self.launcher.stop(running)
        fresh = self.launch(name, env)
        if is_tuned(name):
            self.settle(fresh)
        return fresh

    def limits_applied(self, running: RunningTarget) -> str:
        """How the limits were enforced on a started target, in words for the report."""
        group = self.launcher.cgroup(running)
        how = self.launcher.isolation
        if group is None:
            reason = self.launcher.cgroup_unavailable or "no control group readable"
            return f"CPU pinning only ({reason})"
        applied = group.limits()
        cpus = "unlimited" if applied.cpus is None else f"{applied.cpus:g} CPU"
        memory = "unlimited" if applied.memory_bytes is None else f"{applied.memory_bytes / MIB:.0f} MiB"
        cpuset = cgroup.format_cpu_list(applied.cpuset) if applied.cpuset else "all"
        return f"{how}: CPU quota {cpus}, cpuset {cpuset}, memory {memory}"

    def verify_once(
        self, name: str, running: RunningTarget, postgres: Postgres | None
    ) -> VerificationReport | None:
        """Check the contract on the first launch of a stack (unless the run skips it); None then.

        None too for a target folder without the contract (``verify_contract = false``).
        The user's app launched with ``--app`` (framework :data:`YOUR_APP`) is checked for
        its first answers instead, always: each of the scenario's requests once, as before
        load on an app the user started (:func:`harness.run.precheck.first_answer_problem`).
        """
        config = self.spec.targets[name]
        yours = config.framework == YOUR_APP
        if not yours and (not config.verify_contract or not self.spec.verify):
            return None
        report = self.verified.get(name)
        if report is None and yours:
            requests = http_requests(self.spec.scenario.requests())
            problem = first_answer_problem(
                running.host, running.port, requests, timeout_s=self.spec.scenario.timeout_s
            )
            check = Check("answers before load", problem is None, problem or "each endpoint answered")
            report = VerificationReport(running.url, (check,))
            if problem is None and running.name not in self.idle_s:
                self.idle_s[running.name] = max(IDLE_S, IDLE_FACTOR * self.unloaded_answer_s(running))
        elif report is None:
            report = verify(
                running.url, postgres=postgres, websocket=config.websocket, interface=config.interface
            )
        if name not in self.verified:
            self.verified[name] = report
            self.target_runs[name] = self.target_runs[name].model_copy(
                update={
                    "verified": report.passed,
                    "verification_failures": tuple(f"{c.name}: {c.detail}" for c in report.failures),
                }
            )
            self.events.verified(name, report)
        return report

    def unloaded_answer_s(self, running: RunningTarget, tries: int = 3) -> float:
        """The quickest of ``tries`` answers (any status) of the target's ready path with no load, in s."""
        path = self.spec.targets[running.name].ready_path
        timeout_s = self.spec.scenario.timeout_s
        quickest = timeout_s
        for _ in range(tries):
            asked = time.monotonic()
            if health_ok(running.host, running.port, path, timeout_s, any_status=True):
                quickest = min(quickest, time.monotonic() - asked)
        return quickest

    def settle(self, running: RunningTarget, *, timeout_s: float = 30.0) -> float | None:
        """Wait until a freshly started stack stops using CPU (its workers have booted); seconds waited.

        Ready means one worker answered; a server told to start 25 workers on one
        CPU is still forking and importing the rest, which a measurement would
        charge to the stack. Settled: less than :data:`SETTLED_CPU_SHARE` of a core
        over :data:`SETTLE_INTERVAL_S`, read from the target's control group (or
        its process tree). None when it did not settle within ``timeout_s``.
        """
        group = self.launcher.cgroup(running)

        def cpu_s() -> float | None:
            if group is not None:
                return group.cpu_s()
            try:
                root = psutil.Process(running.pid)
                tree = [root, *root.children(recursive=True)]
                return sum(sum(p.cpu_times()[:2]) for p in tree)
            except (psutil.Error, OSError):
                return None

        started = time.monotonic()
        last = cpu_s()
        while time.monotonic() - started < timeout_s:
            time.sleep(SETTLE_INTERVAL_S)
            now = cpu_s()
            if now is None or last is None:
                return None
            if (now - last) / SETTLE_INTERVAL_S < SETTLED_CPU_SHARE:
                return time.monotonic() - started
            last = now
        return None

    def drain(self, running: RunningTarget, previous: Cell, *, record: bool = True) -> bool:
        """Let the target finish the previous cell's orphaned requests before the next cell; whether
        it became idle.

        Idle: its ready path answers within :data:`IDLE_S` (a stack's ``/health``), or for
        the user's app, whose ready path is one of its endpoints, within
        :data:`IDLE_FACTOR` x the time it took unloaded (:meth:`unloaded_answer_s`). When it
        did not within :data:`DRAIN_S`, ``record`` records that as a failure (the next cell may be
        affected); a caller that starts the target again passes False, and waits
        :data:`DRAIN_BEFORE_RESTART_S`.
        """
        quick_s = self.idle_s.get(running.name, IDLE_S)
        ready = self.spec.targets[running.name].ready_path
        timeout_s = DRAIN_S if record else DRAIN_BEFORE_RESTART_S
        if wait_until_idle(running, ready, quick_s=quick_s, timeout_s=timeout_s) is not None:
            return True
        if record:
            self.recorder.fail(
                running.name,
                previous,
                f"target still busy {DRAIN_S:.0f} s after the cell; the next cell may be affected",
            )
        return False

    def crash(self, running: RunningTarget, vanished: tuple[int, ...]) -> str | None:
        """Why the cell cannot count because the target lost processes (``vanished`` pids), or None."""
        if self.spec.external:
            return None
        alive = self.launcher.is_alive(running)
        if alive and not vanished:
            return None
        what = "the target's main process died" if not alive else f"target process(es) {list(vanished)} died"
        if self.launcher.oom_killed(running):
            limit = self.target_runs[running.name].memory_mib if running.name in self.target_runs else None
            what = f"the target was OOM-killed (over its memory limit of {limit} MiB): {what}"
        return f"{what} during the cell; last lines of {running.log_path}:\n{tail(running.log_path, 10)}"
