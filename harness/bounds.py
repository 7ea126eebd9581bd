"""Bound reasons over repeats (analyse layer): the :class:`~harness.model.BoundReason` records
of several cells, once each, and which of them the generator or the upstream set.

The records are built once, where a cell is measured (:mod:`harness.run.flags`), and put into
words only by the report (:func:`harness.report.formats.format_bound_reasons`).
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.model import BoundReason


def merge_bound_reasons(groups: Iterable[object]) -> tuple[BoundReason, ...]:
    """Every :class:`BoundReason` in ``groups`` (tuples of them, as stored per cell; anything
    else, such as NaN for a cell without any, is skipped), in first-seen order, each once."""
    merged: dict[BoundReason, None] = {}
    for group in groups:
        if isinstance(group, tuple | list):
            for reason in group:
                if isinstance(reason, BoundReason):
                    merged.setdefault(reason, None)
    return tuple(merged)


def by_generator(reasons: Iterable[BoundReason]) -> bool:
    """Whether any reason says the load generator may have set the figure."""
    return any(reason.by == "generator" for reason in reasons)
