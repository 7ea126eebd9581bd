"""A claim against its run: what our stacks measured at this machine's scale, and the verdict rule.

:func:`measure_run` reads a claim's run from its :class:`~harness.runanalysis.RunAnalysis`
(:func:`measure` from the manifest and measurements) and :func:`judge` gives the
verdict: ``reproduced``, ``not reproduced`` or ``not comparable``, with one
sentence of reason. The claim files and the Little's-law check of a published
figure are in :mod:`harness.claims`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from harness import ceilings, stats
from harness.bounds import merge_bound_reasons
from harness.claims import CEILING_TOLERANCE, Claim, check_claimed, ratio_text
from harness.model import BoundReason, Measurement, RunManifest, TargetRun
from harness.runanalysis import RunAnalysis, analyse_run
from harness.stats import Comparison, Interval

MAX_ERROR_RATE = 0.01  # a side that failed more of its requests than this is not comparable

VerdictKind = Literal["reproduced", "not reproduced", "not comparable"]


@dataclass(frozen=True)
class MeasuredSide:
    """One of our stacks in a claim's run, at its one load level.

    ``requests_per_second_*`` are requests/s over ``n`` ok repeats (``failed`` more failed);
    ``error_rate`` is failed requests over requests; ``ceiling_requests_per_second`` is its
    Little's-law bound here (the sync ceiling for a blocking stack, else
    concurrency / service time; None without a service time); ``bound_reasons``, when
    not empty, say why its figure may be the generator's or the upstream's, not its own
    (:class:`~harness.model.BoundReason` records, put into words by the report).
    """

    target: str
    interface: str
    workers: int
    n: int
    failed: int
    requests_per_second_values: tuple[float, ...]
    requests_per_second_median: float
    requests_per_second_interval: Interval | None
    p50_ms: float
    p99_ms: float
    error_rate: float
    ceiling_requests_per_second: float | None
    sync_ceiling_exceeded: bool
    bound_reasons: tuple[BoundReason, ...]
    failure_reason: str | None


@dataclass(frozen=True)
class Measured:
    """What a claim's run measured. ``comparison`` is candidate over baseline
    requests/s (:func:`harness.stats.compare`); ``ratio_bound`` the most that ratio
    can be by Little's law: the candidate's bound (connections / service time, or
    its sync ceiling) over the baseline's median requests/s; ``duration_factor``
    the run's measured duration over the claim file's (0.25 for ``--quick``)."""

    run_id: str
    endpoint: str
    concurrency: int
    baseline: MeasuredSide | None
    candidate: MeasuredSide | None
    comparison: Comparison | None
    ratio_bound: float | None
    duration_factor: float


def _number(row: Mapping[str, object], key: str) -> float:
    """A numeric cell of a summary row as a float; NaN when absent or not a number."""
    value = row.get(key)
    return float(value) if isinstance(value, int | float) else math.nan


def _count(row: Mapping[str, object], key: str) -> int:
    value = _number(row, key)
    return 0 if math.isnan(value) else int(value)


def _side(
    name: str,
    run: TargetRun | None,
    rows: pd.DataFrame,
    cells: pd.DataFrame,
    level: tuple[int, float | None],
) -> MeasuredSide | None:
    """``rows``: the summary at the run's one level; ``level``: (concurrency, service time in ms)."""
    if run is None:
        return None
    concurrency, ms = level
    mine = rows[rows["target"] == name]
    row: dict[str, object] = {} if mine.empty else {str(k): v for k, v in mine.iloc[0].to_dict().items()}
    failed = cells[(cells["target"] == name) & cells["status"].eq("failed")]["failure_reason"]
    n = _count(row, "n")
    raw = row.get("requests_per_second_values")
    values = tuple(float(v) for v in raw) if n and isinstance(raw, tuple) else ()
    requests = _count(row, "requests")
    endpoint = row.get("endpoint")
    bounds = []
    if (
        isinstance(endpoint, str)
        and (ceiling := ceilings.sync_ceiling_requests_per_second(run, endpoint)) is not None
    ):
        bounds.append(ceiling)
    if ms is not None:
        bounds.append(concurrency * 1000.0 / ms)
    low, high = _number(row, "requests_per_second_ci_low"), _number(row, "requests_per_second_ci_high")
    return MeasuredSide(
        target=name,
        interface=run.config.interface,
        workers=run.workers,
        n=n,
        failed=len(failed),
        requests_per_second_values=values,
        requests_per_second_median=stats.median(list(values)),
        requests_per_second_interval=stats.stored_median_interval(low, high, n),
        p50_ms=_number(row, "latency_ms_p50_median"),
        p99_ms=_number(row, "latency_ms_p99_median"),
        error_rate=_count(row, "errors_total") / requests if requests else 0.0,
        ceiling_requests_per_second=min(bounds) if bounds else None,
        sync_ceiling_exceeded=bool(row.get("sync_ceiling_exceeded", False)),
        bound_reasons=merge_bound_reasons([row.get("bound_reasons")]) if n else (),
        failure_reason=next((str(r) for r in failed if isinstance(r, str)), None),
    )


def measure(claim: Claim, manifest: RunManifest, measurements: Sequence[Measurement]) -> Measured:
    """The claim's figures from its stored run (see :func:`measure_run`)."""
    return measure_run(claim, analyse_run(manifest, measurements))


def measure_run(claim: Claim, run: RunAnalysis) -> Measured:
    """The claim's figures from its analysed run (the run's own scenario and workers, not the file's)."""
    manifest = run.manifest
    scenario = manifest.scenario
    endpoint, concurrency = scenario.endpoint_labels()[0], max(scenario.concurrency or (0,))
    frame, summary = run.frame, run.summary
    rows = summary[(summary["endpoint"] == endpoint) & (summary["level"] == concurrency)]
    ms = ceilings.service_time_ms(endpoint)
    sides = {
        name: _side(name, manifest.targets.get(name), rows, frame, (concurrency, ms))
        for name in (claim.scaled.baseline_target, claim.scaled.candidate_target)
    }
    baseline, candidate = sides[claim.scaled.baseline_target], sides[claim.scaled.candidate_target]
    comparison = None
    bound = None
    if baseline is not None and candidate is not None:
        if baseline.n and candidate.n:
            comparison = stats.compare(
                candidate.requests_per_second_values, baseline.requests_per_second_values
            )
        if candidate.ceiling_requests_per_second and baseline.n and baseline.requests_per_second_median > 0:
            bound = candidate.ceiling_requests_per_second / baseline.requests_per_second_median
    return Measured(
        run_id=manifest.run_id,
        endpoint=endpoint,
        concurrency=concurrency,
        baseline=baseline,
        candidate=candidate,
        comparison=comparison,
        ratio_bound=bound,
        duration_factor=scenario.duration_s / claim.scaled.duration_s,
    )


@dataclass(frozen=True)
class ClaimVerdict:
    """The verdict on a claim and its reason, one sentence."""

    kind: VerdictKind
    reason: str


def _interval_text(interval: Interval) -> str:
    return f"[{ratio_text(interval.low)[:-1]}-{ratio_text(interval.high)}]"


_LIMITED_BY = {"generator": "the load generator", "upstream": "the upstream service"}


def _trust(side: MeasuredSide | None, role: str) -> str | None:
    """Why this measured side cannot carry a verdict, or None."""
    if side is None:
        return f"the run has no {role} stack"
    if side.n == 0:
        why = f" ({side.failure_reason.splitlines()[0]})" if side.failure_reason else ""
        return f"{side.target} has no successful measurement{why}"
    if side.bound_reasons:
        limit = " and ".join(dict.fromkeys(_LIMITED_BY[r.by] for r in side.bound_reasons))
        return (
            f"{limit} may have set the figure for {side.target}, "
            "so the ratio would be the harness's, not the stacks'"
        )
    if side.sync_ceiling_exceeded:
        return (
            f"{side.target} served more than its sync ceiling allows, so it did not run with the "
            "configuration its manifest records"
        )
    if side.error_rate > MAX_ERROR_RATE:
        return (
            f"{side.target} failed {100 * side.error_rate:.1f}% of its requests, so its requests/s "
            "is not the throughput the claim describes"
        )
    return None


def judge(claim: Claim, measured: Measured | None) -> ClaimVerdict:
    """The verdict on ``claim`` given what its run measured (None: not run yet).

    First rule that applies: the source lacks a condition (``missing``) -> not
    comparable; a published figure exceeds the Little's-law bound of its own
    stated configuration, or comes with more timeouts than 1% of the requests
    it answered (the rule our own stacks are held to) -> not comparable; no run, a stack without an ok
    repeat, generator- or upstream-bound, above its sync ceiling, more than 1% of
    requests failed, or fewer than 2 repeats (no interval) -> not comparable.
    Then: reproduced when the claimed ratio lies within our 95% interval of the
    ratio widened by the claim's ``tolerance`` (low / (1 + t) to high x (1 + t))
    and, when the claim is a change larger than the tolerance, our interval
    excludes 1 on the same side; otherwise not reproduced.
    """
    claimed = claim.claimed
    if claimed.missing:
        return ClaimVerdict(
            "not comparable",
            f"The source does not give {', '.join(claimed.missing)}, so its test cannot be rebuilt here; "
            "our figure is shown for reference only.",
        )
    for published in claimed.sides:
        check = check_claimed(published, claimed)
        if check.exceeds_ceiling and check.ceiling_requests_per_second is not None:
            return ClaimVerdict(
                "not comparable",
                f"The published {published.stack} figure of {published.requests_per_second:,.0f} requests/s "
                f"is above the {check.ceiling_requests_per_second:,.0f} requests/s that Little's law allows "
                "its stated configuration, "
                "so that test did not run as stated.",
            )
        if check.timeout_share is not None and check.timeout_share > MAX_ERROR_RATE:
            return ClaimVerdict(
                "not comparable",
                f"The published {published.stack} figure of {published.requests_per_second:,g} requests/s "
                f"comes with {published.timeouts:,g} timeouts in {published.duration_s:g} s, "
                f"{100 * check.timeout_share:.1f}% of the requests it answered and more than the "
                f"{100 * MAX_ERROR_RATE:.0f}% we allow our own stacks, so its requests/s is not the "
                "throughput of a stack that answered its load.",
            )
    if measured is None:
        return ClaimVerdict("not comparable", f"Not measured yet: run `gwbench claims {claim.name}`.")
    for side, role in ((measured.baseline, "baseline"), (measured.candidate, "candidate")):
        problem = _trust(side, role)
        if problem:
            return ClaimVerdict("not comparable", f"Not comparable: {problem}.")
    comparison = measured.comparison
    if comparison is None or comparison.interval is None:
        return ClaimVerdict(
            "not comparable", "Fewer than 2 repeats on a side, so the measured ratio has no interval."
        )
    target, interval, tolerance = claimed.ratio, comparison.interval, claim.scaled.tolerance
    if target is None:  # unreachable: a claim without a pair lists what it lacks in ``missing``
        return ClaimVerdict("not comparable", "The source gives no requests/s pair to compare.")
    ours = f"{ratio_text(comparison.ratio)} {_interval_text(interval)}"
    within = interval.low / (1 + tolerance) <= target <= interval.high * (1 + tolerance)
    claims_change = abs(math.log(target)) > math.log(1 + tolerance)
    same_side = comparison.significant and (interval.low > 1) == (target > 1)
    if within and (same_side or not claims_change):
        return ClaimVerdict(
            "reproduced",
            f"The claimed {ratio_text(target)} lies within our 95% interval {ours} widened by "
            f"{100 * tolerance:.0f}%.",
        )
    if within:
        return ClaimVerdict(
            "not reproduced",
            f"We measured {ours}: the claimed {ratio_text(target)} is within reach, but our interval "
            "includes 1, so not even the direction of the change is settled.",
        )
    direction = "above" if target > interval.high else "below"
    bound = measured.ratio_bound
    why = (
        f", and above the {ratio_text(bound)} that Little's law allows at these conditions"
        if bound is not None and target > CEILING_TOLERANCE * bound
        else ""
    )
    return ClaimVerdict(
        "not reproduced",
        f"We measured {ours}; the claimed {ratio_text(target)} is {direction} that interval by more than "
        f"the {100 * tolerance:.0f}% tolerance{why}.",
    )
