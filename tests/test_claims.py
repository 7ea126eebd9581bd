"""Claims: the shipped claim files, loader errors, the verdict rule on constructed inputs, one real run."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cells import cell, target
from conftest import REPO, STACKS
from test_report import write_run

from harness.claims import (
    QUICK_FACTOR,
    Claim,
    check_claimed,
    load_claim,
    load_claims,
    run_claim_name,
)
from harness.claimverdict import Measured, MeasuredSide, judge, measure
from harness.model import BoundReason, ConfigError
from harness.report.formats import DASH, TIMES
from harness.stats import Comparison, Interval

CLAIMS_DIR = REPO / "scenarios" / "claims"
SHIPPED = load_claims(CLAIMS_DIR)


def test_every_published_claim_has_a_file_that_loads_and_names_real_stacks() -> None:
    assert set(SHIPPED) == {
        "streaming-platform",
        "fraud-detection",
        "klen-2016-remote",
        "granian-sleep-10ms",
        "granian-sleep-100ms",
        "calpaterson-2020-postgres",
    }
    for claim in SHIPPED.values():
        assert {claim.scaled.candidate_target, claim.scaled.baseline_target} <= set(STACKS), claim.name
        full, quick = claim.scenario(), claim.scenario(quick=True)
        assert full.name == quick.name == f"claim-{claim.name}"
        assert quick.duration_s == pytest.approx(QUICK_FACTOR * full.duration_s)
        assert full.workers == {
            claim.scaled.candidate_target: claim.scaled.candidate_workers,
            claim.scaled.baseline_target: claim.scaled.baseline_workers,
        }
        assert claim.source.title and claim.scaled.how and claim.scaled.scale_factor > 0


def test_published_figures_are_checked_with_littles_law() -> None:
    granian = SHIPPED["granian-sleep-10ms"]
    uwsgi = next(side for side in granian.claimed.others if side.stack.startswith("uWSGI"))
    check = check_claimed(uwsgi, granian.claimed)
    # One process, one thread, 10 ms: at most 100 requests/s; its 978 requests in 10 s agree, 413 does not.
    assert check.ceiling_requests_per_second == pytest.approx(100.0)
    assert check.exceeds_ceiling
    assert check.rate_from_total == pytest.approx(97.8)
    streaming = SHIPPED["streaming-platform"]
    django = check_claimed(streaming.claimed.baseline, streaming.claimed)
    assert django.max_service_ms == pytest.approx(16.0)  # 32 workers / 2,000 requests/s
    assert django.in_flight == pytest.approx(800.0)  # 2,000 requests/s x 400 ms
    assert django.ceiling_requests_per_second is None  # no service time given


VALID = CLAIMS_DIR / "klen-2016-remote.toml"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "concurrency = 200\nscale_factor",
            "concurrency = 0\nscale_factor",
            "scaled.concurrency: must be >= 1, got 0",
        ),
        (
            "requests_per_second = 483",
            "requests_per_second = -483",
            "claimed.candidate.requests_per_second: must be > 0, got -483",
        ),
        ('interface = "native"', 'interface = "rsgi"', "claimed.candidate.interface: must be one of"),
        ("repeats = 3", "repeats = 1", "scaled.repeats: must be >= 2, got 1"),
        (
            'baseline_target = "flask-gunicorn"',
            'baseline_target = "starlette-uvicorn"',
            "scaled.baseline_target: must differ",
        ),
        ("[scaled]\n", "[scaled]\ncolour = 1\n", "scaled.colour: unknown key"),
        ('endpoint = "/io/upstream?ms=100"', 'endpoint = "io upstream"', "scaled.endpoint: must be a path"),
    ],
)
def test_a_bad_claim_file_names_the_file_the_key_what_was_expected_and_what_it_got(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = VALID.read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_claim(path)
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert message in str(caught.value)


def test_a_missing_folder_or_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        load_claims(tmp_path / "nowhere")
    (tmp_path / "empty.toml").write_text('title = "x"\n')
    with pytest.raises(ConfigError, match=r"empty\.toml: summary: required, missing"):
        load_claims(tmp_path)


def claim(ratio: float = 9.0, **claimed: Any) -> Claim:
    """A consistent claim of ``ratio`` (candidate over baseline requests/s)."""
    data = SHIPPED["streaming-platform"].model_dump()
    data["claimed"]["baseline"]["requests_per_second"] = 1000.0
    data["claimed"]["candidate"]["requests_per_second"] = 1000.0 * ratio
    data["claimed"].update(claimed)
    return Claim.model_validate(data)


def side(name: str, values: tuple[float, ...], **changes: Any) -> MeasuredSide:
    fields: dict[str, Any] = {
        "target": name,
        "interface": "asgi",
        "workers": 1,
        "n": len(values),
        "failed": 0,
        "requests_per_second_values": values,
        "requests_per_second_median": sorted(values)[len(values) // 2] if values else float("nan"),
        "requests_per_second_interval": None,
        "p50_ms": 10.0,
        "p99_ms": 20.0,
        "error_rate": 0.0,
        "ceiling_requests_per_second": None,
        "sync_ceiling_exceeded": False,
        "bound_reasons": (),
        "failure_reason": None,
    }
    return MeasuredSide(**(fields | changes))


def measured(
    ratio: float, low: float | None, high: float | None, bound: float | None = None, **base: Any
) -> Measured:
    interval = None if low is None or high is None else Interval(low, high)
    return Measured(
        run_id="20261124T000000Z-claim-x",
        endpoint="/io/upstream?ms=15",
        concurrency=100,
        baseline=side("django-gunicorn", (100.0, 101.0, 102.0), **base),
        candidate=side("fastapi-uvicorn", (800.0, 810.0, 820.0)),
        comparison=Comparison(ratio, interval),
        ratio_bound=bound,
        duration_factor=1.0,
    )


@pytest.mark.parametrize(
    ("the_claim", "the_measurement", "kind", "reason"),
    [
        (
            claim(missing=("worker counts",)),
            measured(9, 8.5, 9.5),
            "not comparable",
            "does not give worker counts",
        ),
        (
            SHIPPED["granian-sleep-100ms"],
            measured(64, 63, 65),
            "not comparable",
            "above the 10 requests/s that Little's law",
        ),
        (claim(), None, "not comparable", "Not measured yet"),
        (
            claim(),
            measured(9, 8, 10, n=0, requests_per_second_values=(), failure_reason="exited\nmore"),
            "not comparable",
            "django-gunicorn has no successful measurement (exited)",
        ),
        (
            claim(),
            measured(
                9,
                8,
                10,
                bound_reasons=(BoundReason(by="generator", rule="cpu", measured=95.0, limit=80.0),),
            ),
            "not comparable",
            "the load generator may have set the figure for django-gunicorn",
        ),
        (
            claim(),
            measured(9, 8, 10, sync_ceiling_exceeded=True),
            "not comparable",
            "more than its sync ceiling",
        ),
        (claim(), measured(9, 8, 10, error_rate=0.05), "not comparable", "failed 5.0% of its requests"),
        (claim(), measured(9, None, None), "not comparable", "no interval"),
        (
            claim(9.0),
            measured(8.0, 7.5, 8.5),
            "reproduced",
            "The claimed 9.0x lies within our 95% interval 8.0x [7.5-8.5x] widened by 25%.",
        ),
        (claim(9.0), measured(6.0, 5.5, 6.5), "not reproduced", "the claimed 9.0x is above that interval"),
        (claim(2.0), measured(6.0, 5.5, 6.5), "not reproduced", "the claimed 2.0x is below that interval"),
        (
            claim(1.43),
            measured(1.05, 0.95, 1.2),
            "not reproduced",
            "not even the direction of the change is settled",
        ),
        (claim(1.0), measured(1.02, 0.97, 1.06), "reproduced", "lies within"),
        (
            claim(94.0),
            measured(60.0, 58.0, 62.0, bound=64.0),
            "not reproduced",
            "above the 64x that Little's law allows",
        ),
    ],
)
def test_the_verdict_rule(the_claim: Claim, the_measurement: Measured | None, kind: str, reason: str) -> None:
    verdict = judge(the_claim, the_measurement)
    assert verdict.kind == kind
    assert reason in verdict.reason
    assert verdict.reason.endswith(".") and verdict.reason.count(". ") == 0  # one sentence


def test_measure_reads_a_claims_run_with_its_ratio_interval_and_littles_law_bound(tmp_path: Path) -> None:
    the_claim = SHIPPED["granian-sleep-100ms"]
    scenario = the_claim.scenario(quick=True)
    endpoint = scenario.endpoints[0]
    targets = {
        "fastapi-uvicorn": target("fastapi-uvicorn", "asgi", workers=1),
        "flask-gunicorn": target("flask-gunicorn", "wsgi", workers=1),
    }
    cells = [
        cell(name, endpoint=endpoint, concurrency=64, repeat=r, requests_per_second=requests_per_second + r)
        for r in range(3)
        for name, requests_per_second in (("fastapi-uvicorn", 610.0), ("flask-gunicorn", 9.0))
    ]
    run_dir = write_run(tmp_path, scenario, cells, targets)
    from harness.results import load_run

    manifest, measurements = load_run(run_dir)
    result = measure(the_claim, manifest, measurements)
    assert result.duration_factor == QUICK_FACTOR
    assert result.baseline is not None and result.candidate is not None
    assert result.baseline.ceiling_requests_per_second == pytest.approx(10.0)  # 1 sync worker / 100 ms
    assert result.candidate.ceiling_requests_per_second == pytest.approx(640.0)  # 64 connections / 100 ms
    assert result.ratio_bound == pytest.approx(64.0)
    assert result.comparison is not None and result.comparison.interval is not None
    # The ratio of geometric means of 610, 611, 612 over 9, 10, 11 (stats.compare), not 611 / 10.
    expected = statistics.geometric_mean([610, 611, 612]) / statistics.geometric_mean([9, 10, 11])
    assert result.comparison.ratio == pytest.approx(expected)
    assert result.comparison.significant
    assert run_claim_name(manifest.run_id) == "granian-sleep-100ms"
    assert run_claim_name("20261124T000000Z-default") is None


@pytest.mark.usefixtures("no_leftover_processes")
def test_gwbench_claims_quick_runs_a_claim_and_writes_the_claims_page(tmp_path: Path) -> None:
    results, reports = tmp_path / "results", tmp_path / "reports"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "claims",
            "--quick",
            "granian-sleep-100ms",
            "--results",
            str(results),
            "--reports",
            str(reports),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},  # rich's tables, unwrapped
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = results.iterdir()
    assert run_claim_name(run_dir.name) == "granian-sleep-100ms"
    page = (reports / "claims" / "index.html").read_text()
    assert "granian-sleep-100ms" in done.stdout and "not comparable" in done.stdout
    # Both stacks wait 100 ms per request: one sync worker serves ~10 requests/s, the event
    # loop up to 640 at 64 connections. The ratio sits near its Little's-law bound of 64x;
    # generous margins, as the machine is shared.
    match = re.search(rf"(\d+){TIMES} \[(\d+){DASH}(\d+)\], (not )?significant", page)
    assert match, page
    assert 25 <= int(match.group(1)) <= 70
    bound = re.search(rf"Little's-law bound on the ratio</dt><dd class=\"ratio\">(\d+){TIMES}", page)
    assert bound, page
    assert 55 <= int(bound.group(1)) <= 80  # 640 requests/s over what one sync worker served (~10)
    assert "quick (durations x0.25)" in page
    assert f"../{run_dir.name}/index.html" in page  # the run's own report, linked
    assert (reports / run_dir.name / "index.html").is_file()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
