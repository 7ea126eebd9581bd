"""Expand a scenario over targets into an ordered list of cells.

Order: for each repeat, the targets in a shuffled order (seeded, so a run can be
replayed and drift on a noisy machine does not always favour the same stack);
within one target, endpoints in scenario order and load levels ascending
(concurrency in the closed model, rate in the open model; a saturation search
is one cell per endpoint, which the runner expands as it searches). Cells
of one target and repeat are contiguous, so the target is launched once per
block.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from harness.model import Cell, Placement, Scenario


@dataclass(frozen=True)
class Block:
    """The cells measured against one launch of one target."""

    target: str
    repeat: int
    cells: tuple[Cell, ...]


def plan(scenario: Scenario, targets: Sequence[str], seed: int) -> list[Block]:
    """Return the blocks of cells to measure, in the order to measure them.

    ``targets`` are the target names to include (already filtered); ``seed``
    fixes the shuffle. Raises ValueError if ``targets`` is empty.
    """
    if not targets:
        raise ValueError("no targets to measure")
    rng = random.Random(seed)
    blocks = []
    for repeat in range(scenario.repeats):
        order = list(targets)
        rng.shuffle(order)
        for target in order:
            cells = tuple(
                cell
                for endpoint in scenario.endpoint_labels()
                for cell in _levels(scenario, target, endpoint, repeat)
            )
            blocks.append(Block(target=target, repeat=repeat, cells=cells))
    return blocks


def _levels(scenario: Scenario, target: str, endpoint: str, repeat: int) -> list[Cell]:
    if scenario.stages:
        return [Cell(target=target, endpoint=endpoint, model=scenario.model, staged=True, repeat=repeat)]
    if scenario.model == "closed":
        return [
            Cell(target=target, endpoint=endpoint, model="closed", concurrency=level, repeat=repeat)
            for level in sorted(scenario.concurrency)
        ]
    if scenario.model == "open":
        return [
            Cell(target=target, endpoint=endpoint, model="open", rate=rate, repeat=repeat)
            for rate in sorted(scenario.rates)
        ]
    return [Cell(target=target, endpoint=endpoint, model="saturation", repeat=repeat)]


def planned_seconds(scenario: Scenario, blocks: Sequence[Block]) -> float:
    """Load time the plan needs at most, in seconds (warm-up plus measured time per cell).

    A saturation cell counts as its longest search (:meth:`Saturation.max_steps` cells, plus
    the probe of the capacity search; a step's window longer at low rates is not counted).
    """
    cells = sum(len(block.cells) for block in blocks)
    window = scenario.warmup_s + scenario.duration_s
    if scenario.model != "saturation":
        return cells * window
    saturation = scenario.saturation
    if saturation.method == "grow":
        return cells * saturation.max_steps() * window
    # A probe before each search (blocking stacks skip it, tuned ones take one more): counted once.
    return cells * (scenario.warmup_s + saturation.probe_s + saturation.max_steps() * window)


def split_cpus(available: Sequence[int]) -> Placement:
    """Give the target the first CPU and the generator (and upstream) the rest.

    On a one-CPU machine both share it; the report shows the placement.
    """
    cpus = sorted(available)
    if len(cpus) < 2:
        return Placement(target_cpus=tuple(cpus), generator_cpus=tuple(cpus))
    return Placement(target_cpus=(cpus[0],), generator_cpus=tuple(cpus[1:]))
