"""Published claims: their numbers, their conditions scaled to this machine, and the verdict rule.

A claim file (``scenarios/claims/<name>.toml``, a :class:`Claim`) holds what a
source published (two stacks' requests/s under stated conditions, the ratio
between them) and how those conditions are rebuilt here: the same worker ratio
and service time, smaller absolute numbers, the scale factor stated.
:meth:`Claim.scenario` turns it into a closed-model :class:`~harness.model.Scenario`
the runner measures; :func:`measure` reads that run (pure: manifest and
measurements in, figures out) and :func:`judge` gives the verdict:
``reproduced``, ``not reproduced`` or ``not comparable``, with one sentence of reason.

Little's law (L = lambda W; J. D. C. Little, Operations Research 9(3), 1961)
bounds every figure: a stack that holds a worker (or thread) for each request's
service time W serves at most slots / W requests/s, and no stack serves more than
concurrency / W. A claimed figure above the bound of its own stated
configuration did not run as stated, so it cannot be compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from harness import analysis, stats
from harness.model import (
    ConfigError,
    Interface,
    Measurement,
    RunManifest,
    Scenario,
    TargetRun,
    _explain,
    _Frozen,
    _is_folder_name,
    _is_path,
    _read_toml,
)
from harness.stats import Comparison, Interval

QUICK_FACTOR = 0.25  # `gwbench claims --quick`: warm-up and measured durations x 0.25
DEFAULT_TOLERANCE = 0.25  # a claimed ratio within 25% of our interval counts as reproduced
CEILING_TOLERANCE = analysis.SYNC_CEILING_TOLERANCE  # above 110% of a Little's-law bound: inconsistent
MAX_ERROR_RATE = 0.01  # a side that failed more of its requests than this is not comparable
RUN_PREFIX = "claim-"  # a claim's runs are stored as results/<timestamp>-claim-<name>

VerdictKind = Literal["reproduced", "not reproduced", "not comparable"]


class Source(_Frozen):
    """Where a claim was published. ``where`` says where in it the numbers are."""

    title: str
    url: str | None = None
    published: str | None = None
    where: str | None = None


class ClaimedSide(_Frozen):
    """One stack's published figure. ``blocking``: each request holds one of the
    ``workers`` x ``threads`` request slots for its whole service time (sync
    workers, thread pools); False for event loops and green threads.
    ``latency_ms`` is of kind ``latency_kind``; ``requests_total`` over
    ``duration_s``, when published, is a second reading of the rate."""

    stack: str
    interface: Interface
    blocking: bool
    workers: int | None = Field(default=None, ge=1)
    threads: int = Field(default=1, ge=1)
    rps: float = Field(gt=0, allow_inf_nan=False)
    latency_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    latency_kind: Literal["mean", "p50", "p99"] = "mean"
    p99_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    requests_total: int | None = Field(default=None, ge=0)
    duration_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    note: str | None = None

    @property
    def slots(self) -> int | None:
        """Requests it can serve at once when it blocks (workers x threads); None otherwise or unknown."""
        return self.workers * self.threads if self.blocking and self.workers else None


class Claimed(_Frozen):
    """What was published: the compared pair, other figures given for context, and the conditions.

    ``missing`` lists the conditions the source does not give and without which
    its test cannot be rebuilt (worker counts, the workload): a claim with any is
    not comparable, whatever we measure.
    """

    baseline: ClaimedSide
    candidate: ClaimedSide
    others: tuple[ClaimedSide, ...] = ()
    workload: str
    service_time_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    concurrency: int | None = Field(default=None, ge=1)
    hardware: str | None = None
    tool: str | None = None
    missing: tuple[str, ...] = ()

    @property
    def ratio(self) -> float:
        """Candidate requests/s over baseline requests/s, as published."""
        return self.candidate.rps / self.baseline.rps


class Scaled(_Frozen):
    """The claim's conditions on this machine: two of our targets, their workers, one closed-model cell.

    ``scale_factor`` divides the published absolute numbers (workers,
    connections); ``how`` says in words what was scaled and what was assumed.
    Durations in seconds; ``tolerance`` is the relative margin around our 95%
    interval within which a claimed ratio counts as reproduced.
    """

    candidate_target: str
    baseline_target: str
    candidate_workers: int = Field(ge=1)
    baseline_workers: int = Field(ge=1)
    endpoint: Annotated[str, AfterValidator(_is_path)]
    concurrency: int = Field(ge=1, le=10_000)
    scale_factor: float = Field(gt=0, allow_inf_nan=False)
    how: str
    warmup_s: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    duration_s: float = Field(default=5.0, gt=0, le=600, allow_inf_nan=False)
    repeats: int = Field(default=3, ge=2, le=20)
    timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    tolerance: float = Field(default=DEFAULT_TOLERANCE, gt=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _two_targets(self) -> Scaled:
        if self.candidate_target == self.baseline_target:
            raise PydanticCustomError(
                "levels",
                "{key}: must differ from candidate_target (workers are set per target), got '{name}'",
                {"key": "scaled.baseline_target", "name": self.baseline_target},
            )
        return self


class Claim(_Frozen):
    """``scenarios/claims/<name>.toml``; ``name`` defaults to the file's stem."""

    name: Annotated[str, AfterValidator(_is_folder_name)]
    title: str
    summary: str
    source: Source
    claimed: Claimed
    scaled: Scaled

    @property
    def run_name(self) -> str:
        """The scenario name of this claim's runs: ``claim-<name>``."""
        return f"{RUN_PREFIX}{self.name}"

    def scenario(self, *, quick: bool = False) -> Scenario:
        """The closed-model scenario that measures both stacks; ``quick`` multiplies durations by 0.25."""
        s = self.scaled
        factor = QUICK_FACTOR if quick else 1.0
        return Scenario(
            name=self.run_name,
            description=f"claim {self.name}: {self.title}"
            + (f" (quick: durations x{QUICK_FACTOR:g})" if quick else ""),
            targets=(s.candidate_target, s.baseline_target),
            endpoints=(s.endpoint,),
            model="closed",
            concurrency=(s.concurrency,),
            warmup_s=s.warmup_s * factor,
            duration_s=s.duration_s * factor,
            repeats=s.repeats,
            timeout_s=s.timeout_s,
            workers={s.candidate_target: s.candidate_workers, s.baseline_target: s.baseline_workers},
        )


def load_claim(path: Path) -> Claim:
    """Read one claim file. Raises ConfigError naming the file, key, expected and got."""
    data = _read_toml(path)
    data.setdefault("name", path.stem)
    try:
        return Claim.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc, Claim) from exc


def load_claims(directory: Path) -> dict[str, Claim]:
    """Every ``directory/*.toml`` by name, sorted. Raises ConfigError on the first invalid file."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such folder of claims")
    return {claim.name: claim for claim in map(load_claim, sorted(directory.glob("*.toml")))}


@dataclass(frozen=True)
class SideCheck:
    """Little's law on one published figure.

    ``ceiling_rps``: slots / service time for a blocking side, else
    concurrency / service time (None when a term is unknown); ``in_flight``:
    requests/s x latency, the requests in flight the figure implies (with a p50
    instead of a mean, an estimate); ``max_service_ms``: slots / requests/s,
    the longest a request can have held a slot; ``rate_from_total``:
    requests_total / duration_s.
    """

    side: ClaimedSide
    ceiling_rps: float | None
    in_flight: float | None
    max_service_ms: float | None
    rate_from_total: float | None

    @property
    def exceeds_ceiling(self) -> bool:
        return self.ceiling_rps is not None and self.side.rps > CEILING_TOLERANCE * self.ceiling_rps


def check_claimed(side: ClaimedSide, claimed: Claimed) -> SideCheck:
    """Little's law on ``side`` under the conditions ``claimed`` states."""
    ms = claimed.service_time_ms
    bounds = []
    if ms is not None and side.slots is not None:
        bounds.append(side.slots * 1000.0 / ms)
    if ms is not None and claimed.concurrency is not None:
        bounds.append(claimed.concurrency * 1000.0 / ms)
    total = side.requests_total
    return SideCheck(
        side=side,
        ceiling_rps=min(bounds) if bounds else None,
        in_flight=None if side.latency_ms is None else side.rps * side.latency_ms / 1000.0,
        max_service_ms=None if side.slots is None else side.slots * 1000.0 / side.rps,
        rate_from_total=None if total is None or side.duration_s is None else total / side.duration_s,
    )


@dataclass(frozen=True)
class MeasuredSide:
    """One of our stacks in a claim's run, at its one load level.

    ``rps_*`` are requests/s over ``n`` ok repeats (``failed`` more failed);
    ``error_rate`` is failed requests over requests; ``ceiling_rps`` is its
    Little's-law bound here (the sync ceiling for a blocking stack, else
    concurrency / service time; None without a service time); ``bound_reason``
    says why its figure may be the generator's or the upstream's, not its own.
    """

    target: str
    interface: str
    workers: int
    n: int
    failed: int
    rps_values: tuple[float, ...]
    rps_median: float
    rps_interval: Interval | None
    p50_ms: float
    p99_ms: float
    error_rate: float
    ceiling_rps: float | None
    sync_ceiling_exceeded: bool
    bound_reason: str | None
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


def _bound_reason(row: Mapping[str, object]) -> str | None:
    reasons = []
    if row.get("generator_bound"):
        reason = row.get("generator_bound_reason")
        reasons.append(f"the load generator was the limit ({reason})" if reason else "generator bound")
    if row.get("upstream_bound"):
        cpu = _number(row, "upstream_cpu_percent_max")
        reasons.append(f"the upstream service was the limit ({cpu:.0f}% CPU)")
    return "; ".join(reasons) or None


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
    raw = row.get("rps_values")
    values = tuple(float(v) for v in raw) if n and isinstance(raw, tuple) else ()
    requests = _count(row, "requests")
    endpoint = row.get("endpoint")
    bounds = []
    if isinstance(endpoint, str) and (ceiling := analysis.sync_ceiling_rps(run, endpoint)) is not None:
        bounds.append(ceiling)
    if ms is not None:
        bounds.append(concurrency * 1000.0 / ms)
    low, high = _number(row, "rps_ci_low"), _number(row, "rps_ci_high")
    return MeasuredSide(
        target=name,
        interface=run.config.interface,
        workers=run.workers,
        n=n,
        failed=len(failed),
        rps_values=values,
        rps_median=stats.median(list(values)),
        rps_interval=None if math.isnan(low) else Interval(low, high),
        p50_ms=_number(row, "latency_ms_p50_median"),
        p99_ms=_number(row, "latency_ms_p99_median"),
        error_rate=_count(row, "errors_total") / requests if requests else 0.0,
        ceiling_rps=min(bounds) if bounds else None,
        sync_ceiling_exceeded=bool(row.get("sync_ceiling_exceeded", False)),
        bound_reason=_bound_reason(row) if n else None,
        failure_reason=next((str(r) for r in failed if isinstance(r, str)), None),
    )


def measure(claim: Claim, manifest: RunManifest, measurements: Sequence[Measurement]) -> Measured:
    """The claim's figures from its stored run (the run's own scenario and workers, not the file's)."""
    scenario = manifest.scenario
    endpoint, concurrency = scenario.endpoint_labels()[0], max(scenario.concurrency or (0,))
    frame = analysis.measurements_frame(measurements, manifest.targets)
    summary = analysis.summarise(frame)
    rows = summary[(summary["endpoint"] == endpoint) & (summary["level"] == concurrency)]
    ms = analysis.service_time_ms(endpoint)
    sides = {
        name: _side(name, manifest.targets.get(name), rows, frame, (concurrency, ms))
        for name in (claim.scaled.baseline_target, claim.scaled.candidate_target)
    }
    baseline, candidate = sides[claim.scaled.baseline_target], sides[claim.scaled.candidate_target]
    comparison = None
    bound = None
    if baseline is not None and candidate is not None:
        if baseline.n and candidate.n:
            comparison = stats.compare(candidate.rps_values, baseline.rps_values)
        if candidate.ceiling_rps and baseline.n and baseline.rps_median > 0:
            bound = candidate.ceiling_rps / baseline.rps_median
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


def ratio_text(ratio: float) -> str:
    """``9.0x``, ``0.62x``, ``106x``; a dash for NaN."""
    if math.isnan(ratio):
        return "-"
    if math.isinf(ratio):
        return "inf x"
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"


def _interval_text(interval: Interval) -> str:
    return f"[{ratio_text(interval.low)[:-1]}-{ratio_text(interval.high)}]"


def _trust(side: MeasuredSide | None, role: str) -> str | None:
    """Why this measured side cannot carry a verdict, or None."""
    if side is None:
        return f"the run has no {role} stack"
    if side.n == 0:
        why = f" ({side.failure_reason.splitlines()[0]})" if side.failure_reason else ""
        return f"{side.target} has no successful measurement{why}"
    if side.bound_reason:
        return f"{side.bound_reason} for {side.target}, so the ratio would be the harness's, not the stacks'"
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
    stated configuration -> not comparable; no run, a stack without an ok
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
    for published in (claimed.baseline, claimed.candidate):
        check = check_claimed(published, claimed)
        if check.exceeds_ceiling and check.ceiling_rps is not None:
            return ClaimVerdict(
                "not comparable",
                f"The published {published.stack} figure of {published.rps:,.0f} requests/s is above the "
                f"{check.ceiling_rps:,.0f} requests/s that Little's law allows its stated configuration, "
                "so that test did not run as stated.",
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


def run_claim_name(run_id: str) -> str | None:
    """The claim a run id belongs to: ``20261124T020000Z-claim-klen-2016`` -> ``klen-2016``; else None."""
    match = re.fullmatch(rf"\d{{8}}T\d{{6}}Z-{RUN_PREFIX}(.+)", run_id)
    return match.group(1) if match else None
