"""Docker engines and images: connecting to an engine, and each target's reproducible build context.

A target's image is built from a context the harness lays out like ``targets/``: the
target's folder, the folder its ``app_dir`` names when that is a sibling (the shared Django
project), and the target's wheels as ``wheelhouse/`` (``make wheelhouse``). The same files
give the same bytes, so the context's hash names the image and an unchanged target is not
rebuilt. :mod:`harness.launch.docker` builds and runs the images.
"""

from __future__ import annotations

import io
import os
import re
import socket
import tarfile
from collections.abc import Iterable
from pathlib import Path

import docker
from docker.errors import DockerException

from harness.launch.base import LaunchError
from harness.model import TargetConfig

# What the Dockerfiles default to, and what `make docker-base` builds when no registry answers.
DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"
LOCAL_BASE_IMAGE = "gwbench/base:bookworm"
WHEELHOUSE = Path(__file__).resolve().parents[2] / "build" / "wheelhouse"
IMAGE_REPOSITORY = "gwbench"
TARGETS_IN_IMAGE = "/srv/targets"
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_SKIPPED = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_ENGINE_HINT = (
    "start one (as root: `dockerd &`, or `systemctl start docker`; Debian: apt-get install docker.io) "
    "or point DOCKER_HOST at one"
)


class EngineUnavailable(LaunchError):
    """No Docker engine answers; the message is one line saying how to start one."""


def connect(timeout_s: float = 60.0) -> docker.DockerClient:
    """A client for the engine that ``DOCKER_HOST`` (default: the local socket) names.

    Raises EngineUnavailable when it does not answer a ping.
    """
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if where.startswith("unix://"):
        # Asked first, and quickly: the SDK leaks its socket when the connection is refused.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(min(timeout_s, 5.0))
            try:
                probe.connect(where.removeprefix("unix://"))
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                message = f"no Docker engine answers at {where} ({reason}); {_ENGINE_HINT}"
                raise EngineUnavailable(message) from None
    client: docker.DockerClient | None = None
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except DockerException as exc:
        if client is not None:
            client.close()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EngineUnavailable(f"no Docker engine answers at {where} ({reason}); {_ENGINE_HINT}") from exc
    return client


def _context_folders(config: TargetConfig, directory: Path) -> dict[str, Path]:
    """The folders a target's image needs, by their name in the context."""
    directory = directory.resolve()
    folders = {directory.name: directory}
    app = (directory / config.app_dir).resolve()
    if app != directory and not app.is_relative_to(directory):
        if app.parent != directory.parent:
            raise LaunchError(
                f"{config.name}: app_dir {config.app_dir!r} is neither inside the target's folder nor "
                "a sibling of it, so it cannot go into the image's build context"
            )
        folders[app.name] = app
    return folders


def _add(archive: tarfile.TarFile, name: str, path: Path | None) -> None:
    # Fixed owner, time and modes: the same files give the same bytes, hence the same hash.
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if path is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        archive.addfile(info)
        return
    data = path.read_bytes()
    info.size = len(data)
    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
    archive.addfile(info, io.BytesIO(data))


def build_context(config: TargetConfig, directory: Path, wheels: Path) -> bytes:
    """The build context of a target's image as an uncompressed tar, byte-for-byte reproducible.

    Layout: ``<target>/`` (its folder, Dockerfile included), ``<sibling>/`` for an
    ``app_dir`` outside the target's folder, and ``wheelhouse/`` (the ``*.whl`` of
    ``wheels``). Caches (``__pycache__``) are left out. Raises LaunchError.
    """
    folders = _context_folders(config, directory)
    if not (directory / "Dockerfile").is_file():
        raise LaunchError(f"{config.name}: no Dockerfile in {directory}")
    stamp = wheels / ".complete"
    if not stamp.is_file():
        raise LaunchError(
            f"{config.name}: no wheelhouse in {wheels}: run `make wheelhouse` (it needs PyPI or a pip cache)"
        )
    requirements = directory / config.requirements
    if requirements.is_file() and requirements.stat().st_mtime > stamp.stat().st_mtime:
        raise LaunchError(f"{config.name}: {requirements} changed after its wheels: run `make wheelhouse`")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, folder in sorted(folders.items()):
            _add(archive, name, None)
            for path in sorted(folder.rglob("*")):
                relative = path.relative_to(folder)
                if _SKIPPED & set(relative.parts) or path.suffix == ".pyc":
                    continue
                _add(archive, f"{name}/{relative.as_posix()}", None if path.is_dir() else path)
        _add(archive, "wheelhouse", None)
        for wheel in sorted(wheels.glob("*.whl")):
            _add(archive, f"wheelhouse/{wheel.name}", wheel)
    return buffer.getvalue()


def log_lines(log: Iterable[object]) -> list[str]:
    """The text of a build log's JSON items (``{"stream": "Step 1/9 ..."}``, ``{"error": ...}``),
    without terminal colour codes."""
    lines = []
    for item in log:
        if isinstance(item, dict):
            lines.append(_COLOUR.sub("", str(item.get("stream") or item.get("error") or "")))
    return lines
