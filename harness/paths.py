"""Migration paths (issue 12, item 2): the moves teams make, and each one's capacity ratio.

A path (``scenarios/paths.toml``) names a from-stack, a to-stack, what the move stands
for and where it comes from. :func:`path_table` compares the two stacks' capacity, the
sustainable throughput of a saturation search (:mod:`harness.saturation`: the highest
open-model arrival rate held within the SLO, requests/s) from a stored run alone: per
path and endpoint, each side's median capacity with the interval of the median, and the
ratios to-over-from of capacity, CPU per request (µs, at each repeat's held cell) and peak
memory (MiB, at the held cell: PSS when both sides have it, else the control group's
peak), each with :func:`harness.stats.compare` (the 95% t-interval of the ratio of
geometric means) over the per-repeat values.

A blocking stack measured again at its tuned workers and threads is stored as the target
``<stack>@tuned`` (:func:`tuned_name`); a path uses the tuned figures when present and
keeps the as-configured ones beside them. A side whose capacity the stack did not set
(generator- or upstream-bound, a search that never broke the SLO so the figure is the
search's own bound, or no rate held) gives the path no verdict, with the reasons in
:attr:`PathRow.no_verdict`; its ratio is still shown. Pure functions; the loader
(:func:`load_paths`) is the only one that reads a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field, ValidationError, model_validator

from harness import stats
from harness.cost import Cost, stack_cost
from harness.model import ConfigError, Frozen, TargetRun, explain, read_toml
from harness.model.appservers import YOUR_APP
from harness.runanalysis import RunAnalysis
from harness.stats import Comparison, Interval

TUNED_SUFFIX = "@tuned"


def stack_of(name: str) -> str:
    """The stack a stored target stands for: ``flask-gunicorn@tuned`` -> ``flask-gunicorn``."""
    return name.split("@", 1)[0]


def is_tuned(name: str) -> bool:
    """Whether a stored target is a stack measured at its tuned workers and threads."""
    return name.endswith(TUNED_SUFFIX)


def tuned_name(stack: str) -> str:
    """The stored target of ``stack`` tuned within its limits: ``<stack>@tuned``."""
    return f"{stack}{TUNED_SUFFIX}"


class MigrationPath(Frozen):
    """One migration: ``from`` (the stack run today) -> ``to``; ``stands_for`` in words, and its
    ``source`` (an article's title, or why the path is listed)."""

    name: str = Field(min_length=1, max_length=100)
    from_stack: str = Field(alias="from", min_length=1, max_length=100)
    to_stack: str = Field(alias="to", min_length=1, max_length=100)
    stands_for: str = Field(min_length=1, max_length=500)
    source: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _two_stacks(self) -> MigrationPath:
        if self.from_stack == self.to_stack:
            raise ValueError(f"from and to are the same stack ({self.from_stack!r})")
        return self


class PathsFile(Frozen):
    """``scenarios/paths.toml``: a ``[[paths]]`` table per path, names distinct."""

    paths: tuple[MigrationPath, ...] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _distinct_names(self) -> PathsFile:
        names = [p.name for p in self.paths]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two paths share the name {twice[0]!r}")
        return self


def load_paths(path: Path) -> tuple[MigrationPath, ...]:
    """Read a paths file. Raises ConfigError with one line naming the file and the first problem
    (``scenarios/paths.toml: paths[0].to: Field required``); unknown keys are errors."""
    data = read_toml(path)
    try:
        return PathsFile.model_validate(data).paths
    except ValidationError as exc:
        raise ConfigError(str(explain(path, exc, PathsFile)).splitlines()[0]) from exc


MemoryKind = Literal["PSS", "cgroup"]


@dataclass(frozen=True)
class Side:
    """One stored target's capacity on one endpoint.

    ``target`` is the stored name (``flask-gunicorn`` or ``flask-gunicorn@tuned``);
    ``workers``, ``threads`` (per worker, its settings'), ``cpus`` (cores) and
    ``memory_limit_mib`` are its manifest's (None: not recorded). ``capacity_values``
    are the repeats' sustainable requests/s (0 where no rate held), ``capacity_median``
    their median and ``capacity_interval`` the interval of the median
    (:func:`harness.stats.median_interval`). ``cpu_us_per_request_values``,
    ``pss_mib_values`` and ``cgroup_mib_values`` are taken at each repeat's held cell
    (repeats where a figure is missing are left out). ``no_verdict`` says why the stack did
    not set its figure (empty: it did).
    """

    target: str
    workers: int | None
    threads: int | None
    cpus: float | None
    memory_limit_mib: int | None
    n: int
    capacity_values: tuple[float, ...]
    capacity_median: float
    capacity_interval: Interval | None
    cpu_us_per_request_values: tuple[float, ...]
    pss_mib_values: tuple[float, ...]
    cgroup_mib_values: tuple[float, ...]
    no_verdict: tuple[str, ...]

    @property
    def tuned(self) -> bool:
        return is_tuned(self.target)

    def memory_values(self, kind: MemoryKind | None) -> tuple[float, ...]:
        if kind is None:
            return ()
        return self.pss_mib_values if kind == "PSS" else self.cgroup_mib_values


@dataclass(frozen=True)
class PathRow:
    """One path on one endpoint.

    ``source`` and ``destination`` are the sides the ratios use (tuned when measured so);
    ``source_configured``/``destination_configured`` the same stacks as configured (the same
    object when no tuned figures exist); a side is None when that stack was not measured on
    this endpoint, and then every ratio is None. ``capacity_ratio``, ``cpu_ratio`` and
    ``memory_ratio`` are destination over source (:func:`harness.stats.compare`);
    ``memory_kind`` says which peak the memory figures are. ``no_verdict`` gathers both sides'
    reasons, each prefixed with its stack; a path has a verdict only when it is empty and both
    sides were measured. ``source_cost``/``destination_cost`` are for ``target_requests_per_second``
    (:func:`harness.cost.stack_cost`, the measured memory being the median at the held cells).
    """

    path: MigrationPath
    endpoint: str
    source: Side | None
    destination: Side | None
    source_configured: Side | None
    destination_configured: Side | None
    capacity_ratio: Comparison | None
    cpu_ratio: Comparison | None
    memory_ratio: Comparison | None
    memory_kind: MemoryKind | None
    no_verdict: tuple[str, ...]
    source_cost: Cost | None
    destination_cost: Cost | None

    @property
    def measured(self) -> bool:
        return self.source is not None and self.destination is not None

    @property
    def has_verdict(self) -> bool:
        return self.measured and not self.no_verdict

    @property
    def saving_cores(self) -> float:
        """Cores the move saves at the target load (negative: it costs more); NaN when unknown."""
        if self.source_cost is None or self.destination_cost is None:
            return math.nan
        return self.source_cost.cores - self.destination_cost.cores

    @property
    def saving_limit_gib(self) -> float:
        """GiB of memory limit the move saves at the target load; NaN when unknown."""
        if self.source_cost is None or self.destination_cost is None:
            return math.nan
        return self.source_cost.limit_gib - self.destination_cost.limit_gib

    @property
    def saving_measured_gib(self) -> float:
        """GiB of measured peak memory the move saves at the target load; NaN when unknown."""
        if self.source_cost is None or self.destination_cost is None:
            return math.nan
        return self.source_cost.measured_gib - self.destination_cost.measured_gib


def _finite(values: pd.Series) -> tuple[float, ...]:
    return tuple(float(v) for v in values if not pd.isna(v))


def _side(
    target: str, endpoint: str, sustainable: pd.DataFrame, frame: pd.DataFrame, run: TargetRun | None
) -> Side | None:
    repeats = sustainable[sustainable["target"].eq(target) & sustainable["endpoint"].eq(endpoint)]
    if repeats.empty:
        return None
    repeats = repeats.sort_values("repeat")
    values = tuple(float(v) for v in repeats["sustainable_requests_per_second"].fillna(0.0))
    held = frame[frame["cell_id"].isin(set(repeats["held_cell_id"].dropna()))].sort_values("repeat")
    reasons = []
    if bool(repeats["bound"].any()):
        kinds = sorted({r.by for group in repeats["bound_reasons"] for r in group}) or ["generator"]
        reasons.append(f"{' and '.join(kinds)} bound (the figure is a floor, not the stack's limit)")
    never = int((~repeats["broke"].astype(bool) & repeats["sustainable_requests_per_second"].notna()).sum())
    if never:
        reasons.append(f"never broke the SLO in {never} repeat(s): the search's own bound, a floor")
    none_held = int(repeats["sustainable_requests_per_second"].isna().sum())
    if none_held:
        reasons.append(f"no rate held in {none_held} repeat(s)")
    return Side(
        target=target,
        workers=None if run is None else run.workers,
        threads=None if run is None else run.config.threads,
        cpus=None if run is None else run.cpus,
        memory_limit_mib=None if run is None else run.memory_mib,
        n=len(values),
        capacity_values=values,
        capacity_median=stats.median(values),
        capacity_interval=stats.median_interval(values),
        cpu_us_per_request_values=_finite(held["server_cpu_us_per_request"]),
        pss_mib_values=_finite(held["server_pss_mib_peak"]),
        cgroup_mib_values=_finite(held["server_cgroup_memory_mib_peak"]),
        no_verdict=tuple(reasons),
    )


def _memory_kind(a: Side, b: Side) -> MemoryKind | None:
    if a.pss_mib_values and b.pss_mib_values:
        return "PSS"
    if a.cgroup_mib_values and b.cgroup_mib_values:
        return "cgroup"
    return None


def _compare(to: Sequence[float], source: Sequence[float]) -> Comparison | None:
    return stats.compare(to, source) if to and source else None


def _cost(side: Side | None, kind: MemoryKind | None, load: float, efficiency: float) -> Cost | None:
    if side is None:
        return None
    memory = side.memory_values(kind)
    return stack_cost(
        load,
        side.capacity_median,
        cpus=side.cpus,
        memory_limit_mib=side.memory_limit_mib,
        measured_memory_mib=stats.median(memory) if memory else None,
        scaling_efficiency=efficiency,
    )


def path_table(
    paths: Sequence[MigrationPath],
    frame: pd.DataFrame,
    sustainable: pd.DataFrame,
    targets: Mapping[str, TargetRun],
    *,
    target_requests_per_second: float,
    scaling_efficiency: float = 1.0,
) -> list[PathRow]:
    """One :class:`PathRow` per path and endpoint with capacity results, in paths then endpoint order.

    ``frame`` is :func:`harness.analysis.measurements_frame`'s, ``sustainable``
    :func:`harness.saturation.sustainable_throughput`'s for the same cells, ``targets`` the
    manifest's. A path whose two stacks were measured on no endpoint of the run is left
    out; one whose stacks were measured on an endpoint only in part gets a row with the
    missing side None (shown as "not measured"). Empty when the run has no saturation cell.
    ``target_requests_per_second`` and ``scaling_efficiency`` go to the cost
    (:func:`harness.cost.stack_cost`).
    """
    rows: list[PathRow] = []
    measured = set(sustainable["target"]) if len(sustainable) else set()
    endpoints = list(dict.fromkeys(sustainable["endpoint"])) if len(sustainable) else []
    for path in paths:
        stacks = (path.from_stack, path.to_stack)
        if not any(s in measured or tuned_name(s) in measured for s in stacks):
            continue
        for endpoint in endpoints:
            configured = [_side(s, endpoint, sustainable, frame, targets.get(s)) for s in stacks]
            tuned = [
                _side(tuned_name(s), endpoint, sustainable, frame, targets.get(tuned_name(s))) for s in stacks
            ]
            used = [t or c for t, c in zip(tuned, configured, strict=True)]
            if all(side is None for side in used):
                continue
            source, destination = used
            reasons = tuple(
                f"{side.target}: {reason}" for side in used if side is not None for reason in side.no_verdict
            )
            kind: MemoryKind | None = None
            ratios: tuple[Comparison | None, ...] = (None, None, None)
            if source is not None and destination is not None:
                kind = _memory_kind(source, destination)
                ratios = (
                    _compare(destination.capacity_values, source.capacity_values),
                    _compare(destination.cpu_us_per_request_values, source.cpu_us_per_request_values),
                    _compare(destination.memory_values(kind), source.memory_values(kind)),
                )
            rows.append(
                PathRow(
                    path=path,
                    endpoint=endpoint,
                    source=source,
                    destination=destination,
                    source_configured=configured[0],
                    destination_configured=configured[1],
                    capacity_ratio=ratios[0],
                    cpu_ratio=ratios[1],
                    memory_ratio=ratios[2],
                    memory_kind=kind,
                    no_verdict=reasons,
                    source_cost=_cost(source, kind, target_requests_per_second, scaling_efficiency),
                    destination_cost=_cost(destination, kind, target_requests_per_second, scaling_efficiency),
                )
            )
    return rows


def _your_path(name: str, source: str, destination: str, stands_for: str, how: str) -> MigrationPath:
    return MigrationPath.model_validate(
        {"name": name, "from": source, "to": destination, "stands_for": stands_for, "source": how}
    )


def your_app_paths(targets: Mapping[str, TargetRun]) -> tuple[MigrationPath, ...]:
    """The paths of the user's apps (the targets whose ``framework`` is :data:`YOUR_APP`), in name order.

    Apps you started (``--url``): a path from each declared WSGI app to each declared
    ASGI app; an app with no declared interface is on no path. Apps the harness
    launched (``--app``, their ``your_app`` setting names them): from each WSGI app on
    Gunicorn's sync workers, as most WSGI apps run today, to each ASGI app on each of its
    servers, and to the same WSGI app on its other servers (the moves that keep WSGI).
    """
    # A tuned variant is no path's end: a path's row gives both its stack's tuned and configured capacity.
    apps = {
        n: r.config for n, r in sorted(targets.items()) if r.config.framework == YOUR_APP and not is_tuned(n)
    }
    declared = {n: c for n, c in apps.items() if "your_app" not in c.settings}
    launched = {n: c for n, c in apps.items() if "your_app" in c.settings}
    out = [
        _your_path(
            f"your {source} -> your {destination}",
            source,
            destination,
            f"your WSGI app {source} moved to your ASGI app {destination}",
            "declared on the command line (--url with --interface)",
        )
        for source, wsgi in declared.items()
        if wsgi.interface == "wsgi"
        for destination, asgi in declared.items()
        if asgi.interface == "asgi"
    ]
    for source, config in launched.items():
        if config.interface != "wsgi" or config.settings.get("worker_class") != "sync":
            continue
        app = config.settings["your_app"]
        for destination, other in launched.items():
            if other.interface == "asgi":
                what = f"your WSGI app {app} on Gunicorn sync moved to your ASGI app {destination}"
            elif other.settings["your_app"] == app and destination != source:
                what = f"your WSGI app {app} kept, moved from Gunicorn sync to {destination}"
            else:
                continue
            how = "launched by the harness (--app)"
            out.append(_your_path(f"{source} -> {destination}", source, destination, what, how))
    return tuple(out)


def run_paths(
    run: RunAnalysis, paths: Sequence[MigrationPath], *, scaling_efficiency: float = 1.0
) -> list[PathRow]:
    """:func:`path_table` of an analysed run, for its scenario's ``target_requests_per_second``;
    the user's apps get their own paths (:func:`your_app_paths`) after ``paths``.

    A path of ``paths`` whose stack is the user's app is left out: an app launched as
    ``flask`` has a target ``flask-gunicorn``, which is not the shipped Flask stack the
    path stands for."""
    targets = run.manifest.targets

    def shipped(name: str) -> bool:
        return name not in targets or targets[name].config.framework != YOUR_APP

    kept = [p for p in paths if shipped(p.from_stack) and shipped(p.to_stack)]
    return path_table(
        [*kept, *your_app_paths(targets)],
        run.frame,
        run.sustainable,
        run.manifest.targets,
        target_requests_per_second=run.manifest.scenario.target_requests_per_second,
        scaling_efficiency=scaling_efficiency,
    )
