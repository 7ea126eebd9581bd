"""The open model's load and its arrival schedule: when each request is meant to be sent.

Every request has an *intended send time* drawn from the arrival process
(``uniform``: every 1/rate s; ``poisson``: exponential inter-arrival times with
mean 1/rate, seeded); the driver (``open.py``) sends it then, whatever the server does.

With a ``profile`` (``profile.py``) the arrival rate varies: after the warm-up
at the first segment's start rate, it follows the piecewise-linear profile
over the window, the intended send times drawn by time rescaling (see
``profile.arrival_offsets``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

from harness.load.profile import Segment, arrival_offsets, scaled, validate
from harness.load.requests import HttpRequest

Arrival = Literal["uniform", "poisson"]


@dataclass(frozen=True)
class OpenLoad:
    """An open-model load: ``rate`` requests/s for ``warmup_s`` + ``duration_s`` seconds.

    ``arrival`` is ``uniform`` (fixed gaps of 1/rate s) or ``poisson``
    (exponential gaps, drawn from ``random.Random(seed)``). At most
    ``max_connections`` connections are open at once. ``timeout_s`` bounds both
    the wait for a free connection (from the intended send time; past it the
    request is dropped) and the wait for the answer (from the actual send).
    Besides its duration, the load is bounded by ``max_requests`` requests
    scheduled. ``requests``, when given, replaces ``GET path`` with a weighted
    mix drawn with ``seed`` (``path`` is then only its label).

    ``profile``, when given, replaces ``rate``: the warm-up runs at the first
    segment's ``start`` rate, then the window (``duration_s``, which must equal
    the profile's length) follows the profile, levels in requests/s; the
    result then has one ``stages`` entry per stage. Raises ValueError for a
    rate <= 0 without a profile, a profile that does not last ``duration_s``,
    or a segment whose rate is 0 over its whole length.
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
    requests: tuple[HttpRequest, ...] = ()
    profile: tuple[Segment, ...] = ()

    def __post_init__(self) -> None:
        if not self.profile and not self.rate > 0:
            raise ValueError(f"rate must be > 0 requests/s, got {self.rate}")
        validate(self.profile, self.duration_s, open_model=True)
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")

    def split(self, parts: int) -> list[OpenLoad]:
        """``parts`` loads that together offer this one: rates (profile too) and connections divided.

        Seeds are made distinct, so the parts draw different arrivals.
        """
        if parts <= 1:
            return [self]
        return [
            replace(
                self,
                rate=self.rate / parts,
                profile=scaled(self.profile, 1.0 / parts),
                max_connections=max(1, self.max_connections // parts),
                max_requests=max(1, self.max_requests // parts),
                seed=None if self.seed is None else self.seed * 1000 + index,
            )
            for index in range(parts)
        ]


def intended_times(load: OpenLoad, begin_ns: int) -> Iterator[int]:
    """Intended send times (driver clock, ns) from ``begin_ns``, in order, until the load's end.

    At most ``load.max_requests`` times are produced. With a profile, the
    times follow the warm-up and the profile (see :func:`arrival_offsets`):
    unit-rate times ``1, 2, 3 ...`` (uniform) or cumulative Exp(1) draws from
    ``random.Random(seed)`` (poisson) mapped through the inverse cumulative rate.
    """
    if load.profile:
        yield from _profile_times(load, begin_ns)
        return
    end_ns = begin_ns + int((load.warmup_s + load.duration_s) * 1e9)
    gap_ns = 1e9 / load.rate
    rng = random.Random(load.seed)
    at = float(begin_ns)
    for _ in range(load.max_requests):
        at += rng.expovariate(load.rate) * 1e9 if load.arrival == "poisson" else gap_ns
        if at >= end_ns:
            return
        yield int(at)


def schedule(load: OpenLoad) -> tuple[Segment, ...]:
    """The rate over the whole load, warm-up first: the warm-up at the profile's first rate, then it."""
    first = load.profile[0]
    warmup = (Segment(load.warmup_s, first.start, first.start, 0),) if load.warmup_s > 0 else ()
    return warmup + load.profile


def _profile_times(load: OpenLoad, begin_ns: int) -> Iterator[int]:
    units: Iterator[float]
    if load.arrival == "poisson":
        rng = random.Random(load.seed)
        units = itertools.accumulate(rng.expovariate(1.0) for _ in itertools.count())
    else:
        units = itertools.count(1)
    offsets = arrival_offsets(schedule(load), units)
    for offset in itertools.islice(offsets, load.max_requests):
        yield begin_ns + int(offset * 1e9)
