"""gwbench's Locust plugin: the measured window, the generator's CPU time and the failures, handed back.

Not imported by the harness (importing ``locust`` monkey-patches the whole
process for gevent): ``harness.load.locust`` passes this file to Locust beside
the locustfile (``-f locustfile.py,locust_plugin.py``), so Locust imports it on
the master and on every worker; a worker started with ``-f -`` downloads it
from the master. It imports nothing but the standard library and Locust.

What it does, by node:

- local or master: at ``test_start`` it waits ``--gwbench-warmup`` seconds,
  then opens the measured window: it resets Locust's statistics, tells every
  worker to do the same (the ``gwbench_window`` message), notes the monotonic
  clock and its own CPU time, and writes ``start <ns>`` to the pipe
  ``--gwbench-events-fd``; ``--gwbench-duration`` seconds later it quits the
  run as Locust's own ``--run-time`` would; at ``test_stop`` it closes the
  window the same way (``end <ns>``). At ``quit`` (after Locust wrote its ``--json-file``) it
  writes :class:`Report` as JSON to ``--gwbench-report``.
- worker: on ``gwbench_window`` it resets its own statistics (the data it had
  not yet reported belongs to the warm-up) and notes its CPU time; each stats
  report to the master carries its CPU time in the window so far
  (:class:`WorkerCpu`), the last one taken after its users stopped.

A worker's report sent just before it got ``gwbench_window`` but received
by the master just after the master's reset adds up to one report interval
(3 s) of that worker's warm-up to the window: the same race as Locust's own
``--reset-stats``, rare (the gap is a message's latency) but possible.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from collections.abc import Callable
from typing import Any, TypedDict

import gevent  # type: ignore[import-untyped]  # gevent ships no type information
from locust import __version__, events
from locust.env import Environment
from locust.event import EventHook
from locust.runners import ExceptionDict, MasterRunner, WorkerRunner

FORMAT = 1
WINDOW_MESSAGE = "gwbench_window"
REPORT_KEY = "gwbench"


class WorkerCpu(TypedDict):
    """What a worker adds to each stats report (under ``REPORT_KEY``): its CPU time in the window (s)."""

    cpu_s: float
    final: bool  # taken after its users stopped


class ErrorRow(TypedDict):
    """One of Locust's failure rows: ``error`` is its text (``repr`` of the exception, addresses masked)."""

    method: str
    name: str
    error: str
    occurrences: int


class Report(TypedDict):
    """What the local or master node writes at quit (format 1); times on the monotonic clock (ns)."""

    format: int
    locust_version: str
    role: str  # "local" or "master"
    window_start_ns: int | None
    window_end_ns: int | None
    cpu_s: float  # this node's CPU time in the window
    workers: dict[str, WorkerCpu]  # by worker id, the last report of each
    errors: list[ErrorRow]
    exceptions: list[str]  # errors raised in the locustfile's code, with their counts
    peak_users: int
    shape: bool  # a LoadTestShape drove the users


def _listen(hook: EventHook) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``hook.add_listener`` as a typed decorator (Locust's EventHook is untyped)."""
    add: Callable[[Callable[..., None]], Callable[..., None]] = hook.add_listener
    return add


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _described(exception: ExceptionDict) -> str:
    """One of Locust's exception rows as ``division by zero at File "x.py", line 6, in divide (3x)``.

    Locust keeps ``str(exception)`` and the frames, not the exception's type.
    """
    frames = [
        line.strip() for line in exception["traceback"].splitlines() if line.strip().startswith("File ")
    ]
    where = f" at {frames[-1]}" if frames else ""
    return f"{exception['msg']}{where} ({exception['count']}x)"


class _Node:
    """This process's part: the window as it saw it and what the workers reported."""

    def __init__(self) -> None:
        self.environment: Environment | None = None
        self.window_start_ns: int | None = None
        self.window_end_ns: int | None = None
        self.cpu_start_s = 0.0
        self.cpu_end_s: float | None = None
        self.peak_users = 0
        self.testing = False
        self.workers: dict[str, WorkerCpu] = {}

    @property
    def is_worker(self) -> bool:
        return isinstance(self.environment and self.environment.runner, WorkerRunner)

    def option(self, name: str, default: Any) -> Any:
        options = self.environment.parsed_options if self.environment else None
        return getattr(options, name, default) if options is not None else default

    def signal(self, event: str, at_ns: int) -> None:
        fd = int(self.option("gwbench_events_fd", -1))
        if fd >= 0 and not self.is_worker:
            with contextlib.suppress(OSError):  # the harness stopped listening: it is stopping this run
                os.write(fd, f"{event} {at_ns}\n".encode("ascii"))

    def open_window(self) -> None:
        environment = self.environment
        if environment is None or environment.runner is None or self.window_start_ns is not None:
            return
        if not self.testing:
            return  # the test stopped during its warm-up: no window
        environment.runner.stats.reset_all()
        if isinstance(environment.runner, MasterRunner):
            environment.runner.send_message(WINDOW_MESSAGE)
        self.cpu_start_s = _cpu_s()
        self.window_start_ns = time.monotonic_ns()
        self.signal("start", self.window_start_ns)
        duration_s = float(self.option("gwbench_duration", 0.0))
        if duration_s > 0:
            # What Locust's own --run-time does when it expires in a headless run.
            gevent.spawn_later(duration_s, environment.runner.quit)

    def close_window(self) -> None:
        if self.window_start_ns is None or self.window_end_ns is not None:
            return
        self.window_end_ns = time.monotonic_ns()
        self.cpu_end_s = _cpu_s()
        self.signal("end", self.window_end_ns)

    def cpu_in_window_s(self) -> float:
        if self.window_start_ns is None:
            return 0.0
        end = self.cpu_end_s if self.cpu_end_s is not None else _cpu_s()
        return end - self.cpu_start_s

    def report(self) -> Report:
        environment = self.environment
        assert environment is not None and environment.runner is not None
        runner = environment.runner
        errors: list[ErrorRow] = [
            {
                "method": str(row["method"]),
                "name": str(row["name"]),
                "error": str(row["error"]),
                "occurrences": int(row["occurrences"]),
            }
            for row in runner.stats.serialize_errors().values()
        ]
        return {
            "format": FORMAT,
            "locust_version": __version__,
            "role": "master" if isinstance(runner, MasterRunner) else "local",
            "window_start_ns": self.window_start_ns,
            "window_end_ns": self.window_end_ns,
            "cpu_s": self.cpu_in_window_s(),
            "workers": dict(self.workers),
            "errors": errors,
            "exceptions": [_described(row) for row in runner.exceptions.values()],
            "peak_users": self.peak_users,
            "shape": environment.shape_class is not None,
        }


_node = _Node()


@_listen(events.init_command_line_parser)
def _add_options(parser: Any, **_: Any) -> None:
    parser.add_argument(
        "--gwbench-warmup", type=float, default=0.0, include_in_web_ui=False,
        help="gwbench: seconds after the test starts when the measured window opens (statistics reset)",
    )  # fmt: skip
    parser.add_argument(
        "--gwbench-duration", type=float, default=0.0, include_in_web_ui=False,
        help="gwbench: seconds the measured window lasts before the run quits (0: until --run-time)",
    )  # fmt: skip
    parser.add_argument(
        "--gwbench-report", type=str, default="", include_in_web_ui=False,
        help="gwbench: file the master (or the only node) writes its report to at quit",
    )  # fmt: skip
    parser.add_argument(
        "--gwbench-events-fd", type=int, default=-1, include_in_web_ui=False,
        help="gwbench: pipe the master (or the only node) writes the window's start and end to",
    )  # fmt: skip


@_listen(events.init)
def _on_init(environment: Environment, **_: Any) -> None:
    _node.environment = environment
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(WINDOW_MESSAGE, _on_window_message)


def _on_window_message(environment: Environment, **_: Any) -> None:
    if environment.runner is not None and _node.window_start_ns is None:
        environment.runner.stats.reset_all()
        _node.cpu_start_s = _cpu_s()
        _node.window_start_ns = time.monotonic_ns()


@_listen(events.test_start)
def _on_test_start(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    _node.testing = True
    warmup_s = float(_node.option("gwbench_warmup", 0.0))
    if warmup_s <= 0:
        _node.open_window()
    else:
        gevent.spawn_later(warmup_s, _node.open_window)


@_listen(events.spawning_complete)
def _on_spawning_complete(user_count: int, **_: Any) -> None:
    _node.peak_users = max(_node.peak_users, user_count)


@_listen(events.test_stop)
def _on_test_stop(**_: Any) -> None:
    _node.testing = False
    _node.close_window()


@_listen(events.report_to_master)
def _on_report_to_master(data: dict[str, Any], **_: Any) -> None:
    cpu: WorkerCpu = {"cpu_s": _node.cpu_in_window_s(), "final": _node.cpu_end_s is not None}
    data[REPORT_KEY] = cpu


@_listen(events.worker_report)
def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    if REPORT_KEY in data:
        _node.workers[client_id] = data[REPORT_KEY]


@_listen(events.quit)
def _on_quit(**_: Any) -> None:
    path = str(_node.option("gwbench_report", ""))
    if not path or _node.is_worker or _node.environment is None:
        return
    temporary = f"{path}.tmp"
    with open(temporary, "w") as file:
        json.dump(_node.report(), file)
    os.replace(temporary, path)
