from __future__ import annotations

import math

import pandas as pd
import pytest

from harness import analysis
from harness.analysis import Flag, measurements_frame, summarise, verdict
from harness.model import Errors, Interface, LatencyMs, Measurement, TargetConfig, TargetRun


def target(name: str, interface: Interface) -> TargetRun:
    config = TargetConfig(
        name=name,
        description=name,
        framework=name.split("-")[0],
        server=name.split("-")[1],
        interface=interface,
        worker_model="sync" if interface == "wsgi" else "event loop",
        command="{python} -m app {host}:{port}",
        default_workers=2,
        workers_rule="fixed",
    )
    return TargetRun(config=config, workers=2)


TARGETS = {
    "flask-gunicorn": target("flask-gunicorn", "wsgi"),
    "django-gunicorn": target("django-gunicorn", "wsgi"),
    "fastapi-uvicorn": target("fastapi-uvicorn", "asgi"),
    "quart-hypercorn": target("quart-hypercorn", "asgi"),
}


def cell(
    name: str = "fastapi-uvicorn",
    *,
    endpoint: str = "/io",
    concurrency: int = 32,
    repeat: int = 0,
    rps: float = 1000.0,
    mean_ms: float | None = None,
    p99_ms: float = 80.0,
    errors: Errors | None = None,
    cpu: float = 50.0,
    pss: float | None = 40.0,
    generator_bound: bool = False,
    failed: bool = False,
) -> Measurement:
    """A measurement; the mean latency defaults to what Little's law predicts (C / rps)."""
    if mean_ms is None:
        mean_ms = concurrency / rps * 1000.0 if rps else 0.0
    latency = LatencyMs(
        min=1.0, mean=mean_ms, stdev=1.0, p50=mean_ms, p90=2 * mean_ms, p99=p99_ms, p999=2 * p99_ms, max=300.0
    )
    return Measurement(
        cell_id=f"{name}__{endpoint.strip('/')}__c{concurrency}__r{repeat}",
        target=name,
        endpoint=endpoint,
        model="closed",
        concurrency=concurrency,
        repeat=repeat,
        started_at="2024-06-01T12:00:00+00:00",
        warmup_s=1.0,
        duration_s=10.0,
        requests=0 if failed else int(rps * 10),
        errors=errors or Errors(),
        rps=0.0 if failed else rps,
        latency_ms=None if failed else latency,
        connections_opened=concurrency,
        server_cpu_percent=0.0 if failed else cpu,
        server_rss_mb_peak=0.0 if failed else 60.0,
        server_pss_mb_peak=None if failed else pss,
        server_processes=3,
        generator_cpu_percent=20.0,
        upstream_cpu_percent=None,
        generator_bound=generator_bound,
        histogram=None,
        status="failed" if failed else "ok",
        failure_reason="target exited before ready" if failed else None,
    )


def only(summary: pd.DataFrame, name: str, endpoint: str = "/io", concurrency: int = 32) -> pd.Series:
    key = (summary["target"] == name) & (summary["endpoint"] == endpoint)
    rows = summary[key & (summary["concurrency"] == concurrency)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_frame_flattens_latency_and_errors_and_names_the_interface() -> None:
    frame = measurements_frame(
        [cell("flask-gunicorn", p99_ms=12.5, errors=Errors(status=2, timeout=3))], TARGETS
    )
    row = frame.iloc[0]
    assert row["latency_ms_p99"] == 12.5
    assert row["latency_ms_p999"] == 25.0
    assert row["errors_status"] == 2
    assert row["errors_timeout"] == 3
    assert row["errors_total"] == 5
    assert row["interface"] == "wsgi"
    assert list(frame.columns) == analysis.COLUMNS


def test_frame_without_targets_has_no_interface_and_empty_input_keeps_columns() -> None:
    assert measurements_frame([cell()])["interface"].isna().all()
    empty = measurements_frame([])
    assert empty.empty
    assert list(empty.columns) == analysis.COLUMNS


def test_failed_cell_has_nan_latency_and_no_derived_figures() -> None:
    row = measurements_frame([cell(failed=True)]).iloc[0]
    assert row["status"] == "failed"
    assert math.isnan(row["latency_ms_p50"])
    assert math.isnan(row["server_pss_mb_peak"])
    assert math.isnan(row["littles_law_ratio"])
    assert not row["littles_law_inconsistent"]


def test_summary_takes_median_and_spread_of_three_repeats() -> None:
    frame = measurements_frame(
        [
            cell(repeat=0, rps=100.0, p99_ms=30.0, pss=40.0),
            cell(repeat=1, rps=130.0, p99_ms=10.0, pss=55.0),
            cell(repeat=2, rps=120.0, p99_ms=20.0, pss=45.0),
        ],
        TARGETS,
    )
    row = only(summarise(frame), "fastapi-uvicorn")
    assert row["n"] == 3
    assert row["failed"] == 0
    assert row["rps_median"] == 120.0
    assert row["rps_min"] == 100.0
    assert row["rps_max"] == 130.0
    assert row["latency_ms_p99_median"] == 20.0
    assert row["latency_ms_p99_min"] == 10.0
    assert row["latency_ms_p99_max"] == 30.0
    assert row["server_pss_mb_peak_max"] == 55.0
    assert row["interface"] == "asgi"


def test_cpu_time_per_request_in_microseconds() -> None:
    # 50% of one core = 0.5 CPU s per s; at 1000 requests/s that is 500 us each.
    assert analysis.cpu_us_per_request(50.0, 1000.0) == pytest.approx(500.0)
    assert math.isnan(analysis.cpu_us_per_request(50.0, 0.0))
    frame = measurements_frame([cell(repeat=0, cpu=200.0, rps=1000.0), cell(repeat=1, cpu=100.0, rps=1000.0)])
    row = only(summarise(frame), "fastapi-uvicorn")
    assert row["server_cpu_us_per_request_median"] == pytest.approx(1500.0)
    assert row["server_cpu_percent_median"] == pytest.approx(150.0)


def test_summary_sums_errors_and_ors_generator_bound() -> None:
    frame = measurements_frame(
        [
            cell(repeat=0, errors=Errors(connect=4)),
            cell(repeat=1, errors=Errors(read=1), generator_bound=True),
        ]
    )
    row = only(summarise(frame), "fastapi-uvicorn")
    assert row["errors_total"] == 5
    assert bool(row["generator_bound"]) is True


def test_failed_cells_are_counted_but_excluded_from_statistics() -> None:
    frame = measurements_frame(
        [
            cell(repeat=0, rps=100.0),
            cell(repeat=1, rps=200.0),
            cell(repeat=2, failed=True),
            cell("quart-hypercorn", repeat=0, failed=True),
        ],
        TARGETS,
    )
    summary = summarise(frame)
    row = only(summary, "fastapi-uvicorn")
    assert row["n"] == 2
    assert row["failed"] == 1
    assert row["rps_median"] == 150.0
    assert row["rps_min"] == 100.0
    dead = only(summary, "quart-hypercorn")
    assert dead["n"] == 0
    assert dead["failed"] == 1
    assert math.isnan(dead["rps_median"])
    assert dead["interface"] == "asgi"
    failed = analysis.failed_cells(frame)
    assert list(failed["target"]) == ["fastapi-uvicorn", "quart-hypercorn"]
    assert set(failed["failure_reason"]) == {"target exited before ready"}


def test_littles_law_ratio_is_in_flight_over_concurrency() -> None:
    # 1000 requests/s x 0.032 s = 32 in flight = the concurrency.
    assert analysis.littles_law_ratio(1000.0, 32.0, 32) == pytest.approx(1.0)
    assert analysis.littles_law_ratio(1000.0, 16.0, 32) == pytest.approx(0.5)
    assert not analysis.littles_law_off(0.8)
    assert not analysis.littles_law_off(1.2)
    assert analysis.littles_law_off(0.79)
    assert analysis.littles_law_off(1.25)


def test_littles_law_flag_trips_when_rps_times_latency_is_far_from_concurrency() -> None:
    frame = measurements_frame(
        [
            cell("fastapi-uvicorn", rps=1000.0, mean_ms=32.0),  # 32 in flight at C=32
            cell("flask-gunicorn", rps=1000.0, mean_ms=16.0),  # 16 in flight at C=32: half the time unseen
            cell("django-gunicorn", rps=1000.0, mean_ms=16.0, errors=Errors(timeout=9)),
        ],
        TARGETS,
    )
    by_target = frame.set_index("target")
    assert by_target.loc["fastapi-uvicorn", "littles_law_ratio"] == pytest.approx(1.0)
    assert not by_target.loc["fastapi-uvicorn", "littles_law_inconsistent"]
    assert by_target.loc["flask-gunicorn", "littles_law_ratio"] == pytest.approx(0.5)
    assert by_target.loc["flask-gunicorn", "littles_law_inconsistent"]
    # An erroring server is not held to the law: its errors are flagged instead.
    assert not by_target.loc["django-gunicorn", "littles_law_inconsistent"]
    row = only(summarise(frame), "flask-gunicorn")
    assert bool(row["littles_law_inconsistent"]) is True
    assert row["littles_law_ratio_median"] == pytest.approx(0.5)


def test_verdict_compares_best_asgi_with_best_wsgi_at_the_highest_concurrency() -> None:
    measurements = []
    for repeat, jitter in enumerate((0.0, 10.0)):
        measurements += [
            cell("fastapi-uvicorn", concurrency=8, repeat=repeat, rps=5000.0 + jitter),  # low level ignored
            cell("fastapi-uvicorn", concurrency=128, repeat=repeat, rps=1200.0 + jitter),
            cell("quart-hypercorn", concurrency=128, repeat=repeat, rps=900.0 + jitter),
            cell("flask-gunicorn", concurrency=128, repeat=repeat, rps=240.0 + jitter),
            cell("django-gunicorn", concurrency=128, repeat=repeat, rps=200.0 + jitter),
        ]
    (result,) = verdict(summarise(measurements_frame(measurements, TARGETS)), TARGETS)
    assert result.endpoint == "/io"
    assert result.concurrency == 128
    assert result.best is not None and result.best.target == "fastapi-uvicorn"
    assert result.best.rps_median == pytest.approx(1205.0)
    assert result.best.n == 2
    assert result.best_asgi is not None and result.best_asgi.target == "fastapi-uvicorn"
    assert result.best_wsgi is not None and result.best_wsgi.target == "flask-gunicorn"
    assert result.runner_up is not None and result.runner_up.target == "quart-hypercorn"
    assert result.asgi_over_wsgi == pytest.approx(1205.0 / 245.0)
    assert result.flags == ()


def test_verdict_flags_single_runs_errors_generator_and_failed_cells() -> None:
    measurements = [
        cell("fastapi-uvicorn", rps=1000.0, generator_bound=True),
        cell("flask-gunicorn", rps=300.0, errors=Errors(status=7)),
        cell("django-gunicorn", rps=100.0, failed=True),
    ]
    (result,) = verdict(summarise(measurements_frame(measurements, TARGETS)), TARGETS)
    assert result.asgi_over_wsgi == pytest.approx(1000.0 / 300.0)
    assert set(result.flags) == {
        Flag("single_run", "fastapi-uvicorn", 1.0),
        Flag("generator_bound", "fastapi-uvicorn"),
        Flag("single_run", "flask-gunicorn", 1.0),
        Flag("errors", "flask-gunicorn", 7.0),
        Flag("failed", "django-gunicorn", 1.0),
    }


def test_verdict_flags_overlapping_spreads_and_littles_law() -> None:
    measurements = [
        cell("fastapi-uvicorn", repeat=0, rps=1000.0),
        cell("fastapi-uvicorn", repeat=1, rps=1100.0),
        cell("quart-hypercorn", repeat=0, rps=950.0, mean_ms=10.0),
        cell("quart-hypercorn", repeat=1, rps=1020.0, mean_ms=10.0),
    ]
    (result,) = verdict(summarise(measurements_frame(measurements, TARGETS)), TARGETS)
    assert result.best is not None and result.best.target == "fastapi-uvicorn"
    assert result.best_wsgi is None
    assert result.asgi_over_wsgi is None
    # quart-hypercorn is neither best nor best of an interface: its Little's law miss is not the verdict's.
    assert result.flags == (Flag("spread_overlap", "fastapi-uvicorn", None, "quart-hypercorn"),)


def test_verdict_falls_back_to_the_highest_level_with_a_measurement() -> None:
    measurements = [
        cell("fastapi-uvicorn", concurrency=32, rps=800.0),
        cell("flask-gunicorn", concurrency=32, rps=200.0),
        cell("fastapi-uvicorn", concurrency=128, failed=True),
        cell("flask-gunicorn", concurrency=128, failed=True),
    ]
    (result,) = verdict(summarise(measurements_frame(measurements, TARGETS)), TARGETS)
    assert result.concurrency == 32
    assert result.asgi_over_wsgi == pytest.approx(4.0)


def test_verdict_when_nothing_was_measured() -> None:
    frame = measurements_frame([cell("fastapi-uvicorn", concurrency=64, failed=True)], TARGETS)
    (result,) = verdict(summarise(frame), TARGETS)
    assert result.concurrency == 64
    assert result.best is None
    assert result.asgi_over_wsgi is None
    assert result.flags == (Flag("failed", "fastapi-uvicorn", 1.0),)


def test_one_verdict_per_endpoint() -> None:
    measurements = [cell(endpoint="/json"), cell(endpoint="/io/upstream?ms=50")]
    results = verdict(summarise(measurements_frame(measurements, TARGETS)), TARGETS)
    assert [v.endpoint for v in results] == ["/io/upstream?ms=50", "/json"]
