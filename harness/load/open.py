"""The native open-model driver: requests arrive at a fixed rate, whatever the server does.

Every request has an *intended send time* drawn from the arrival process
(``uniform``: every 1/rate s; ``poisson``: exponential inter-arrival times with
mean 1/rate, seeded). At its intended time (woken by a timerfd ``Alarm``, to
the microsecond) a dispatcher hands each request to an idle connection, which
sends it; a connection that receives an answer takes the oldest waiting
request, if any. When every open connection is busy, the request waits in a
queue and the driver opens another connection, up to ``max_connections``;
connections the server closes are reopened for their next request, the
connect time counting in its latency. As in the closed model, a request on an
open connection goes through no task or future (see ``connection.py``). A
request that finds no connection within ``timeout_s`` of its intended time is
counted as ``dropped`` and never sent; once sent, a request has ``timeout_s`` to
be answered. Where the window ends does not change this: a request scheduled
inside it and still queued when it closes is sent when a connection frees
(within its timeout) and timed until its answer or its timeout.

The driver also records its own *lateness*: for each request, the time from its
intended send time to the moment the event loop got to it and offered it to a
connection (loop lag: a loop frozen, busy, or woken late). A request that then
waits for a free connection waits for the server, which is not the driver's
lateness. ``run.flags`` calls a cell generator-bound when its p99 is too high.

Latency is recorded twice: from the intended send time (the *corrected*
latency, which includes the time a request waited for the server to catch up:
what a user arriving at that moment would have seen) and from the actual send
time (*uncorrected*, what a closed-model tool reports). Requests count in the
window by their intended send time; after the window closes, the requests
still queued are sent and those sent are awaited (up to ``timeout_s`` for a
connection and ``timeout_s`` for the answer) so a stall at the end is not cut
off; throughput (``answered_in_window``) still counts only answers inside the window.
Coordinated omission and its correction: Gil Tene, "How NOT to Measure
Latency" (2015), and wrk2's README (constant throughput, corrected latency).

With a ``profile`` (``profile.py``) the arrival rate varies: after the warm-up
at the first segment's start rate, it follows the piecewise-linear profile
over the window, the intended send times drawn by time rescaling (see
``profile.arrival_offsets``). The run stays one run: requests queued in one
stage are sent, or dropped, in the next, so a spike's backlog shows in the
corrected latency of the stage after it. Each stage gets its own result;
requests count in a stage by their intended send time, answers in a stage's
``answered_in_window`` by their arrival time, read (like CPU and wall time)
when the driver passes the stage's boundary.

The load itself and its intended send times (:class:`OpenLoad`, :func:`intended_times`) are
in ``arrivals.py``; this module is the driver that keeps to them.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import uvloop

from harness import histogram
from harness.load.alarm import Alarm
from harness.load.arrivals import OpenLoad, intended_times
from harness.load.connection import Connection, clock
from harness.load.native import CONNECT_RETRY_S, ensure_loopback, error_counts, sleep_until
from harness.load.profile import stage_bounds, stage_masses
from harness.load.requests import HttpRequest, Picker
from harness.load.result import LoadResult
from harness.types import WindowCallback

NO_MARK_NS = 1 << 62
"""A clock time no run reaches: the next stage boundary when there is none (ns)."""


@dataclass
class _OpenTally:
    """Every request of the window, keyed by intended send time (ns), to be counted after the run.

    ``marks_ns`` are the stage boundaries inside the window; ``scheduled_at_marks``
    the number scheduled before each boundary the arrivals have passed. ``late_us``
    is each request's generator lateness (µs), keyed by ``late_intended_ns``.
    """

    window_start_ns: int
    window_end_ns: int
    marks_ns: list[int] = field(default_factory=list)
    corrected_us: array[int] = field(default_factory=lambda: array("q"))
    uncorrected_us: array[int] = field(default_factory=lambda: array("q"))
    ok_intended_ns: array[int] = field(default_factory=lambda: array("q"))
    failed_intended_ns: array[int] = field(default_factory=lambda: array("q"))
    failed_kinds: list[str] = field(default_factory=list)
    failed_statuses: array[int] = field(default_factory=lambda: array("q"))
    dropped_intended_ns: array[int] = field(default_factory=lambda: array("q"))
    late_intended_ns: array[int] = field(default_factory=lambda: array("q"))
    late_us: array[int] = field(default_factory=lambda: array("q"))
    scheduled: int = 0
    scheduled_at_marks: list[int] = field(default_factory=list)
    next_mark_ns: int = NO_MARK_NS
    connections_opened: int = 0
    connections_peak: int = 0
    answered_in_window: int = 0

    def __post_init__(self) -> None:
        self.next_mark_ns = self.marks_ns[0] if self.marks_ns else NO_MARK_NS

    def counts(self, intended_ns: int) -> bool:
        return self.window_start_ns <= intended_ns < self.window_end_ns

    def fail(self, intended_ns: int, kind: str, status: int = 0) -> None:
        """A request scheduled at ``intended_ns`` failed (``status``: the HTTP status of a status error)."""
        if self.counts(intended_ns):
            self.failed_intended_ns.append(intended_ns)
            self.failed_kinds.append(kind)
            self.failed_statuses.append(status)

    def drop(self, intended_ns: int) -> None:
        if self.counts(intended_ns):
            self.dropped_intended_ns.append(intended_ns)

    def pass_marks(self, intended_ns: int) -> None:
        """Arrivals reached ``intended_ns``, at or past the next stage boundary: note the counts there."""
        while intended_ns >= self.next_mark_ns:
            self.scheduled_at_marks.append(self.scheduled)
            passed = len(self.scheduled_at_marks)
            self.next_mark_ns = self.marks_ns[passed] if passed < len(self.marks_ns) else NO_MARK_NS


class _OpenConnection(Connection):
    __slots__ = ("intended_ns", "slot")

    def __init__(self, slot: _Slot) -> None:
        super().__init__(slot.driver.loop, slot.driver.timeout_ns)
        self.slot = slot
        self.intended_ns = 0

    def on_message_complete(self) -> None:
        now = clock()
        driver = self.slot.driver
        tally = driver.tally
        intended = self.intended_ns
        status = self.parser.get_status_code()
        ok = self.ok_from <= status < self.ok_to
        if ok and tally.window_start_ns <= now < tally.window_end_ns:
            tally.answered_in_window += 1
        if tally.window_start_ns <= intended < tally.window_end_ns:
            if ok:
                tally.corrected_us.append((now - intended) // 1000)
                tally.uncorrected_us.append((now - self.start_ns) // 1000)
                tally.ok_intended_ns.append(intended)
            else:
                tally.fail(intended, "status", status)
        self.start_ns = 0
        if not self.parser.should_keep_alive():
            self.close()
        driver.release(self.slot, now)

    def failed(self, kind: str, start_ns: int, now_ns: int) -> None:
        driver = self.slot.driver
        driver.tally.fail(self.intended_ns, kind)
        driver.release(self.slot, now_ns)


class _Slot:
    """One of up to ``max_connections`` connections, reopened when the server closes it."""

    __slots__ = ("connection", "driver")

    def __init__(self, driver: _Driver) -> None:
        self.driver = driver
        self.connection: _OpenConnection | None = None

    def send(self, intended_ns: int, now_ns: int) -> None:
        connection = self.connection
        if connection is not None and not connection.closed:
            connection.intended_ns = intended_ns
            connection.send_pick(self.driver.next_request(), now_ns)
        else:
            self.connection = None
            self.driver.spawn(self.connect_and_send(intended_ns, now_ns))

    async def connect_and_send(self, intended_ns: int, start_ns: int) -> None:
        """Open a connection and send the request; its connect time counts in its latency."""
        driver = self.driver
        load = driver.load
        try:
            async with asyncio.timeout(load.timeout_s):
                _, connection = await driver.loop.create_connection(
                    lambda: _OpenConnection(self), load.host, load.port
                )
        except (OSError, TimeoutError):
            driver.tally.fail(intended_ns, "connect")
            await asyncio.sleep(CONNECT_RETRY_S)
            driver.release(self, clock())
            return
        driver.tally.connections_opened += 1
        self.connection = connection
        connection.intended_ns = intended_ns
        connection.send_pick(driver.next_request(), start_ns)


class _Driver:
    """Hands each arriving request to an idle connection, opens connections, queues and drops."""

    def __init__(self, load: OpenLoad, tally: _OpenTally, loop: asyncio.AbstractEventLoop) -> None:
        self.load = load
        self.tally = tally
        self.loop = loop
        self.next_request = Picker(
            load.requests or (HttpRequest(load.path),), load.host, load.port, load.seed
        ).pick
        self.timeout_ns = int(load.timeout_s * 1e9)
        self.queue: deque[int] = deque()
        self.slots: list[_Slot] = []
        self.idle: list[_Slot] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.dispatching = True
        self.all_idle: asyncio.Future[None] = loop.create_future()

    def offer(self, intended_ns: int, now_ns: int) -> None:
        """A request arrives: send it on an idle connection, or queue it and open one if the cap allows."""
        tally = self.tally
        if tally.window_start_ns <= intended_ns < tally.window_end_ns:
            if intended_ns >= tally.next_mark_ns:
                tally.pass_marks(intended_ns)
            tally.scheduled += 1
            # The generator's own lateness: its loop got to the request this long after its
            # intended time. A wait for a free connection, from here on, is not counted.
            tally.late_intended_ns.append(intended_ns)
            tally.late_us.append((now_ns - intended_ns) // 1000)
        if self.idle:
            self.idle.pop().send(intended_ns, now_ns)
            return
        self.queue.append(intended_ns)
        if len(self.slots) < self.load.max_connections:
            slot = _Slot(self)
            self.slots.append(slot)
            self.tally.connections_peak = max(self.tally.connections_peak, len(self.slots))
            self.release(slot, now_ns)

    def release(self, slot: _Slot, now_ns: int) -> None:
        """``slot`` is free: send the oldest queued request still within its timeout, or go idle."""
        queue = self.queue
        while queue:
            intended = queue.popleft()
            if now_ns - intended <= self.timeout_ns:
                slot.send(intended, now_ns)
                return
            self.tally.drop(intended)
        self.idle.append(slot)
        if not self.dispatching and len(self.idle) == len(self.slots) and not self.all_idle.done():
            self.all_idle.set_result(None)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def stop_dispatching(self) -> None:
        """No more arrivals: queued requests still go out as connections free (within their timeout);
        the future ``all_idle`` tells when none is queued and every one sent has been answered."""
        self.dispatching = False
        if not self.queue and len(self.idle) == len(self.slots) and not self.all_idle.done():
            self.all_idle.set_result(None)

    def close(self) -> None:
        """Give up: requests still queued are dropped, connections abandoned."""
        for intended in self.queue:
            self.tally.drop(intended)
        self.queue.clear()
        for task in self.tasks:
            task.cancel()
        for slot in self.slots:
            if slot.connection is not None:
                slot.connection.abandon()


class Dispatcher:
    """Calls ``offer(intended_ns, now_ns)`` for each of ``times`` (driver clock, ns) when it is due,
    woken by an Alarm (no task per request); the WebSocket open model (``stream.wsopen``) uses it too.

    Requests already due when the alarm fires (the loop woke late, or was busy)
    go out in one batch, each keeping its own intended time. Call :meth:`dispatch`
    once to start; :meth:`stop` before the loop closes.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, offer: Callable[[int, int], None], times: Iterator[int]
    ) -> None:
        self.offer = offer
        self.times = times
        self.next_ns = next(times, None)
        self.alarm = Alarm(loop, self.dispatch)

    def dispatch(self) -> None:
        now = clock()
        offer = self.offer
        next_ns = self.next_ns
        while next_ns is not None and next_ns <= now:
            offer(next_ns, now)
            next_ns = next(self.times, None)
        self.next_ns = next_ns
        if next_ns is not None:
            self.alarm.set(next_ns)

    def stop(self) -> None:
        """Offer what is due by now, then nothing more."""
        if self.next_ns is not None:
            self.dispatch()
            self.next_ns = None
        self.alarm.close()


@dataclass(frozen=True)
class _Reading:
    """What the driver had counted by the clock when it passed a window or stage boundary."""

    wall_ns: int
    cpu_ns: int
    answered_in_window: int
    connections_opened: int
    connections_peak: int


def _read(tally: _OpenTally) -> _Reading:
    return _Reading(
        clock(),
        time.process_time_ns(),
        tally.answered_in_window,
        tally.connections_opened,
        tally.connections_peak,
    )


async def _run_open(load: OpenLoad, on_window: WindowCallback, begin_ns: int | None) -> LoadResult:
    if begin_ns is not None:
        await sleep_until(begin_ns)
    begin = clock() if begin_ns is None else begin_ns
    window_start = begin + int(load.warmup_s * 1e9)
    window_end = window_start + int(load.duration_s * 1e9)
    marks = [window_start + int(offset * 1e9) for offset in stage_bounds(load.profile)[1:-1]]
    tally = _OpenTally(window_start_ns=window_start, window_end_ns=window_end, marks_ns=marks)
    driver = _Driver(load, tally, asyncio.get_running_loop())
    dispatcher = Dispatcher(driver.loop, driver.offer, intended_times(load, begin))
    try:
        dispatcher.dispatch()
        await sleep_until(window_start)
        # Answers count from the window's start, before this reading: the first stage counts from zero.
        readings = [replace(_read(tally), answered_in_window=0)]
        on_window("start")
        for mark in marks:
            await sleep_until(mark)
            readings.append(_read(tally))
            on_window("mark")
        await sleep_until(window_end)
        readings.append(_read(tally))
        on_window("end")
        dispatcher.stop()
        driver.stop_dispatching()
        # Queued requests wait up to their timeout for a connection, then up to it for the answer.
        await asyncio.wait([driver.all_idle], timeout=2 * load.timeout_s + 1.0)
    finally:
        dispatcher.stop()
        driver.close()
        await asyncio.gather(*driver.tasks, return_exceptions=True)
    final = replace(readings[-1], connections_peak=tally.connections_peak)
    whole = _result(tally, readings[0], final, tally.connections_opened, tally.scheduled)
    if not load.profile:
        return replace(whole, intended_rate=load.rate)
    return replace(
        whole,
        intended_rate=sum(stage_masses(load.profile)) / load.duration_s,
        stages=_stages(load, tally, readings),
    )


def _result(tally: _OpenTally, first: _Reading, last: _Reading, opened: int, scheduled: int) -> LoadResult:
    """The window's result: every request the tally kept, between readings ``first`` and ``last``."""
    errors = error_counts()
    errors.update(Counter(tally.failed_kinds))
    return LoadResult(
        duration_s=(last.wall_ns - first.wall_ns) / 1e9,
        ok=len(tally.corrected_us),
        errors=errors,
        error_statuses=dict(sorted(Counter(s for s in tally.failed_statuses if s).items())),
        connections_opened=opened,
        generator_cpu_s=(last.cpu_ns - first.cpu_ns) / 1e9,
        histogram=histogram.encode(tally.corrected_us),
        model="open",
        scheduled=scheduled,
        dropped=len(tally.dropped_intended_ns),
        histogram_uncorrected=histogram.encode(tally.uncorrected_us),
        connections_peak=last.connections_peak,
        answered_in_window=tally.answered_in_window,
        histogram_lateness=histogram.encode(tally.late_us),
    )


def _stages(load: OpenLoad, tally: _OpenTally, readings: Sequence[_Reading]) -> tuple[LoadResult, ...]:
    """One result per stage: requests by intended send time, the rest between the readings at its bounds."""
    count = len(tally.marks_ns) + 1
    at_marks = tally.scheduled_at_marks + [tally.scheduled] * (count - 1 - len(tally.scheduled_at_marks))
    scheduled = [0, *at_marks, tally.scheduled]
    parts = [_OpenTally(window_start_ns=0, window_end_ns=0) for _ in range(count)]
    stage_of = tally.marks_ns
    for intended, corrected, uncorrected in zip(
        tally.ok_intended_ns, tally.corrected_us, tally.uncorrected_us, strict=True
    ):
        part = parts[bisect_right(stage_of, intended)]
        part.corrected_us.append(corrected)
        part.uncorrected_us.append(uncorrected)
    for intended, kind, status in zip(
        tally.failed_intended_ns, tally.failed_kinds, tally.failed_statuses, strict=True
    ):
        part = parts[bisect_right(stage_of, intended)]
        part.failed_kinds.append(kind)
        part.failed_statuses.append(status)
    for intended in tally.dropped_intended_ns:
        parts[bisect_right(stage_of, intended)].dropped_intended_ns.append(intended)
    for intended, late in zip(tally.late_intended_ns, tally.late_us, strict=True):
        parts[bisect_right(stage_of, intended)].late_us.append(late)
    bounds = stage_bounds(load.profile)
    masses = stage_masses(load.profile)
    stages = []
    for index, part in enumerate(parts):
        first, last = readings[index], readings[index + 1]
        part.answered_in_window = last.answered_in_window - first.answered_in_window
        result = _result(
            part,
            first,
            last,
            last.connections_opened - first.connections_opened,
            scheduled[index + 1] - scheduled[index],
        )
        stages.append(replace(result, intended_rate=masses[index] / (bounds[index + 1] - bounds[index])))
    return tuple(stages)


def run_open(
    load: OpenLoad, on_window: WindowCallback = lambda _: None, *, begin_ns: int | None = None
) -> LoadResult:
    """Drive ``load`` in this process on a fresh uvloop event loop; blocks until done.

    ``on_window`` is called with ``"start"`` and ``"end"`` as the measured
    window opens and closes and, with a profile, ``"mark"`` at each boundary
    between stages (stage count - 1 times). ``begin_ns``
    (``time.monotonic_ns()`` time, the same in every process) is when the
    arrivals start, warm-up first; None starts at once. Wall time is ``warmup_s + duration_s`` plus up to
    2 x ``timeout_s`` for requests queued or in flight at the end. Raises UnsafeTargetError
    for a non-loopback host unless ``load.allow_remote``.
    """
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    return uvloop.run(_run_open(load, on_window, begin_ns))
