"""The generator's lateness from a real open-model run into the stored record (issue 13).

``build_measurement`` stores the driver's lateness p50/p99/max in ms and judges it
against the SLO's bound when the cell has one; the analysis frame and the summary carry
the p99 on.
"""

from __future__ import annotations

import dataclasses

import pytest
from controlled_server import ControlledServer

from harness import histogram
from harness.analysis import measurements_frame, summarise
from harness.load import LoadResult
from harness.load.arrivals import OpenLoad
from harness.load.process import drive_in_subprocess
from harness.model import Cell, Measurement, Slo
from harness.run.flags import lateness_limit_ms
from harness.run.measure import CellContext, Observed, build_measurement

RATE = 200.0


@pytest.fixture(scope="module")
def real_open_result() -> LoadResult:
    """Two seconds at 200 requests/s from the native open driver, in its own process."""
    load = OpenLoad(
        host="127.0.0.1",
        port=0,
        path="/ok",
        rate=RATE,
        warmup_s=0.5,
        duration_s=2.0,
        arrival="uniform",
        timeout_s=5.0,
    )
    with ControlledServer(delay_s=0.001) as server:
        result, _ = drive_in_subprocess(dataclasses.replace(load, port=server.port))
    return result


def measure(load: LoadResult, *, repeat: int = 0, slo: Slo | None = None) -> Measurement:
    model = "open" if slo is None else "saturation"
    cell = Cell(
        target="fastapi-uvicorn",
        endpoint="/ok",
        model=model,
        rate=RATE if slo is None else None,
        repeat=repeat,
    )
    context = CellContext(
        cell=cell, started_at="2026-01-01T00:00:00+00:00", warmup_s=0.5, max_connections=1000, slo=slo
    )
    return build_measurement(context, Observed(load=load, server=None, upstream=None, histogram_path="h.hdr"))


def with_lateness(load: LoadResult, lateness_us: list[int]) -> LoadResult:
    """The real result with its lateness histogram replaced by these lateness values (µs)."""
    return dataclasses.replace(load, histogram_lateness=histogram.encode(lateness_us))


def test_a_real_open_run_stores_the_generators_lateness_in_ms(real_open_result: LoadResult) -> None:
    load = real_open_result
    lateness = load.generator_lateness_ms
    assert load.model == "open" and lateness is not None
    m = measure(load)
    p50, p99, worst = m.generator_lateness_ms_p50, m.generator_lateness_ms_p99, m.generator_lateness_ms_max
    assert p50 is not None and p99 is not None and worst is not None
    print(f"unloaded driver: lateness p50 {p50} ms, p99 {p99} ms, max {worst} ms")
    assert 0 <= p50 <= p99 <= worst
    # Stored in ms, as the driver read them: the histogram holds µs.
    assert (p50, p99, worst) == (round(lateness.p50, 3), round(lateness.p99, 3), round(lateness.max, 3))
    assert worst == pytest.approx(
        histogram.decode(load.histogram_lateness or "").get_max_value() / 1000, rel=0.01
    )
    # Flagged exactly when the p99 exceeds the 5 ms floor (no SLO); on an idle machine it does not.
    late = [r for r in m.bound_reasons if r.rule == "late"]
    assert bool(late) == (p99 > lateness_limit_ms(None))
    assert all((r.measured, r.limit) == (p99, 5.0) for r in late)
    # The frame carries the p99 on, per cell.
    frame = measurements_frame([m])
    assert frame.loc[0, "generator_lateness_ms_p99"] == p99


def test_a_cell_with_an_slo_is_judged_against_its_share_of_the_slo(real_open_result: LoadResult) -> None:
    late = with_lateness(real_open_result, [100] * 98 + [12_000] * 2)  # p99 12 ms
    # No SLO: the 5 ms floor, so 12 ms is late.
    bare = measure(late)
    assert bare.generator_lateness_ms_p99 == pytest.approx(12.0, rel=0.01)
    (reason,) = [r for r in bare.bound_reasons if r.rule == "late"]
    assert (reason.by, reason.limit) == ("generator", 5.0)
    assert bare.generator_bound is True
    # An SLO of p99 <= 400 ms: the bound is 5% of it, 20 ms, and 12 ms is within it.
    lenient = measure(late, slo=Slo(p99_ms=400.0))
    assert lenient.generator_lateness_ms_p99 == bare.generator_lateness_ms_p99
    assert not [r for r in lenient.bound_reasons if r.rule == "late"]
    # An SLO of p99 <= 200 ms: 10 ms, which 12 ms exceeds; but the cell held it, and lateness
    # only adds to latency, so the step's decision stands: not bound.
    held = measure(late, slo=Slo(p99_ms=200.0))
    assert held.slo_held is True and not [r for r in held.bound_reasons if r.rule == "late"]
    # An SLO just under the cell's p99: it broke by less than its latest request was late, so
    # the generator could account for the breach; the record names the limit and why.
    assert held.latency_ms is not None
    tight = 0.9 * held.latency_ms.p99  # broken by a tenth of its p99, less than 12 ms
    strict = measure(late, slo=Slo(p99_ms=tight))
    (reason,) = [r for r in strict.bound_reasons if r.rule == "late"]
    assert reason.limit == pytest.approx(max(5.0, 0.05 * tight))
    assert reason.measured == strict.generator_lateness_ms_p99
    assert reason.detail is not None and "could account for the breach" in reason.detail
    assert strict.generator_bound is True and strict.slo_held is False


def test_the_summary_keeps_the_worst_lateness_p99_over_repeats(real_open_result: LoadResult) -> None:
    calm = measure(real_open_result, repeat=0)
    late = measure(with_lateness(real_open_result, [100] * 98 + [12_000] * 2), repeat=1)
    summary = summarise(measurements_frame([calm, late]))
    assert len(summary) == 1
    assert summary.loc[0, "generator_lateness_ms_p99_max"] == late.generator_lateness_ms_p99
    # A closed cell (no lateness recorded) has NaN there.
    closed = calm.model_copy(
        update={"model": "closed", "concurrency": 8, "rate": None, "generator_lateness_ms_p99": None}
    )
    frame = measurements_frame([closed])
    assert frame["generator_lateness_ms_p99"].isna().all()
