"""Time-varying load: the arrival-time inversion, and both drivers following a profile of stages.

The pure functions of ``profile.py`` are checked against closed forms; the drivers run
against real servers on 127.0.0.1 (``ControlledServer``), one profile of 2-4 s each.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import replace

import pytest
from controlled_server import ControlledServer

from harness.histogram import decode, encode
from harness.load import (
    ClosedLoad,
    LoadResult,
    OpenLoad,
    drive_in_subprocess,
    merge_results,
    run_closed,
    run_open,
)
from harness.load.arrivals import intended_times
from harness.load.profile import (
    Segment,
    arrival_offsets,
    connection_steps,
    connections_share,
    planned_connections,
    stage_bounds,
    stage_masses,
)
from harness.load.summary import latency_summary

CPUS = sorted(os.sched_getaffinity(0))
ZERO_ERRORS = {"status": 0, "connect": 0, "read": 0, "timeout": 0}


def open_load(port: int, profile: tuple[Segment, ...], **kw: object) -> OpenLoad:
    kw.setdefault("warmup_s", 0.0)
    kw.setdefault("arrival", "uniform")
    kw.setdefault("duration_s", sum(segment.duration_s for segment in profile))
    return OpenLoad(host="127.0.0.1", port=port, path="/ok", rate=0, profile=profile, **kw)  # type: ignore[arg-type]


def closed_load(port: int, profile: tuple[Segment, ...], **kw: object) -> ClosedLoad:
    kw.setdefault("warmup_s", 0.0)
    kw.setdefault("duration_s", sum(segment.duration_s for segment in profile))
    return ClosedLoad(host="127.0.0.1", port=port, path="/ok", concurrency=1, profile=profile, **kw)  # type: ignore[arg-type]


def assert_stages_add_up(result: LoadResult) -> None:
    """Every count of the window is the sum of its stages' counts (requests counted once, in one stage)."""
    stages = result.stages
    assert sum(s.ok for s in stages) == result.ok
    assert sum(s.scheduled for s in stages) == result.scheduled
    assert sum(s.dropped for s in stages) == result.dropped
    for kind, count in result.errors.items():
        assert sum(s.errors[kind] for s in stages) == count
    assert sum(decode(s.histogram).get_total_count() for s in stages) == result.ok
    assert sum(s.duration_s for s in stages) == pytest.approx(result.duration_s, abs=0.01)


# --- the arrival-time inversion, pure ---


def test_uniform_arrivals_over_a_ramp_number_floor_of_the_cumulative_rate() -> None:
    # 0 -> 100 requests/s over 1 s: Λ(t) = 50 t², so [0, t) holds ⌊50 t²⌋ arrivals, t_k = sqrt(k / 50).
    ramp = (Segment(1.0, 0.0, 100.0, 0),)
    offsets = list(arrival_offsets(ramp, itertools.count(1)))
    assert len(offsets) == 49  # u = 50 falls on t = 1, the end, which is excluded
    assert offsets == pytest.approx([math.sqrt(k / 50) for k in range(1, 50)], abs=1e-12)
    for t in (0.15, 0.33, 0.5, 0.71, 0.9):
        assert sum(1 for at in offsets if at < t) == math.floor(50 * t * t)


def test_uniform_arrivals_over_a_falling_ramp_and_several_segments() -> None:
    # 300 -> 100 over 2 s (Λ = 400), then 100 constant for 1 s (Λ = 100), then 100 -> 0 over 1 s (Λ = 50).
    profile = (Segment(2.0, 300.0, 100.0, 0), Segment(1.0, 100.0, 100.0, 1), Segment(1.0, 100.0, 0.0, 1))
    offsets = list(arrival_offsets(profile, itertools.count(1)))
    assert offsets == sorted(offsets)
    # Λ(t) = 300 t - 50 t² on the first segment: at t = 1 it is 250.
    assert sum(1 for at in offsets if at < 1.0) == 249
    assert sum(1 for at in offsets if at < 2.0) == 399
    assert sum(1 for at in offsets if at < 3.0) == 499
    # Λ(3.5) = 500 + 100 x 0.5 - 50 x 0.25 = 537.5; the profile's Λ(4) = 550 lands on the end.
    assert sum(1 for at in offsets if at < 3.5) == 537
    assert len(offsets) == 549
    assert stage_masses(profile) == [400.0, 150.0]
    assert stage_bounds(profile) == [0.0, 2.0, 4.0]


def test_poisson_arrivals_over_a_profile_average_the_cumulative_rate_and_are_seeded() -> None:
    profile = (Segment(10.0, 500.0, 1500.0, 0), Segment(10.0, 1500.0, 1500.0, 1))
    load = OpenLoad(
        host="127.0.0.1", port=1, path="/", rate=0, warmup_s=1.0, duration_s=20.0, profile=profile, seed=3
    )
    times = list(intended_times(load, 0))
    # 1 s of warm-up at 500/s, then Λ = 10 000 + 15 000: Poisson counts are within a few sqrt(n).
    in_ramp = sum(1 for t in times if 1e9 <= t < 11e9)
    in_flat = sum(1 for t in times if t >= 11e9)
    assert abs(sum(1 for t in times if t < 1e9) - 500) < 4 * math.sqrt(500)
    assert abs(in_ramp - 10_000) < 4 * math.sqrt(10_000)
    assert abs(in_flat - 15_000) < 4 * math.sqrt(15_000)
    # The ramp's first second holds ∫_0^1 (500 + 100 t) dt = 550, its last 1450.
    assert abs(sum(1 for t in times if 1e9 <= t < 2e9) - 550) < 4 * math.sqrt(550)
    assert abs(sum(1 for t in times if 10e9 <= t < 11e9) - 1450) < 4 * math.sqrt(1450)
    assert times == list(intended_times(load, 0))
    assert len(list(intended_times(replace(load, max_requests=10), 0))) == 10


def test_closed_steps_round_the_level_and_shares_add_up() -> None:
    profile = (Segment(0.35, 2.0, 8.0, 0), Segment(0.5, 8.0, 8.0, 1))
    steps = connection_steps(profile, interval_s=0.1)
    assert [round(offset, 9) for offset, _, _ in steps] == [0.0, 0.1, 0.2, 0.3, 0.35]
    assert [connections_share(level, 0, 1) for _, level, _ in steps] == [2, 4, 5, 7, 8]
    assert [stage for _, _, stage in steps] == [0, 0, 0, 0, 1]
    for level, parts in itertools.product([0, 0.4, 0.5, 3, 7.49, 7.5, 11], [1, 2, 3, 4]):
        assert sum(connections_share(level, part, parts) for part in range(parts)) == math.floor(level + 0.5)
    peak, mean = planned_connections(steps, (0, 1), 0.0, 0.35)
    assert peak == 7
    assert mean == pytest.approx((2 + 4 + 5) * 0.1 / 0.35 + 7 * 0.05 / 0.35)
    assert planned_connections(steps, (0, 1), 0.35, 0.85) == (8, 8.0)
    assert planned_connections(steps, (1, 2), 0.35, 0.85) == (4, 4.0)


def test_profiles_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        open_load(1, (Segment(1.0, 10.0, 10.0, 0),), duration_s=2.0)
    with pytest.raises(ValueError, match="rate of 0"):
        open_load(1, (Segment(1.0, 10.0, 0.0, 0), Segment(1.0, 0.0, 0.0, 1)))
    with pytest.raises(ValueError, match=">= 0"):
        Segment(1.0, -1.0, 5.0, 0)
    with pytest.raises(ValueError, match="duration_s must be > 0"):
        Segment(0.0, 1.0, 5.0, 0)
    with pytest.raises(ValueError, match="stages must be"):
        closed_load(1, (Segment(1.0, 1.0, 1.0, 0), Segment(1.0, 1.0, 1.0, 2)))
    with pytest.raises(ValueError, match="stages must be"):
        closed_load(1, (Segment(1.0, 1.0, 1.0, 1),))
    # The closed model may hold no connection for a while.
    assert closed_load(1, (Segment(1.0, 0.0, 0.0, 0), Segment(1.0, 4.0, 4.0, 1))).profile


def test_splitting_a_profile_divides_rates_and_shares_connections() -> None:
    open_parts = open_load(1, (Segment(1.0, 50.0, 250.0, 0),), max_connections=10).split(2)
    assert [part.profile for part in open_parts] == [(Segment(1.0, 25.0, 125.0, 0),)] * 2
    closed = closed_load(1, (Segment(1.0, 1.0, 1.0, 0), Segment(1.0, 5.0, 5.0, 1)))
    parts = closed.split(8)
    assert [part.profile_share for part in parts] == [(index, 5) for index in range(5)]
    assert all(part.profile == closed.profile for part in parts)
    with pytest.raises(ValueError, match="already share"):
        parts[0].split(2)


def test_merging_results_merges_their_stages_pairwise() -> None:
    def result(ok: int, stages: tuple[LoadResult, ...] = ()) -> LoadResult:
        return LoadResult(
            duration_s=1.0,
            ok=ok,
            errors=dict(ZERO_ERRORS),
            error_statuses={},
            connections_opened=1,
            generator_cpu_s=0.1,
            histogram=encode([1000] * ok),
            connections_mean=2.0,
            stages=stages,
        )

    merged = merge_results(
        [result(3, (result(1), result(2))), result(7, (result(3), result(4)))],
        duration_s=2.0,
        stage_durations_s=[1.0, 1.1],
    )
    assert [stage.ok for stage in merged.stages] == [4, 6]
    assert [stage.duration_s for stage in merged.stages] == [1.0, 1.1]
    assert merged.connections_mean == 4.0
    with pytest.raises(ValueError, match="numbers of stages"):
        merge_results([result(1, (result(1),)), result(1)], duration_s=1.0)


# --- the drivers against real servers ---


def test_an_open_ramp_sends_the_integral_of_its_rate_stage_by_stage() -> None:
    # 50 -> 250 requests/s over 4 s, as two stages: Λ = 200 over the first 2 s, 400 over the next.
    profile = (Segment(2.0, 50.0, 150.0, 0), Segment(2.0, 150.0, 250.0, 1))
    events: list[str] = []
    with ControlledServer(delay_s=0.002) as server:
        result = run_open(open_load(server.port, profile, max_connections=50), events.append)
    assert events == ["start", "mark", "end"]
    assert result.scheduled == pytest.approx(600, abs=1)
    assert [stage.scheduled for stage in result.stages] == [
        pytest.approx(200, abs=1),
        pytest.approx(400, abs=1),
    ]
    assert result.dropped == 0 and result.errors == ZERO_ERRORS
    assert result.intended_rate == pytest.approx(150)
    assert [stage.intended_rate for stage in result.stages] == [pytest.approx(100), pytest.approx(200)]
    assert [stage.duration_s for stage in result.stages] == [pytest.approx(2.0, abs=0.05)] * 2
    # A server this fast answers each stage's arrivals within the stage, give or take those in flight.
    assert [stage.answered_in_window for stage in result.stages] == [
        pytest.approx(200, abs=5),
        pytest.approx(400, abs=5),
    ]
    assert_stages_add_up(result)


def test_a_spike_leaves_a_backlog_that_shows_in_the_stage_after_it() -> None:
    """Two connections to a 10 ms server serve 200 requests/s; a 0.5 s spike at 400/s queues ~100 requests.

    The queue drains at the 100 requests/s to spare after the spike: the requests arriving in
    the next stage wait behind it (corrected latency), though each is served in 10 ms.
    """
    profile = (Segment(1.0, 100.0, 100.0, 0), Segment(0.5, 400.0, 400.0, 1), Segment(1.5, 100.0, 100.0, 2))
    with ControlledServer(delay_s=0.01) as server:
        result = run_open(open_load(server.port, profile, warmup_s=0.2, max_connections=2))
    _, spike, after = result.stages
    assert [stage.scheduled for stage in result.stages] == [
        pytest.approx(100, abs=1),
        pytest.approx(200, abs=1),
        pytest.approx(150, abs=1),
    ]
    assert result.dropped == 0
    summaries = [latency_summary(stage.histogram) for stage in result.stages]
    uncorrected = [latency_summary(stage.histogram_uncorrected or "") for stage in result.stages]
    assert all(s is not None for s in summaries + uncorrected)
    calm, during, behind = summaries
    assert calm is not None and during is not None and behind is not None
    assert calm.p99 < 50
    assert during.max > 300
    # The next stage's first arrivals queue behind ~100 requests served at 200/s: about 0.5 s.
    assert behind.max > 300 and behind.p50 > 50
    assert all(u is not None and u.p99 < 50 for u in uncorrected)
    # The spike's answers spill into the next stage: more answers arrive there than it scheduled.
    assert after.answered_in_window is not None and spike.answered_in_window is not None
    assert after.answered_in_window > after.scheduled + 50
    assert spike.answered_in_window < spike.scheduled - 50
    assert [stage.connections_peak for stage in result.stages] == [2, 2, 2]
    assert_stages_add_up(result)


def test_a_closed_profile_grows_and_retires_connections() -> None:
    """2, then 8, then 2 connections against a 20 ms server: about 100, 400, 100 answers/s."""
    profile = (Segment(1.0, 2.0, 2.0, 0), Segment(1.0, 8.0, 8.0, 1), Segment(1.0, 2.0, 2.0, 2))
    events: list[str] = []
    with ControlledServer(delay_s=0.02) as server:
        result = run_closed(closed_load(server.port, profile, warmup_s=0.2), events.append)
    assert events == ["start", "mark", "mark", "end"]
    low, high, low_again = result.stages
    assert result.connections_peak == 8
    assert [stage.connections_peak for stage in result.stages] == [2, 8, 2]
    assert [stage.connections_mean for stage in result.stages] == [2.0, 8.0, 2.0]
    assert result.connections_mean == pytest.approx(4.0)
    assert high.requests_per_second > 3 * low.requests_per_second
    # A stage counts the requests that finish in it: 1 s x connections / 20 ms at most, plus those
    # in flight as it began (2 at the start of the window, 8 when the stage before had 8).
    assert 70 <= low.ok <= 100 + 2 and 70 <= low_again.ok <= 100 + 8
    assert 300 <= high.ok <= 400 + 2
    # Growing opened 6 connections; shrinking closed 6 after their answers: no request cut off.
    assert high.connections_opened == 6
    assert low_again.connections_opened == 0
    assert result.errors == ZERO_ERRORS
    assert_stages_add_up(result)


def test_a_closed_ramp_follows_the_level_every_100_ms() -> None:
    # 1 -> 10 connections over 1 s, against a 10 ms server: throughput grows as the ramp does.
    profile = (Segment(1.0, 1.0, 10.0, 0), Segment(0.5, 10.0, 10.0, 1))
    with ControlledServer(delay_s=0.01) as server:
        result = run_closed(closed_load(server.port, profile))
    ramp, flat = result.stages
    # Steps every 0.1 s at 1, 1.9, 2.8 ... 9.1 connections, rounded half up.
    assert ramp.connections_peak == 9
    assert ramp.connections_mean == pytest.approx(sum([1, 2, 3, 4, 5, 6, 6, 7, 8, 9]) / 10)
    assert flat.connections_peak == 10
    assert flat.requests_per_second > 1.5 * ramp.requests_per_second
    assert result.errors == ZERO_ERRORS


def test_split_processes_announce_each_mark_once_and_merge_stages() -> None:
    profile = (Segment(0.5, 100.0, 100.0, 0), Segment(0.5, 300.0, 300.0, 1), Segment(0.5, 100.0, 100.0, 2))
    events: list[str] = []
    with ControlledServer(delay_s=0.002) as server:
        opened, _ = drive_in_subprocess(
            open_load(server.port, profile, max_connections=20),
            cpus=CPUS,
            processes=2,
            on_window=events.append,
        )
        assert events == ["start", "mark", "mark", "end"]
        events.clear()
        closed, _ = drive_in_subprocess(
            closed_load(server.port, (Segment(0.5, 1.0, 1.0, 0), Segment(0.5, 3.0, 3.0, 1))),
            cpus=CPUS,
            processes=2,
            on_window=events.append,
        )
    assert events == ["start", "mark", "end"]
    assert opened.processes == 2
    assert [stage.scheduled for stage in opened.stages] == [
        pytest.approx(50, abs=2),
        pytest.approx(150, abs=2),
        pytest.approx(50, abs=2),
    ]
    assert [stage.intended_rate for stage in opened.stages] == [pytest.approx(r) for r in (100, 300, 100)]
    assert [stage.duration_s for stage in opened.stages] == [pytest.approx(0.5, abs=0.05)] * 3
    assert_stages_add_up(opened)
    # 1 then 3 connections shared by 2 processes: 1 + 0, then 2 + 1.
    assert [stage.connections_peak for stage in closed.stages] == [1, 3]
    assert [stage.connections_mean for stage in closed.stages] == [1.0, 3.0]
    assert closed.stages[1].requests_per_second > 2 * closed.stages[0].requests_per_second
