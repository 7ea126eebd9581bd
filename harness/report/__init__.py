"""HTML reports built from stored results only."""

from harness.report.html import render_index, render_run, write_reports

__all__ = ["render_index", "render_run", "write_reports"]
