"""``make bench-scaling``: does a stack's capacity double when its CPU does?

The cost of a target load assumes capacity grows with cores. This measures it for one
blocking stack (flask-gunicorn-gthread: Gunicorn's 2 x cores + 1 workers at each size,
and tuned within the limits at each size, ``@tuned``) and one async stack
(starlette-uvicorn: 1 worker at the small size, 2 at the large) on ``/io/sleep?ms=50``
(no upstream). Scaling efficiency = capacity(large) / (2 x capacity(small)), from
:func:`harness.stats.compare` of the per-repeat capacities (ratio of geometric means
and its 95% t-interval), both halved: 1 is linear.

CPU placement (:func:`harness.plan.split_cpus`): the target gets the first CPU the
harness may use and the generator the rest; ``gwbench run`` refuses a stack more CPU
than its CPUs hold. On a 2-core machine the target has one CPU, so the sizes are 0.5 and
1 CPU of quota (cgroup) on that one CPU, with the generator on the other core: what is
measured is doubling the CPU time from half a core to a core, not adding a second core
(no second core's caches, no cross-core contention). With 2 or more target CPUs the
sizes are 1 and 2. The output says which.

Each size is one ``gwbench run`` of a scenario written from ``scenarios/scaling.toml``;
the table and ``scaling.json`` are built from the stored runs alone (``--rebuild``).
A failed run stops with one line and exit 2; Ctrl-C keeps what was measured, exit 130.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import stats
from harness.analysis import measurements_frame
from harness.model import QUICK_FACTOR, ConfigError, load_scenario
from harness.plan import split_cpus
from harness.results import list_runs, load_run
from harness.saturation import saturation_summary
from harness.tools.crossover import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    REPO,
    MapError,
    Run,
    capacity_flags,
    capacity_values,
    planned_load_s,
    run_each,
    toml_text,
)

TEMPLATE = REPO / "scenarios" / "scaling.toml"
BLOCKING_STACK = "flask-gunicorn-gthread"
ASYNC_STACK = "starlette-uvicorn"


@dataclass(frozen=True)
class Size:
    """One CPU size: ``key`` (its results folder), ``cpus`` (cores of CPU quota) and each stack's workers."""

    key: str
    cpus: float
    workers: dict[str, int]


def sizes_for(target_cpus: int, small_cpus: float | None = None) -> tuple[Size, Size]:
    """(small, large): ``small_cpus`` and twice that; by default 1 and 2 CPUs when the target
    may have 2 CPUs, else 0.5 and 1. Raises ConfigError when the large size does not fit.

    The blocking stack gets Gunicorn's 2 x cores + 1 workers (rounded), the async stack one
    worker at the small size and two at the large.
    """
    small = small_cpus if small_cpus is not None else (1.0 if target_cpus >= 2 else 0.5)
    if not 0 < 2 * small <= target_cpus:
        raise ConfigError(
            f"--small-cpus: twice it must be > 0 and <= {target_cpus} (the CPUs the stacks run on here), "
            f"got {small:g}"
        )
    return (
        Size("small", small, {BLOCKING_STACK: round(2 * small + 1), ASYNC_STACK: 1}),
        Size("large", 2 * small, {BLOCKING_STACK: round(4 * small + 1), ASYNC_STACK: 2}),
    )


def size_scenario(template: dict[str, Any], size: Size, targets: Sequence[str]) -> dict[str, Any]:
    """The template at one size for ``targets``: its ``targets``, ``[cpus]`` and ``[workers]``."""
    data: dict[str, Any] = json.loads(json.dumps(template))
    data["description"] = f"{data.get('description', 'Scaling')} ({size.cpus:g} CPU)"
    data["targets"] = list(targets)
    data["cpus"] = {name: size.cpus for name in targets}
    data["workers"] = {name: n for name, n in size.workers.items() if name in targets}
    return data


@dataclass(frozen=True)
class ScalingRow:
    """One stack's capacities (requests/s within the SLO, per repeat and median) at both sizes,
    and the scaling efficiency capacity(large) / (2 x capacity(small)) with its 95% interval."""

    target: str
    small_cpus: float
    large_cpus: float
    small_workers: int | None
    large_workers: int | None
    small_values: tuple[float, ...]
    large_values: tuple[float, ...]
    small_requests_per_second: float
    large_requests_per_second: float
    efficiency: float
    efficiency_ci_low: float
    efficiency_ci_high: float
    interval: str
    flags: tuple[str, ...]


def _summary_of(run_dir: Path) -> tuple[Any, Any]:
    manifest, measurements = load_run(run_dir)
    return manifest, saturation_summary(measurements_frame(measurements, manifest.targets))


def _side(manifest: Any, summary: Any, target: str) -> tuple[tuple[float, ...], int | None, list[str]]:
    run = manifest.targets.get(target)
    workers = None if run is None else run.workers
    return capacity_values(summary, target), workers, capacity_flags(summary, target)


def scaling_rows(small_run: Path, large_run: Path) -> list[ScalingRow]:
    """Each stack's scaling efficiency from the two stored runs alone (targets measured in both)."""
    small_manifest, small_summary = _summary_of(small_run)
    large_manifest, large_summary = _summary_of(large_run)
    cpus_small = {n: math.nan if t.cpus is None else t.cpus for n, t in small_manifest.targets.items()}
    cpus_large = {n: math.nan if t.cpus is None else t.cpus for n, t in large_manifest.targets.items()}
    rows = []
    for target in sorted(set(small_manifest.targets) & set(large_manifest.targets)):
        small, small_workers, small_flags = _side(small_manifest, small_summary, target)
        large, large_workers, large_flags = _side(large_manifest, large_summary, target)
        comparison = stats.compare(large, small)
        interval = comparison.interval
        rows.append(
            ScalingRow(
                target=target,
                small_cpus=cpus_small[target],
                large_cpus=cpus_large[target],
                small_workers=small_workers,
                large_workers=large_workers,
                small_values=small,
                large_values=large,
                small_requests_per_second=stats.median(small),
                large_requests_per_second=stats.median(large),
                efficiency=comparison.ratio / 2,
                efficiency_ci_low=math.nan if interval is None else interval.low / 2,
                efficiency_ci_high=math.nan if interval is None else interval.high / 2,
                interval="none (fewer than 2 repeats)" if interval is None else f"half the {interval.method}",
                flags=tuple(
                    f"{where}: {f}"
                    for where, fl in (("small", small_flags), ("large", large_flags))
                    for f in fl
                ),
            )
        )
    return rows


def format_rows(rows: Sequence[ScalingRow]) -> list[str]:
    """The table as text lines: stack, capacity at each size (workers), efficiency [interval], flags."""
    sizes = f"{'CPU':>8} {'workers':>7} {'req/s':>9}"
    lines = [f"{'stack':30} {sizes} {sizes} {'efficiency':>11} {'95% CI':>16}"]
    for r in rows:
        ci = (
            "no interval"
            if math.isnan(r.efficiency_ci_low)
            else f"[{r.efficiency_ci_low:.2f}, {r.efficiency_ci_high:.2f}]"
        )
        lines.append(
            f"{r.target:30} {r.small_cpus:>8g} {r.small_workers!s:>7} {r.small_requests_per_second:>9,.0f} "
            f"{r.large_cpus:>8g} {r.large_workers!s:>7} {r.large_requests_per_second:>9,.0f} "
            f"{r.efficiency:>11.2f} {ci:>16}" + ("  " + " | ".join(r.flags) if r.flags else "")
        )
    return lines


def notes(rows: Sequence[ScalingRow]) -> list[str]:
    """What was measured and what is extrapolated, in words."""
    if not rows:
        return []
    small, large = rows[0].small_cpus, rows[0].large_cpus
    measured = f"measured: {small:g} -> {large:g} CPU of quota"
    if large <= 1:
        measured += (
            " on the target's one CPU (CPU 0; on this machine the harness gives the target one CPU and the "
            "load generator the other core); adding a second core (1 -> 2 CPUs) is extrapolated from it, "
            "not measured"
        )
    return [
        measured,
        "efficiency = capacity(large) / (2 x capacity(small)); 1 is linear; interval: the 95% t-interval "
        "of the ratio of geometric means (harness.stats.compare), halved",
        "endpoint /io/sleep?ms=50 (no upstream); the generator shares the machine (its CPU and lateness "
        "are checked per cell: a flagged size is no verdict)",
    ]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.tools.scaling", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="output folder (default: reports/scaling-<UTC time>)")
    p.add_argument(
        "--template", type=Path, default=TEMPLATE, help="the scenario template (scenarios/scaling.toml)"
    )
    p.add_argument("--targets", help="comma-separated subset of the two stacks (default: both)")
    p.add_argument(
        "--quick", action="store_true", help="pass --quick to both runs (one repeat: no intervals)"
    )
    p.add_argument("--quick-factor", type=float, help="with --quick: its factor")
    p.add_argument(
        "--small-cpus",
        type=float,
        help="the small size in CPUs (default 0.5 with one target CPU, else 1); the large is twice it. "
        "0.25 when the large size's async figure is flagged generator-bound",
    )
    p.add_argument("--dry-run", action="store_true", help="write the scenarios and print the plan, no load")
    p.add_argument(
        "--no-verify", action="store_true", help="pass --no-verify to every run (no contract check)"
    )
    p.add_argument("--rebuild", action="store_true", help="no load: rebuild from --out's stored runs")
    return p


def stored(out: Path) -> tuple[Path, Path]:
    """The newest stored run of each size under ``out/results``; raises MapError when one is missing."""
    found = []
    for key in ("small", "large"):
        runs = list_runs(out / "results" / key)
        if not runs:
            raise MapError(f"no stored run of the {key} size under {out / 'results' / key}")
        found.append(runs[-1])
    return found[0], found[1]


def measure(args: argparse.Namespace, out: Path) -> bool:
    """Run both sizes (the plan printed first); True when Ctrl-C stopped it. Raises MapError when a
    run failed, ConfigError for a scenario the harness would refuse."""
    try:
        template = tomllib.loads(args.template.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{args.template}: {exc}") from exc
    placement = split_cpus(sorted(os.sched_getaffinity(0)))
    sizes = sizes_for(len(placement.target_cpus), args.small_cpus)
    targets = args.targets.split(",") if args.targets else [BLOCKING_STACK, ASYNC_STACK]
    unknown = [t for t in targets if t not in (BLOCKING_STACK, ASYNC_STACK)]
    if unknown:
        raise ConfigError(f"--targets: {', '.join(unknown)}: not {BLOCKING_STACK} or {ASYNC_STACK}")
    extra: list[str] = []
    if args.no_verify:
        extra.append("--no-verify")
    if args.quick:
        extra.append("--quick")
        if args.quick_factor is not None:
            extra += ["--quick-factor", str(args.quick_factor)]
    (out / "scenarios").mkdir(parents=True, exist_ok=True)
    paths, about = {}, 0.0
    for size in sizes:
        path = out / "scenarios" / f"scaling-{size.key}.toml"
        path.write_text(toml_text(size_scenario(template, size, targets)))
        scenario = load_scenario(path)
        if args.quick:
            scenario = scenario.quick(args.quick_factor or QUICK_FACTOR)[0]
        about += planned_load_s(scenario, targets, (BLOCKING_STACK,))[0]
        paths[size.key] = path
    pinned, generator = (
        ",".join(map(str, cpus)) for cpus in (placement.target_cpus, placement.generator_cpus)
    )
    print(
        f"bench-scaling: {sizes[0].cpus:g} and {sizes[1].cpus:g} CPU on CPU(s) {pinned} (generator on "
        f"{generator}); "
        f"planned load about {about / 60:.1f} min (plus start-up); output: {out}",
        file=sys.stderr,
        flush=True,
    )
    if args.dry_run:
        return False
    runs = [
        Run(
            f"bench-scaling: {size.cpus:g} CPU ...",
            paths[size.key],
            out / "results" / size.key,
            out / f"run-{size.key}.log",
            f"at {size.cpus:g} CPU",
        )
        for size in sizes
    ]
    return run_each(runs, extra)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.rebuild and args.out is None:
            raise ConfigError("--rebuild: needs --out (the folder of a scaling run)")
        out = args.out or REPO / "reports" / time.strftime("scaling-%Y%m%dT%H%M%SZ", time.gmtime())
        interrupted = False if args.rebuild else measure(args, out)
        if args.dry_run and not args.rebuild:
            return EXIT_OK
        rows = scaling_rows(*stored(out))
    except (ConfigError, MapError) as exc:
        print(f"bench-scaling: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # between runs or while building: what is stored stays
        print("bench-scaling: interrupted; the stored runs stay under the output folder", file=sys.stderr)
        return EXIT_INTERRUPTED
    path = out / "scaling.json"  # written before printing: a closed pipe must not lose it
    path.write_text(json.dumps({"rows": [asdict(r) for r in rows], "notes": notes(rows)}, indent=1))
    print("\n".join(format_rows(rows) + notes(rows)))
    print(f"scaling: {path}")
    if interrupted:
        print("interrupted: the table holds what was measured", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
