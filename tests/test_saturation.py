from __future__ import annotations

import math

from cells import TARGETS, cell

from harness.analysis import measurements_frame, summarise
from harness.model import BoundReason, Measurement
from harness.saturation import saturation_summary, sustainable_throughput


def search(name: str, repeat: int, held: list[float], broke: list[float]) -> list[Measurement]:
    """The saturation cells of one search: rates that held the SLO and rates that broke it."""
    cells = [
        cell(name, model="saturation", rate=r, repeat=repeat, slo_held=True, p99_ms=r / 10) for r in held
    ]
    cells += [
        cell(
            name,
            model="saturation",
            rate=r,
            repeat=repeat,
            slo_held=False,
            slo_breach=f"p99 > 100 ms at {r:g}",
        )
        for r in broke
    ]
    return cells


def test_sustainable_throughput_is_the_highest_rate_that_held() -> None:
    measurements = [
        *search("fastapi-uvicorn", 0, [25, 50, 100, 200, 300], [400, 350]),
        *search("fastapi-uvicorn", 1, [25, 50, 100, 200], [400, 300]),
        *search("flask-gunicorn", 0, [], [25]),
        cell("flask-gunicorn", model="saturation", rate=25.0, repeat=1, failed=True),
    ]
    per_repeat = sustainable_throughput(measurements_frame(measurements, TARGETS))
    rows = {(r.target, r.repeat): r for r in per_repeat.itertuples()}
    assert set(rows) == {("fastapi-uvicorn", 0), ("fastapi-uvicorn", 1), ("flask-gunicorn", 0)}
    first = rows[("fastapi-uvicorn", 0)]
    assert first.sustainable_requests_per_second == 300.0
    assert first.steps == 7
    assert first.broke and first.breach == "p99 > 100 ms at 350"  # the lowest rate above that broke
    assert first.latency_ms_p99 == 30.0
    assert not first.bound and first.bound_reasons == ()
    assert rows[("fastapi-uvicorn", 1)].sustainable_requests_per_second == 200.0
    assert math.isnan(rows[("flask-gunicorn", 0)].sustainable_requests_per_second)  # nothing held
    # Saturation cells are not load levels of their own.
    assert summarise(measurements_frame(measurements, TARGETS)).empty


def test_saturation_summary_takes_the_median_across_repeats_counting_none_held_as_zero() -> None:
    measurements = [
        *search("fastapi-uvicorn", 0, [100, 200, 300], [400]),
        *search("fastapi-uvicorn", 1, [100, 200], [400, 300]),
        *search("fastapi-uvicorn", 2, [100, 200, 300, 350], [400]),
        *search("flask-gunicorn", 0, [25], [50]),
        *search("flask-gunicorn", 1, [], [25]),
        *search("flask-gunicorn", 2, [25, 37.5], [50]),
        cell("flask-gunicorn", model="saturation", rate=25.0, repeat=3, failed=True),
    ]
    summary = saturation_summary(measurements_frame(measurements, TARGETS)).set_index("target")
    fast = summary.loc["fastapi-uvicorn"]
    assert fast["n"] == 3
    assert fast["sustainable_requests_per_second_values"] == (300.0, 200.0, 350.0)
    assert fast["sustainable_requests_per_second_median"] == 300.0
    assert (
        fast["sustainable_requests_per_second_ci_low"] == 200.0
        and fast["sustainable_requests_per_second_ci_high"] == 350.0
    )
    assert fast["sustainable_requests_per_second_cv"] > 0
    assert fast["none_held"] == 0 and fast["never_broke"] == 0
    assert fast["interface"] == "asgi"
    slow = summary.loc["flask-gunicorn"]
    assert slow["sustainable_requests_per_second_values"] == (25.0, 0.0, 37.5)
    assert slow["sustainable_requests_per_second_median"] == 25.0
    assert slow["none_held"] == 1
    assert slow["failed"] == 1
    assert slow["n"] == 3


def test_a_search_decided_by_a_generator_bound_cell_is_marked_and_one_that_never_broke_too() -> None:
    measurements = [
        cell("fastapi-uvicorn", model="saturation", rate=100.0, slo_held=True),
        cell(
            "fastapi-uvicorn",
            model="saturation",
            rate=200.0,
            slo_held=False,
            slo_breach="achieved 150 req/s < 95% of 200 req/s",
            generator_bound=True,
            bound_reasons=(BoundReason(by="generator", rule="cpu", measured=97.0, limit=80.0, processes=1),),
        ),
        cell("quart-hypercorn", model="saturation", rate=100.0, slo_held=True),
        cell("quart-hypercorn", model="saturation", rate=200.0, slo_held=True, upstream_bound=True),
        cell("flask-gunicorn", model="saturation", rate=100.0, slo_held=True),
    ]
    summary = saturation_summary(measurements_frame(measurements, TARGETS)).set_index("target")
    assert bool(summary.loc["fastapi-uvicorn", "bound"])
    (generator,) = summary.loc["fastapi-uvicorn", "bound_reasons"]
    assert (generator.by, generator.rule, generator.measured) == ("generator", "cpu", 97.0)
    assert bool(summary.loc["quart-hypercorn", "bound"])
    assert [r.by for r in summary.loc["quart-hypercorn", "bound_reasons"]] == ["upstream"]
    assert not summary.loc["flask-gunicorn", "bound"]
    assert summary.loc["flask-gunicorn", "never_broke"] == 1


def test_a_top_rate_that_broke_once_and_then_held_its_second_window_is_not_a_floor() -> None:
    # flask-granian's search in one `make bench` run: 1,190 held, then 1,720 and 2,070 each broke
    # their first window (p99 alone) and held the second; the 5 windows ran out there.
    def again(m: Measurement) -> Measurement:
        return m.model_copy(update={"cell_id": m.cell_id + "-again"})

    edge = [
        *search("flask-granian", 0, [1190], [1720, 2070]),
        *(again(m) for m in search("flask-granian", 0, [1720, 2070], [])),
    ]
    below = search("fastapi-uvicorn", 0, [100, 150], [])  # never broke: the search's own bound
    below += [again(m) for m in search("fastapi-uvicorn", 0, [], [100])]  # a lower rate broke once
    per_repeat = sustainable_throughput(measurements_frame(edge + below, TARGETS)).set_index("target")
    granian = per_repeat.loc["flask-granian"]
    assert granian["sustainable_requests_per_second"] == 2070.0
    assert granian["broke"] and granian["breach"] == "p99 > 100 ms at 2070"
    uvicorn = per_repeat.loc["fastapi-uvicorn"]
    assert uvicorn["sustainable_requests_per_second"] == 150.0
    assert not uvicorn["broke"]
    summary = saturation_summary(measurements_frame(edge + below, TARGETS)).set_index("target")
    assert summary.loc["flask-granian", "never_broke"] == 0
    assert summary.loc["fastapi-uvicorn", "never_broke"] == 1
