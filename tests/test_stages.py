"""Staged scenarios: the phases each stage kind makes, validation that names the key, --quick."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from harness.model import QUICK_MAX_WINDOW_S, ConfigError, Stage, load_scenario, phases
from harness.results import load_run

OPEN = """\
description = "staged"
endpoints = ["/json"]
model = "open"
warmup_s = 1
"""


def scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error(tmp_path: Path, text: str) -> str:
    path = scenario(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    return str(caught.value).removeprefix(f"{path}: ")


def test_every_kind_makes_its_phases_back_to_back() -> None:
    stages = [
        Stage(kind="ramp", duration_s=4, rate=100),
        Stage(kind="constant", duration_s=2, rate=100),
        Stage(kind="step", duration_s=6, rate=400, steps=3),
        Stage(kind="spike", duration_s=9, rate=1000, spike_s=3),
        Stage(kind="soak", duration_s=60, rate=50),
    ]
    got = [(p.stage, p.kind, p.start_s, p.duration_s, p.start_level, p.end_level) for p in phases(stages)]
    assert got == [
        (0, "ramp", 0.0, 4.0, 0.0, 100.0),
        (1, "constant", 4.0, 2.0, 100.0, 100.0),
        (2, "step 1/3", 6.0, 2.0, 200.0, 200.0),
        (2, "step 2/3", 8.0, 2.0, 300.0, 300.0),
        (2, "step 3/3", 10.0, 2.0, 400.0, 400.0),
        (3, "spike: before", 12.0, 3.0, 400.0, 400.0),
        (3, "spike: peak", 15.0, 3.0, 1000.0, 1000.0),
        (3, "spike: after", 18.0, 3.0, 400.0, 400.0),
        (4, "soak", 21.0, 60.0, 50.0, 50.0),
    ]
    assert [p.index for p in phases(stages)] == list(range(9))
    assert phases([Stage(kind="ramp", duration_s=2, concurrency=8, start=2)])[0].mean_level == 5.0


def test_a_staged_scenario_takes_its_duration_from_its_stages(tmp_path: Path) -> None:
    text = OPEN + "[[stages]]\nkind = 'ramp'\nduration_s = 3\nrate = 50\n"
    text += "[[stages]]\nkind = 'spike'\nduration_s = 6\nrate = 200\n"
    loaded = load_scenario(scenario(tmp_path, text))
    assert loaded.duration_s == 9
    assert [p.kind for p in loaded.phases()] == ["ramp", "spike: before", "spike: peak", "spike: after"]
    assert loaded.max_level_connections() == loaded.max_connections


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (
            "[[stages]]\nkind = 'constant'\nduration_s = 2\nrate = 5\n"
            "[[stages]]\nkind = 'ramp'\nduration_s = 2\nrate = -5\n",
            "stages[1].rate: must be > 0, got -5",
        ),
        ("[[stages]]\nkind = 'plateau'\nduration_s = 2\nrate = 5\n", "stages[0].kind: must be one of"),
        (
            "[[stages]]\nkind = 'constant'\nduration_s = 2\nconcurrency = 5\n",
            "stages[0].rate: required in every stage when model = 'open'",
        ),
        (
            "[[stages]]\nkind = 'spike'\nduration_s = 2\nrate = 5\n",
            "stages[0].start: a spike needs a base level",
        ),
        (
            "[[stages]]\nkind = 'spike'\nduration_s = 2\nrate = 5\nstart = 1\nspike_s = 3\n",
            "stages[0].spike_s: a spike stage's peak, shorter than",
        ),
        ("[[stages]]\nkind = 'constant'\nduration_s = 2\n", "stages[0].rate: give exactly one of rate"),
    ],
)
def test_a_bad_stage_is_named_by_its_index_and_key(tmp_path: Path, stages: str, expected: str) -> None:
    assert error(tmp_path, OPEN + stages).startswith(expected)


def test_stages_exclude_levels_and_a_wrong_total(tmp_path: Path) -> None:
    stage = "[[stages]]\nkind = 'constant'\nduration_s = 2\nrate = 5\n"
    assert error(tmp_path, OPEN + "rates = [5]\n" + stage).startswith("stages: stages set the load over time")
    assert error(tmp_path, OPEN + "duration_s = 3\n" + stage).startswith(
        "duration_s: must equal the stages' total of 2 s"
    )
    ramp_from_zero = "[[stages]]\nkind = 'ramp'\nduration_s = 2\nconcurrency = 4\n"
    closed = OPEN.replace('model = "open"', 'model = "closed"')
    loaded = load_scenario(scenario(tmp_path, closed + ramp_from_zero))
    assert loaded.max_level_connections() == 4
    stand_still = "[[stages]]\nkind = 'ramp'\nduration_s = 2\nconcurrency = 1\nstart = 0\n"
    assert load_scenario(scenario(tmp_path, closed + stand_still)).phases()[0].end_level == 1


def test_quick_scales_every_stage_alike_and_caps_the_window(tmp_path: Path) -> None:
    text = OPEN + "[[stages]]\nkind = 'ramp'\nduration_s = 100\nrate = 50\n"
    text += "[[stages]]\nkind = 'soak'\nduration_s = 500\nrate = 50\n"
    loaded = load_scenario(scenario(tmp_path, text))
    quick, note = loaded.quick()
    assert quick.duration_s == pytest.approx(QUICK_MAX_WINDOW_S)
    assert [s.duration_s for s in quick.stages] == pytest.approx(
        rel=1e-3, expected=[QUICK_MAX_WINDOW_S / 6, QUICK_MAX_WINDOW_S * 5 / 6]
    )
    assert f"at most {QUICK_MAX_WINDOW_S:g} s" in note and "every stage alike" in note
    assert "window 600 -> 10 s" in note


CLOSED_STAGED = """
description = "closed-model stages against one sync and one async stack"
targets = ["flask-gunicorn", "fastapi-uvicorn"]
endpoints = ["/io/sleep?ms=50"]
model = "closed"
warmup_s = 0.3
seed = 3
[[stages]]
kind = "step"
duration_s = 3.0
start = 0
concurrency = 16
steps = 2
[[stages]]
kind = "spike"
duration_s = 3.0
concurrency = 48
spike_s = 1.0
"""


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_closed_staged_run_stores_every_phase_and_the_report_draws_them(tmp_path: Path) -> None:
    path = scenario(tmp_path, CLOSED_STAGED)
    results, reports = tmp_path / "results", tmp_path / "reports"
    argv = [sys.executable, "-m", "harness", "run", str(path), "--results", str(results)]
    done = subprocess.run(
        [*argv, "--reports", str(reports)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (run_dir,) = results.iterdir()
    _, measurements = load_run(run_dir)
    by = {(m.target, m.stage): m for m in measurements}
    kinds = ["step 1/2", "step 2/2", "spike: before", "spike: peak", "spike: after"]
    for target in ("flask-gunicorn", "fastapi-uvicorn"):
        phases = [by[(target, index)] for index in range(5)]
        assert [m.stage_kind for m in phases] == kinds
        assert [m.concurrency for m in phases] == [8, 16, 16, 48, 16]
        assert [m.stage_start_s for m in phases] == [0.0, 1.5, 3.0, 4.0, 5.0]
        assert all(m.status == "ok" and m.errors.total == 0 for m in phases), phases
        assert all(
            abs(m.duration_s - d) < 0.1 for m, d in zip(phases, [1.5, 1.5, 1.0, 1.0, 1.0], strict=True)
        )
        assert phases[0].cell_id == f"{target}__io-sleep-ms-50__stages-p0__r0"
        # One time series for the whole run, every phase pointing at it.
        assert len({m.timeseries for m in phases}) == 1
        samples = (run_dir / str(phases[0].timeseries)).read_text().splitlines()
        assert float(samples[-1].split(",")[0]) >= 5.5
    sync = [by[("flask-gunicorn", index)].requests_per_second for index in range(5)]
    asgi = [by[("fastapi-uvicorn", index)].requests_per_second for index in range(5)]
    # 3 sync workers / 50 ms: 60 requests/s whatever the connections; an event loop follows them
    # (Little's law: connections / 50 ms, so 8 -> ~160, 16 -> ~320, 48 -> ~960 requests/s).
    assert all(45 <= requests_per_second <= 66 for requests_per_second in sync), sync
    assert asgi[1] > 1.6 * asgi[0] and asgi[3] > 2.2 * asgi[2], asgi
    assert asgi[4] < 0.6 * asgi[3]
    html = (reports / run_dir.name / "index.html").read_text()
    assert 'class="stages"' in html and "Memory over the staged run" in html
    assert "spike: peak, c48" in html
    assert "1: step 2/2" in done.stderr  # the progress lines
