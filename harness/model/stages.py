"""Stages: a scenario's load as a sequence over time, in one run of the stack.

A staged scenario lists ``[[stages]]``, each with a ``kind`` and ``duration_s``
(seconds) and a level: ``rate`` (requests/s, open model) or ``concurrency``
(connections, closed model). The kinds, in the terms of k6's executors and
Gatling's injection profiles:

- ``constant``: hold the level for the whole stage.
- ``ramp``: go linearly from ``start`` (default: where the stage before ended,
  or 0 for the first stage) to the level.
- ``step``: go from ``start`` to the level in ``steps`` equal steps of equal length.
- ``spike``: hold ``start`` (the base: default where the stage before ended),
  jump to the level for ``spike_s`` seconds in the middle of the stage, and
  fall back to the base for the rest: how a stack absorbs a burst and recovers.
- ``soak``: hold the level for a long time; the report fits the server's memory
  over time (a leak shows as a slope).

The driver runs all stages as one continuous load (no pause, no reconnect, a
backlog carries over from one stage to the next), after the scenario's warm-up
at the first stage's starting level. Each stage is measured as one or more
*phases* (one per step, three for a spike: before, peak, after), each stored as
a measurement of its own. This module imports no other layer of the harness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator
from pydantic_core import PydanticCustomError

StageKind = Literal["constant", "ramp", "step", "spike", "soak"]


class Stage(BaseModel):
    """One stage of a staged scenario (see the module docstring). Durations in s."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: StageKind
    # Strict: a bool (true) is not a number here, though pydantic would read it as 1.
    duration_s: StrictFloat = Field(gt=0, le=86_400.0, allow_inf_nan=False)
    rate: StrictFloat | None = Field(default=None, gt=0, le=1_000_000.0, allow_inf_nan=False)
    concurrency: StrictInt | None = Field(default=None, ge=1, le=100_000)
    start: StrictFloat | None = Field(default=None, ge=0, le=1_000_000.0, allow_inf_nan=False)
    steps: StrictInt = Field(default=4, ge=1, le=100)
    spike_s: StrictFloat | None = Field(default=None, gt=0, le=86_400.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_level(self) -> Stage:
        if (self.rate is None) == (self.concurrency is None):
            raise PydanticCustomError(
                "levels",
                "{key}: give exactly one of rate (open model) or concurrency (closed model)",
                {"key": "rate"},
            )
        if self.start is not None and self.kind in ("constant", "soak"):
            raise PydanticCustomError(
                "levels",
                "{key}: only ramp, step and spike stages start elsewhere than their level",
                {"key": "start"},
            )
        if self.spike_s is not None and (self.kind != "spike" or self.spike_s >= self.duration_s):
            raise PydanticCustomError(
                "levels",
                "{key}: a spike stage's peak, shorter than the stage's duration_s ({duration})",
                {"key": "spike_s", "duration": self.duration_s},
            )
        return self

    @property
    def level(self) -> float:
        """The stage's level: requests/s or connections."""
        return float(self.rate if self.rate is not None else self.concurrency or 0)

    def scaled(self, factor: float) -> Stage:
        """The same stage with its durations multiplied by ``factor``."""
        update: dict[str, float] = {"duration_s": round(self.duration_s * factor, 3)}
        if self.spike_s is not None:
            update["spike_s"] = round(self.spike_s * factor, 3)
        return self.model_copy(update=update)


@dataclass(frozen=True)
class Phase:
    """One measured part of a staged run: ``start_s`` seconds into the window, for ``duration_s`` s.

    The level goes linearly from ``start_level`` to ``end_level`` (requests/s or
    connections). ``index`` counts phases from 0; ``stage`` is the index of the
    scenario stage it belongs to; ``kind`` names it (``step 2/4``, ``spike: peak``).
    """

    index: int
    stage: int
    kind: str
    start_s: float
    duration_s: float
    start_level: float
    end_level: float

    @property
    def mean_level(self) -> float:
        """The mean level over the phase (the integral over its duration)."""
        return (self.start_level + self.end_level) / 2


def phases(stages: Sequence[Stage]) -> list[Phase]:
    """The measured phases of ``stages``, in order (see the module docstring).

    Raises ValueError for a spike with no base level (first stage without ``start``).
    """
    out: list[Phase] = []
    at, previous = 0.0, None

    def add(stage: int, kind: str, duration: float, begin: float, end: float) -> None:
        nonlocal at
        out.append(Phase(len(out), stage, kind, round(at, 6), round(duration, 6), begin, end))
        at += duration

    for index, stage in enumerate(stages):
        begin = stage.start if stage.start is not None else previous
        if stage.kind in ("constant", "soak"):
            add(index, stage.kind, stage.duration_s, stage.level, stage.level)
        elif stage.kind == "ramp":
            add(index, "ramp", stage.duration_s, begin or 0.0, stage.level)
        elif stage.kind == "step":
            origin = begin or 0.0
            for k in range(1, stage.steps + 1):
                level = origin + (stage.level - origin) * k / stage.steps
                add(index, f"step {k}/{stage.steps}", stage.duration_s / stage.steps, level, level)
        else:
            if begin is None:
                raise ValueError(
                    f"stages[{index}]: a spike needs a base level: give start, or a stage before it"
                )
            peak = stage.spike_s if stage.spike_s is not None else stage.duration_s / 3
            before = (stage.duration_s - peak) / 2
            add(index, "spike: before", before, begin, begin)
            add(index, "spike: peak", peak, stage.level, stage.level)
            add(index, "spike: after", stage.duration_s - before - peak, begin, begin)
        previous = out[-1].end_level
    return out
