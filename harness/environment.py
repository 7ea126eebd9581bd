"""Describe the machine and software a run is measured on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from harness.model import Environment

HARNESS_PACKAGES = (
    "hdrhistogram",
    "httptools",
    "uvloop",
    "psutil",
    "pydantic",
    "pandas",
    "matplotlib",
    "jinja2",
    "rich",
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or platform.processor() elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(directory: Path) -> str | None:
    """The checked-out commit of the repository holding ``directory``, with ``+dirty`` if modified."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of the given distributions; absent ones map to ``"not installed"``."""
    versions = {}
    for name in sorted(set(names)):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def collect(*, packages: Iterable[str], repo: Path, launcher: str) -> Environment:
    """Describe this machine: CPU, cores, kernel, Python, packages, git commit."""
    return Environment(
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 1,
        kernel=platform.release(),
        python=platform.python_version(),
        hostname=socket.gethostname(),
        git_commit=git_commit(repo),
        launcher=launcher,
        packages=package_versions([*HARNESS_PACKAGES, *packages]),
    )
