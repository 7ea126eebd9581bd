"""The Locust driver: Locust (headless, FastHttpUser) drives the closed model, and its numbers map to ours.

Locust runs as its own process (``python -m locust``), pinned to the generator
CPUs, with two files: the locustfile (one generated from the scenario's
weighted endpoints, see :func:`default_locustfile`, or a user's own, e.g.
``scenarios/locust/journey.py``) and gwbench's plugin (``locust_plugin.py``
beside this file, copied next to the locustfile), which hands back the
measured window, the generator's CPU time and Locust's failures. Locust is
never imported here: it monkey-patches the whole process for gevent.

Timeline, one Locust run: the users start over the first half of the warm-up
(all at once without one), the plugin resets Locust's statistics when the
warm-up ends (on the master and on every worker: see ``locust_plugin.py``
for the rare race this shares with Locust's ``--reset-stats``), and quits
the run ``duration_s`` later, as Locust's ``--run-time`` would. ``on_window`` is
called when the plugin reports the window's start and end. A LoadTestShape
in the locustfile sets the users itself; the warm-up and the window are
timed the same way, so a shape that ramps up during the warm-up is measured
at its plateau.

How Locust counts, and how its numbers map into :class:`LoadResult`: see
:mod:`harness.load.locust_stats`.

Several processes and machines: ``processes=N`` runs ``locust --processes N``
(a master and N forked workers on this machine, master bound to loopback).
``master=True`` runs a master that waits for ``expect_workers`` workers,
started here by :func:`start_workers` or on other machines by the command
:func:`worker_command` prints (``python -m locust --worker --master-host
<this machine> --master-port <port> -f -``: the worker downloads the
locustfile and the plugin from the master, so it needs only the same Locust
version). The master then binds a non-loopback address only with
``allow_remote``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from harness.load.locust_stats import LocustError, StatsEntry, to_load_result
from harness.load.native import ClosedLoad, ensure_loopback
from harness.load.result import LoadResult
from harness.net import free_port, http_origin
from harness.types import WindowCallback

if TYPE_CHECKING:
    from harness.load.locust_plugin import Report

PLUGIN = Path(__file__).with_name("locust_plugin.py")
LOCUST = (sys.executable, "-m", "locust")
DEFAULT_MASTER_PORT = 5557
INSTALL_HINT = "make setup (or pip install -c constraints.txt locust)"
_EXIT_GRACE_S = 30.0
_STOP_GRACE_S = 5.0
_POLL_S = 0.2


@dataclass(frozen=True)
class LocustLoad:
    """A closed-model load for Locust: ``users`` users for ``warmup_s`` + ``duration_s`` seconds.

    The users request ``endpoints`` (path with query, integer weight) through
    the generated locustfile, or run ``locustfile`` (a user's own; then
    ``endpoints`` is ignored and the locustfile sets its own timeouts).
    ``timeout_s`` bounds each request of the generated locustfile (connect and
    read), and the whole run with a grace. Raises ValueError when neither is
    given or a number is out of range.
    """

    host: str
    port: int
    users: int
    warmup_s: float
    duration_s: float
    endpoints: tuple[tuple[str, int], ...] = ()
    locustfile: Path | None = None
    timeout_s: float = 10.0
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError(f"users must be >= 1, got {self.users}")
        if self.warmup_s < 0 or self.duration_s <= 0 or self.timeout_s <= 0:
            raise ValueError("warmup_s must be >= 0, duration_s and timeout_s > 0")
        if self.locustfile is None and not self.endpoints:
            raise ValueError("give endpoints or a locustfile")
        for path, weight in self.endpoints:
            if not path.startswith("/") or weight < 1:
                raise ValueError(f"endpoint {path!r}: the path must start with '/', the weight be >= 1")

    @classmethod
    def from_closed(cls, load: ClosedLoad) -> LocustLoad:
        """The same load as the native driver's: one endpoint, one user per connection."""
        return cls(
            host=load.host,
            port=load.port,
            users=load.concurrency,
            warmup_s=load.warmup_s,
            duration_s=load.duration_s,
            endpoints=((load.path, 1),),
            timeout_s=load.timeout_s,
            allow_remote=load.allow_remote,
        )

    @property
    def spawn_rate(self) -> float:
        """Users started per second: all within the first half of the warm-up, or at once without one."""
        return self.users / (self.warmup_s / 2) if self.warmup_s > 0 else float(self.users)

    @property
    def url(self) -> str:
        return http_origin(self.host, self.port)


def default_locustfile(endpoints: Sequence[tuple[str, int]], timeout_s: float) -> str:
    """The source of a locustfile whose one FastHttpUser requests ``endpoints`` by weight, without pause.

    Each endpoint is its own task and its own entry in Locust's statistics
    (named by its path). A failure is recorded without a time, so Locust's
    response times hold successes only.
    """
    listing = json.dumps([[path, int(weight)] for path, weight in endpoints])
    return f'''"""Generated by gwbench: the scenario's endpoints by weight, closed model, no think time."""

import json

from locust import FastHttpUser, constant

ENDPOINTS = json.loads({listing!r})


def request(path):
    def task(user):
        with user.client.get(path, name=path, catch_response=True) as response:
            if response.request_meta["exception"] is not None:
                response.request_meta["response_time"] = None  # failures stay out of the latencies

    task.__name__ = f"GET {{path}}"
    return task


class GwbenchUser(FastHttpUser):
    wait_time = constant(0)
    connection_timeout = {float(timeout_s)!r}
    network_timeout = {float(timeout_s)!r}
    default_headers = {{"User-Agent": "gwbench"}}
    tasks = {{request(path): weight for path, weight in ENDPOINTS}}
'''


def _taskset(cpus: Iterable[int]) -> list[str]:
    cpu_set = sorted(set(cpus))
    if not cpu_set:
        return []
    taskset = shutil.which("taskset")
    if taskset is None:
        raise LocustError("taskset not found (to pin Locust to its CPUs): apt-get install util-linux")
    return [taskset, "--cpu-list", ",".join(map(str, cpu_set))]


def run_locust(
    load: LocustLoad,
    *,
    cpus: Iterable[int] = (),
    on_window: WindowCallback = lambda _: None,
    processes: int = 1,
    master: bool = False,
    expect_workers: int = 0,
    master_bind_host: str = "127.0.0.1",
    master_bind_port: int = DEFAULT_MASTER_PORT,
    workers_timeout_s: float = 60.0,
    output_dir: Path | None = None,
) -> LoadResult:
    """Drive ``load`` with Locust, headless; blocks until done.

    ``on_window("start")`` and ``on_window("end")`` are called as the measured
    window opens and closes. Locust runs pinned to ``cpus`` (``taskset``),
    as one process, or with ``processes`` > 1 as a master and that many
    forked workers, or with ``master`` as a master waiting up to
    ``workers_timeout_s`` for ``expect_workers`` workers on
    ``master_bind_host:master_bind_port``. Locust's own output
    (``locust.json``, the plugin's ``report.json``, ``locust.log``) is kept in
    ``output_dir`` when given; Locust starts there, without the caller's
    ``LOCUST_*`` variables, so no ``locust.conf`` or environment of the
    caller changes the run. Raises UnsafeTargetError for a non-loopback
    target or master address unless ``load.allow_remote``, ValueError for a
    bad combination, LocustError when Locust fails or its numbers do not add
    up. Every Locust process is stopped and reaped, also when this function
    leaves early (an exception, KeyboardInterrupt) or the run overstays its
    time.
    """
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    if importlib.util.find_spec("locust") is None:
        raise LocustError(f"Locust is not installed for {sys.executable}: {INSTALL_HINT}")
    if processes < 1 or (master and processes > 1) or (master and expect_workers < 1):
        raise ValueError("processes must be >= 1, a master needs expect_workers >= 1 and no processes")
    if master:
        ensure_loopback(master_bind_host, allow_remote=load.allow_remote)
    topology = _topology(
        processes, master, expect_workers, master_bind_host, master_bind_port, workers_timeout_s
    )
    options = _taskset(cpus), topology
    limit_s = load.warmup_s + load.duration_s + load.timeout_s + _EXIT_GRACE_S
    limit_s += workers_timeout_s if master else 0.0
    workers = expect_workers if master else processes if processes > 1 else 0
    if output_dir is not None:
        return _drive(load, output_dir, options, workers, limit_s=limit_s, on_window=on_window)
    with tempfile.TemporaryDirectory(prefix="gwbench-locust-") as scratch:
        return _drive(load, Path(scratch), options, workers, limit_s=limit_s, on_window=on_window)


def _topology(
    processes: int, master: bool, workers: int, bind_host: str, bind_port: int, wait_s: float
) -> list[str]:
    """Locust's options for one process, ``processes`` forked ones, or a master of ``workers``."""
    if processes > 1:
        port = free_port()
        return [
            f"--processes={processes}",
            "--master-bind-host=127.0.0.1",
            f"--master-bind-port={port}",
            f"--master-port={port}",  # where the forked workers connect
        ]
    if master:
        return [
            "--master",
            f"--expect-workers={workers}",
            f"--expect-workers-max-wait={math.ceil(wait_s)}",
            f"--master-bind-host={bind_host}",
            f"--master-bind-port={bind_port}",
        ]
    return []


def _drive(
    load: LocustLoad,
    directory: Path,
    options: tuple[list[str], list[str]],
    workers: int,
    *,
    limit_s: float,
    on_window: WindowCallback,
) -> LoadResult:
    """Run Locust in ``directory`` (``options``: the pinning prefix, the topology) and map its output."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("locust.json", "report.json"):  # a failed run must not read an earlier run's
        (directory / stale).unlink(missing_ok=True)
    prefix, topology = options
    files = ",".join(map(str, _locustfiles(load, directory)))
    command = [*prefix, *LOCUST, "-f", files, *_run_options(load, directory), *topology]
    _run(command, directory, limit_s=limit_s, on_window=on_window)
    try:
        entries: list[StatsEntry] = json.loads((directory / "locust.json").read_text())
        report: Report = json.loads((directory / "report.json").read_text())
    except FileNotFoundError as exc:
        missing = Path(str(exc.filename)).name
        raise LocustError(f"Locust wrote no {missing}: {_tail(directory)}") from None
    if len(report["workers"]) != workers:
        raise LocustError(f"{len(report['workers'])} Locust workers reported, {workers} expected")
    return to_load_result(entries, report)


def _locustfiles(load: LocustLoad, directory: Path) -> list[Path]:
    """The locustfile and the plugin, side by side in ``directory`` (a user's locustfile stays put)."""
    plugin = directory / PLUGIN.name
    shutil.copyfile(PLUGIN, plugin)
    if load.locustfile is not None:
        return [load.locustfile.resolve(), plugin]
    locustfile = directory / "gwbench_locustfile.py"
    locustfile.write_text(default_locustfile(load.endpoints, load.timeout_s))
    return [locustfile, plugin]


def _run_options(load: LocustLoad, directory: Path) -> list[str]:
    # --run-time is a backstop: the plugin quits the run when the window has lasted duration_s.
    backstop_s = math.ceil(load.warmup_s + load.duration_s) + 5
    return [
        "--headless",
        f"--host={load.url}",
        f"--users={load.users}",
        f"--spawn-rate={load.spawn_rate!r}",
        f"--run-time={backstop_s}s",
        "--only-summary",
        f"--json-file={directory / 'locust'}",
        "--exit-code-on-error=0",  # failed requests are data, not a failed run
        f"--gwbench-warmup={load.warmup_s!r}",
        f"--gwbench-duration={load.duration_s!r}",
        f"--gwbench-report={directory / 'report.json'}",
    ]


def _environment() -> dict[str, str]:
    """This process's environment without Locust's own settings (``LOCUST_*``), which would change the run."""
    return {key: value for key, value in os.environ.items() if not key.startswith("LOCUST_")}


def _run(command: list[str], directory: Path, *, limit_s: float, on_window: WindowCallback) -> None:
    """Run Locust to the end, calling ``on_window`` as the plugin reports the window; log in ``directory``.

    Raises LocustError when it fails or outlives ``limit_s``; it is stopped in every case.
    """
    read_fd, write_fd = os.pipe()
    try:
        with open(directory / "locust.log", "wb") as log:
            process = subprocess.Popen(
                [*command, f"--gwbench-events-fd={write_fd}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,  # no locust.conf or pyproject.toml of the caller's folder applies
                env=_environment(),
                pass_fds=(write_fd,),
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop Locust ourselves
            )
    except OSError as exc:
        os.close(read_fd)
        raise LocustError(f"cannot start Locust ({exc})") from exc
    finally:
        os.close(write_fd)
    finished = False
    try:
        for event in _events(process, read_fd, time.monotonic() + limit_s):
            on_window(event)
        finished = True
    finally:
        os.close(read_fd)
        _stop(process, finished=finished)
    if process.returncode != 0:
        raise LocustError(f"Locust exited with {process.returncode}: {_tail(directory)}")


def _events(process: subprocess.Popen[bytes], read_fd: int, deadline: float) -> Iterator[str]:
    """The window events (``start``, ``end``) the plugin writes, as they come, until Locust exits.

    Raises LocustError at ``deadline`` (monotonic s). Wakes every fraction of
    a second so that a KeyboardInterrupt is handled promptly.
    """
    buffer = b""
    while process.poll() is None:
        if time.monotonic() > deadline:
            raise LocustError("Locust did not exit after its duration; stopped")
        readable, _, _ = select.select([read_fd], [], [], _POLL_S)
        if readable:
            chunk = os.read(read_fd, 4096)
            if not chunk:  # every copy of the pipe is closed: Locust is exiting
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            yield from (line.split()[0].decode("ascii") for line in lines if line.strip())
    while select.select([read_fd], [], [], 0)[0] and (chunk := os.read(read_fd, 4096)):
        buffer += chunk
    yield from (line.split()[0].decode("ascii") for line in buffer.split(b"\n") if line.strip())


def _stop(process: subprocess.Popen[bytes], *, finished: bool) -> None:
    """Stop Locust's process group and reap Locust: a finished run exits by itself, any other is stopped.

    SIGTERM first (Locust then stops its forked workers and reaps them),
    SIGKILL for whatever is left after a few seconds.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if not finished and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _tail(directory: Path, lines: int = 5) -> str:
    try:
        text = (directory / "locust.log").read_text(errors="replace")
    except FileNotFoundError:
        return "no output"
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "no output"


def worker_command(master_host: str, master_port: int = DEFAULT_MASTER_PORT) -> list[str]:
    """The command that runs one Locust worker for a master at ``master_host:master_port``.

    The worker downloads the locustfile and gwbench's plugin from the master
    (``-f -``), so the same command runs on another machine with the same
    Locust version installed (``python -m pip install locust==<version>``).
    """
    return [*LOCUST, "--worker", f"--master-host={master_host}", f"--master-port={master_port}", "-f", "-"]


@dataclass
class LocustWorkers:
    """Locust worker processes started by :func:`start_workers`; ``close()`` stops and reaps them."""

    scratch: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> LocustWorkers:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def start_workers(
    count: int,
    *,
    master_port: int,
    master_host: str = "127.0.0.1",
    cpus: Iterable[int] = (),
    allow_remote: bool = False,
    log_dir: Path | None = None,
) -> LocustWorkers:
    """Start ``count`` Locust workers on this machine for the master at ``master_host:master_port``.

    Worker i is pinned to the i-th of ``cpus`` (sorted, round-robin) and
    keeps the files it downloads from the master in a folder of its own
    (Locust writes them to the temporary folder under their own names). The
    workers wait for the master (Locust retries for minutes), take the load
    from it, and exit when it quits; close the returned handle (or use it as
    a context manager) to stop and reap them in any case. Their output goes
    to ``log_dir/locust-worker-<i>.log`` (or nowhere). Raises
    UnsafeTargetError for a non-loopback master unless ``allow_remote``.
    """
    ensure_loopback(master_host, allow_remote=allow_remote)
    ordered = sorted(set(cpus))
    workers = LocustWorkers(scratch=Path(tempfile.mkdtemp(prefix="gwbench-locust-workers-")))
    try:
        for index in range(count):
            prefix = _taskset([ordered[index % len(ordered)]] if ordered else [])
            scratch = workers.scratch / f"worker-{index}"
            scratch.mkdir()
            log_path = Path(log_dir, f"locust-worker-{index}.log") if log_dir else Path(os.devnull)
            with open(log_path, "wb") as log:
                workers.processes.append(
                    subprocess.Popen(
                        [*prefix, *worker_command(master_host, master_port)],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=scratch,
                        env={**_environment(), "TMPDIR": str(scratch)},
                        start_new_session=True,
                    )
                )
    except BaseException:
        workers.close()
        raise
    return workers
