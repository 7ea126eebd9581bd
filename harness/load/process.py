"""Run a driver in a fresh child process that hands its result back.

The orchestrating process never measures (pyperf's rule): the driver runs in a
spawned process pinned to the generator CPUs and sends back, over a pipe,
``("window", "start")``, ``("window", "end")`` and finally ``("result", LoadResult)``
or ``("error", message)``. The parent forwards the window events to a callback so
server monitoring covers exactly the measured window.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection

from harness.load.native import ClosedLoad, LoadResult, ensure_loopback, run_closed


class DriverError(Exception):
    """The driver process failed; the message carries its error."""


def _child(load: ClosedLoad, cpus: frozenset[int], conn: Connection) -> None:
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        result = run_closed(load, on_window=lambda event: conn.send(("window", event)))
        conn.send(("result", result))
    except KeyboardInterrupt:
        conn.send(("error", "interrupted"))
    except Exception as exc:  # handed back to the parent, which reports it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def drive_in_subprocess(
    load: ClosedLoad,
    *,
    cpus: Iterable[int] = (),
    on_window: Callable[[str], None] = lambda _: None,
) -> tuple[LoadResult, int]:
    """Run :func:`run_closed` in a spawned child pinned to ``cpus``.

    Returns the result and the child's pid. Raises DriverError when the child
    fails or dies, UnsafeTargetError (before spawning) for a non-loopback host.
    The child is always joined: killed if it outlives the load by 30 s, and
    stopped at once if this process is interrupted.
    """
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe(duplex=False)
    process = context.Process(
        target=_child, args=(load, frozenset(cpus), child_conn), name="gwbench-driver", daemon=True
    )
    process.start()
    child_conn.close()
    deadline_s = load.warmup_s + load.duration_s + load.timeout_s + 30.0
    result: LoadResult | None = None
    error = "driver exited without a result"
    try:
        while True:
            if not parent_conn.poll(deadline_s):
                error = f"driver gave no sign of life for {deadline_s:.0f} s"
                break
            try:
                kind, payload = parent_conn.recv()
            except EOFError:
                break
            if kind == "window":
                on_window(payload)
            elif kind == "result":
                result = payload
                break
            else:
                error = str(payload)
                break
    finally:
        # After a result the child exits by itself; otherwise (an error, or Ctrl-C /
        # SIGTERM reaching only this process) it is stopped at once.
        process.join(timeout=5 if result is not None else 0)
        if process.is_alive():
            process.terminate()
            process.join(timeout=1)
        if process.is_alive():
            process.kill()
            process.join()
        parent_conn.close()
    if result is None:
        raise DriverError(error)
    return result, process.pid or 0
