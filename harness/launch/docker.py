"""The Docker launcher: each target runs in a container built from its folder's Dockerfile.

Images are built through the Docker SDK from a build context (:mod:`harness.launch.images`) laid out like
``targets/``: the target's folder, the folder its ``app_dir`` names when that is a
sibling (the shared Django project), and the target's wheels as ``wheelhouse/``
(``make wheelhouse``). The build runs with no network. An image is tagged
``gwbench/<target>:<hash>``, the hash covering the context and the base image, so an
unchanged target is not rebuilt.

Containers use host networking (Docker's userland proxy costs about 40% of throughput),
the target's CPU quota, CPU set and memory limit (swap equal to it: none beyond), and
labels naming the run and the harness process that owns them. Stopping sends SIGTERM,
waits a grace period, then removes the container by force; :meth:`DockerLauncher.close`
(or leaving the ``with`` block, also on an exception or Ctrl-C) removes every container
the launcher made. Containers whose owner died (a harness killed outright) are removed
when the next launcher starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import random
import resource
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import urlparse

import docker
import psutil
from docker.errors import APIError, BuildError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import Ulimit

from harness.cgroup import Cgroup, CgroupUsage, cgroup_of, format_cpu_list
from harness.launch.base import BuiltImage, LaunchError, RunningTarget, exited_early, health_ok, tail
from harness.launch.cgroup import Limits
from harness.launch.images import (
    DEFAULT_BASE_IMAGE,
    IMAGE_REPOSITORY,
    LOCAL_BASE_IMAGE,
    TARGETS_IN_IMAGE,
    WHEELHOUSE,
    build_context,
    connect,
    log_lines,
)
from harness.model import TargetConfig
from harness.net import LOOPBACK, free_port

LABEL = "gwbench"  # every container and image the launcher makes has it
LABEL_RUN = "gwbench.run"
LABEL_TARGET = "gwbench.target"
LABEL_OWNER = "gwbench.owner"  # <host name>:<pid>:<process start time> of the harness
LABEL_LAUNCHER = "gwbench.launcher"  # one per DockerLauncher, as a harness may have several
def _owner() -> str:
    me = psutil.Process()
    return f"{socket.gethostname()}:{me.pid}:{me.create_time():.2f}"


def _owner_gone(owner: str) -> bool:
    """Whether the harness that made a container has died (only known for this host)."""
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" != started
    except psutil.NoSuchProcess:
        return True


def _engine_host() -> str | None:
    """The host name of a remote engine (``DOCKER_HOST=tcp://box:2376``), or None for a local one."""
    url = os.environ.get("DOCKER_HOST", "")
    if not url or url.startswith(("unix://", "npipe://")):
        return None
    host = urlparse(url).hostname
    return None if host in (None, "localhost", "127.0.0.1", "::1") else host


def _nofile() -> Ulimit:
    # The same descriptor limit a local target would inherit from the harness.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = 1 << 20
    hard = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    soft = hard if soft == resource.RLIM_INFINITY else min(soft, hard)
    return Ulimit(name="nofile", soft=soft, hard=hard)


@dataclass
class _Started:
    target: RunningTarget
    container: Container
    cgroup: Cgroup | None
    ready_s: float | None = None
    logs: threading.Thread | None = None
    stream: Iterable[bytes] | None = None
    final: CgroupUsage | None = None
    oom_killed: bool = False


class DockerLauncher:
    """Starts targets as containers and guarantees their removal.

    Same interface as :class:`~harness.launch.local.LocalLauncher`, plus :meth:`build`,
    :meth:`usage`, :meth:`cgroup` and :meth:`oom_killed`. Connects at construction and
    raises EngineUnavailable (one line) when no engine answers, so nothing is
    half-started; then removes the containers of harnesses that died
    (:attr:`removed_leftovers`). ``target_cpus`` is the CPU set every target is confined
    to (empty: any); ``grace_s`` is the time between SIGTERM and removal by force;
    ``base_image`` (default: :data:`LOCAL_BASE_IMAGE` if the engine has it, else
    :data:`DEFAULT_BASE_IMAGE`) is the Dockerfiles' ``BASE_IMAGE``; ``wheelhouse``
    holds one folder of wheels per target; ``run_id`` goes into the containers' labels.
    """

    name = "docker"
    builds_images = True
    isolation = "a container"
    cgroup_unavailable: str | None = None

    def __init__(
        self,
        *,
        target_cpus: Iterable[int] = (),
        grace_s: float = 5.0,
        base_image: str | None = None,
        wheelhouse: Path = WHEELHOUSE,
        run_id: str | None = None,
        client: docker.DockerClient | None = None,
    ) -> None:
        self._own_client = client is None
        self.client = client or connect()
        self.target_cpus = frozenset(target_cpus)
        self.grace_s = grace_s
        self.wheelhouse = wheelhouse
        self.run_id = run_id or "adhoc-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.owner = _owner()
        self.instance = uuid.uuid4().hex
        self.remote_host = _engine_host()
        self._started: dict[tuple[str, int], _Started] = {}
        self._stopped: dict[tuple[str, int], _Started] = {}
        self._images: dict[str, BuiltImage] = {}
        self.base_image = base_image or (
            LOCAL_BASE_IMAGE if self._has_image(LOCAL_BASE_IMAGE) else DEFAULT_BASE_IMAGE
        )
        self.removed_leftovers = self.remove_leftovers()

    def engine_version(self) -> str | None:
        """The engine's version, for the environment table (None when it does not say)."""
        try:
            version = self.client.version().get("Version")
        except DockerException:
            return None
        return None if version is None else str(version)

    def __enter__(self) -> DockerLauncher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _has_image(self, name: str) -> bool:
        try:
            self.client.images.get(name)
        except ImageNotFound:
            return False
        return True

    def remove_leftovers(self) -> list[str]:
        """Remove containers whose owning harness on this host has died; their names."""
        removed = []
        for container in self.client.containers.list(all=True, filters={"label": LABEL_OWNER}):
            if _owner_gone(container.labels.get(LABEL_OWNER, "")):
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
                    removed.append(container.name or container.id or "?")
        return removed

    def _base_image_id(self) -> str:
        try:
            return self.client.images.get(self.base_image).id or ""
        except ImageNotFound:
            pass
        try:
            return self.client.images.pull(self.base_image).id or ""
        except DockerException as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LaunchError(
                f"base image {self.base_image} is not on the engine and cannot be pulled ({reason}); "
                f"build a local one with `make docker-base` (no registry needed)"
            ) from exc

    def build(self, config: TargetConfig, directory: Path, *, log_path: Path | None = None) -> BuiltImage:
        """Build the image of ``config`` (whose folder is ``directory``) unless it exists.

        The build log is appended to ``log_path`` if given. Raises LaunchError quoting the
        end of the build log when the build fails.
        """
        context = build_context(config, directory, self.wheelhouse / config.name)
        base_id = self._base_image_id()
        digest = hashlib.sha256(context + f"\0{self.base_image}\0{base_id}".encode()).hexdigest()
        tag = f"{IMAGE_REPOSITORY}/{config.name}:{digest[:16]}"
        if self._has_image(tag):
            image = BuiltImage(tag, built=False, build_s=0.0)
            self._images[config.name] = image
            return image
        started = time.monotonic()
        lines: list[str] = []
        try:
            _, log = self.client.images.build(
                fileobj=io.BytesIO(context),
                custom_context=True,
                dockerfile=f"{directory.resolve().name}/Dockerfile",
                tag=tag,
                buildargs={"BASE_IMAGE": self.base_image},
                labels={LABEL: "1", LABEL_TARGET: config.name},
                network_mode="none",
                pull=False,
                rm=True,
                forcerm=True,
            )
            lines = log_lines(log)
        except BuildError as exc:
            lines = log_lines(exc.build_log)
            detail = "".join(lines).strip().splitlines()[-15:]
            raise LaunchError(
                f"{config.name}: image build failed: {exc.msg} (is the wheelhouse current? "
                f"`make wheelhouse`); end of the build log:\n" + "\n".join(detail)
            ) from exc
        except APIError as exc:
            raise LaunchError(f"{config.name}: image build failed: {exc.explanation or exc}") from exc
        finally:
            if log_path is not None and lines:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with log_path.open("a", encoding="utf-8") as handle:
                    handle.write(f"$ docker build {tag} (base {self.base_image})\n{''.join(lines)}")
        image = BuiltImage(tag, built=True, build_s=time.monotonic() - started)
        self._images[config.name] = image
        return image

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
        """Start ``config`` in a container and wait until it is ready; build its image first if needed.

        As :meth:`LocalLauncher.start`: ready means ``GET config.ready_path`` answers 200
        within ``ready_timeout_s``; ``cpus`` overrides ``target_cpus``; ``port`` (default:
        a free one) is where it listens, on the host's network. ``limits`` sets the
        container's CPU quota and memory limit. ``env`` is the container's environment
        besides ``config.env`` (the host's is not passed on). Raises LaunchError, quoting the
        container's log, when it cannot start, exits early or never becomes ready; the
        container is removed then.
        """
        image = self._images.get(config.name) or self.build(config, directory, log_path=log_path)
        if port is None:
            port = free_port() if self.remote_host is None else random.randint(20_000, 60_999)
        bind = LOOPBACK if self.remote_host is None else "0.0.0.0"
        argv = config.argv(python="python", host=bind, port=port, workers=workers)
        workdir = posixpath.normpath(f"{TARGETS_IN_IMAGE}/{directory.resolve().name}/{config.app_dir}")
        environment = {**config.env, **(env or {}), "PYTHONUNBUFFERED": "1"}
        pinned = self.target_cpus if cpus is None else frozenset(cpus)
        limits = limits or Limits()
        memory = limits.memory_bytes
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(argv)}  (image {image.tag}, cwd {workdir})\n".encode())
        began = time.monotonic()
        try:
            container = self.client.containers.create(
                image.tag,
                argv,
                name=f"gwbench-{config.name}-{uuid.uuid4().hex[:8]}",
                labels={
                    LABEL: "1",
                    LABEL_RUN: self.run_id,
                    LABEL_TARGET: config.name,
                    LABEL_OWNER: self.owner,
                    LABEL_LAUNCHER: self.instance,
                },
                environment=environment,
                working_dir=workdir,
                network_mode="host",
                nano_cpus=None if limits.cpus is None else round(limits.cpus * 1e9),
                cpuset_cpus=format_cpu_list(pinned) if pinned else None,
                mem_limit=memory,
                memswap_limit=memory,
                ulimits=[_nofile()],
            )
        except DockerException as exc:
            raise LaunchError(f"{config.name}: cannot create its container: {exc}") from exc
        host = self.remote_host or LOOPBACK
        running = RunningTarget(
            name=config.name, host=host, port=port, pid=0, log_path=log_path, workers=workers
        )
        self._started[(config.name, port)] = _Started(running, container, None)
        try:
            container.start()
            container.reload()
        except DockerException as exc:
            self.stop(running)
            raise LaunchError(f"{config.name}: cannot start its container: {exc}") from exc
        running = self._record_pid(running, container)
        self._follow_logs(running)
        deadline = began + ready_timeout_s
        while True:
            container.reload()
            if container.status not in ("created", "running"):
                code = container.attrs.get("State", {}).get("ExitCode")
                self.stop(running)
                raise LaunchError(exited_early(f"{config.name}: container", code, log_path))
            answered = config.ready_any_answer
            if health_ok(running.host, port, config.ready_path, timeout_s=1.0, any_status=answered):
                self._started[(config.name, port)].ready_s = time.monotonic() - began
                return running
            if time.monotonic() > deadline:
                self.stop(running)
                raise LaunchError(
                    f"{config.name}: not ready after {ready_timeout_s:.0f} s "
                    f"(GET {config.ready_path} on port {port}); last lines of {log_path}:\n{tail(log_path)}"
                )
            time.sleep(0.05)

    def _record_pid(self, running: RunningTarget, container: Container) -> RunningTarget:
        """Give ``running`` the host pid of the container's init process, if this host sees it."""
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        try:
            mine = pid > 0 and (container.id or "?") in Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            mine = False  # a remote engine: its processes are not ours to see
        started = self._started.pop((running.name, running.port))
        if mine:
            running = RunningTarget(
                name=running.name,
                host=running.host,
                port=running.port,
                pid=pid,
                log_path=running.log_path,
                workers=running.workers,
            )
            started.cgroup = cgroup_of(pid)
        started.target = running
        self._started[(running.name, running.port)] = started
        return running

    def _follow_logs(self, running: RunningTarget) -> None:
        started = self._started[(running.name, running.port)]
        stream = started.container.logs(stream=True, follow=True, stdout=True, stderr=True)
        started.stream = stream

        def pump() -> None:
            with running.log_path.open("ab") as log, contextlib.suppress(Exception):
                for chunk in stream:
                    log.write(chunk)
                    log.flush()

        started.logs = threading.Thread(target=pump, name=f"gwbench-logs-{running.name}", daemon=True)
        started.logs.start()

    def stop(self, target: RunningTarget) -> None:
        """Stop a target's container (SIGTERM, grace period) and remove it. Safe to call twice."""
        started = self._started.get((target.name, target.port))
        if started is not None:
            self._terminate([started])

    def close(self) -> None:
        """Remove every container this launcher made, all at once.

        Also those it had asked the engine for but not heard back about (a Ctrl-C in
        between). A KeyboardInterrupt during the grace period removes everything at once
        and is then re-raised.
        """
        try:
            self._terminate(list(self._started.values()))
        finally:
            with contextlib.suppress(DockerException):
                for container in self.client.containers.list(
                    all=True, filters={"label": f"{LABEL_LAUNCHER}={self.instance}"}
                ):
                    with contextlib.suppress(NotFound):
                        container.remove(force=True)
            if self._own_client:
                self.client.close()

    def _terminate(self, started: list[_Started]) -> None:
        for item in started:
            if item.cgroup is not None and item.final is None:
                # The group goes with the container's last process: read it while it is there.
                item.final = item.cgroup.usage()
        try:
            for item in started:
                with contextlib.suppress(DockerException):
                    item.container.kill(signal="SIGTERM")
            deadline = time.monotonic() + self.grace_s
            for item in started:
                with contextlib.suppress(DockerException, OSError):
                    item.container.wait(timeout=max(deadline - time.monotonic(), 0.1))
        finally:
            # Also reached on a second Ctrl-C: whatever is left is removed now.
            for item in started:
                with contextlib.suppress(DockerException):
                    item.container.reload()
                    item.oom_killed = bool(item.container.attrs.get("State", {}).get("OOMKilled"))
                with contextlib.suppress(NotFound):
                    item.container.remove(force=True)
                if item.logs is not None:
                    item.logs.join(timeout=2.0)
                closer = getattr(item.stream, "close", None)
                if closer is not None:
                    with contextlib.suppress(Exception):
                        closer()
                self._started.pop((item.target.name, item.target.port), None)
                self._stopped[(item.target.name, item.target.port)] = item

    def is_alive(self, target: RunningTarget) -> bool:
        """Whether the target's container is still running."""
        started = self._started.get((target.name, target.port))
        if started is None:
            return False
        try:
            started.container.reload()
        except DockerException:
            return False
        return started.container.status == "running"

    def running(self) -> list[RunningTarget]:
        """Targets started and not yet stopped."""
        return [started.target for started in self._started.values()]

    def _record(self, target: RunningTarget) -> _Started | None:
        key = (target.name, target.port)
        return self._started.get(key) or self._stopped.get(key)

    def cgroup(self, target: RunningTarget) -> Cgroup | None:
        """The container's control group while it runs; None for a remote engine or once stopped."""
        started = self._started.get((target.name, target.port))
        return None if started is None else started.cgroup

    def usage(self, target: RunningTarget) -> CgroupUsage | None:
        """The container's cgroup counters: live while it runs, the last reading once stopped.

        None for a remote engine (its cgroup files are on another machine).
        """
        record = self._record(target)
        if record is None:
            return None
        if record.final is not None or record.cgroup is None:
            return record.final
        return record.cgroup.usage()

    def oom_killed(self, target: RunningTarget) -> bool:
        """Whether the kernel killed a process of the container for going over its memory limit."""
        record = self._record(target)
        if record is None:
            return False
        usage = self.usage(target)
        return record.oom_killed or bool(usage is not None and usage.oom_kills)

    def ready_s(self, target: RunningTarget) -> float | None:
        """Seconds from asking the engine for the container to its first 200 on the ready path."""
        record = self._record(target)
        return None if record is None else record.ready_s

    def image(self, name: str) -> BuiltImage | None:
        """The image this launcher built or found for target ``name``, if any yet."""
        return self._images.get(name)
