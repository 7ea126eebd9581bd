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


def test_open_model_cells_are_rates_ascending_and_saturation_is_one_search_per_endpoint() -> None:
    open_model = SCENARIO.model_copy(update={"model": "open", "rates": (400.0, 50.0), "concurrency": ()})
    block = plan(open_model, ["x"], seed=1)[0]
    assert [(c.endpoint, c.rate, c.concurrency) for c in block.cells] == [
        ("/a", 50.0, None),
        ("/a", 400.0, None),
        ("/b", 50.0, None),
        ("/b", 400.0, None),
    ]
    assert block.cells[1].cell_id == "x__a__rate400__r0"
    saturation = SCENARIO.model_copy(update={"model": "saturation"})
    blocks = plan(saturation, ["x"], seed=1)
    assert [c.cell_id for c in blocks[0].cells] == ["x__a__sat__r0", "x__b__sat__r0"]
    # 50, 100, ..., 25,600 (10 rates) reach the default max_rate of 20,000; then 3 bisections.
    assert saturation.saturation.max_steps() == 13
    assert planned_seconds(saturation, blocks) == 3 * 2 * 13 * (1 + 2)
