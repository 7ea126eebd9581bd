"""Write and read a run directory, atomically.

Layout of ``results/<run_id>/``::

    manifest.json        RunManifest (schema_version, config, environment, status)
    measurements.jsonl   one Measurement per line, in the order measured
    histograms/<cell_id>.hdr   the cell's HdrHistogram, base64 "HISTFAAA..." encoding,
                         values in microseconds
    timeseries/<cell_id>.csv   the server's samples over the window (harness.timeseries)
    logs/<target>.log    the target's stdout and stderr

Every file is written to a temporary name in the same folder and renamed over
the old one, so a reader (or an interrupted run) only ever sees complete files.
Loaders refuse results whose ``schema_version`` they do not know, and read older
versions' files in the current schema (:func:`harness.model.upgrade_manifest`,
:func:`harness.model.upgrade_measurement`; the changelog is :mod:`harness.model.records`'),
leaving the files as they are.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from harness.model import SCHEMA_VERSION, Measurement, RunManifest, upgrade_manifest, upgrade_measurement

READABLE_VERSIONS = tuple(range(1, SCHEMA_VERSION + 1))


class ResultsError(Exception):
    """A run directory is missing, incomplete or of an unknown schema version."""


class StorageError(ResultsError):
    """A run's results could not be written (a full or read-only file system): the run stopped."""


def current_umask() -> int:
    """The process's file mode creation mask (e.g. 0o022), read without changing it where Linux tells."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it, then put it back
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    The file gets the mode any new file gets (0o666 less the umask: 0o644 under the usual
    022), not the temporary file's private 0o600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunWriter:
    """Accumulates one run's files in ``root/<run_id>/``.

    Each :meth:`add_measurement` rewrites ``measurements.jsonl`` atomically, so
    what was measured before an interruption is always on disk.
    """

    def __init__(self, root: Path, run_id: str) -> None:
        self.directory = root / run_id
        if self.directory.exists():
            raise ResultsError(f"{self.directory}: a run with this id already exists")
        (self.directory / "logs").mkdir(parents=True)
        (self.directory / "histograms").mkdir()
        self._lines: list[str] = []

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    def write_manifest(self, manifest: RunManifest) -> None:
        write_atomic(
            self.directory / "manifest.json",
            json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n",
        )

    def write_histogram(self, cell_id: str, encoded: str) -> str:
        """Store an encoded histogram; return its path relative to the run directory."""
        relative = f"histograms/{cell_id}.hdr"
        write_atomic(self.directory / relative, encoded + "\n")
        return relative

    def write_timeseries(self, cell_id: str, text: str) -> str:
        """Store a cell's time series (CSV text); return its path relative to the run directory."""
        relative = f"timeseries/{cell_id}.csv"
        write_atomic(self.directory / relative, text)
        return relative

    def add_measurement(self, measurement: Measurement) -> None:
        self._lines.append(json.dumps(measurement.model_dump(mode="json"), sort_keys=True))
        write_atomic(self.directory / "measurements.jsonl", "\n".join(self._lines) + "\n")


def load_manifest(run_dir: Path) -> RunManifest:
    """Read ``manifest.json``; raises ResultsError if missing or of another schema."""
    path = run_dir / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultsError(f"{run_dir}: no manifest.json (not a run directory?)") from exc
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ResultsError(f"{path}: unreadable: {exc}") from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version not in READABLE_VERSIONS:
        raise ResultsError(
            f"{path}: schema_version {version!r} is not supported (this harness reads "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    try:
        return RunManifest.model_validate(upgrade_manifest(data, version))
    except ValidationError as exc:
        raise ResultsError(f"{path}: not a valid manifest: {exc.errors()[0]['msg']}") from exc


def read_measurements(run_dir: Path) -> tuple[list[Measurement], list[str]]:
    """Read ``measurements.jsonl``, keeping every readable line.

    Returns the measurements and one problem per unreadable line, e.g.
    ``"measurements.jsonl line 7: invalid JSON (...)"`` (a file cut short by a
    crash, or edited by hand). No file yet means no measurements and no problem.
    Raises ResultsError when the file exists but cannot be read at all.
    """
    path = run_dir / "measurements.jsonl"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], []
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: unreadable: {exc}") from exc
    measurements: list[Measurement] = []
    problems: list[str] = []
    version = _stored_version(run_dir)
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            if version >= SCHEMA_VERSION:
                measurements.append(Measurement.model_validate_json(line))
            else:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                measurements.append(Measurement.model_validate(upgrade_measurement(data, version)))
        except ValueError as exc:
            if not isinstance(exc, ValidationError):
                problems.append(f"{path.name} line {number}: invalid JSON ({exc}); line skipped")
                continue
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            reason = "invalid JSON" if first["type"] == "json_invalid" else f"{where}: {first['msg']}"
            problems.append(f"{path.name} line {number}: {reason}; line skipped")
    return measurements, problems


def _stored_version(run_dir: Path) -> int:
    """The schema version the run's manifest names (the current one when it cannot be read:
    :func:`load_manifest` reports that)."""
    try:
        data = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return SCHEMA_VERSION
    version = data.get("schema_version") if isinstance(data, dict) else None
    return version if isinstance(version, int) and version in READABLE_VERSIONS else SCHEMA_VERSION


def load_measurements(run_dir: Path) -> list[Measurement]:
    """The readable measurements of ``measurements.jsonl`` (see :func:`read_measurements`)."""
    return read_measurements(run_dir)[0]


def load_run(run_dir: Path) -> tuple[RunManifest, list[Measurement]]:
    """Read a whole run directory: its manifest and its readable measurements."""
    return load_manifest(run_dir), load_measurements(run_dir)


def list_runs(root: Path) -> list[Path]:
    """Run directories under ``root`` that have a manifest, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds, e.g. ``2026-11-24T02:00:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
