"""The claims page: each published claim next to what we measured at this machine's scale.

Built from the claim files and the stored runs only (``results/<ts>-claim-<name>/``);
the newest run of each claim is shown, analysed once (:func:`harness.runanalysis.analyse_run`).
Sentences come from :mod:`harness.claimverdict` (the verdict's reason) and
:mod:`harness.report.formats`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from harness.claims import QUICK_FACTOR, Claim, ClaimedSide, check_claimed, run_claim_name
from harness.claimverdict import MAX_ERROR_RATE, ClaimVerdict, Measured, MeasuredSide, judge, measure_run
from harness.report.formats import (
    DASH,
    format_bound_reasons,
    format_comparison,
    format_interval,
    format_number,
    format_percent,
    format_ratio,
)
from harness.report.html import render_index
from harness.report.jinja import pages
from harness.results import ResultsError, list_runs, load_manifest, read_measurements, write_atomic
from harness.runanalysis import RunAnalysis, analyse_run


def latest_claim_runs(results_root: Path) -> dict[str, Path]:
    """The newest run directory of each claim under ``results_root``, by claim name."""
    runs: dict[str, Path] = {}
    for run_dir in list_runs(results_root):  # oldest first: later ones win
        name = run_claim_name(run_dir.name)
        if name is not None:
            runs[name] = run_dir
    return runs


def _optional(value: float | None, unit: str, digits: int | None = None) -> str:
    return DASH if value is None else f"{format_number(value, digits)}{unit}"


def _claimed_row(side: ClaimedSide, claim: Claim, role: str) -> dict[str, object]:
    check = check_claimed(side, claim.claimed)
    notes = []
    if check.exceeds_ceiling:
        notes.append("above its Little's-law ceiling")
    if (
        check.rate_from_total is not None
        and abs(check.rate_from_total - side.requests_per_second) > 0.1 * side.requests_per_second
    ):
        notes.append(
            f"its request count gives {format_number(check.rate_from_total)} requests/s, not "
            f"{format_number(side.requests_per_second)}"
        )
    if check.timeout_share is not None and check.timeout_share > MAX_ERROR_RATE:
        notes.append(
            f"{format_number(side.timeouts)} timeouts, "
            f"{format_percent(check.timeout_share)} of the requests answered"
        )
    concurrency = claim.claimed.concurrency
    if check.in_flight is not None and concurrency and check.in_flight < 0.8 * concurrency:
        notes.append(f"only ~{check.in_flight:,.0f} of {concurrency} connections busy by Little's law")
    workers = DASH if side.workers is None else str(side.workers)
    if side.blocking and side.workers and side.threads > 1:
        workers += f" x {side.threads} threads"
    return {
        "role": role,
        "stack": side.stack,
        "interface": side.interface.upper(),
        "model": "blocking" if side.blocking else "non-blocking",
        "workers": workers,
        "requests_per_second": format_number(side.requests_per_second),
        "latency": _optional(side.latency_ms, f" ms ({side.latency_kind})"),
        "p99": _optional(side.p99_ms, " ms"),
        "ceiling": _optional(check.ceiling_requests_per_second, "", 0),
        "in_flight": _optional(check.in_flight, "", 0),
        "max_service": _optional(check.max_service_ms, " ms"),
        "rate_from_total": _optional(check.rate_from_total, ""),
        "timeouts": _optional(side.timeouts, ""),
        "note": "; ".join([*notes, *([side.note] if side.note else [])]),
        "flagged": bool(notes),
    }


def _measured_row(side: MeasuredSide, role: str) -> dict[str, object]:
    return {
        "role": role,
        "target": side.target,
        "interface": side.interface.upper(),
        "workers": side.workers,
        "n": side.n,
        "failed": side.failed,
        "requests_per_second": format_number(side.requests_per_second_median),
        "requests_per_second_ci": format_interval(side.requests_per_second_interval),
        "p50": format_number(side.p50_ms),
        "p99": format_number(side.p99_ms),
        "errors": format_percent(side.error_rate),
        "ceiling": _optional(side.ceiling_requests_per_second, "", 0),
        "flags": "; ".join(
            reason
            for reason in (
                _bound_text(side),
                "above its sync ceiling" if side.sync_ceiling_exceeded else None,
                f"failed: {side.failure_reason.splitlines()[0]}" if side.failure_reason else None,
            )
            if reason
        ),
    }


def _bound_text(side: MeasuredSide) -> str | None:
    """Why a side's figure may be the harness's, in words, or None."""
    return format_bound_reasons(side.bound_reasons) or None


def _run_links(run_dir: Path, reports_root: Path, page_dir: Path) -> dict[str, str | None]:
    report = reports_root / run_dir.name / "index.html"
    return {
        "report": Path(os.path.relpath(report.resolve(), page_dir.resolve())).as_posix()
        if report.is_file()
        else None,
        "results": Path(os.path.relpath(run_dir.resolve(), page_dir.resolve())).as_posix(),
    }


def _analyse_claim_runs(
    claims: Mapping[str, Claim], runs: Mapping[str, Path], problems: list[str]
) -> dict[str, RunAnalysis]:
    """The newest run of each claim that has one, analysed once, by claim name (sorted).

    A run that cannot be read is left out and named in ``problems``, as is each
    unreadable line of a run that can.
    """
    analysed: dict[str, RunAnalysis] = {}
    for name, claim in sorted(claims.items()):
        run_dir = runs.get(name)
        if run_dir is None:
            continue
        try:
            manifest = load_manifest(run_dir)
            measurements, unreadable = read_measurements(run_dir)
        except ResultsError as exc:
            problems.append(f"{claim.name}: {exc}")
            continue
        problems.extend(f"{run_dir.name}/{problem}" for problem in unreadable)
        analysed[name] = analyse_run(manifest, measurements)
    return analysed


def _claim_context(
    claim: Claim, run_dir: Path | None, run: RunAnalysis | None, reports_root: Path, page_dir: Path
) -> dict[str, object]:
    measured: Measured | None = None
    links: dict[str, str | None] = {"report": None, "results": None}
    if run_dir is not None and run is not None:
        measured = measure_run(claim, run)
        links = _run_links(run_dir, reports_root, page_dir)
    verdict = judge(claim, measured)
    sides = [
        (role, side)
        for role, side in (("baseline", claim.claimed.baseline), ("candidate", claim.claimed.candidate))
        if side is not None
    ]
    sides += [("context", other) for other in claim.claimed.others]
    measured_rows = []
    if measured is not None:
        measured_rows = [
            _measured_row(side, role)
            for role, side in (("baseline", measured.baseline), ("candidate", measured.candidate))
            if side is not None
        ]
    return {
        "claim": claim,
        "anchor": f"claim-{claim.name}",
        "verdict": verdict,
        "verdict_class": verdict.kind.replace(" ", "-"),
        "claimed_ratio": DASH if claim.claimed.ratio is None else format_ratio(claim.claimed.ratio),
        "claimed_rows": [_claimed_row(side, claim, role) for role, side in sides],
        "measured": measured,
        "measured_rows": measured_rows,
        "comparison": None
        if measured is None or measured.comparison is None
        else format_comparison(measured.comparison),
        "ratio_bound": None
        if measured is None or measured.ratio_bound is None
        else format_ratio(measured.ratio_bound),
        "quick": measured is not None and measured.duration_factor < 1,
        "duration_factor": None if measured is None else f"{measured.duration_factor:g}",
        "links": links,
    }


def claim_verdicts(
    claims: Mapping[str, Claim], results_root: Path
) -> list[tuple[Claim, Measured | None, ClaimVerdict]]:
    """Each claim (sorted by name) with its newest run's figures (None if never run) and its verdict."""
    analysed = _analyse_claim_runs(claims, latest_claim_runs(results_root), [])
    found: list[tuple[Claim, Measured | None, ClaimVerdict]] = []
    for name, claim in sorted(claims.items()):
        run = analysed.get(name)
        measured = None if run is None else measure_run(claim, run)
        found.append((claim, measured, judge(claim, measured)))
    return found


def _render_claims(
    claims: Mapping[str, Claim],
    runs: Mapping[str, Path],
    analysed: Mapping[str, RunAnalysis],
    problems: list[str],
    reports_root: Path,
) -> str:
    page_dir = reports_root / "claims"
    contexts = [
        _claim_context(claim, runs.get(name), analysed.get(name), reports_root, page_dir)
        for name, claim in sorted(claims.items())
    ]
    return pages.get_template("claims.html.j2").render(
        claims=contexts, problems=problems, quick_factor=f"{QUICK_FACTOR:g}"
    )


def render_claims(claims: Mapping[str, Claim], results_root: Path, reports_root: Path) -> str:
    """The claims page as HTML text, for ``reports_root/claims/index.html``."""
    runs = latest_claim_runs(results_root)
    problems: list[str] = []
    analysed = _analyse_claim_runs(claims, runs, problems)
    return _render_claims(claims, runs, analysed, problems, reports_root)


def write_claims_page(claims: Mapping[str, Claim], results_root: Path, reports_root: Path) -> Path:
    """Write ``reports_root/claims/index.html`` and the list of runs, which links to it; returns its path.

    Each claim's newest run is analysed once for both pages.
    """
    runs = latest_claim_runs(results_root)
    problems: list[str] = []
    analysed = _analyse_claim_runs(claims, runs, problems)
    page = reports_root / "claims" / "index.html"
    write_atomic(page, _render_claims(claims, runs, analysed, problems, reports_root))
    by_folder = {runs[name].name: run for name, run in analysed.items()}
    write_atomic(reports_root / "index.html", render_index(results_root, reports_root, analysed=by_folder))
    return page
