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
import csv
import html
import io
import json
import math
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from harness import stats
from harness.analysis import measurements_frame
from harness.model import QUICK_FACTOR, ConfigError, Scenario, load_scenario
from harness.report.formats import format_bound_reason
from harness.report.svg import RC, svg_text
from harness.results import list_runs, load_run
from harness.run.search import MAX_WINDOW_FACTOR
from harness.run.tuning import tuned_name
from harness.saturation import saturation_summary

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
    per_search = scenario.warmup_s + sat.probe_s + sat.steps * window
    about = searches * per_search + scenario.repeats * len(tuned) * window
    stretch = stretched * sat.steps * (MAX_WINDOW_FACTOR - 1) * scenario.duration_s
    return about, about + stretch


def run_point(scenario_path: Path, results: Path, extra: Sequence[str], log: Path) -> int:
    """``gwbench run`` of one point's scenario into ``results``; its exit code (output to ``log``).

    On Ctrl-C the run (which got the terminal's SIGINT too) is waited for so that it stores
    what it measured; a SIGINT sent to this process alone is passed on after 5 s. Then
    KeyboardInterrupt is raised again.
    """
    command = [sys.executable, "-m", "harness", "run", str(scenario_path), "--results", str(results)]
    with log.open("w") as output:
        child = subprocess.Popen([*command, "--no-report", *extra], stdout=output, stderr=subprocess.STDOUT)
        try:
            return child.wait()
        except KeyboardInterrupt:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)
            child.wait()
            raise


def last_line(log: Path) -> str:
    """The last non-empty line of a run's output (its one-line refusal or failure summary)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _flags(summary: pd.DataFrame, target: str) -> list[str]:
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


def _values(summary: pd.DataFrame, target: str) -> tuple[float, ...]:
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
            a, b = _values(summary, destination), _values(summary, from_target)
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
                    flags=tuple(_flags(summary, from_target) + _flags(summary, destination)),
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


def _interval_text(row: MapRow) -> str:
    if math.isnan(row.ratio_ci_low):
        return "no interval"
    return f"[{row.ratio_ci_low:.2f}, {row.ratio_ci_high:.2f}]"


def format_table(rows: Iterable[MapRow]) -> list[str]:
    """The map as text lines: path, variant, wait, from and to capacity, ratio [interval], flags."""
    header = (
        f"{'path':40} {'from':13} {'wait':>22} {'from req/s':>10} {'to req/s':>9} {'ratio':>7} {'95% CI':>16}"
    )
    lines = [header]
    for r in rows:
        wait = f"{r.label} (p99<={r.slo_p99_ms:g})"
        flags = "  " + " | ".join(r.flags) if r.flags else ""
        lines.append(
            f"{r.path:40} {r.variant:13} {wait:>22} {r.from_requests_per_second:>10,.0f} "
            f"{r.to_requests_per_second:>9,.0f} {r.ratio:>6.2f}x {_interval_text(r):>16}{flags}"
        )
    return lines


CPU_X = 1.0
"""Where the CPU-only point sits on the log axis of waits (ms), left of 5 ms."""


def chart_svg(rows: Sequence[MapRow]) -> str:
    """One SVG chart: capacity ratio (log) against the wait (ms, log; CPU only at the left), a line
    per path and variant (tuned solid, as configured dashed), the fan-out as its own marker,
    95% interval bars, and a line at 1."""
    colours = {path: f"C{i}" for i, path in enumerate(dict.fromkeys(r.path for r in rows))}
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(7.2, 4.2), layout="constrained")
        axes = figure.subplots()
        series: dict[tuple[str, str], list[MapRow]] = {}
        for row in rows:
            series.setdefault((row.path, row.variant), []).append(row)
        for (path, variant), members in series.items():
            style = "-" if variant == "tuned" else "--"
            for fanout in (False, True):
                part = sorted(
                    (r for r in members if r.point.startswith("fanout") == fanout and math.isfinite(r.ratio)),
                    key=lambda r: r.wait_ms,
                )
                if not part:
                    continue
                xs = [CPU_X if r.wait_ms == 0 else r.wait_ms for r in part]
                ys = [r.ratio for r in part]
                lows = [0.0 if math.isnan(r.ratio_ci_low) else r.ratio - r.ratio_ci_low for r in part]
                highs = [
                    0.0 if not math.isfinite(r.ratio_ci_high) else r.ratio_ci_high - r.ratio for r in part
                ]
                axes.errorbar(
                    xs,
                    ys,
                    yerr=[lows, highs],
                    color=colours[path],
                    linestyle="none" if fanout else style,
                    marker="s" if fanout else ("o" if variant == "tuned" else "^"),
                    capsize=3,
                    label=None if fanout else f"{path} ({variant})",
                )
                flagged = [(x, r.ratio) for x, r in zip(xs, part, strict=True) if r.flags]
                if flagged:  # hollow: flagged, no verdict
                    axes.scatter(
                        [x for x, _ in flagged],
                        [y for _, y in flagged],
                        s=22,
                        facecolors="white",
                        edgecolors=colours[path],
                        zorder=3,
                    )
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.annotate(
            "migrating pays above the line",
            (0.01, 1.0),
            xycoords=("axes fraction", "data"),
            xytext=(0, 4),
            textcoords="offset points",
            fontsize=8,
        )
        axes.set_xscale("log")
        axes.set_yscale("log")
        finite = [r.ratio_ci_low if math.isfinite(r.ratio_ci_low) else r.ratio for r in rows if r.ratio > 0]
        tops = [r.ratio_ci_high if math.isfinite(r.ratio_ci_high) else r.ratio for r in rows]
        axes.set_ylim(
            bottom=min([0.5, *(v / 1.3 for v in finite if v > 0)]),
            top=max([2.0, *(1.5 * v for v in tops if math.isfinite(v))]),
        )
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ticks = sorted({CPU_X if r.wait_ms == 0 else r.wait_ms for r in rows})
        names = {CPU_X if r.wait_ms == 0 else r.wait_ms: r.label for r in rows}
        axes.set_xticks(ticks, [names[t].replace(" upstream", "") for t in ticks], rotation=20)
        axes.minorticks_off()
        axes.set_xlabel("what a request waits on (ms, log; squares: fan-out; hollow: flagged, no verdict)")
        axes.set_ylabel("capacity ratio, to / from (log; 95% interval)")
        axes.set_title("Crossover map: capacity within each point's SLO (p99 <= wait + 100 ms)", fontsize=9)
        axes.legend(loc="upper left", bbox_to_anchor=(0, 0.95))
        return svg_text(figure, "map")


def csv_text(rows: Sequence[MapRow]) -> str:
    """The table as CSV, one row per path, variant and point (value tuples joined by spaces)."""
    buffer = io.StringIO()
    fields = list(MapRow.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        record = asdict(row)
        for key in ("from_values", "to_values", "flags"):
            record[key] = " | ".join(map(str, record[key]))
        writer.writerow(record)
    return buffer.getvalue()


def html_page(rows: Sequence[MapRow], svg: str, notes: Sequence[str]) -> str:
    """A self-contained page: the chart, the table, and the notes on what was measured."""
    cells = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                r.path,
                r.variant,
                f"{r.label} (p99 <= {r.slo_p99_ms:g} ms)",
                f"{r.from_requests_per_second:,.0f}",
                f"{r.to_requests_per_second:,.0f}",
                f"{r.ratio:.2f}x",
                _interval_text(r),
                "; ".join(r.flags) or "none",
            )
        )
        + "</tr>"
        for r in rows
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("path", "from-stack", "wait (SLO)", "from req/s", "to req/s", "ratio", "95% CI", "flags")
    )
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Crossover map</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}</style>"
        f"</head><body><h1>Crossover map</h1>{svg}<table><tr>{head}</tr>{cells}</table><ul>{items}</ul>"
        "</body></html>\n"
    )


NOTES = (
    "Capacity: the highest Poisson arrival rate held within the point's SLO (p99 <= wait + 100 ms, "
    "errors <= 0.1%, served >= 95% of the rate), 1 CPU and 1 GiB per stack, median of the repeats.",
    "Ratio: to-stack over from-stack, ratio of geometric means of the per-repeat capacities with "
    "its 95% t-interval (harness.stats.compare). A flagged row is no verdict.",
    "Tuned: the blocking from-stack at the worker count derived within the same limits on that "
    "point's endpoint (<stack>@tuned); as configured: its default workers.",
    "Fan-out: 3 upstream calls of 100 ms, overlapped on both sides (mode=threads for the sync stacks).",
)


def write_outputs(rows: Sequence[MapRow], folder: Path) -> Path:
    """map.json, map.csv, map.svg and index.html under ``folder``; returns the page's path."""
    svg = chart_svg(rows)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "map.json").write_text(json.dumps([asdict(r) for r in rows], indent=1, allow_nan=True))
    (folder / "map.csv").write_text(csv_text(rows))
    (folder / "map.svg").write_text(svg)
    page = folder / "index.html"
    page.write_text(html_page(rows, svg, NOTES))
    return page


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
    print("\n".join(format_table(rows)))
    print(f"map: {write_outputs(rows, out)}")
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
    for point in points:
        results = out / "results" / point.key
        results.mkdir(parents=True, exist_ok=True)
        log = out / f"run-{point.key}.log"
        print(f"bench-map: {point.label} ({point.endpoint}) ...", file=sys.stderr, flush=True)
        try:
            code = run_point(scenarios[point.key], results, extra, log)
        except KeyboardInterrupt:
            return True
        if code != 0:
            raise MapError(
                f"the run of point {point.key} failed (exit {code}): {last_line(log)} (log: {log})"
            )
    return False


if __name__ == "__main__":
    raise SystemExit(main())
