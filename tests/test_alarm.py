"""The open model's alarm: fires once, never early, at the last time set; falls back to loop timers."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from harness.load import alarm as alarm_module
from harness.load.alarm import Alarm
from harness.load.connection import clock


async def fire_times(offsets_ms: list[float], cancel: bool = False) -> tuple[list[int], int, bool]:
    """Set the alarm ``offsets_ms`` from now, one after another (each replacing the last)."""
    loop = asyncio.get_running_loop()
    fired: list[int] = []
    alarm = Alarm(loop, lambda: fired.append(clock()))
    at = 0
    for offset in offsets_ms:
        at = clock() + int(offset * 1e6)
        alarm.set(at)
    if cancel:
        alarm.cancel()
    await asyncio.sleep(0.05)
    precise = alarm.precise
    alarm.close()
    return fired, at, precise


def test_the_last_time_set_fires_once_and_never_early() -> None:
    fired, at, precise = uvloop.run(fire_times([30.0, 2.0]))
    assert precise
    assert len(fired) == 1
    assert at <= fired[0] < at + 20_000_000


def test_a_time_in_the_past_fires_at_once_and_cancel_stops_it() -> None:
    fired, _, _ = uvloop.run(fire_times([-5.0]))
    assert len(fired) == 1
    fired, _, _ = uvloop.run(fire_times([2.0], cancel=True))
    assert fired == []


def test_without_timerfd_the_loop_timers_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alarm_module, "_LIBC", None)
    fired, at, precise = uvloop.run(fire_times([30.0, 2.0]))
    assert not precise
    assert len(fired) == 1
    assert fired[0] >= at - 1_000_000  # the loop's timers have 1 ms resolution
