"""What a run records as it goes: every cell's measurement (or its failed record) and every failure.

Each is stored through the :class:`~harness.results.RunWriter` and reported to
the :class:`~harness.run.spec.Events` at once, so the progress display and the
run folder never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.model import Cell, Measurement, RunFailure, Scenario
from harness.plan import Block
from harness.results import RunWriter
from harness.run.cells import failed
from harness.run.measure import every_request_failed
from harness.run.spec import Events


class Recorder:
    """Stores the measurements of a run's planned ``blocks`` and the failures met on the way."""

    def __init__(
        self, writer: RunWriter, events: Events, scenario: Scenario, blocks: Sequence[Block]
    ) -> None:
        self.writer = writer
        self.events = events
        self.scenario = scenario
        self.blocks = blocks
        self.failures: list[RunFailure] = []

    def fail(self, target: str, cell: Cell | None, reason: str) -> None:
        """Record a failure of ``target`` (during ``cell``, or outside any cell)."""
        failure = RunFailure(target=target, cell_id=None if cell is None else cell.cell_id, reason=reason)
        self.failures.append(failure)
        self.events.failure(failure)

    def store(self, cell: Cell, measurement: Measurement) -> None:
        """Store one measurement (measured or failed) of ``cell``."""
        self.writer.add_measurement(measurement)
        self.events.cell_done(cell, measurement)

    def store_measured(self, cell: Cell, measurement: Measurement, *, search_step: bool = False) -> None:
        """Store a measured cell (or phase, or a capacity search's step); one whose every request failed
        is stored failed, with its figures and the reason.

        A plain cell like that is also recorded as a failure of the run; a ``search_step`` is not: it
        broke the SLO (its ``slo_breach`` says how), which is what the search looks for.
        """
        reason = every_request_failed([measurement])
        if reason is not None and measurement.status == "ok":
            if not search_step:
                self.fail(cell.target, cell, reason)
            measurement = measurement.model_copy(update={"status": "failed", "failure_reason": reason})
        self.store(cell, measurement)

    def fail_cell(self, cell: Cell, reason: str) -> None:
        """Record why ``cell`` failed and store its failed record."""
        self.fail(cell.target, cell, reason)
        self.store(cell, failed(cell, self.scenario, reason))

    def fail_block(self, block: Block, reason: str, *, record: bool = True) -> None:
        """Store every cell of ``block`` as failed; ``record`` also records the failure, once."""
        if record:
            self.fail(block.target, None, reason)
        for cell in block.cells:
            self.store(cell, failed(cell, self.scenario, reason))

    def fail_all(self, reason: str) -> None:
        """Store every planned cell as failed (the failure that caused it is recorded by the caller)."""
        for block in self.blocks:
            self.fail_block(block, reason, record=False)
