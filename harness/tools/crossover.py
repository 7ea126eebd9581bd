"""``make bench-map``: the crossover map, where migrating to ASGI pays and where it does not.

For each main migration path (:data:`PATHS`), the capacity ratio (to-stack over
from-stack, :func:`harness.stats.compare` of the per-repeat capacities: the ratio of
geometric means with its 95% t-interval) against what a request waits on
(:data:`POINTS`): nothing (CPU only, ``/cpu``), 5, 50 and 500 ms on the upstream, and a
fan-out. Each blocking from-stack is compared tuned within its limits (``<stack>@tuned``,
:mod:`harness.run.tuning`) and as configured.

Each point is its own ``gwbench run`` of a scenario written from a template
(``scenarios/map.toml``) with the point's endpoint, its own SLO (p99 <= wait + 100 ms: a
500 ms wait cannot meet 100 ms), probe and connection cap: a tuned stack's workers are
derived on the first endpoint of its run, so one run per wait. The table, chart (SVG),
JSON, CSV and HTML page are then built from the stored runs alone (``--rebuild`` does
only that). A point whose run fails stops the map with one line and exit 2; Ctrl-C keeps
the points measured so far (and the interrupted run's stored cells) and builds the map
from them, exit 130.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import stats
from harness.analysis import measurements_frame
from harness.model import QUICK_FACTOR, ConfigError, Scenario, load_scenario
from harness.report.formats import format_bound_reason
from harness.results import list_runs, load_run
from harness.run.search import MAX_WINDOW_FACTOR
from harness.run.tuning import tuned_name
from harness.saturation import saturation_summary
from harness.tools.crossover_page import format_table, write_outputs

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "scenarios" / "map.toml"
EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130
SLO_MARGIN_MS = 100.0
"""Each point's SLO: p99 <= the request's own wait + this (ms)."""
BLOCKING = ("flask-gunicorn", "django-gunicorn")
"""The from-stacks whose workers block: each also measured ``@tuned``."""


class MapError(Exception):
    """The map cannot be made: a point's run failed, or no run is stored; one line to print."""


@dataclass(frozen=True)
class Point:
    """One wait point: ``endpoint``, what a request waits on (``wait_ms``, the x axis: 0 for CPU
    only), its SLO's p99 (ms), the probe's connections and the open model's connection cap."""

    key: str
    label: str
    endpoint: str
    wait_ms: float
    probe_concurrency: int
    max_connections: int

    @property
    def slo_p99_ms(self) -> float:
        return self.wait_ms + SLO_MARGIN_MS


POINTS = (
    # n=15000: about 7 ms of SHA-256 on this machine (10,000 rounds took 4.7 ms), plus the framework.
    Point("cpu", "CPU only", "/cpu?n=15000", 0.0, 64, 1024),
    Point("upstream-5ms", "5 ms upstream", "/io/upstream?ms=5", 5.0, 256, 1024),
    Point("upstream-50ms", "50 ms upstream", "/io/upstream?ms=50", 50.0, 256, 1024),
    # Enough connections for an async stack's capacity (thousands/s) to be in flight for 500 ms.
    Point("upstream-500ms", "500 ms upstream", "/io/upstream?ms=500", 500.0, 2048, 4096),
    # mode=threads: the sync stacks overlap their 3 calls too (about 100 ms each request), so a
    # blocking stack's Little's-law bound (slots / 100 ms) is its true ceiling; sequential calls
    # take 300 ms and the search's bound would sit 3x too high.
    Point("fanout-3x100ms", "fan-out 3 x 100 ms", "/io/fanout?ms=100&n=3&mode=threads", 100.0, 512, 2048),
)
PATHS = (("flask-gunicorn", "fastapi-uvicorn"), ("django-gunicorn", "django-uvicorn"))


@dataclass(frozen=True)
class MapRow:
    """One path at one point: capacities (requests/s within the point's SLO, median of the
    repeats, and each repeat's), ``ratio`` = to / from with its 95% interval (NaN ends: none),
    and ``flags`` (anything that makes the ratio no verdict)."""

    path: str
    variant: str
    point: str
    label: str
    wait_ms: float
    slo_p99_ms: float
    from_target: str
    to_target: str
    from_requests_per_second: float
    to_requests_per_second: float
    from_values: tuple[float, ...]
    to_values: tuple[float, ...]
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float
    interval: str
    flags: tuple[str, ...]
    run_dir: str


def point_scenario(template: Mapping[str, Any], point: Point) -> dict[str, Any]:
    """The template's settings aimed at one point: its endpoint, SLO, probe and connection cap."""
    data: dict[str, Any] = json.loads(json.dumps(template))  # a deep copy of plain TOML data
    data["description"] = (
        f"Crossover map, {point.label} ({point.endpoint}): capacity within p99 <= {point.slo_p99_ms:g} ms"
    )
    data["endpoints"] = [point.endpoint]
    data["max_connections"] = point.max_connections
    data.setdefault("saturation", {})["probe_concurrency"] = point.probe_concurrency
    data.setdefault("slo", {})["p99_ms"] = float(point.slo_p99_ms)
    # A window counts the answers that arrive in it: a warm-up shorter than the wait leaves the
    # window's start without answers, so the served rate reads low (the 500 ms point broke every
    # step on "achieved" in the first full run). Warm-up and probe last at least twice the wait.
    wait_s = point.wait_ms / 1000
    data["warmup_s"] = max(float(data.get("warmup_s", 0.0)), 2 * wait_s)
    data["duration_s"] = max(float(data["duration_s"]), 4 * wait_s)
    data["saturation"]["probe_s"] = max(float(data["saturation"].get("probe_s", 1.0)), 4 * wait_s)
    return data


def toml_text(data: Mapping[str, Any]) -> str:
    """Plain TOML for a scenario's data: scalars and lists of scalars, then one level of tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML here")

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]", *(f"{json.dumps(k)} = {value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def write_scenarios(template_path: Path, points: Sequence[Point], folder: Path) -> dict[str, Path]:
    """Write one scenario file per point under ``folder`` (``map-<key>.toml``), each checked by
    loading it; raises ConfigError for a template or point the harness would refuse."""
    try:
        template = tomllib.loads(template_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{template_path}: {exc}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for point in points:
        path = folder / f"map-{point.key}.toml"
        path.write_text(toml_text(point_scenario(template, point)))
        load_scenario(path)
        written[point.key] = path
    return written


def planned_load_s(
    scenario: Scenario, targets: Sequence[str], blocking: Sequence[str] = BLOCKING
) -> tuple[float, float]:
    """(about, at most) seconds of load of one point's run: searches x (warm-up + probe + steps x
    (warm-up + window)); at most counts every blocking search's steps at the longest window
    (a low rate's step is held for 200 requests, up to 4 windows), plus the tuning probe."""
    sat = scenario.saturation
    blocks = [t for t in targets if t in blocking]
    tuned = blocks if sat.tune_blocking else []
    searches = scenario.repeats * (len(targets) + len(tuned))
    stretched = scenario.repeats * (len(blocks) + len(tuned))
    window = scenario.warmup_s + scenario.duration_s
    per_search = scenario.warmup_s + sat.probe_s + sat.max_steps() * window
    about = searches * per_search + scenario.repeats * len(tuned) * window
    stretch = stretched * sat.max_steps() * (MAX_WINDOW_FACTOR - 1) * scenario.duration_s
    return about, about + stretch


def run_point(scenario_path: Path, results: Path, extra: Sequence[str], log: Path) -> int:
    """``gwbench run`` of one point's scenario into ``results``; its exit code (output to ``log``).

    On Ctrl-C the run (which got the terminal's SIGINT too) is waited for so that it stores
    what it measured; a SIGINT sent to this process alone is passed on after 15 s. Then
    KeyboardInterrupt is raised again.
    """
    command = [sys.executable, "-m", "harness", "run", str(scenario_path), "--results", str(results)]
    with log.open("w") as output:
        child = subprocess.Popen([*command, "--no-report", *extra], stdout=output, stderr=subprocess.STDOUT)
        try:
            return child.wait()
        except KeyboardInterrupt:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)
            child.wait()
            raise


def last_line(log: Path) -> str:
    """The last non-empty line of a run's output (its one-line refusal or failure summary)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def capacity_flags(summary: pd.DataFrame, target: str) -> list[str]:
    """What makes a target's capacity in a saturation summary no verdict, in words (empty: none)."""
    row = summary[summary["target"].eq(target)]
    if row.empty:
        return [f"{target}: not measured"]
    r = row.iloc[0]
    flags = []
    if r["failed"]:
        flags.append(f"{target}: {int(r['failed'])} failed cells")
    if r["none_held"]:
        flags.append(f"{target}: nothing held in {int(r['none_held'])} repeat(s) (below the search's range)")
    if r["never_broke"]:
        flags.append(
            f"{target}: never broke in {int(r['never_broke'])} repeat(s) (a floor: the search's bound)"
        )
    if r["bound"]:
        reasons = "; ".join(format_bound_reason(b) for b in r["bound_reasons"]) or "bound"
        flags.append(f"{target}: set by the test ({reasons})")
    return flags


def capacity_values(summary: pd.DataFrame, target: str) -> tuple[float, ...]:
    """A target's capacity in each repeat (requests/s, 0 where nothing held); empty when not measured."""
    row = summary[summary["target"].eq(target)]
    if row.empty or not isinstance(row.iloc[0]["sustainable_requests_per_second_values"], tuple):
        return ()
    return tuple(float(v) for v in row.iloc[0]["sustainable_requests_per_second_values"])


def point_rows(point: Point, run_dir: Path, paths: Sequence[tuple[str, str]]) -> list[MapRow]:
    """The rows of one point from its stored run: for each path, the tuned from-stack (when it was
    measured) and the as-configured one, against the to-stack."""
    manifest, measurements = load_run(run_dir)
    summary = saturation_summary(measurements_frame(measurements, manifest.targets))
    rows = []
    for source, destination in paths:
        variants = [("tuned", tuned_name(source)), ("as configured", source)]
        for variant, from_target in variants:
            if from_target not in manifest.targets:
                continue
            a, b = capacity_values(summary, destination), capacity_values(summary, from_target)
            comparison = stats.compare(a, b)
            interval = comparison.interval
            rows.append(
                MapRow(
                    path=f"{source} -> {destination}",
                    variant=variant,
                    point=point.key,
                    label=point.label,
                    wait_ms=point.wait_ms,
                    slo_p99_ms=point.slo_p99_ms,
                    from_target=from_target,
                    to_target=destination,
                    from_requests_per_second=stats.median(b),
                    to_requests_per_second=stats.median(a),
                    from_values=b,
                    to_values=a,
                    ratio=comparison.ratio,
                    ratio_ci_low=math.nan if interval is None else interval.low,
                    ratio_ci_high=math.nan if interval is None else interval.high,
                    interval="none (fewer than 2 repeats)" if interval is None else interval.method,
                    flags=tuple(capacity_flags(summary, from_target) + capacity_flags(summary, destination)),
                    run_dir=str(run_dir),
                )
            )
    return rows


def stored_runs(results: Path, points: Sequence[Point]) -> dict[str, Path]:
    """Each point's stored run under ``results/<key>/`` (the newest there), for the points that have one."""
    found = {}
    for point in points:
        runs = list_runs(results / point.key)
        if runs:
            found[point.key] = runs[-1]
    return found


def map_rows(results: Path, points: Sequence[Point], paths: Sequence[tuple[str, str]]) -> list[MapRow]:
    """Every row of the map from the runs stored under ``results`` alone; raises MapError with none."""
    runs = stored_runs(results, points)
    if not runs:
        raise MapError(f"no stored run under {results}")
    return [row for point in points if point.key in runs for row in point_rows(point, runs[point.key], paths)]


def _selected(spec: str | None, options: Sequence[Any], key: Any, what: str) -> list[Any]:
    if not spec:
        return list(options)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    chosen = [o for o in options if any(key(o) == n or key(o).startswith(n) for n in names)]
    if len(chosen) == 0:
        raise ConfigError(f"--{what}: none of {spec!r} is one of {', '.join(key(o) for o in options)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.tools.crossover", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="output folder (default: reports/map-<UTC time>)")
    p.add_argument(
        "--template", type=Path, default=TEMPLATE, help="the scenario template (scenarios/map.toml)"
    )
    p.add_argument(
        "--points",
        help="comma-separated point keys or prefixes (default: all): " + ", ".join(p.key for p in POINTS),
    )
    p.add_argument(
        "--paths",
        help="comma-separated from-stacks or prefixes (default: all): " + ", ".join(a for a, _ in PATHS),
    )
    p.add_argument(
        "--quick", action="store_true", help="pass --quick to every run (one repeat: no intervals)"
    )
    p.add_argument("--quick-factor", type=float, help="with --quick: its factor")
    p.add_argument("--dry-run", action="store_true", help="write the scenarios and print the plan, no load")
    p.add_argument(
        "--no-verify", action="store_true", help="pass --no-verify to every run (no contract check)"
    )
    p.add_argument("--rebuild", action="store_true", help="no load: rebuild the map from --out's stored runs")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        points = _selected(args.points, POINTS, lambda p: p.key, "points")
        paths = _selected(args.paths, PATHS, lambda p: p[0], "paths")
        if args.rebuild and args.out is None:
            raise ConfigError("--rebuild: needs --out (the folder of a map)")
        out = args.out or REPO / "reports" / time.strftime("map-%Y%m%dT%H%M%SZ", time.gmtime())
        interrupted = False
        if not args.rebuild:
            interrupted = measure(args, out, points, paths)
            if args.dry_run:
                return EXIT_OK
        rows = map_rows(out / "results", points, paths)
    except (ConfigError, MapError) as exc:
        print(f"bench-map: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # between runs or while building: what is stored stays
        print("bench-map: interrupted; the stored runs stay under the output folder", file=sys.stderr)
        return EXIT_INTERRUPTED
    page = write_outputs(rows, out)  # written before printing: a closed pipe must not lose them
    print("\n".join(format_table(rows)))
    print(f"map: {page}")
    if interrupted:
        print("interrupted: the map holds the points measured so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def measure(
    args: argparse.Namespace, out: Path, points: Sequence[Point], paths: Sequence[tuple[str, str]]
) -> bool:
    """Run every point (its plan printed first); True when Ctrl-C stopped it. Raises MapError when a
    point's run failed, ConfigError when a scenario would be refused."""
    scenarios = write_scenarios(args.template, points, out / "scenarios")
    targets = [name for pair in paths for name in pair]
    extra = ["--targets", ",".join(targets)]
    if args.no_verify:
        extra.append("--no-verify")
    if args.quick:
        extra.append("--quick")
        if args.quick_factor is not None:
            extra += ["--quick-factor", str(args.quick_factor)]
    about = most = 0.0
    for path in scenarios.values():
        scenario = load_scenario(path)
        if args.quick:
            scenario = scenario.quick(args.quick_factor or QUICK_FACTOR)[0]
        a, m = planned_load_s(scenario, targets)
        about, most = about + a, most + m
    print(
        f"bench-map: {len(points)} points x {len(paths)} paths; planned load about {about / 60:.1f} min, "
        f"at most {most / 60:.1f} min (plus start-up); output: {out}",
        file=sys.stderr,
        flush=True,
    )
    if args.dry_run:
        return False
    runs = [
        Run(
            f"bench-map: {point.label} ({point.endpoint}) ...",
            scenarios[point.key],
            out / "results" / point.key,
            out / f"run-{point.key}.log",
            f"of point {point.key}",
        )
        for point in points
    ]
    return run_each(runs, extra)


@dataclass(frozen=True)
class Run:
    """One ``gwbench run`` of a tool: the line announcing it, its scenario file, results folder and
    log, and how a failure names it (``of point upstream-50ms``, ``at 0.5 CPU``)."""

    announce: str
    scenario: Path
    results: Path
    log: Path
    what: str


def run_each(runs: Sequence[Run], extra: list[str]) -> bool:
    """Run each in order (:func:`run_point`); True when Ctrl-C stopped them (what is stored stays).

    Raises MapError, naming the run and its log's last line, when one exits non-zero.
    """
    for run in runs:
        run.results.mkdir(parents=True, exist_ok=True)
        print(run.announce, file=sys.stderr, flush=True)
        try:
            code = run_point(run.scenario, run.results, extra, run.log)
        except KeyboardInterrupt:
            return True
        if code != 0:
            raise MapError(
                f"the run {run.what} failed (exit {code}): {last_line(run.log)} (log: {run.log})"
            )
    return False


if __name__ == "__main__":
    raise SystemExit(main())
