"""The driver process of a round: spawned, pinned to the generator CPUs, it warms the server up,
waits for ``go``, then holds the connections (:func:`harness.load.stream.hold_connections`).

Not :func:`harness.load.drive_in_subprocess`: that one starts every child's measured window at
a common instant and hands back a LoadResult, while this driver stops between its warm-up and
its hold until the parent has read the server's memory, says when every connection has
been tried (``held``) so the parent reads it again, and ends the hold when the parent has
(``release``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from harness.idle.method import IdleError
from harness.load.process import signals_deferred
from harness.load.stream import HoldLoad, HoldResult, hold_connections
from harness.load.stream.link import CLOSE_WAIT_S

ChildMessage = (
    tuple[Literal["warmed"], HoldResult]
    | tuple[Literal["held"], float]
    | tuple[Literal["result"], HoldResult]
    | tuple[Literal["error"], str]
)
"""What the driver process sends: the warm-up's counts, the monotonic time (s) when every
connection had been tried, the hold's counts, or why it failed."""


def _driver(warmup: HoldLoad, load: HoldLoad, cpus: frozenset[int], conn: Connection) -> None:
    """The driver process: warm up, wait for ``go``, hold ``load`` until ``release`` (or its
    ``hold_s``); reports over ``conn``."""

    def send(message: ChildMessage) -> None:
        conn.send(message)

    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        send(("warmed", hold_connections(warmup)))
        if conn.recv() == "go":
            held = hold_connections(load, lambda: send(("held", time.monotonic())), conn.poll)
            send(("result", held))
    except (EOFError, BrokenPipeError):
        pass  # the parent gave up on this driver
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            send(("error", "interrupted"))
    except Exception as exc:  # handed back to the parent, which reports it
        with contextlib.suppress(OSError):
            send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


@contextlib.contextmanager
def driver_process(
    warmup: HoldLoad, load: HoldLoad, cpus: Sequence[int]
) -> Iterator[tuple[Connection, int | None]]:
    """A spawned :func:`_driver`: the parent's end of its pipe and the process id; joined on leaving
    (stopped at once when leaving on an exception, as the connections need not close cleanly then)."""
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe()
    process: BaseProcess = context.Process(
        target=_driver, args=(warmup, load, frozenset(cpus), child_conn), name="gwbench-idle", daemon=True
    )
    started = finished = False
    try:
        with signals_deferred():  # a Ctrl-C is raised once the child is started, and it is stopped
            process.start()
            started = True
        child_conn.close()
        yield parent_conn, process.pid
        finished = True
    finally:
        child_conn.close()
        if started:
            process.join(timeout=CLOSE_WAIT_S + 3 if finished else 0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=2)
            if process.is_alive():
                process.kill()
                process.join()
        parent_conn.close()


def expect(conn: Connection, kind: str, timeout_s: float) -> Any:
    """The payload of the driver's next message, which must be ``kind``; IdleError otherwise."""
    if not conn.poll(timeout_s):
        raise IdleError(f"the driver sent nothing for {timeout_s:.0f} s (waiting for {kind!r})")
    try:
        got, payload = conn.recv()
    except EOFError:
        raise IdleError("the driver exited without a result") from None
    if got == "error":
        raise IdleError(f"driver: {payload}")
    if got != kind:
        raise IdleError(f"the driver sent {got!r} when {kind!r} was due")
    return payload
