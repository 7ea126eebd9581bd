"""The page comparing two runs, cell by cell, from :func:`harness.compare.compare_runs`'s result."""

from __future__ import annotations

from pathlib import Path

from harness.compare import CellChange, RunComparison
from harness.report.formats import DASH, format_change, format_interval, format_number
from harness.report.html import render_index
from harness.report.jinja import pages
from harness.results import write_atomic


def change_row(change: CellChange) -> dict[str, object]:
    """One cell's figures in A and B and its change, as the texts the table and the page show."""
    a, b = change.a, change.b
    return {
        "target": change.target,
        "endpoint": change.endpoint,
        "level": change.level_label,
        "requests_per_second_a": format_number(a.requests_per_second_median)
        if a.n
        else "failed"
        if a.failed
        else DASH,
        "requests_per_second_a_ci": format_interval(a.requests_per_second_interval),
        "requests_per_second_b": format_number(b.requests_per_second_median)
        if b.n
        else "failed"
        if b.failed
        else DASH,
        "requests_per_second_b_ci": format_interval(b.requests_per_second_interval),
        "requests_per_second_change": format_change(change.requests_per_second),
        "p99_a": format_number(a.p99_median) if a.n else DASH,
        "p99_b": format_number(b.p99_median) if b.n else DASH,
        "p99_change": format_change(change.p99),
        "repeats": f"{a.n} / {b.n}",
        "status": change.status,
        "status_class": change.status.replace(" ", "-"),
        "worse": ", ".join(change.worse),
        "flags": "; ".join([*(f"A: {f}" for f in a.flags), *(f"B: {f}" for f in b.flags)]),
    }


def render_compare(comparison: RunComparison, problems: list[str], reports_root: Path) -> str:
    """The comparison page as HTML text for ``reports_root/compare/``, linking to the runs' reports."""
    return pages.get_template("compare.html.j2").render(
        c=comparison,
        report_a=(reports_root / comparison.run_a / "index.html").is_file(),
        report_b=(reports_root / comparison.run_b / "index.html").is_file(),
        threshold=f"{100 * comparison.threshold:g}%",
        rows=[change_row(change) for change in comparison.changes],
        regressions=len(comparison.regressions),
        problems=problems,
    )


def write_compare_page(
    comparison: RunComparison, problems: list[str], reports_root: Path, results_root: Path | None = None
) -> Path:
    """Write ``reports_root/compare/<run A>__<run B>.html``; returns its path.

    With ``results_root``, the list of runs (which links to comparisons) is written again too.
    """
    page = reports_root / "compare" / f"{comparison.run_a}__{comparison.run_b}.html"
    write_atomic(page, render_compare(comparison, problems, reports_root))
    if results_root is not None:
        write_atomic(reports_root / "index.html", render_index(results_root, reports_root))
    return page
