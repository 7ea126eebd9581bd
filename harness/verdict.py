"""The verdict of a run: which stack serves most, by how much, and how sure we are.

Pure functions over the summaries of :mod:`harness.analysis`. Per endpoint,
stacks are ranked by median requests/s at the endpoint's highest load level
(closed and open models) or by median sustainable throughput (saturation
model). Ratios between stacks come with a 95% t-interval and are called
significant only when it excludes 1 (:func:`harness.stats.compare`).

A verdict never rests on a figure the target did not set: a stack whose cell
at that level was generator-bound or upstream-bound, or set by the load (the
test's own ceiling, or an offered rate it served: :mod:`harness.loadset`), in
any repeat, or whose capacity search never broke the SLO (its figure is the search's
bound), is left out of the ranking, and a flag says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from harness import ceilings, stats
from harness.bounds import bound_kinds, merge_bound_reasons
from harness.ceilings import WorkloadKind
from harness.model import BoundReason, LoadModel, TargetRun
from harness.stats import Comparison, Interval

FlagKind = Literal[
    "single_run",
    "not_significant",
    "errors",
    "dropped",
    "generator_bound",
    "upstream_bound",
    "littles_law",
    "sync_ceiling",
    "split_repeats",
    "stalled",
    "none_held",
    "never_broke",
    "failed",
    "set_by_load",
]


@dataclass(frozen=True)
class Flag:
    """Something that weakens a verdict, about one stack (``target``).

    ``value`` by kind: single_run -> repeats (1); errors -> failed requests;
    dropped -> requests never sent; littles_law -> the median ratio;
    sync_ceiling -> the ceiling in requests/s; none_held / never_broke ->
    repeats; failed -> failed cells; not_significant -> the ratio, with
    ``other`` the stack compared with; split_repeats -> the gap between the two
    groups of repeats as a ratio, with ``split`` the groups (requests/s); stalled ->
    the longest silence (s) of its repeats.
    generator_bound and upstream_bound mean the stack was left out of the
    ranking, ``value`` being its median (a floor) and ``reasons`` why
    (:class:`~harness.model.BoundReason` records). set_by_load also leaves it out:
    its throughput was the test's own ceiling (a closed cell within 10% of connections /
    declared wait) or the open model's offered rate, served (:mod:`harness.loadset`);
    ``value`` is its median. never_broke leaves it out too.
    """

    kind: FlagKind
    target: str
    value: float | None = None
    other: str | None = None
    reasons: tuple[BoundReason, ...] = ()
    split: stats.Split | None = None


@dataclass(frozen=True)
class Standing:
    """One stack's throughput in a verdict, in requests/s over its ``n`` repeats.

    ``requests_per_second_values`` are the repeats' figures (requests/s served, or sustainable
    throughput), ``requests_per_second_interval`` the order-statistic interval of their median
    (:func:`harness.stats.median_interval`; None with one repeat),
    ``requests_per_second_cv`` their coefficient of variation.
    """

    target: str
    interface: str | None
    requests_per_second_median: float
    requests_per_second_interval: Interval | None
    requests_per_second_cv: float
    requests_per_second_min: float
    requests_per_second_max: float
    n: int
    requests_per_second_values: tuple[float, ...]


@dataclass(frozen=True)
class Verdict:
    """Who serves most on one endpoint.

    ``level`` is the load level compared: the concurrency (closed model) or the
    offered rate in requests/s (open model); None for the saturation model,
    where stacks are compared on sustainable throughput. ``asgi_over_wsgi`` is
    the best ASGI stack's median over the best WSGI stack's, ``lead`` the best
    stack's over the runner-up's, each with its interval. ``excluded`` names
    the stacks left out of the ranking (generator- or upstream-bound). ``best``
    is None when no stack could be ranked.
    """

    endpoint: str
    model: LoadModel
    level: float | None
    best: Standing | None
    best_wsgi: Standing | None
    best_asgi: Standing | None
    runner_up: Standing | None
    asgi_over_wsgi: Comparison | None
    lead: Comparison | None
    excluded: tuple[str, ...]
    flags: tuple[Flag, ...]


def _standing(row: pd.Series, column: str, interface: str | None) -> Standing:
    low, high = float(row[f"{column}_ci_low"]), float(row[f"{column}_ci_high"])
    return Standing(
        target=str(row["target"]),
        interface=interface,
        requests_per_second_median=float(row[f"{column}_median"]),
        requests_per_second_interval=stats.stored_median_interval(low, high, int(row["n"])),
        requests_per_second_cv=float(row[f"{column}_cv"]),
        requests_per_second_min=float(row[f"{column}_min"]),
        requests_per_second_max=float(row[f"{column}_max"]),
        n=int(row["n"]),
        requests_per_second_values=tuple(float(v) for v in row[f"{column}_values"]),
    )


def _exclusion_flags(row: pd.Series, column: str) -> list[Flag]:
    """The flags that leave a stack out of the ranking: generator_bound and upstream_bound, each with
    its reasons; set_by_load; never_broke (a search that never broke the SLO measured its own bound).

    A saturation summary has one ``bound`` for both kinds: the kinds come from the reasons
    (a bound search with none recorded counts as generator-bound).
    """
    target, median = str(row["target"]), float(row[f"{column}_median"])
    reasons = merge_bound_reasons([row.get("bound_reasons")])
    generator = tuple(r for r in reasons if r.by == "generator")
    upstream = tuple(r for r in reasons if r.by == "upstream")
    flags = []
    if "bound" in row:  # saturation summary
        if int(row["never_broke"]):  # the search's own bound set the figure, not the stack
            flags.append(Flag("never_broke", target, float(row["never_broke"])))
        if not bool(row["bound"]):
            return flags
        generator_bound, upstream_bound = bound_kinds(reasons)
    else:
        generator_bound, upstream_bound = bool(row["generator_bound"]), bool(row["upstream_bound"])
    if generator_bound:
        flags.append(Flag("generator_bound", target, median, reasons=generator))
    if upstream_bound:
        flags.append(Flag("upstream_bound", target, median, reasons=upstream))
    if bool(row.get("set_by_load", False)):
        flags.append(Flag("set_by_load", target, median))
    return flags


def _cell_flags(row: pd.Series) -> list[Flag]:
    """What weakens a ranked stack's figure."""
    target = str(row["target"])
    flags: list[Flag] = []
    if int(row["n"]) == 1:
        flags.append(Flag("single_run", target, 1.0))
    if "none_held" in row:  # saturation summary
        if int(row["none_held"]):
            flags.append(Flag("none_held", target, float(row["none_held"])))
        return flags
    if int(row["errors_total"]) > 0:
        flags.append(Flag("errors", target, float(row["errors_total"])))
    if int(row["dropped"]) > 0:
        flags.append(Flag("dropped", target, float(row["dropped"])))
    if bool(row["littles_law_inconsistent"]):
        flags.append(Flag("littles_law", target, float(row["littles_law_ratio_median"])))
    if bool(row["sync_ceiling_exceeded"]):
        flags.append(Flag("sync_ceiling", target, float(row["sync_ceiling_requests_per_second"])))
    if bool(row.get("stalled", False)):
        flags.append(Flag("stalled", target, float(row["longest_silence_s_max"])))
    split = row.get("requests_per_second_split")
    if isinstance(split, stats.Split):
        flags.append(Flag("split_repeats", target, split.gap_ratio, split=split))
    return flags


def _compare(high: Standing | None, low: Standing | None) -> Comparison | None:
    if high is None or low is None:
        return None
    return stats.compare(high.requests_per_second_values, low.requests_per_second_values)


def _verdict(
    endpoint: str,
    model: LoadModel,
    level: float | None,
    rows: pd.DataFrame,
    column: str,
    interfaces: Mapping[str, str | None],
) -> Verdict:
    measured = rows[rows["n"] > 0]
    flags: list[Flag] = []
    excluded: list[str] = []
    ranked_rows = []
    for _, row in measured.sort_values([f"{column}_median", "target"], ascending=[False, True]).iterrows():
        exclusion = _exclusion_flags(row, column)
        if exclusion:
            excluded.append(str(row["target"]))
            flags.extend(exclusion)
        else:
            ranked_rows.append(row)
    standings = [_standing(row, column, interfaces.get(str(row["target"]))) for row in ranked_rows]
    by_target = {str(row["target"]): row for row in ranked_rows}

    best = standings[0] if standings else None
    runner_up = standings[1] if len(standings) > 1 else None
    best_wsgi = next((s for s in standings if s.interface == "wsgi"), None)
    best_asgi = next((s for s in standings if s.interface == "asgi"), None)
    asgi_over_wsgi = _compare(best_asgi, best_wsgi)
    lead = _compare(best, runner_up)

    seen: set[str] = set()
    for standing in (best, best_wsgi, best_asgi):
        if standing is not None and standing.target not in seen:
            seen.add(standing.target)
            flags.extend(_cell_flags(by_target[standing.target]))
    compared: set[frozenset[str]] = set()
    for (high, low), comparison in (((best, runner_up), lead), ((best_asgi, best_wsgi), asgi_over_wsgi)):
        # Without an interval (a single repeat) the single_run flag says why already.
        if high is None or low is None or comparison is None or comparison.interval is None:
            continue
        if comparison.significant:
            continue
        pair = frozenset((high.target, low.target))
        if pair not in compared:
            compared.add(pair)
            flags.append(Flag("not_significant", high.target, comparison.ratio, low.target))
    for _, row in rows[rows["failed"] > 0].iterrows():
        flags.append(Flag("failed", str(row["target"]), float(row["failed"])))
    return Verdict(
        endpoint=endpoint,
        model=model,
        level=level,
        best=best,
        best_wsgi=best_wsgi,
        best_asgi=best_asgi,
        runner_up=runner_up,
        asgi_over_wsgi=asgi_over_wsgi,
        lead=lead,
        excluded=tuple(excluded),
        flags=tuple(flags),
    )


def _interfaces(table: pd.DataFrame, targets: Mapping[str, TargetRun]) -> dict[str, str | None]:
    interfaces: dict[str, str | None] = {
        str(row["target"]): (None if pd.isna(row["interface"]) else str(row["interface"]))
        for _, row in table.iterrows()
    }
    interfaces.update({name: run.config.interface for name, run in targets.items()})
    return interfaces


def verdict(
    summary: pd.DataFrame, targets: Mapping[str, TargetRun], saturation: pd.DataFrame | None = None
) -> list[Verdict]:
    """One :class:`Verdict` per endpoint and model, sorted by endpoint.

    ``summary`` is :func:`harness.analysis.summarise`'s (closed and open
    cells), ``saturation`` :func:`harness.saturation.saturation_summary`'s. For
    closed and open cells the level compared is the endpoint's highest level
    with at least one ok cell. Stacks are ranked by median (ties by name); a
    stack's interface comes from ``targets``, else from the summaries.

    Flags cover the stacks the verdict rests on (best, best WSGI, best ASGI):
    a single repeat, errors, dropped requests, Little's law, the sync ceiling
    exceeded, a stall, repeats that fall into two groups, repeats of a
    saturation search where no rate held or nothing broke; a ratio whose
    interval includes 1 (best vs runner-up, best ASGI vs best WSGI); every
    stack left out as generator- or upstream-bound; and every failed cell at
    that level, whichever stack it belongs to.
    """
    verdicts = []
    interfaces = _interfaces(summary, targets)
    for (endpoint, model), rows in summary.groupby(["endpoint", "model"], sort=True):
        measured = rows[rows["n"] > 0]
        level = float((measured if len(measured) else rows)["level"].max())
        at_level = rows[rows["level"] == level]
        load_model: LoadModel = "open" if model == "open" else "closed"
        verdicts.append(
            _verdict(str(endpoint), load_model, level, at_level, "requests_per_second", interfaces)
        )
    if saturation is not None and len(saturation):
        interfaces = _interfaces(saturation, targets)
        for endpoint, rows in saturation.groupby("endpoint", sort=True):
            verdicts.append(
                _verdict(
                    str(endpoint), "saturation", None, rows, "sustainable_requests_per_second", interfaces
                )
            )
    return sorted(verdicts, key=lambda v: v.endpoint)


@dataclass(frozen=True)
class WorkloadSummary:
    """The best ASGI stack against the best WSGI stack over every endpoint of one workload kind.

    ``compared`` are the verdicts with an ASGI/WSGI ratio; of those,
    ``asgi_ahead`` and ``wsgi_ahead`` count the ratios significantly and
    practically (by 2% or more, :attr:`harness.stats.Comparison.practical`) above
    and below 1, and ``unsettled`` the rest (interval includes 1, no interval, or
    a difference under 2%).
    ``without_ratio`` counts verdicts of this kind where a WSGI or an ASGI stack
    could not be ranked. ``low`` and ``high`` are the smallest and largest ratio.
    """

    kind: WorkloadKind
    compared: tuple[Verdict, ...]
    asgi_ahead: int
    wsgi_ahead: int
    unsettled: int
    without_ratio: int
    low: float
    high: float


def workload_summary(verdicts: list[Verdict]) -> list[WorkloadSummary]:
    """One :class:`WorkloadSummary` per workload kind present (I/O-bound, CPU-bound, other, in that order).

    The kind comes from the endpoint's path (:func:`harness.ceilings.workload_kind`).
    """
    out = []
    for kind in ceilings.WORKLOAD_KINDS:
        mine = [v for v in verdicts if ceilings.workload_kind(v.endpoint) == kind]
        if not mine:
            continue
        compared = [v for v in mine if v.asgi_over_wsgi is not None]
        comparisons = [v.asgi_over_wsgi for v in compared if v.asgi_over_wsgi is not None]
        ratios = [c.ratio for c in comparisons]
        # A significant ratio within 2% of 1 is no practical lead (stats.PRACTICAL_DIFFERENCE).
        significant = [c for c in comparisons if c.practical]
        out.append(
            WorkloadSummary(
                kind=kind,
                compared=tuple(compared),
                asgi_ahead=sum(c.ratio > 1 for c in significant),
                wsgi_ahead=sum(c.ratio < 1 for c in significant),
                unsettled=len(compared) - len(significant),
                without_ratio=len(mine) - len(compared),
                low=min(ratios, default=math.nan),
                high=max(ratios, default=math.nan),
            )
        )
    return out
