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


def bound_kinds(reasons: Iterable[BoundReason]) -> tuple[bool, bool]:
    """(generator-bound, upstream-bound) for a figure known to be bound, from its reasons.

    A saturation search stores one ``bound`` for both kinds; the kinds come from the deciding
    cells' reasons, and a bound figure with no upstream reason counts as generator-bound.
    """
    merged = tuple(reasons)
    upstream = any(reason.by == "upstream" for reason in merged)
    generator = any(reason.by == "generator" for reason in merged) or not upstream
    return generator, upstream
