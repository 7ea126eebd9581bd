from __future__ import annotations

import math

import pandas as pd
import pytest
from cells import TARGETS, cell, histogram_of, target

from harness import analysis, ceilings
from harness.analysis import measurements_frame, summarise
from harness.model import BoundReason, Errors
from harness.report.formats import format_flag
from harness.verdict import verdict


def only(summary: pd.DataFrame, name: str, endpoint: str = "/io", level: float = 32) -> pd.Series:
    key = (summary["target"] == name) & (summary["endpoint"] == endpoint)
    rows = summary[key & (summary["level"] == level)]
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
    assert math.isnan(row["server_pss_mib_peak"])
    assert math.isnan(row["littles_law_ratio"])
    assert not row["littles_law_inconsistent"]


def test_summary_takes_median_and_spread_of_three_repeats() -> None:
    frame = measurements_frame(
        [
            cell(repeat=0, requests_per_second=100.0, p99_ms=30.0, pss=40.0),
            cell(repeat=1, requests_per_second=130.0, p99_ms=10.0, pss=55.0),
            cell(repeat=2, requests_per_second=120.0, p99_ms=20.0, pss=45.0),
        ],
        TARGETS,
    )
    row = only(summarise(frame), "fastapi-uvicorn")
    assert row["n"] == 3
    assert row["failed"] == 0
    assert row["requests_per_second_median"] == 120.0
    assert row["requests_per_second_min"] == 100.0
    assert row["requests_per_second_max"] == 130.0
    assert row["latency_ms_p99_median"] == 20.0
    assert row["latency_ms_p99_min"] == 10.0
    assert row["latency_ms_p99_max"] == 30.0
    assert row["server_pss_mib_peak_max"] == 55.0
    assert row["interface"] == "asgi"


def test_cpu_time_per_request_in_microseconds() -> None:
    # 50% of one core = 0.5 CPU s per s; at 1000 requests/s that is 500 us each.
    assert analysis.cpu_us_per_request(50.0, 1000.0) == pytest.approx(500.0)
    assert math.isnan(analysis.cpu_us_per_request(50.0, 0.0))
    frame = measurements_frame(
        [
            cell(repeat=0, cpu=200.0, requests_per_second=1000.0),
            cell(repeat=1, cpu=100.0, requests_per_second=1000.0),
        ]
    )
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
            cell(repeat=0, requests_per_second=100.0),
            cell(repeat=1, requests_per_second=200.0),
            cell(repeat=2, failed=True),
            cell("quart-hypercorn", repeat=0, failed=True),
        ],
        TARGETS,
    )
    summary = summarise(frame)
    row = only(summary, "fastapi-uvicorn")
    assert row["n"] == 2
    assert row["failed"] == 1
    assert row["requests_per_second_median"] == 150.0
    assert row["requests_per_second_min"] == 100.0
    dead = only(summary, "quart-hypercorn")
    assert dead["n"] == 0
    assert dead["failed"] == 1
    assert math.isnan(dead["requests_per_second_median"])
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


def test_littles_law_flag_trips_when_requests_per_second_times_latency_is_far_from_concurrency() -> None:
    frame = measurements_frame(
        [
            cell("fastapi-uvicorn", requests_per_second=1000.0, mean_ms=32.0),  # 32 in flight at C=32
            cell(
                "flask-gunicorn", requests_per_second=1000.0, mean_ms=16.0
            ),  # 16 in flight at C=32: half the time unseen
            cell("django-gunicorn", requests_per_second=1000.0, mean_ms=16.0, errors=Errors(timeout=9)),
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


def test_summary_gives_each_cell_a_bootstrap_interval_and_a_coefficient_of_variation() -> None:
    requests_per_second = [1000.0, 1100.0, 900.0, 1050.0, 950.0]
    frame = measurements_frame(
        [
            cell(repeat=r, requests_per_second=value, p99_ms=40.0 + r)
            for r, value in enumerate(requests_per_second)
        ],
        TARGETS,
    )
    row = only(summarise(frame), "fastapi-uvicorn")
    assert row["requests_per_second_values"] == tuple(requests_per_second)
    assert (
        row["requests_per_second_ci_low"]
        <= row["requests_per_second_median"]
        == 1000.0
        <= row["requests_per_second_ci_high"]
    )
    assert (
        min(requests_per_second)
        <= row["requests_per_second_ci_low"]
        < row["requests_per_second_ci_high"]
        <= max(requests_per_second)
    )
    assert row["requests_per_second_cv"] == pytest.approx(
        pd.Series(requests_per_second).std() / pd.Series(requests_per_second).mean()
    )
    assert row["latency_ms_p99_ci_low"] <= row["latency_ms_p99_median"] <= row["latency_ms_p99_ci_high"]


def test_repeats_that_fall_into_two_groups_are_marked_and_flagged_in_the_verdict() -> None:
    values = [147.0, 74.0, 149.0]
    frame = measurements_frame(
        [cell(repeat=r, requests_per_second=v) for r, v in enumerate(values)]
        + [cell("flask-gunicorn", repeat=r, requests_per_second=v) for r, v in enumerate([50.0, 51.0, 49.0])],
        TARGETS,
    )
    summary = summarise(frame)
    split = only(summary, "fastapi-uvicorn")["requests_per_second_split"]
    assert split is not None and split.low == (74.0,) and split.high == (147.0, 149.0)
    assert only(summary, "flask-gunicorn")["requests_per_second_split"] is None
    (only_verdict,) = verdict(summary, TARGETS)
    (flag,) = [f for f in only_verdict.flags if f.kind == "split_repeats"]
    assert flag.target == "fastapi-uvicorn" and flag.split == split
    assert "two groups, 74 and 147/149 requests/s" in format_flag(flag)


def test_a_single_repeat_has_no_interval_and_no_cv() -> None:
    row = only(summarise(measurements_frame([cell()], TARGETS)), "fastapi-uvicorn")
    assert row["n"] == 1
    assert math.isnan(row["requests_per_second_ci_low"]) and math.isnan(row["requests_per_second_ci_high"])
    assert math.isnan(row["requests_per_second_cv"])


def test_open_cells_are_summarised_by_rate_with_corrected_and_uncorrected_latency() -> None:
    measurements = [
        cell(
            model="open",
            rate=rate,
            repeat=r,
            requests_per_second=rate * 0.99,
            p99_ms=60.0 * k,
            uncorrected_p99_ms=55.0,
        )
        for k, rate in enumerate((100.0, 400.0), start=1)
        for r in range(3)
    ]
    frame = measurements_frame(measurements, TARGETS)
    assert frame["concurrency"].isna().all()
    assert list(frame["level"]) == [100.0] * 3 + [400.0] * 3
    summary = summarise(frame)
    assert list(summary["level"]) == [100.0, 400.0]
    assert list(summary["model"]) == ["open", "open"]
    high = only(summary, "fastapi-uvicorn", level=400.0)
    assert high["rate"] == 400.0
    assert high["requests_per_second_median"] == pytest.approx(396.0)
    assert high["latency_ms_p99_median"] == 120.0
    assert high["latency_ms_uncorrected_p99_median"] == 55.0
    assert high["achieved_rate_median"] == 400.0


CPU_93 = BoundReason(by="generator", rule="cpu", measured=93.0, limit=80.0, processes=1)
UPSTREAM_95 = BoundReason(by="upstream", rule="cpu", measured=95.0, limit=80.0)


def test_summary_flags_upstream_bound_and_sums_dropped_requests() -> None:
    frame = measurements_frame(
        [
            cell(model="open", rate=100.0, repeat=0, dropped=5),
            cell(model="open", rate=100.0, repeat=1, dropped=2, upstream_bound=True),
            cell(model="open", rate=100.0, repeat=2, generator_bound=True, bound_reasons=(CPU_93,)),
        ]
    )
    row = only(summarise(frame), "fastapi-uvicorn", level=100.0)
    assert row["dropped"] == 7
    assert bool(row["upstream_bound"]) and bool(row["generator_bound"])
    assert row["bound_reasons"] == (UPSTREAM_95, CPU_93)


def test_service_time_is_the_ms_query_parameter() -> None:
    assert ceilings.service_time_ms("/io/sleep?ms=50") == 50.0
    assert ceilings.service_time_ms("/io/upstream?x=1&ms=100") == 100.0
    assert ceilings.service_time_ms("/json") is None
    assert ceilings.service_time_ms("/io/sleep?ms=0") is None
    assert ceilings.service_time_ms("/io/sleep?ms=abc") is None


def test_sync_ceiling_is_workers_times_threads_over_service_time() -> None:
    sync = target("flask-gunicorn", "wsgi", workers=3, settings={"worker_class": "sync"})
    gthread = target("flask-gthread", "wsgi", workers=3, settings={"worker_class": "gthread", "threads": 4})
    pool = target("flask-pool", "wsgi", workers=1, settings={"blocking_threads": 16})
    assert ceilings.sync_ceiling_requests_per_second(sync, "/io/sleep?ms=50") == pytest.approx(60.0)
    assert ceilings.sync_ceiling_requests_per_second(gthread, "/io/upstream?ms=50") == pytest.approx(240.0)
    assert ceilings.sync_ceiling_requests_per_second(pool, "/io/sleep?ms=100") == pytest.approx(160.0)
    # A sequential fan-out of 3 calls of 100 ms holds a sync worker 300 ms; with mode=threads, 100.
    assert ceilings.sync_ceiling_requests_per_second(sync, "/io/fanout?ms=100&n=3") == pytest.approx(10.0)
    threads = "/io/fanout?ms=100&n=3&mode=threads"
    assert ceilings.sync_ceiling_requests_per_second(sync, threads) == pytest.approx(30.0)
    assert ceilings.sync_ceiling_requests_per_second(sync, "/json") is None


def test_no_sync_ceiling_for_async_green_thread_or_unknown_pools() -> None:
    gevent = target("flask-gevent", "wsgi", settings={"worker_class": "gevent"})
    greenlets = target("flask-green", "wsgi", worker_model="a greenlet per connection")
    unsized = target("flask-granian", "wsgi", settings={"blocking_threads": "backpressure / 2"})
    for run in (TARGETS["fastapi-uvicorn"], gevent, greenlets, unsized):
        assert ceilings.sync_ceiling_requests_per_second(run, "/io/sleep?ms=50") is None, run.config.name


def test_a_cell_above_its_sync_ceiling_by_more_than_ten_percent_is_flagged() -> None:
    # flask-gunicorn: 2 sync workers on 50 ms -> 40 requests/s at most.
    measurements = [
        cell("flask-gunicorn", endpoint="/io/sleep?ms=50", repeat=0, requests_per_second=43.0),  # within 10%
        cell("flask-gunicorn", endpoint="/io/sleep?ms=50", repeat=1, requests_per_second=45.0),  # 12.5% above
        cell("fastapi-uvicorn", endpoint="/io/sleep?ms=50", requests_per_second=600.0),  # no ceiling
    ]
    frame = measurements_frame(measurements, TARGETS)
    assert list(frame["sync_ceiling_requests_per_second"][:2]) == [40.0, 40.0]
    assert list(frame["sync_ceiling_exceeded"]) == [False, True, False]
    assert math.isnan(frame["sync_ceiling_requests_per_second"].iloc[2])
    row = only(summarise(frame), "flask-gunicorn", endpoint="/io/sleep?ms=50")
    assert bool(row["sync_ceiling_exceeded"]) is True
    assert row["sync_ceiling_requests_per_second"] == 40.0


def test_highest_level_cells_are_the_top_level_per_endpoint_or_the_sustainable_rate() -> None:
    measurements = [
        cell("fastapi-uvicorn", concurrency=8),
        cell("fastapi-uvicorn", concurrency=64, repeat=0),
        cell("fastapi-uvicorn", concurrency=64, repeat=1),
        cell("flask-gunicorn", concurrency=64),
        cell("flask-gunicorn", concurrency=128, failed=True),
        cell("flask-gunicorn", endpoint="/json", concurrency=8),
        cell("quart-hypercorn", model="saturation", rate=100.0, slo_held=True),
        cell("quart-hypercorn", model="saturation", rate=200.0, slo_held=True),
        cell("quart-hypercorn", model="saturation", rate=400.0, slo_held=False, slo_breach="p99"),
    ]
    picked = analysis.highest_level_cells(measurements_frame(measurements, TARGETS))
    assert sorted(picked["cell_id"]) == sorted(
        [
            "fastapi-uvicorn__io__c64__r0",
            "fastapi-uvicorn__io__c64__r1",
            "flask-gunicorn__io__c64__r0",
            "flask-gunicorn__json__c8__r0",
            "quart-hypercorn__io__rate200__r0",
        ]
    )


def test_percentile_spectrum_of_merged_histograms() -> None:
    # 10,000 values: 1..100 ms evenly, then one repeat's tail of 10 values at 900 ms.
    values = [1 + 99 * i / 9_989 for i in range(9_990)]
    spectrum = analysis.percentile_spectrum([histogram_of(values), histogram_of([900.0] * 10)])
    assert list(spectrum.columns) == ["nines", "percentile", "latency_ms"]
    assert spectrum["nines"].iloc[0] == 0.0
    assert spectrum["nines"].iloc[-1] == pytest.approx(4.0)  # log10(10,000): no more is known
    assert spectrum["latency_ms"].is_monotonic_increasing
    by_nines = spectrum.set_index(spectrum["nines"].round(2))["latency_ms"]
    assert by_nines[1.0] == pytest.approx(90.0, rel=0.02)  # p90
    assert by_nines[2.0] == pytest.approx(99.0, rel=0.02)  # p99
    assert by_nines[4.0] == pytest.approx(900.0, rel=0.01)  # the merged tail
    assert analysis.percentile_spectrum([]).empty
