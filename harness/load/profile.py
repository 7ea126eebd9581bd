"""Time-varying load: a piecewise-linear profile of segments, grouped into stages.

A profile is a tuple of :class:`Segment`; each holds a level (requests/s in
the open model, connections in the closed model) that goes linearly from its
``start`` to its ``end`` over its ``duration_s``. Consecutive segments with the
same ``stage`` form one stage, measured on its own (a step stage is several
constant segments, a spike is base, peak, base). The functions here are pure:
offsets are seconds from the start of the profile, no clock is read.

Open-model arrivals follow the profile by time rescaling (the inversion
method): unit-rate arrival times u_1 < u_2 < ... are mapped through the
inverse of the cumulative rate Λ(t) = ∫_0^t r(s) ds, t_k = Λ⁻¹(u_k). Unit-rate
Poisson times give a non-homogeneous Poisson process with rate r(t) (E. Çinlar,
*Introduction to Stochastic Processes*, 1975, section 4.7; the thinning
alternative is P. A. W. Lewis and G. S. Shedler, "Simulation of
nonhomogeneous Poisson processes by thinning", Naval Research Logistics
Quarterly 26(3), 1979); unit-spaced times u_k = k give the deterministic
schedule with exactly ⌊Λ(t)⌋ arrivals in [0, t). On a linear segment Λ is a
quadratic, inverted in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

CONTROL_INTERVAL_S = 0.1
"""The closed model re-evaluates the connection count at least this often (s)."""


@dataclass(frozen=True)
class Segment:
    """A level going linearly from ``start`` to ``end`` over ``duration_s`` seconds (> 0).

    The level is requests/s (open model) or connections (closed model), >= 0;
    ``start == end`` holds it constant. ``stage`` is the index (0, 1, 2 ...) of
    the stage, measured on its own, that the segment belongs to.
    """

    duration_s: float
    start: float
    end: float
    stage: int

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"a segment's duration_s must be > 0, got {self.duration_s}")
        if not (self.start >= 0 and self.end >= 0):
            raise ValueError(f"a segment's levels must be >= 0, got {self.start} -> {self.end}")
        if self.stage < 0:
            raise ValueError(f"a segment's stage must be >= 0, got {self.stage}")

    def level_at(self, offset_s: float) -> float:
        """The level ``offset_s`` seconds into the segment (clamped to the segment)."""
        fraction = min(max(offset_s / self.duration_s, 0.0), 1.0)
        return self.start + (self.end - self.start) * fraction

    @property
    def mass(self) -> float:
        """∫ level dt over the segment: requests (open model) or connection-seconds (closed)."""
        return 0.5 * (self.start + self.end) * self.duration_s

    def inverse(self, mass: float) -> float:
        """The offset τ (s) into the segment where ∫_0^τ level = ``mass`` (0 <= mass <= self.mass).

        Λ(τ) = aτ + kτ² with a = start, k = (end - start) / (2 duration_s); the
        root 2m / (a + sqrt(a² + 4km)) is the quadratic formula rearranged so it
        holds for k = 0 and does not cancel for small k.
        """
        if mass <= 0:
            return 0.0
        a = self.start
        k = (self.end - self.start) / (2.0 * self.duration_s)
        denominator = a + math.sqrt(max(a * a + 4.0 * k * mass, 0.0))
        if denominator <= 0:
            return self.duration_s
        return min(2.0 * mass / denominator, self.duration_s)


Profile = tuple[Segment, ...]


def validate(profile: Sequence[Segment], duration_s: float, *, open_model: bool) -> None:
    """Raise ValueError unless ``profile`` fits a window of ``duration_s`` seconds.

    Its durations must add up to ``duration_s``; stages must start at 0 and
    go up by 0 or 1 from one segment to the next; in the open model no
    segment may have a rate of 0 over its whole length.
    """
    if not profile:
        return
    total = sum(segment.duration_s for segment in profile)
    if not math.isclose(total, duration_s, rel_tol=1e-9, abs_tol=1e-9):
        raise ValueError(f"the profile lasts {total} s but duration_s is {duration_s}")
    previous = -1
    for index, segment in enumerate(profile):
        if segment.stage not in (previous, previous + 1) or (index == 0 and segment.stage != 0):
            raise ValueError(
                f"segment {index} has stage {segment.stage} after stage {previous}: "
                "stages must be 0, 1, 2 ... without gaps, in order"
            )
        previous = segment.stage
        if open_model and segment.start == 0 and segment.end == 0:
            raise ValueError(f"segment {index} has a rate of 0 requests/s over its whole length")


def stage_count(profile: Sequence[Segment]) -> int:
    """How many stages ``profile`` has (0 for an empty profile)."""
    return profile[-1].stage + 1 if profile else 0


def stage_bounds(profile: Sequence[Segment]) -> list[float]:
    """Offsets (s) where each stage starts, then the profile's end: ``stage_count + 1`` values."""
    bounds = [0.0]
    offset = 0.0
    for index, segment in enumerate(profile):
        offset += segment.duration_s
        if index + 1 == len(profile) or profile[index + 1].stage != segment.stage:
            bounds.append(offset)
    return bounds


def stage_masses(profile: Sequence[Segment]) -> list[float]:
    """∫ level dt over each stage: requests (open model) or connection-seconds (closed)."""
    masses = [0.0] * stage_count(profile)
    for segment in profile:
        masses[segment.stage] += segment.mass
    return masses


def scaled(profile: Sequence[Segment], factor: float) -> Profile:
    """``profile`` with every level multiplied by ``factor`` (>= 0)."""
    return tuple(Segment(s.duration_s, s.start * factor, s.end * factor, s.stage) for s in profile)


def arrival_offsets(profile: Sequence[Segment], units: Iterable[float]) -> Iterator[float]:
    """Map increasing unit-rate arrival times through Λ⁻¹: arrival offsets (s), in order.

    ``units`` are u_1 <= u_2 <= ... (``itertools.count(1)`` for uniform
    arrivals, cumulative Exp(1) draws for Poisson); each yields the offset t
    with Λ(t) = u, where Λ is the cumulative rate of ``profile`` (requests/s
    per segment). Stops at the first t at or past the profile's end, so
    uniform units give exactly ⌊Λ(t)⌋ arrivals in [0, t) (to float rounding).
    """
    end = sum(segment.duration_s for segment in profile)
    segments = iter(profile)
    segment = next(segments, None)
    base = 0.0  # Λ at the current segment's start
    offset = 0.0  # the current segment's start (s)
    for unit in units:
        while segment is not None and unit > base + segment.mass:
            base += segment.mass
            offset += segment.duration_s
            segment = next(segments, None)
        if segment is None:
            return
        at = offset + segment.inverse(unit - base)
        if at >= end:
            return
        yield at


def connection_steps(
    profile: Sequence[Segment], interval_s: float = CONTROL_INTERVAL_S
) -> list[tuple[float, float, int]]:
    """When the closed model re-evaluates its connection count: ``(offset_s, level, stage)``.

    One step at every segment's start and, inside a ramp, one every
    ``interval_s`` seconds; each step's level holds until the next step.
    """
    steps = []
    offset = 0.0
    for segment in profile:
        steps.append((offset, segment.start, segment.stage))
        if segment.start != segment.end:
            count = math.ceil(segment.duration_s / interval_s)
            for index in range(1, count):
                into = index * interval_s
                steps.append((offset + into, segment.level_at(into), segment.stage))
        offset += segment.duration_s
    return steps


def connections_share(level: float, part: int, parts: int) -> int:
    """This part's whole connections when ``parts`` processes share a level of ``level``.

    The level is rounded half up; parts before the remainder take one more, so
    the shares always add up to the rounded level.
    """
    total = math.floor(level + 0.5)
    base, extra = divmod(total, parts)
    return base + (1 if part < extra else 0)


def planned_connections(
    steps: Sequence[tuple[float, float, int]], share: tuple[int, int], start_s: float, end_s: float
) -> tuple[int, float]:
    """The most connections ``steps`` ask for in [start_s, end_s) (s), and their time-weighted mean.

    ``steps`` as from :func:`connection_steps`, each level held until the next
    step; ``share`` = ``(index, parts)`` as in :func:`connections_share`.
    """
    peak = 0
    weighted = 0.0
    for index, (offset_s, level, _) in enumerate(steps):
        until_s = steps[index + 1][0] if index + 1 < len(steps) else end_s
        held_s = min(until_s, end_s) - max(offset_s, start_s)
        if held_s > 0:
            connections = connections_share(level, *share)
            peak = max(peak, connections)
            weighted += connections * held_s
    return peak, weighted / (end_s - start_s)
