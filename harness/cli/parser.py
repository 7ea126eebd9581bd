"""The ``gwbench`` argument parser: global options here, each command's own in its module."""

from __future__ import annotations

import argparse
import importlib.metadata

from harness.cli import inspect, locust, results, run
from harness.cli.common import REPO


def _version() -> str:
    """The installed package's version (``pyproject.toml``), or ``unknown`` outside an install."""
    try:
        return importlib.metadata.version("gateway-bench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``gwbench``; each subcommand sets ``func``, its ``cmd_<name>`` function."""
    parser = argparse.ArgumentParser(prog="gwbench", description="Benchmark WSGI and ASGI Python stacks.")
    parser.add_argument("--targets-dir", default=str(REPO / "targets"), help="folder of targets")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    # In this order in --help.
    run.add_run_parser(sub)
    results.add_report_parser(sub)
    inspect.add_verify_parser(sub)
    inspect.add_serve_parser(sub)
    results.add_claims_parser(sub)
    results.add_compare_parser(sub)
    locust.add_locust_worker_parser(sub)
    inspect.add_scenarios_parser(sub)
    inspect.add_targets_parser(sub)
    return parser
