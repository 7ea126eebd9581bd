"""Runs stored in an older results schema still load and render, read in the current schema's names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.model import (
    MEASUREMENT_KEYS_RENAMED_IN_3,
    SCHEMA_VERSION,
    upgrade_manifest,
    upgrade_measurement,
)
from harness.report import render_run
from harness.report.formats import DASH, format_bound_reasons
from harness.results import load_run
from harness.timeseries import read

STORED = Path(__file__).parent / "data" / "schema2"


def stored_lines(run: str) -> list[dict[str, object]]:
    text = (STORED / run / "measurements.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("run", ["closed", "saturation"])
def test_a_schema_2_run_loads_with_every_figure_under_its_new_name(run: str) -> None:
    assert json.loads((STORED / run / "manifest.json").read_text())["schema_version"] == 2 < SCHEMA_VERSION
    manifest, measurements = load_run(STORED / run)
    lines = stored_lines(run)
    assert len(measurements) == len(lines) > 0
    for stored, measurement in zip(lines, measurements, strict=True):
        assert measurement.cell_id == stored["cell_id"]
        for old, new in MEASUREMENT_KEYS_RENAMED_IN_3.items():
            assert getattr(measurement, new) == stored[old], (measurement.cell_id, new)
        assert measurement.bound_reasons == ()  # nothing was bound in these runs
    stored_manifest = json.loads((STORED / run / "manifest.json").read_text())
    for name, target in manifest.targets.items():
        assert target.memory_mib == stored_manifest["targets"][name]["memory_mb"]
        assert target.config.memory_mib == stored_manifest["targets"][name]["config"]["memory_mb"]


def test_a_schema_2_time_series_is_read_with_mib_columns() -> None:
    path = next((STORED / "closed" / "timeseries").glob("*.csv"))
    assert "server_pss_mb" in path.read_text().splitlines()[0]
    frame = read(path)
    assert {"server_rss_mib", "server_pss_mib", "cgroup_memory_mib"} <= set(frame.columns)
    assert frame["server_pss_mib"].notna().all()


def test_schema_2_bound_reasons_become_records_that_read_back_as_the_same_words() -> None:
    words = (
        "the generator used 97% CPU (limit 160%); "
        "it sent 40.0 req/s, 20% behind the 50.0 req/s scheduled, with connections to spare"
    )
    line = {
        "rps": 40.0,
        "generator_bound": True,
        "generator_bound_reason": words,
        "upstream_bound": True,
        "upstream_cpu_percent": 91.0,
    }
    upgraded = upgrade_measurement(line, 2)
    assert "generator_bound_reason" not in upgraded and upgraded["requests_per_second"] == 40.0
    cpu, behind, upstream = upgraded["bound_reasons"]
    assert (cpu["by"], cpu["rule"], cpu["measured"], cpu["limit"]) == ("generator", "cpu", 97.0, 160.0)
    assert (behind["rule"], behind["measured"], behind["scheduled"]) == ("behind", 40.0, 50.0)
    assert (upstream["by"], upstream["measured"]) == ("upstream", 91.0)
    from harness.model import BoundReason

    records = [BoundReason.model_validate(reason) for reason in (cpu, behind)]
    assert format_bound_reasons(records) == words
    unknown = upgrade_measurement({"generator_bound": True, "generator_bound_reason": "CPU 93%"}, 2)
    assert unknown["bound_reasons"] == [
        {"by": "generator", "rule": "stored", "measured": 0.0, "limit": 0.0, "detail": "CPU 93%"}
    ]
    assert upgrade_manifest({"targets": [{"memory_mb": 64}]}, 2) == {"targets": [{"memory_mib": 64}]}
    assert upgrade_measurement(line, SCHEMA_VERSION) is line


@pytest.mark.parametrize("run", ["closed", "saturation"])
def test_a_schema_2_run_still_renders(run: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / run
    shutil.copytree(STORED / run, run_dir)
    before = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    done = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(run_dir), "--reports", str(tmp_path / "reports")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    run_id = json.loads((run_dir / "manifest.json").read_text())["run_id"]
    html = (tmp_path / "reports" / run_id / "index.html").read_text()
    for target in ("flask-gunicorn", "fastapi-uvicorn"):
        assert target in html
    figures = [float(line["rps"]) for line in stored_lines(run)]
    assert any(f"{figure:,.0f}" in html for figure in figures)
    assert "Traceback" not in done.stderr
    after = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before  # read in the new names, never rewritten


def test_a_schema_2_saturation_run_shows_no_generator_lateness(tmp_path: Path) -> None:
    """Stored before the driver measured its lateness: the cells table has the column, each cell a dash."""
    run_dir = tmp_path / "saturation"
    shutil.copytree(STORED / "saturation", run_dir)
    _, measurements = load_run(run_dir)
    assert all(m.generator_lateness_ms_p99 is None for m in measurements)
    cells = re.search(r'<section id="cells">(.*?)</section>', render_run(run_dir), re.S)
    assert cells is not None
    headers = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", cells.group(1))]
    index = headers.index("generator late p99 ms")
    rows = [
        re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", cells.group(1), re.S)
    ]
    values = [row[index] for row in rows if len(row) == len(headers)]
    assert values and set(values) == {DASH}
