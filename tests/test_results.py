"""The results files: schema, round trip, atomic writes, unknown versions refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from harness.model import (
    SCHEMA_VERSION,
    Environment,
    Errors,
    LatencyMs,
    Measurement,
    Placement,
    RunManifest,
    Scenario,
)
from harness.results import ResultsError, RunWriter, list_runs, load_run

SCENARIO = Scenario(
    name="s", description="d", endpoints=("/json",), concurrency=(1,), warmup_s=0, duration_s=1
)


def manifest(run_id: str, status: str = "running") -> RunManifest:
    return RunManifest(
        run_id=run_id,
        status=status,
        started_at="2026-11-24T00:00:00Z",
        finished_at=None,
        scenario=SCENARIO,
        targets={},
        placement=Placement(target_cpus=(0,), generator_cpus=(1,)),
        environment=Environment(
            cpu_model="c",
            cores=2,
            kernel="k",
            python="3.11",
            hostname="h",
            git_commit=None,
            launcher="local",
            packages={},
        ),
        cell_order=("a",),
    )


def measurement(cell: str) -> Measurement:
    return Measurement(
        cell_id=cell,
        target="t",
        endpoint="/json",
        model="closed",
        concurrency=1,
        repeat=0,
        started_at="2026-11-24T00:00:00Z",
        warmup_s=0,
        duration_s=1.0,
        requests=10,
        errors=Errors(status=1),
        requests_per_second=9.0,
        latency_ms=LatencyMs(min=1, mean=2, stdev=0.5, p50=2, p90=3, p99=4, p999=5, max=6),
        connections_opened=1,
        server_cpu_percent=50,
        server_rss_mib_peak=30,
        server_pss_mib_peak=20,
        server_processes=2,
        generator_cpu_percent=10,
        upstream_cpu_percent=None,
        generator_bound=False,
        histogram="histograms/a.hdr",
    )


def test_round_trip_and_measurements_appended_as_measured(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, "run1")
    writer.write_manifest(manifest("run1"))
    writer.add_measurement(measurement("a"))
    # After each cell the file on disk is complete and readable.
    assert [m.cell_id for m in load_run(writer.directory)[1]] == ["a"]
    writer.add_measurement(measurement("b"))
    loaded_manifest, loaded = load_run(writer.directory)
    assert loaded_manifest == manifest("run1")
    assert loaded == [measurement("a"), measurement("b")]
    line = json.loads((writer.directory / "measurements.jsonl").read_text().splitlines()[0])
    for key in (
        "target",
        "endpoint",
        "model",
        "concurrency",
        "repeat",
        "duration_s",
        "requests",
        "errors",
        "requests_per_second",
        "latency_ms",
        "server_cpu_percent",
        "server_rss_mib_peak",
        "server_pss_mib_peak",
        "generator_cpu_percent",
    ):
        assert key in line
    assert set(line["latency_ms"]) >= {"p50", "p90", "p99", "p999", "max", "mean"}
    assert not [p for p in writer.directory.rglob("*") if p.name.endswith(".tmp")]
    assert list_runs(tmp_path) == [writer.directory]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_stored_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """Results and report files are shared as any new file is (they were all 0600 before)."""
    before = os.umask(umask)
    try:
        writer = RunWriter(tmp_path, "run1")
        writer.write_manifest(manifest("run1"))
        writer.add_measurement(measurement("a"))
        histogram = writer.directory / writer.write_histogram("a", "HISTFAAAA")
    finally:
        os.umask(before)
    for path in (writer.directory / "manifest.json", writer.directory / "measurements.jsonl", histogram):
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path.name, oct(path.stat().st_mode))


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, "run2")
    writer.write_manifest(manifest("run2"))
    path = writer.directory / "manifest.json"
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="schema_version"):
        load_run(writer.directory)


def test_existing_run_directory_is_never_overwritten(tmp_path: Path) -> None:
    RunWriter(tmp_path, "run3")
    with pytest.raises(ResultsError):
        RunWriter(tmp_path, "run3")
