"""Compare two stored runs cell by cell: what changed, with intervals, and whether it is a regression.

Cells are matched on (target, endpoint, model, load level). For each, the
change in requests/s and in p99 latency is run B's median over run A's across
repeats, with the 95% t-interval of that ratio (:func:`harness.stats.compare`).
A change is a *regression* only when it is significant (the interval excludes
1) and worse than the threshold: requests/s down, or p99 up, by more than it.
A cell measured in A whose every repeat failed in B is a regression too: the
stack no longer runs. Saturation searches are compared on sustainable
throughput per repeat. Pure functions: analysed runs (:class:`~harness.runanalysis.RunAnalysis`),
or manifests and measurements, in; records out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from harness import stats
from harness.bounds import merge_bound_reasons
from harness.model import Measurement, RunManifest
from harness.runanalysis import RunAnalysis, analyse_run
from harness.stats import Comparison, Interval

DEFAULT_THRESHOLD = 0.10

Status = Literal[
    "regression", "improvement", "no significant change", "no interval", "failed", "recovered", "not measured"
]
GATING: tuple[Status, ...] = ("regression", "failed")


class ShapeError(ValueError):
    """The two runs measured different things; the message lists every difference."""


@dataclass(frozen=True)
class Side:
    """One cell in one run: ``n`` ok repeats (``failed`` more), requests/s and p99 (ms) by repeat."""

    n: int
    failed: int
    requests_per_second_values: tuple[float, ...]
    p99_values: tuple[float, ...]
    flags: tuple[str, ...]

    @property
    def requests_per_second_median(self) -> float:
        return stats.median(self.requests_per_second_values)

    @property
    def requests_per_second_interval(self) -> Interval | None:
        return stats.median_interval(self.requests_per_second_values)

    @property
    def p99_median(self) -> float:
        return stats.median(self.p99_values)


EMPTY = Side(0, 0, (), (), ())


@dataclass(frozen=True)
class CellChange:
    """How one cell changed from run A to run B; ratios are B over A."""

    target: str
    endpoint: str
    model: str
    level: float
    a: Side
    b: Side
    requests_per_second: Comparison | None
    p99: Comparison | None
    status: Status
    worse: tuple[str, ...]

    @property
    def level_label(self) -> str:
        """``c64``, ``240 req/s``, ``sustainable``."""
        if self.model == "closed":
            return f"c{self.level:g}"
        return "sustainable" if self.model == "saturation" else f"{self.level:g} req/s"


@dataclass(frozen=True)
class RunComparison:
    """Every matched cell of runs A and B; ``notes`` are differences that do not stop a comparison."""

    run_a: str
    run_b: str
    threshold: float
    changes: tuple[CellChange, ...]
    notes: tuple[str, ...]

    @property
    def regressions(self) -> tuple[CellChange, ...]:
        """Cells that gate: significant regressions beyond the threshold, and cells that stopped running."""
        return tuple(c for c in self.changes if c.status in GATING)


def _levels(manifest: RunManifest) -> tuple[float, ...]:
    scenario = manifest.scenario
    if scenario.model == "closed":
        return tuple(float(c) for c in scenario.concurrency)
    return scenario.rates if scenario.model == "open" else ()


def _only(label: str, a: set[str], b: set[str]) -> list[str]:
    parts = []
    if a - b:
        parts.append(f"only in A: {', '.join(sorted(a - b))}")
    if b - a:
        parts.append(f"only in B: {', '.join(sorted(b - a))}")
    return [f"{label}: {'; '.join(parts)}"] if parts else []


def shape_differences(a: RunManifest, b: RunManifest) -> list[str]:
    """What makes two runs measure different cells: load model, endpoints, levels, stacks. Empty if none."""
    sa, sb = a.scenario, b.scenario
    found = []
    if sa.model != sb.model:
        found.append(f"load model: {sa.model} in A, {sb.model} in B")
    found += _only("endpoints", set(sa.endpoint_labels()), set(sb.endpoint_labels()))
    if sa.model == sb.model and _levels(a) != _levels(b):
        what = "concurrency" if sa.model == "closed" else "rates"
        found.append(
            f"{what}: {', '.join(f'{v:g}' for v in _levels(a))} in A, "
            f"{', '.join(f'{v:g}' for v in _levels(b))} in B"
        )
    found += _only("stacks", set(a.targets), set(b.targets))
    return found


def notes_on(a: RunManifest, b: RunManifest) -> list[str]:
    """Differences that change what the figures mean without making them incomparable."""
    sa, sb = a.scenario, b.scenario
    notes = []
    for label, x, y in (
        ("measured duration", f"{sa.duration_s:g} s", f"{sb.duration_s:g} s"),
        ("warm-up", f"{sa.warmup_s:g} s", f"{sb.warmup_s:g} s"),
        ("repeats", str(sa.repeats), str(sb.repeats)),
        ("driver", sa.driver, sb.driver),
        ("git commit", a.environment.git_commit or "unknown", b.environment.git_commit or "unknown"),
        ("CPU", a.environment.cpu_model, b.environment.cpu_model),
    ):
        if x != y:
            notes.append(f"{label}: {x} in A, {y} in B")
    for name in sorted(set(a.targets) & set(b.targets)):
        wa, wb = a.targets[name].workers, b.targets[name].workers
        if wa != wb:
            notes.append(f"{name} workers: {wa} in A, {wb} in B")
    return notes


Key = tuple[str, str, str, float]


def _flags(rows: pd.DataFrame) -> tuple[str, ...]:
    flags = []
    if rows["generator_bound"].any():
        flags.append("generator bound")
    if rows["upstream_bound"].any():
        flags.append("upstream bound")
    if (rows["errors_total"] > 0).any():
        flags.append(f"{int(rows['errors_total'].sum()):,} errors")
    return tuple(flags)


def cell_sides(run: RunAnalysis) -> dict[Key, Side]:
    """Each cell's figures across repeats, keyed by (target, endpoint, model, level)."""
    frame = run.frame
    sides: dict[Key, Side] = {}
    plain = frame[frame["model"] != "saturation"]
    for (target, endpoint, model, level), rows in plain.groupby(
        ["target", "endpoint", "model", "level"], sort=True
    ):
        ok = rows[rows["status"].eq("ok")].sort_values("repeat")
        sides[(str(target), str(endpoint), str(model), float(str(level)))] = Side(
            n=len(ok),
            failed=int(rows["status"].eq("failed").sum()),
            requests_per_second_values=tuple(float(v) for v in ok["requests_per_second"]),
            p99_values=tuple(float(v) for v in ok["latency_ms_p99"]),
            flags=_flags(ok),
        )
    for (target, endpoint), rows in run.sustainable.groupby(["target", "endpoint"], sort=True):
        sides[(str(target), str(endpoint), "saturation", math.inf)] = Side(
            n=len(rows),
            failed=0,
            requests_per_second_values=tuple(
                float(v) for v in rows["sustainable_requests_per_second"].fillna(0.0)
            ),
            p99_values=tuple(float(v) for v in rows["latency_ms_p99"]),
            flags=tuple(dict.fromkeys(f"{r.by} bound" for r in merge_bound_reasons(rows["bound_reasons"])))
            or (("generator bound",) if rows["bound"].any() else ()),
        )
    return sides


def classify(
    requests_per_second: Comparison | None, p99: Comparison | None, threshold: float
) -> tuple[Status, tuple[str, ...]]:
    """The status of a change in requests/s and p99 (each B over A), and which of them got worse.

    Worse means significant and beyond ``threshold`` (0.10 = 10%): requests/s
    below 1 - threshold, p99 above 1 + threshold. Better, the other way. Neither:
    ``no interval`` when requests/s has none (a single repeat), else
    ``no significant change`` (changes inside the threshold included).
    """
    worse, better = [], []
    if requests_per_second is not None and requests_per_second.significant:
        if requests_per_second.ratio < 1 - threshold:
            worse.append("requests/s")
        elif requests_per_second.ratio > 1 + threshold:
            better.append("requests/s")
    if p99 is not None and p99.significant:
        if p99.ratio > 1 + threshold:
            worse.append("p99")
        elif p99.ratio < 1 - threshold:
            better.append("p99")
    if worse:
        return "regression", tuple(worse)
    if better:
        return "improvement", ()
    if requests_per_second is None or requests_per_second.interval is None:
        return "no interval", ()
    return "no significant change", ()


def _change(key: Key, a: Side, b: Side, threshold: float) -> CellChange:
    requests_per_second = p99 = None
    status: Status
    worse: tuple[str, ...] = ()
    if a.n and b.n:
        requests_per_second = stats.compare(b.requests_per_second_values, a.requests_per_second_values)
        p99 = None if key[2] == "saturation" else stats.compare(b.p99_values, a.p99_values)
        status, worse = classify(requests_per_second, p99, threshold)
    elif a.n:
        status, worse = "failed", ("every repeat failed in B",)
    else:
        status = "recovered" if b.n else "not measured"
    return CellChange(
        *key, a=a, b=b, requests_per_second=requests_per_second, p99=p99, status=status, worse=worse
    )


def _check_shape(a: RunManifest, b: RunManifest) -> None:
    differences = shape_differences(a, b)
    if differences:
        raise ShapeError(
            f"runs {a.run_id} (A) and {b.run_id} (B) measured different cells: " + "; ".join(differences)
        )


def compare_runs(
    a: tuple[RunManifest, Sequence[Measurement]],
    b: tuple[RunManifest, Sequence[Measurement]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> RunComparison:
    """Every cell of run A matched with run B's (B over A). Raises ShapeError when they differ in shape.

    Each run is given as its manifest and measurements; see :func:`compare_analyses`.
    """
    _check_shape(a[0], b[0])
    return compare_analyses(analyse_run(*a), analyse_run(*b), threshold=threshold)


def compare_analyses(
    a: RunAnalysis, b: RunAnalysis, *, threshold: float = DEFAULT_THRESHOLD
) -> RunComparison:
    """Every cell of analysed run A matched with run B's (B over A). Raises ShapeError when they differ
    in shape (:func:`shape_differences`)."""
    manifest_a, manifest_b = a.manifest, b.manifest
    _check_shape(manifest_a, manifest_b)
    sides_a, sides_b = cell_sides(a), cell_sides(b)
    keys = sorted(set(sides_a) | set(sides_b))
    return RunComparison(
        run_a=manifest_a.run_id,
        run_b=manifest_b.run_id,
        threshold=threshold,
        changes=tuple(
            _change(key, sides_a.get(key, EMPTY), sides_b.get(key, EMPTY), threshold) for key in keys
        ),
        notes=tuple(notes_on(manifest_a, manifest_b)),
    )
