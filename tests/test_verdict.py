from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import scipy.stats
from cells import TARGETS, cell, target

from harness.analysis import measurements_frame, summarise
from harness.model import BoundReason, Errors, Measurement
from harness.report.formats import format_flag, format_headline, format_verdict
from harness.saturation import saturation_summary
from harness.verdict import Flag, Verdict, verdict


def geometric_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """The ratio of the geometric means, which stats.compare reports when every value is above 0."""
    return math.exp(float(np.mean(np.log(a)) - np.mean(np.log(b))))


def judge(measurements: Sequence[Measurement]) -> list[Verdict]:
    frame = measurements_frame(measurements, TARGETS)
    return verdict(summarise(frame), TARGETS, saturation_summary(frame))


def test_verdict_compares_best_asgi_with_best_wsgi_at_the_highest_concurrency() -> None:
    measurements = []
    for repeat, jitter in enumerate((0.0, 10.0, 20.0)):
        measurements += [
            cell(
                "fastapi-uvicorn", concurrency=8, repeat=repeat, requests_per_second=5000.0 + jitter
            ),  # low level ignored
            cell("fastapi-uvicorn", concurrency=128, repeat=repeat, requests_per_second=1200.0 + jitter),
            cell("quart-hypercorn", concurrency=128, repeat=repeat, requests_per_second=900.0 + jitter),
            cell("flask-gunicorn", concurrency=128, repeat=repeat, requests_per_second=240.0 + jitter),
            cell("django-gunicorn", concurrency=128, repeat=repeat, requests_per_second=200.0 + jitter),
        ]
    (result,) = judge(measurements)
    assert result.endpoint == "/io"
    assert result.model == "closed"
    assert result.level == 128
    assert result.best is not None and result.best.target == "fastapi-uvicorn"
    assert result.best.requests_per_second_median == pytest.approx(1210.0)
    assert result.best.n == 3
    assert result.best.requests_per_second_interval is not None
    assert (
        result.best.requests_per_second_interval.low == 1200.0
        and result.best.requests_per_second_interval.high == 1220.0
    )
    assert result.best_asgi is not None and result.best_asgi.target == "fastapi-uvicorn"
    assert result.best_wsgi is not None and result.best_wsgi.target == "flask-gunicorn"
    assert result.runner_up is not None and result.runner_up.target == "quart-hypercorn"
    ratio = result.asgi_over_wsgi
    assert ratio is not None
    # The ratio of geometric means and Student's t-interval on the logs (stats.compare),
    # computed here with scipy's equal-variance two-sample t-test.
    asgi, wsgi = np.log([1200.0, 1210.0, 1220.0]), np.log([240.0, 250.0, 260.0])
    assert ratio.ratio == pytest.approx(math.exp(asgi.mean() - wsgi.mean()))
    assert ratio.ratio == pytest.approx(1210.0 / 250.0, rel=0.001)
    expected = scipy.stats.ttest_ind(asgi, wsgi).confidence_interval(0.95)
    assert ratio.interval is not None
    assert ratio.interval.low == pytest.approx(math.exp(expected.low))
    assert ratio.interval.high == pytest.approx(math.exp(expected.high))
    assert ratio.significant
    assert result.lead is not None and result.lead.significant
    assert result.excluded == ()
    assert result.flags == ()


CLOSE_RATIO = geometric_ratio([1000.0, 1100.0, 1050.0], [950.0, 1070.0, 1020.0])


def test_close_stacks_are_not_significant_and_say_so() -> None:
    measurements = [
        cell("fastapi-uvicorn", repeat=0, requests_per_second=1000.0),
        cell("fastapi-uvicorn", repeat=1, requests_per_second=1100.0),
        cell("fastapi-uvicorn", repeat=2, requests_per_second=1050.0),
        cell("quart-hypercorn", repeat=0, requests_per_second=950.0, mean_ms=10.0),
        cell("quart-hypercorn", repeat=1, requests_per_second=1070.0, mean_ms=10.0),
        cell("quart-hypercorn", repeat=2, requests_per_second=1020.0, mean_ms=10.0),
    ]
    (result,) = judge(measurements)
    assert result.best is not None and result.best.target == "fastapi-uvicorn"
    assert result.best_wsgi is None
    assert result.asgi_over_wsgi is None
    assert result.lead is not None and not result.lead.significant
    # quart-hypercorn is neither best nor best of an interface: its Little's law miss is not the verdict's.
    assert result.flags == (
        Flag("not_significant", "fastapi-uvicorn", pytest.approx(CLOSE_RATIO), "quart-hypercorn"),
    )


GENERATOR_CPU = BoundReason(by="generator", rule="cpu", measured=95.0, limit=80.0, processes=1)
UPSTREAM_CPU = BoundReason(by="upstream", rule="cpu", measured=95.0, limit=80.0)


def test_generator_bound_and_upstream_bound_stacks_are_left_out_of_the_ranking() -> None:
    measurements = []
    for repeat in range(3):
        measurements += [
            cell(
                "fastapi-uvicorn",
                repeat=repeat,
                requests_per_second=9000.0 + repeat,
                generator_bound=repeat == 1,
                bound_reasons=(GENERATOR_CPU,) if repeat == 1 else (),
            ),
            cell("quart-hypercorn", repeat=repeat, requests_per_second=8000.0 + repeat, upstream_bound=True),
            cell("django-gunicorn", repeat=repeat, requests_per_second=1000.0 + repeat),
            cell("flask-gunicorn", repeat=repeat, requests_per_second=300.0 + repeat),
        ]
    (result,) = judge(measurements)
    assert result.excluded == ("fastapi-uvicorn", "quart-hypercorn")
    assert result.best is not None and result.best.target == "django-gunicorn"
    assert result.best_asgi is None
    assert result.asgi_over_wsgi is None
    assert result.runner_up is not None and result.runner_up.target == "flask-gunicorn"
    assert Flag("generator_bound", "fastapi-uvicorn", 9001.0, reasons=(GENERATOR_CPU,)) in result.flags
    assert Flag("upstream_bound", "quart-hypercorn", 8001.0, reasons=(UPSTREAM_CPU,)) in result.flags
    texts = [format_flag(f) for f in result.flags if f.kind.endswith("_bound")]
    assert any("the generator used 95% CPU (limit 80%)" in text for text in texts), texts
    assert any("the upstream used 95% CPU (limit 80%)" in text for text in texts), texts


def test_verdict_flags_single_runs_errors_dropped_ceiling_and_failed_cells() -> None:
    measurements = [
        # 128 connections on a 50 ms wait: the test itself caps at 2,560 req/s, well above 1,000.
        cell(
            "fastapi-uvicorn",
            endpoint="/io/sleep?ms=50",
            concurrency=128,
            requests_per_second=1000.0,
            errors=Errors(status=7),
        ),
        cell(
            "flask-gunicorn", endpoint="/io/sleep?ms=50", concurrency=128, requests_per_second=300.0
        ),  # 2 sync workers: 40 req/s at most
        cell(
            "django-gunicorn",
            endpoint="/io/sleep?ms=50",
            concurrency=128,
            requests_per_second=100.0,
            failed=True,
        ),
    ]
    (result,) = judge(measurements)
    assert result.asgi_over_wsgi is not None
    assert result.asgi_over_wsgi.ratio == pytest.approx(1000.0 / 300.0)
    assert result.asgi_over_wsgi.interval is None  # one repeat each: no interval
    assert not result.asgi_over_wsgi.significant
    assert result.flags == (
        Flag("single_run", "fastapi-uvicorn", 1.0),
        Flag("errors", "fastapi-uvicorn", 7.0),
        Flag("single_run", "flask-gunicorn", 1.0),
        Flag("sync_ceiling", "flask-gunicorn", 40.0),
        Flag("failed", "django-gunicorn", 1.0),
    )


def test_open_model_verdict_is_at_the_highest_rate_and_counts_dropped_requests() -> None:
    measurements = []
    for repeat in range(3):
        measurements += [
            cell("fastapi-uvicorn", model="open", rate=100.0, repeat=repeat, requests_per_second=99.0),
            cell("flask-gunicorn", model="open", rate=100.0, repeat=repeat, requests_per_second=59.0),
            # At 800/s the async stack is the limit: its p99 breaks the SLO (an offered rate served
            # within the SLO would be set by the load and carry no verdict).
            cell(
                "fastapi-uvicorn",
                model="open",
                rate=800.0,
                repeat=repeat,
                requests_per_second=790.0 + repeat,
                p99_ms=250.0,
            ),
            cell(
                "flask-gunicorn",
                model="open",
                rate=800.0,
                repeat=repeat,
                requests_per_second=60.0 + repeat,
                dropped=100,
            ),
        ]
    (result,) = judge(measurements)
    assert result.model == "open"
    assert result.level == 800.0
    assert result.asgi_over_wsgi is not None and result.asgi_over_wsgi.significant
    expected = geometric_ratio([790.0, 791.0, 792.0], [60.0, 61.0, 62.0])
    assert result.asgi_over_wsgi.ratio == pytest.approx(expected)
    assert Flag("dropped", "flask-gunicorn", 300.0) in result.flags


def saturation(name: str, repeat: int, held: float, broke: float, **bound: bool) -> list[Measurement]:
    return [
        cell(name, model="saturation", rate=held, repeat=repeat, slo_held=True),
        cell(name, model="saturation", rate=broke, repeat=repeat, slo_held=False, slo_breach="p99", **bound),
    ]


def test_saturation_verdict_ranks_sustainable_throughput_and_skips_generator_bound_searches() -> None:
    measurements = []
    for repeat in range(3):
        measurements += saturation("fastapi-uvicorn", repeat, 800.0 + 50 * repeat, 1600.0)
        measurements += saturation("quart-hypercorn", repeat, 3200.0, 6400.0, generator_bound=True)
        measurements += saturation("flask-gunicorn", repeat, 50.0 + 5 * repeat, 100.0)
    (result,) = judge(measurements)
    assert result.model == "saturation"
    assert result.level is None
    assert result.excluded == ("quart-hypercorn",)
    assert result.best is not None and result.best.target == "fastapi-uvicorn"
    assert result.best.requests_per_second_values == (800.0, 850.0, 900.0)
    assert result.best.requests_per_second_median == 850.0
    assert result.best_wsgi is not None and result.best_wsgi.requests_per_second_median == 55.0
    assert result.asgi_over_wsgi is not None and result.asgi_over_wsgi.significant
    expected = geometric_ratio([800.0, 850.0, 900.0], [50.0, 55.0, 60.0])
    assert result.asgi_over_wsgi.ratio == pytest.approx(expected)
    assert [f.kind for f in result.flags] == ["generator_bound"]


def test_verdict_falls_back_to_the_highest_level_with_a_measurement() -> None:
    measurements = [
        cell("fastapi-uvicorn", concurrency=32, requests_per_second=800.0),
        cell("flask-gunicorn", concurrency=32, requests_per_second=200.0),
        cell("fastapi-uvicorn", concurrency=128, failed=True),
        cell("flask-gunicorn", concurrency=128, failed=True),
    ]
    (result,) = judge(measurements)
    assert result.level == 32
    assert result.asgi_over_wsgi is not None and result.asgi_over_wsgi.ratio == pytest.approx(4.0)


def test_verdict_when_nothing_was_measured() -> None:
    (result,) = judge([cell("fastapi-uvicorn", concurrency=64, failed=True)])
    assert result.level == 64
    assert result.best is None
    assert result.asgi_over_wsgi is None
    assert result.flags == (Flag("failed", "fastapi-uvicorn", 1.0),)


def test_one_verdict_per_endpoint() -> None:
    results = judge([cell(endpoint="/json"), cell(endpoint="/io/upstream?ms=50")])
    assert [v.endpoint for v in results] == ["/io/upstream?ms=50", "/json"]


def test_a_closed_cell_at_the_tests_own_ceiling_is_set_by_the_load_and_carries_no_verdict() -> None:
    # 128 connections on a 50 ms wait: the test caps at 128 / 0.05 s = 2,560 req/s. The async
    # stack's 2,362 is within 10% of it (the load's figure); the WSGI stack's 1,899 is not.
    measurements = []
    for repeat in range(3):
        measurements += [
            cell(
                "starlette-uvicorn",
                endpoint="/io/upstream?ms=50",
                concurrency=128,
                repeat=repeat,
                requests_per_second=2362.0 + repeat,
            ),
            cell(
                "flask-granian",
                endpoint="/io/upstream?ms=50",
                concurrency=128,
                repeat=repeat,
                requests_per_second=1899.0 + repeat,
            ),
        ]
    targets = {
        "starlette-uvicorn": target("starlette-uvicorn", "asgi"),
        "flask-granian": target("flask-granian", "wsgi", worker_model="threads"),
    }
    frame = measurements_frame(measurements, targets)
    summary = summarise(frame).set_index("target")
    assert bool(summary.loc["starlette-uvicorn", "set_by_load"])
    assert not bool(summary.loc["flask-granian", "set_by_load"])
    assert set(frame["load_ceiling_requests_per_second"]) == {2560.0}
    (result,) = verdict(summary.reset_index(), targets)
    assert result.excluded == ("starlette-uvicorn",)
    assert result.best is not None and result.best.target == "flask-granian"
    assert result.asgi_over_wsgi is None  # no ASGI figure the stack set: no ASGI/WSGI ratio
    assert Flag("set_by_load", "starlette-uvicorn", 2363.0) in result.flags
    text = [format_flag(f) for f in result.flags if f.kind == "set_by_load"]
    assert text and "set by the load, not the stack" in text[0]
    # The stack left out served more than the one ranked first: no line may crown flask-granian alone.
    capped = "1 stack at the load's own ceiling (2,363 requests/s: set by the load, not ranked)"
    below = "below it flask-granian 1,900 requests/s"
    assert format_headline([result]) == f"/io/upstream?ms=50 @ c128: {capped}; {below} (2 flags)"
    sentence = format_verdict(result)
    assert capped in sentence, sentence
    assert "of the stacks the load did not cap, flask-granian (WSGI) served the most" in sentence, sentence


def test_an_open_cell_that_served_its_offered_rate_within_the_slo_is_set_by_the_load() -> None:
    served = cell("fastapi-uvicorn", model="open", rate=800.0, requests_per_second=799.0, p99_ms=60.0)
    late = cell("flask-gunicorn", model="open", rate=800.0, requests_per_second=60.0, p99_ms=4000.0)
    frame = measurements_frame([served, late], TARGETS).set_index("target")
    assert bool(frame.loc["fastapi-uvicorn", "set_by_load"])
    assert not bool(frame.loc["flask-gunicorn", "set_by_load"])
