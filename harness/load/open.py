"""The native open-model driver: requests arrive at a fixed rate, whatever the server does.

Every request has an *intended send time* drawn from the arrival process
(``uniform``: every 1/rate s; ``poisson``: exponential inter-arrival times with
mean 1/rate, seeded). A dispatcher puts each request on a queue at its intended
time; connection workers take requests off the queue, send them and wait for
the answer. When every open connection is busy and requests wait, the driver
opens another connection, up to ``max_connections``. A request that finds no
connection within ``timeout_s`` of its intended time, or is still queued when
the window closes, is counted as ``dropped`` and never sent; once sent, a
request has ``timeout_s`` to be answered.

Latency is recorded twice: from the intended send time (the *corrected*
latency, which includes the time a request waited for the server to catch up:
what a user arriving at that moment would have seen) and from the actual send
time (*uncorrected*, what a closed-model tool reports). Requests count in the
window by their intended send time; after the window closes, the requests
already sent are awaited (up to ``timeout_s``) so a stall at the end is not cut
off. Coordinated omission and its correction: Gil Tene, "How NOT to Measure
Latency" (2015), and wrk2's README (constant throughput, corrected latency).
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import uvloop

from harness.load.native import (
    _CONNECT_RETRY_S,
    LoadResult,
    _exchange,
    _Protocol,
    encode_histogram,
    ensure_loopback,
    request_bytes,
)

Arrival = Literal["uniform", "poisson"]


@dataclass(frozen=True)
class OpenLoad:
    """An open-model load: ``rate`` requests/s for ``warmup_s`` + ``duration_s`` seconds.

    ``arrival`` is ``uniform`` (fixed gaps of 1/rate s) or ``poisson``
    (exponential gaps, drawn from ``random.Random(seed)``). At most
    ``max_connections`` connections are open at once. ``timeout_s`` bounds both
    the wait for a free connection (from the intended send time; past it the
    request is dropped) and the wait for the answer (from the actual send). Besides its duration, the load is
    bounded by ``max_requests`` requests scheduled.
    """

    host: str
    port: int
    path: str
    rate: float
    warmup_s: float
    duration_s: float
    arrival: Arrival = "poisson"
    max_connections: int = 1000
    timeout_s: float = 10.0
    allow_remote: bool = False
    max_requests: int = 100_000_000
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0 requests/s, got {self.rate}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")

    def split(self, parts: int) -> list[OpenLoad]:
        """``parts`` loads that together offer this one: rate and connections divided, seeds distinct."""
        if parts <= 1:
            return [self]
        return [
            replace(
                self,
                rate=self.rate / parts,
                max_connections=max(1, self.max_connections // parts),
                max_requests=max(1, self.max_requests // parts),
                seed=None if self.seed is None else self.seed * 1000 + index,
            )
            for index in range(parts)
        ]


def intended_times(load: OpenLoad, begin_ns: int) -> Iterator[int]:
    """Intended send times in perf_counter ns from ``begin_ns``, in order, until the load's end.

    At most ``load.max_requests`` times are produced.
    """
    end_ns = begin_ns + int((load.warmup_s + load.duration_s) * 1e9)
    gap_ns = 1e9 / load.rate
    rng = random.Random(load.seed)
    at = float(begin_ns)
    for _ in range(load.max_requests):
        at += rng.expovariate(load.rate) * 1e9 if load.arrival == "poisson" else gap_ns
        if at >= end_ns:
            return
        yield int(at)


@dataclass
class _OpenTally:
    window_start_ns: int
    window_end_ns: int
    corrected_us: array[int] = field(default_factory=lambda: array("q"))
    uncorrected_us: array[int] = field(default_factory=lambda: array("q"))
    errors: dict[str, int] = field(
        default_factory=lambda: {"status": 0, "connect": 0, "read": 0, "timeout": 0}
    )
    error_statuses: dict[int, int] = field(default_factory=dict)
    scheduled: int = 0
    dropped: int = 0
    connections_opened: int = 0
    connections: int = 0
    connections_peak: int = 0
    idle: int = 0

    def counts(self, intended_ns: int) -> bool:
        return self.window_start_ns <= intended_ns < self.window_end_ns


class _Driver:
    def __init__(self, load: OpenLoad, tally: _OpenTally) -> None:
        self.load = load
        self.tally = tally
        self.queue: deque[int] = deque()
        self.wake = asyncio.Event()
        self.request = request_bytes(load.host, load.port, load.path)
        self.timeout_ns = int(load.timeout_s * 1e9)
        self.workers: set[asyncio.Task[None]] = set()
        self.dispatching = True

    def offer(self, intended_ns: int) -> None:
        """Queue one request; open a connection if every open one is busy and the cap allows."""
        if self.tally.counts(intended_ns):
            self.tally.scheduled += 1
        self.queue.append(intended_ns)
        if len(self.queue) > self.tally.idle and self.tally.connections < self.load.max_connections:
            self.tally.connections += 1
            self.tally.connections_peak = max(self.tally.connections_peak, self.tally.connections)
            self.tally.idle += 1
            task = asyncio.create_task(self.connection())
            self.workers.add(task)
            task.add_done_callback(self.workers.discard)
        self.wake.set()

    async def next_request(self) -> int | None:
        """The oldest queued intended time that can still be sent in time; None when all is done."""
        clock = time.perf_counter_ns
        while True:
            while self.queue:
                intended = self.queue.popleft()
                if clock() - intended <= self.timeout_ns:
                    return intended
                if self.tally.counts(intended):
                    self.tally.dropped += 1
            if not self.dispatching:
                return None
            self.wake.clear()
            await self.wake.wait()

    async def connection(self) -> None:
        loop = asyncio.get_running_loop()
        clock = time.perf_counter_ns
        tally = self.tally
        proto: _Protocol | None = None
        busy = False
        try:
            while True:
                intended = await self.next_request()
                if intended is None:
                    return
                tally.idle -= 1
                busy = True
                start = clock()
                budget_s = self.load.timeout_s
                if proto is None or proto.closed:
                    try:
                        _, opened = await asyncio.wait_for(
                            loop.create_connection(_Protocol, self.load.host, self.load.port), budget_s
                        )
                    except (OSError, TimeoutError):
                        proto = None
                        if tally.counts(intended):
                            tally.errors["connect"] += 1
                        await asyncio.sleep(_CONNECT_RETRY_S)
                        tally.idle += 1
                        busy = False
                        continue
                    proto = opened
                    tally.connections_opened += 1
                kind, status, keep_alive = await _exchange(loop, proto, self.request, start, budget_s)
                end = clock()
                if kind or not keep_alive:
                    proto.close()
                    proto = None
                tally.idle += 1
                busy = False
                if not tally.counts(intended):
                    continue
                if kind:
                    tally.errors[kind] += 1
                elif status >= 400:
                    tally.errors["status"] += 1
                    tally.error_statuses[status] = tally.error_statuses.get(status, 0) + 1
                else:
                    tally.corrected_us.append((end - intended) // 1000)
                    tally.uncorrected_us.append((end - start) // 1000)
        finally:
            if busy:
                tally.idle += 1
            tally.idle -= 1
            tally.connections -= 1
            if proto is not None:
                proto.close()


async def _run_open(load: OpenLoad, on_window: Callable[[str], None]) -> LoadResult:
    clock = time.perf_counter_ns
    begin = clock()
    window_start = begin + int(load.warmup_s * 1e9)
    window_end = window_start + int(load.duration_s * 1e9)
    tally = _OpenTally(window_start_ns=window_start, window_end_ns=window_end)
    driver = _Driver(load, tally)
    window_open = False
    cpu_start = wall_start = cpu_end = wall_end = 0

    async def sleep_until(at_ns: int) -> None:
        now = clock()
        if at_ns > now:
            await asyncio.sleep((at_ns - now) / 1e9)

    try:
        for intended in intended_times(load, begin):
            if not window_open and intended >= window_start:
                await sleep_until(window_start)
                window_open, cpu_start, wall_start = True, time.process_time_ns(), clock()
                on_window("start")
            # Requests already due (the loop woke late, or gaps are short) go out in one batch.
            await sleep_until(intended)
            driver.offer(intended)
        if not window_open:
            await sleep_until(window_start)
            cpu_start, wall_start = time.process_time_ns(), clock()
            on_window("start")
        await sleep_until(window_end)
        cpu_end, wall_end = time.process_time_ns(), clock()
        on_window("end")
        driver.dispatching = False
        driver.wake.set()
        # Requests already sent may finish within their timeout; queued ones are dropped.
        for intended in driver.queue:
            if tally.counts(intended):
                tally.dropped += 1
        driver.queue.clear()
        if driver.workers:
            await asyncio.wait(list(driver.workers), timeout=load.timeout_s + 1.0)
    finally:
        for task in list(driver.workers):
            task.cancel()
        await asyncio.gather(*driver.workers, return_exceptions=True)
    return LoadResult(
        duration_s=(wall_end - wall_start) / 1e9,
        ok=len(tally.corrected_us),
        errors=dict(tally.errors),
        error_statuses=dict(tally.error_statuses),
        connections_opened=tally.connections_opened,
        generator_cpu_s=(cpu_end - cpu_start) / 1e9,
        histogram=encode_histogram(tally.corrected_us),
        model="open",
        intended_rate=load.rate,
        scheduled=tally.scheduled,
        dropped=tally.dropped,
        histogram_uncorrected=encode_histogram(tally.uncorrected_us),
        connections_peak=tally.connections_peak,
    )


def run_open(load: OpenLoad, on_window: Callable[[str], None] = lambda _: None) -> LoadResult:
    """Drive ``load`` in this process on a fresh uvloop event loop; blocks until done.

    ``on_window`` is called with ``"start"`` and ``"end"`` as the measured
    window opens and closes. Wall time is ``warmup_s + duration_s`` plus up to
    ``timeout_s`` for requests in flight at the end. Raises UnsafeTargetError
    for a non-loopback host unless ``load.allow_remote``.
    """
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    return uvloop.run(_run_open(load, on_window))
