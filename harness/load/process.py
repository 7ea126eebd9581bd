"""Run a driver in fresh child processes that hand their results back.

The orchestrating process never measures (pyperf's rule): each driver runs in
a spawned process, one uvloop event loop each, pinned to the generator CPUs.
A load split over N processes (``ClosedLoad.split``, ``OpenLoad.split``) runs
as N children that measure the same window: each says ``ready`` once imported
and pinned, the parent then sends them all one ``begin`` time on the shared
monotonic clock, and each starts its warm-up at that instant. Over its pipe a
child sends (``ChildMessage``) ``ready``, ``window`` start and end with the
clock reading, then ``result`` with its LoadResult or ``error`` with a message.
The parent calls ``on_window`` once when every child's window has opened and
once when every one has closed, so server monitoring covers the measured
window, and merges the results. With a load profile, children also send a
``window`` event ``mark`` at each boundary between stages; the parent calls
``on_window("mark")`` once every child has passed that boundary, and merges
the results stage by stage.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from harness.load.arrivals import OpenLoad
from harness.load.connection import clock
from harness.load.native import ClosedLoad, ensure_loopback, run_closed
from harness.load.open import run_open
from harness.load.result import LoadResult, merge_results
from harness.load.stream.results import StreamLoad, run_stream, split_stream
from harness.types import WindowCallback

Load = ClosedLoad | OpenLoad | StreamLoad
ChildMessage = (
    tuple[Literal["ready"], None]
    | tuple[Literal["window"], tuple[str, int]]
    | tuple[Literal["result"], LoadResult]
    | tuple[Literal["error"], str]
)
"""What a child sends its parent; ``window`` carries the event (start, mark, end) and the clock (ns)."""

READY_TIMEOUT_S = 60.0
"""How long a child may take to start, import the drivers and pin itself (s)."""
BEGIN_MARGIN_NS = 100_000_000
"""How far ahead of now the common begin time is set, so every child receives it in time."""


class DriverError(Exception):
    """A driver process failed; the message carries its error."""


def run(load: Load, on_window: WindowCallback = lambda _: None, *, begin_ns: int | None = None) -> LoadResult:
    """Drive ``load`` in this process with the driver of its model (closed or open) or its stream kind."""
    if isinstance(load, OpenLoad):
        return run_open(load, on_window, begin_ns=begin_ns)
    if isinstance(load, ClosedLoad):
        return run_closed(load, on_window, begin_ns=begin_ns)
    return run_stream(load, on_window, begin_ns=begin_ns)


def _try_send(conn: Connection, message: ChildMessage) -> None:
    with contextlib.suppress(OSError):  # the parent is gone: nobody is left to tell
        conn.send(message)


def _child(load: Load, cpus: frozenset[int], conn: Connection) -> None:
    def send(message: ChildMessage) -> None:
        conn.send(message)

    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        send(("ready", None))
        kind, begin_ns = conn.recv()
        if kind == "begin":
            result = run(load, lambda event: send(("window", (event, clock()))), begin_ns=begin_ns)
            send(("result", result))
    except (EOFError, BrokenPipeError):
        pass  # the parent gave up on this child
    except KeyboardInterrupt:
        _try_send(conn, ("error", "interrupted"))
    except Exception as exc:  # handed back to the parent, which reports it
        _try_send(conn, ("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals the CLI turns into an interruption (see ``harness.cli.common``)."""


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back while the block runs, then hand them on in order.

    ``Process.start()`` with the spawn method writes the child's pickled task down a
    pipe; an interruption in the middle closes that pipe and the child dies printing
    ``EOFError: Ran out of input`` with a traceback. Inside this block a signal is
    only recorded; on leaving, the handlers in place before are restored and called
    with each recorded signal (the CLI's first one raises KeyboardInterrupt there, once
    the child is started and known to the caller). Python's handlers run in the main
    thread only, so a signal delivered to another thread waits just the same. Off the
    main thread (where handlers cannot be set) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def record(signum: int, _frame: object) -> None:
        caught.append(signum)

    previous = {signum: signal.signal(signum, record) for signum in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for deferred, handler in previous.items():
            signal.signal(deferred, handler)
        raised: BaseException | None = None
        for received in caught:  # every one, in order: the CLI counts them
            handler = previous[signal.Signals(received)]
            try:
                if callable(handler):
                    handler(received, None)
                elif handler == signal.SIG_DFL:
                    signal.raise_signal(received)
            except BaseException as exc:  # the first interruption is raised once all are handled
                raised = raised or exc
        if raised is not None:
            raise raised


@dataclass
class _Child:
    index: int
    process: BaseProcess
    conn: Connection
    ready: bool = False
    windows: dict[str, int] = field(default_factory=dict)
    marks: list[int] = field(default_factory=list)
    result: LoadResult | None = None

    def label(self, count: int) -> str:
        return f"driver {self.index + 1} of {count}: " if count > 1 else ""


def _pinning(cpus: Iterable[int], parts: int) -> list[frozenset[int]]:
    """The CPUs of each child: all of ``cpus`` for one child, else one each, round-robin."""
    ordered = sorted(set(cpus))
    if parts == 1 or not ordered:
        return [frozenset(ordered)] * parts
    return [frozenset({ordered[index % len(ordered)]}) for index in range(parts)]


def _spawn(loads: list[Load], cpus: Iterable[int], children: list[_Child]) -> None:
    """Start one child per load, appending each to ``children`` as it starts."""
    context = multiprocessing.get_context("spawn")
    for index, (part, pinned) in enumerate(zip(loads, _pinning(cpus, len(loads)), strict=True)):
        parent_conn, child_conn = context.Pipe()
        process = context.Process(
            target=_child, args=(part, pinned, child_conn), name=f"gwbench-driver-{index}", daemon=True
        )
        with signals_deferred():  # started and in ``children`` before any Ctrl-C is raised
            process.start()
            children.append(_Child(index=index, process=process, conn=parent_conn))
        child_conn.close()


def _stop(children: list[_Child], *, finished: bool) -> None:
    """Join every child: a finished one exits by itself, any other is stopped at once."""
    for child in children:
        child.process.join(timeout=5 if finished else 0)
        if child.process.is_alive():
            child.process.terminate()
            child.process.join(timeout=1)
        if child.process.is_alive():
            child.process.kill()
            child.process.join()
        child.conn.close()


def _collect(
    children: list[_Child], silence_s: float, on_message: Callable[[_Child, str, Any], None]
) -> None:
    """Start the children together once all are ready and handle their messages until all have results.

    Raises DriverError when a child reports an error, dies, or is silent too long.
    """
    count = len(children)
    pending = {child.conn: child for child in children}
    begun = False
    while pending:
        if not begun and all(child.ready for child in children):
            begin_ns = clock() + BEGIN_MARGIN_NS
            for child in children:
                child.conn.send(("begin", begin_ns))
            begun = True
        timeout_s = silence_s if begun else READY_TIMEOUT_S
        ready = wait(list(pending), timeout=timeout_s)
        if not ready:
            raise DriverError(f"driver gave no sign of life for {timeout_s:.0f} s")
        for conn in ready:
            child = pending[conn]  # type: ignore[index]
            try:
                kind, payload = child.conn.recv()
            except EOFError:
                raise DriverError(f"{child.label(count)}driver exited without a result") from None
            if kind == "error":
                raise DriverError(f"{child.label(count)}{payload}")
            if kind == "result":
                del pending[child.conn]
            on_message(child, kind, payload)


def drive_in_subprocess(
    load: Load,
    *,
    cpus: Iterable[int] = (),
    on_window: WindowCallback = lambda _: None,
    processes: int = 1,
) -> tuple[LoadResult, int]:
    """Run ``load`` split over ``processes`` spawned children, windows aligned; merge their results.

    With one process the child may run on any of ``cpus``; with more, child i
    is pinned to the i-th of ``cpus`` (sorted, round-robin). A closed load
    with fewer connections than ``processes`` runs in fewer children. Returns
    the merged result (``processes`` set to the number of children,
    ``duration_s`` the wall time from the first window start to the last
    window end, and likewise for each stage between marks) and the first
    child's pid. ``on_window`` gets ``"start"``, a ``"mark"`` per boundary
    between stages, then ``"end"``, each once every child has passed it.
    Raises DriverError when a child fails or dies, UnsafeTargetError (before
    spawning) for a non-loopback host, ValueError for ``processes`` < 1.
    Children are always joined: killed if silent for 30 s past the load's
    end, and stopped at once if this process is interrupted.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    loads: list[Load] = []
    if isinstance(load, ClosedLoad | OpenLoad):
        loads.extend(load.split(processes))
    else:
        loads.extend(split_stream(load, processes))
    silence_s = load.warmup_s + load.duration_s + load.timeout_s + 30.0
    children: list[_Child] = []
    announced: set[str] = set()
    marks_announced = 0

    def on_message(child: _Child, kind: str, payload: Any) -> None:
        nonlocal marks_announced
        if kind == "ready":
            child.ready = True
        elif kind == "window" and payload[0] == "mark":
            child.marks.append(payload[1])
            if min(len(c.marks) for c in children) > marks_announced:
                marks_announced += 1
                on_window("mark")
        elif kind == "window":
            event, at_ns = payload
            child.windows[event] = at_ns
            if event not in announced and all(event in c.windows for c in children):
                announced.add(event)
                on_window(event)
        elif kind == "result":
            child.result = payload

    finished = False
    try:
        _spawn(loads, cpus, children)
        _collect(children, silence_s, on_message)
        finished = True
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise DriverError(f"lost contact with a driver process: {exc}") from exc
    finally:
        _stop(children, finished=finished)
    results = [child.result for child in children if child.result is not None]
    pid = children[0].process.pid or 0
    if len(children) == 1:
        return results[0], pid
    if len({len(child.marks) for child in children}) > 1:
        raise DriverError(
            f"driver processes passed different numbers of stage marks: {[len(c.marks) for c in children]}"
        )
    # Each child's window start, stage marks and window end; the merged window and stages span them all.
    bounds = [
        [child.windows.get("start", 0), *child.marks, child.windows.get("end", 0)] for child in children
    ]
    spans_s = [
        (max(b[index + 1] for b in bounds) - min(b[index] for b in bounds)) / 1e9
        for index in range(len(bounds[0]) - 1)
    ]
    whole_s = (max(b[-1] for b in bounds) - min(b[0] for b in bounds)) / 1e9
    return merge_results(
        results, duration_s=whole_s, stage_durations_s=spans_s if results[0].stages else None
    ), pid
