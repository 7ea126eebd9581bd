"""The plan: every cell once per repeat, targets shuffled by seed, blocks contiguous."""

from __future__ import annotations

from harness.model import Scenario
from harness.plan import plan, planned_seconds

SCENARIO = Scenario(
    name="t",
    description="t",
    endpoints=("/a", "/b"),
    concurrency=(32, 8),
    warmup_s=1,
    duration_s=2,
    repeats=3,
)
TARGETS = ["w", "x", "y", "z"]


def test_every_cell_appears_once_per_repeat() -> None:
    blocks = plan(SCENARIO, TARGETS, seed=1)
    ids = [c.cell_id for b in blocks for c in b.cells]
    assert len(ids) == len(set(ids)) == 4 * 2 * 2 * 3
    assert len(blocks) == 4 * 3
    for block in blocks:
        assert [c.concurrency for c in block.cells] == [8, 32, 8, 32]
        assert {c.target for c in block.cells} == {block.target}


def test_order_is_shuffled_per_repeat_and_reproducible_by_seed() -> None:
    orders = [[b.target for b in plan(SCENARIO, TARGETS, seed=s)] for s in range(20)]
    assert orders[3] == [b.target for b in plan(SCENARIO, TARGETS, seed=3)]
    assert len({tuple(o) for o in orders}) > 1
    first_repeat = {tuple(o[:4]) for o in orders}
    assert len(first_repeat) > 1


def test_planned_seconds_counts_warmup_and_duration() -> None:
    blocks = plan(SCENARIO, TARGETS, seed=0)
    assert planned_seconds(SCENARIO, blocks) == 48 * 3.0
