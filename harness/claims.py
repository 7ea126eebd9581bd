"""Published claims: their numbers, their conditions scaled to this machine, and their consistency.

A claim file (``scenarios/claims/<name>.toml``, a :class:`Claim`) holds what a
source published (two stacks' requests/s under stated conditions, the ratio
between them, and any other figure it gives, latency, cost, memory, servers or
concurrent users, as a :class:`Figure`), the conditions the source lacks, and
how those conditions are rebuilt here: the same worker ratio
and service time, smaller absolute numbers, the scale factor stated.
:meth:`Claim.scenario` turns it into a closed-model :class:`~harness.model.Scenario`
the runner measures; :mod:`harness.claimverdict` reads that run and gives the
verdict. :func:`check_claimed` checks a published figure against its own
stated conditions.

Little's law (L = lambda W; J. D. C. Little, Operations Research 9(3), 1961)
bounds every figure: a stack that holds a worker (or thread) for each request's
service time W serves at most slots / W requests/s, and no stack serves more than
concurrency / W. A claimed figure above the bound of its own stated
configuration did not run as stated, so it cannot be compared.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from harness import analysis, stats
from harness.model import (
    MAX_WORKERS,
    ConfigError,
    Frozen,
    Interface,
    RequestSpec,
    Scenario,
    explain,
    is_folder_name,
    is_path,
    read_toml,
)

QUICK_FACTOR = 0.25  # `gwbench claims --quick`: warm-up and measured durations x 0.25
DEFAULT_TOLERANCE = 0.25  # a claimed ratio within 25% of our interval counts as reproduced
CEILING_TOLERANCE = analysis.SYNC_CEILING_TOLERANCE  # above 110% of a Little's-law bound: inconsistent
RUN_PREFIX = "claim-"  # a claim's runs are stored as results/<timestamp>-claim-<name>


class Source(Frozen):
    """Where a claim was published: its own title and public address (a commit-pinned one
    for a page that is rewritten, or None when the source has no known address).
    ``where`` says where in it the numbers are."""

    title: str
    url: str | None = None
    published: str | None = None
    where: str | None = None


class ClaimedSide(Frozen):
    """One stack's published figure. ``blocking``: each request holds one of the
    ``workers`` x ``threads`` request slots for its whole service time (sync
    workers, thread pools); False for event loops and green threads.
    ``latency_ms`` is of kind ``latency_kind``; ``requests_total`` over
    ``duration_s``, when published, is a second reading of the rate;
    ``timeouts``, as published, the requests the load tool gave up on over
    ``duration_s``."""

    stack: str
    interface: Interface
    blocking: bool
    workers: int | None = Field(default=None, ge=1)
    threads: int = Field(default=1, ge=1)
    requests_per_second: float = Field(gt=0, allow_inf_nan=False)
    latency_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    latency_kind: Literal["mean", "p50", "p99"] = "mean"
    p99_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    requests_total: int | None = Field(default=None, ge=0)
    duration_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    timeouts: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    note: str | None = None

    @property
    def slots(self) -> int | None:
        """Requests it can serve at once when it blocks (workers x threads); None otherwise or unknown."""
        return self.workers * self.threads if self.blocking and self.workers else None


class Figure(Frozen):
    """A published figure that is not a requests/s pair (latency, cost, memory, servers,
    concurrent users): ``published`` quotes it exactly as the source gives it,
    ``needs`` says what comparing it here would take, which the source does not give."""

    quantity: str
    published: str
    needs: str


class Claimed(Frozen):
    """What was published: the compared pair, other figures given for context, and the conditions.

    ``missing`` lists the conditions the source does not give and without which
    its test cannot be rebuilt (worker counts, the workload): a claim with any is
    not comparable, whatever we measure. ``assumed`` lists the conditions the
    source does not give that the rebuild assumes, each with why the assumption
    cannot change the verdict; every claim lists at least one of the two.
    A source that gives no requests/s pair (``baseline`` and ``candidate``
    absent) must say so in ``missing``; its figures are in ``figures``.
    """

    baseline: ClaimedSide | None = None
    candidate: ClaimedSide | None = None
    others: tuple[ClaimedSide, ...] = ()
    figures: tuple[Figure, ...] = ()
    workload: str
    service_time_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    concurrency: int | None = Field(default=None, ge=1)
    hardware: str | None = None
    tool: str | None = None
    missing: tuple[str, ...] = ()
    assumed: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _pair_or_missing(self) -> Claimed:
        if (self.baseline is None or self.candidate is None) and not self.missing:
            raise PydanticCustomError(
                "pair",
                "{key}: a claim without a baseline and a candidate must list what its source lacks",
                {"key": "claimed.missing"},
            )
        if not self.missing and not self.assumed:
            raise PydanticCustomError(
                "lacks",
                "{key}: list the conditions the source does not give (missing or assumed)",
                {"key": "claimed.assumed"},
            )
        return self

    @property
    def sides(self) -> tuple[ClaimedSide, ...]:
        """The compared pair as published (baseline first), without an absent side."""
        return tuple(side for side in (self.baseline, self.candidate) if side is not None)

    @property
    def ratio(self) -> float | None:
        """Candidate requests/s over baseline requests/s, as published; None without a pair."""
        if self.baseline is None or self.candidate is None:
            return None
        return self.candidate.requests_per_second / self.baseline.requests_per_second


class Scaled(Frozen):
    """The claim's conditions on this machine: two of our targets, their workers, one closed-model cell.

    ``scale_factor`` divides the published absolute numbers (workers,
    connections); ``how`` says in words what was scaled and what was assumed.
    Durations in seconds; ``tolerance`` is the relative margin around our 95%
    interval within which a claimed ratio counts as reproduced. With
    ``body_file`` (relative to the claim file, read into ``body`` on loading)
    the endpoint is POSTed that JSON body.
    """

    candidate_target: str
    baseline_target: str
    candidate_workers: int = Field(ge=1, le=MAX_WORKERS)
    baseline_workers: int = Field(ge=1, le=MAX_WORKERS)
    endpoint: Annotated[str, AfterValidator(is_path)]
    body_file: str | None = None
    body: str | None = None
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


class Claim(Frozen):
    """``scenarios/claims/<name>.toml``; ``name`` defaults to the file's stem."""

    name: Annotated[str, AfterValidator(is_folder_name)]
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
            endpoints=(
                s.endpoint if s.body is None else RequestSpec(path=s.endpoint, method="POST", body=s.body),
            ),
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
    data = read_toml(path)
    data.setdefault("name", path.stem)
    scaled = data.get("scaled")
    if isinstance(scaled, dict) and isinstance(scaled.get("body_file"), str):
        body_path = path.parent / scaled["body_file"]
        try:
            scaled["body"] = body_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: scaled.body_file: cannot read {body_path}: {exc}") from exc
    try:
        return Claim.model_validate(data)
    except ValidationError as exc:
        raise explain(path, exc, Claim) from exc


def load_claims(directory: Path) -> dict[str, Claim]:
    """Every ``directory/*.toml`` by name, sorted. Raises ConfigError on the first invalid file."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such folder of claims")
    return {claim.name: claim for claim in map(load_claim, sorted(directory.glob("*.toml")))}


@dataclass(frozen=True)
class SideCheck:
    """Little's law on one published figure.

    ``ceiling_requests_per_second``: slots / service time for a blocking side, else
    concurrency / service time (None when a term is unknown); ``in_flight``:
    requests/s x latency, the requests in flight the figure implies (with a p50
    instead of a mean, an estimate); ``max_service_ms``: slots / requests/s,
    the longest a request can have held a slot; ``rate_from_total``:
    requests_total / duration_s; ``timeout_share``: timeouts over the requests
    answered in ``duration_s`` (requests/s x duration_s).
    """

    side: ClaimedSide
    ceiling_requests_per_second: float | None
    in_flight: float | None
    max_service_ms: float | None
    rate_from_total: float | None
    timeout_share: float | None = None

    @property
    def exceeds_ceiling(self) -> bool:
        return (
            self.ceiling_requests_per_second is not None
            and self.side.requests_per_second > CEILING_TOLERANCE * self.ceiling_requests_per_second
        )


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
        ceiling_requests_per_second=min(bounds) if bounds else None,
        in_flight=None if side.latency_ms is None else side.requests_per_second * side.latency_ms / 1000.0,
        max_service_ms=None if side.slots is None else side.slots * 1000.0 / side.requests_per_second,
        rate_from_total=None if total is None or side.duration_s is None else total / side.duration_s,
        timeout_share=None
        if side.timeouts is None or side.duration_s is None
        else side.timeouts / (side.requests_per_second * side.duration_s),
    )


def ratio_text(ratio: float) -> str:
    """A ratio in plain ASCII, for a verdict's reason and the terminal: ``9.0x``, ``0.62x``, ``106x``;
    a dash for NaN. The digits are :func:`harness.stats.ratio_figure`'s, as on every page."""
    if math.isnan(ratio):
        return "-"
    if math.isinf(ratio):
        return "inf x"
    return f"{stats.ratio_figure(ratio)}x"


def run_claim_name(run_id: str) -> str | None:
    """The claim a run id belongs to: ``20261124T020000Z-claim-klen-2016`` -> ``klen-2016``; else None."""
    match = re.fullmatch(rf"\d{{8}}T\d{{6}}Z-{RUN_PREFIX}(.+)", run_id)
    return match.group(1) if match else None
