"""HTML reports built from stored results only."""

from harness.report.claims import render_claims, write_claims_page
from harness.report.compare import render_compare, write_compare_page
from harness.report.html import render_index, render_run, write_reports

__all__ = [
    "render_claims",
    "render_compare",
    "render_index",
    "render_run",
    "write_claims_page",
    "write_compare_page",
    "write_reports",
]
