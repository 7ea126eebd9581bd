"""make bench-driver: the comparison's arithmetic, the missing-wrk message, a short real round per target."""

from __future__ import annotations

import shutil

import psutil
import pytest

from harness.tools import benchdriver
from harness.tools.benchdriver import RoundResult, compare, format_goals


def round_result(generator: str, requests_per_second: float, cpu_us: float) -> RoundResult:
    return RoundResult(
        generator=generator,
        requests=int(requests_per_second * 5),
        errors=0,
        duration_s=5.0,
        generator_cpu_s=requests_per_second * 5 * cpu_us / 1e6,
        target_cpu_s=4.0,
    )


def test_medians_and_ratios_decide_the_goals() -> None:
    results = [
        round_result("wrk", 40_000, 9.0),
        round_result("native", 38_000, 10.0),
        round_result("native", 30_000, 12.0),
        round_result("wrk", 42_000, 8.0),
        round_result("wrk", 20_000, 20.0),
        round_result("native", 39_000, 9.5),
    ]
    comparison = compare(results)
    assert comparison.rounds == 3
    assert comparison.wrk_requests_per_second.median == pytest.approx(40_000)
    assert (comparison.ours_requests_per_second.min, comparison.ours_requests_per_second.max) == (
        30_000,
        39_000,
    )
    assert comparison.requests_per_second_ratio == pytest.approx(38_000 / 40_000)
    assert comparison.cpu_ratio == pytest.approx(10.0 / 9.0)
    assert comparison.wrk_target_cpu_percent.median == pytest.approx(80.0)
    assert comparison.requests_per_second_goal_met and comparison.cpu_goal_met
    slow = compare([round_result("wrk", 40_000, 9.0), round_result("native", 35_000, 10.5)])
    assert not slow.requests_per_second_goal_met and slow.cpu_goal_met
    assert "not met" in format_goals(slow)[0]


def test_missing_wrk_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "wrk" else "/usr/bin/" + tool)
    assert benchdriver.main(["--rounds", "1"]) == 2
    assert "apt-get install -y wrk" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install -y wrk)")
@pytest.mark.parametrize("target", ["uvicorn", "nginx"])
def test_one_short_round_of_each_generator(target: str) -> None:
    if target == "nginx" and shutil.which("nginx") is None:
        pytest.skip("needs nginx (apt-get install -y nginx-light)")
    started: list[str] = []
    results, layout = benchdriver.run_rounds(
        target=target, rounds=1, connections=8, duration_s=1, primer_s=1, on_start=started.append
    )
    assert [r.generator for r in results] == ["wrk", "native"]
    assert started == ["primer: wrk for 1 s, not counted", "round 1/1: wrk", "round 1/1: native"]
    for result in results:
        assert result.errors == 0
        assert result.requests_per_second > 500
        assert 0 < result.generator_cpu_us_per_request < 1000
        assert result.target_cpu_s > 0
    left = " ".join(" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True))
    assert target not in left
    assert "CPU" in layout
