"""A Ctrl-C while a driver child is being spawned waits until the child has its task (CI saw
``EOFError: Ran out of input`` with a traceback from a child whose parent was interrupted
while writing it)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection

import pytest

from harness.cli.common import interrupt_on_signals, restore_signals
from harness.launch.base import HURRY
from harness.load.process import signals_deferred


def _answer(conn: Connection) -> None:
    conn.send(("ready", os.getpid()))
    conn.close()


def test_ctrl_c_twice_while_a_spawn_child_starts_is_raised_after_it_started_and_both_are_counted() -> None:
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe()
    process = context.Process(target=_answer, args=(child_conn,), daemon=True)
    started = False
    handlers = interrupt_on_signals()
    try:
        with pytest.raises(KeyboardInterrupt), signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a handler would have run by now
            process.start()
            started = True
        assert started, "the interruption came before the child was started"
        assert HURRY.is_set(), "the second Ctrl-C was not handed on to the CLI's handler"
        child_conn.close()
        assert parent_conn.poll(30), "the child never got its task"
        assert parent_conn.recv() == ("ready", process.pid)
        process.join(10)
        assert process.exitcode == 0
    finally:
        restore_signals(handlers)
        HURRY.clear()
        if process.is_alive():
            process.kill()
    assert signal.getsignal(signal.SIGINT) is handlers[signal.SIGINT]


def test_off_the_main_thread_the_block_runs_as_is() -> None:
    ran: list[bool] = []

    def body() -> None:
        with signals_deferred():
            ran.append(True)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(5)
    assert ran == [True]
