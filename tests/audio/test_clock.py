"""Tests for livetalk.audio.clock: MediaClock (with an injected time source) and ManualClock."""

from __future__ import annotations

import asyncio

import pytest

from livetalk.audio.clock import ManualClock, MediaClock
from livetalk.errors import ConfigError


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_media_clock_scales_real_time() -> None:
    real = FakeTime()
    clock = MediaClock(4.0, time_fn=real)
    assert clock.now() == 0.0
    real.t += 0.5
    assert clock.now() == pytest.approx(2.0)
    assert clock.speed == 4.0


@pytest.mark.parametrize("speed", [0, -1.0, float("nan"), float("inf"), "2", True])
def test_media_clock_rejects_bad_speed(speed: object) -> None:
    with pytest.raises(ConfigError, match="speed"):
        MediaClock(speed)  # type: ignore[arg-type]


async def test_media_clock_sleep_until_past_returns_without_sleeping() -> None:
    real = FakeTime()
    clock = MediaClock(time_fn=real)
    real.t += 1.0
    await clock.sleep_until(0.5)
    assert clock.now() == pytest.approx(1.0)


async def test_media_clock_fast_speed_reaches_deadline() -> None:
    clock = MediaClock(1000.0)
    await clock.sleep_until(0.5)
    assert clock.now() >= 0.5


async def test_manual_clock_wakes_in_deadline_order() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, t: float) -> None:
        await clock.sleep_until(t)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, t)) for n, t in (("b", 0.2), ("a", 0.1), ("c", 0.3))]
    await asyncio.sleep(0)
    assert clock.sleepers == 3
    assert clock.next_deadline == pytest.approx(0.1)
    clock.advance(0.15)
    await asyncio.sleep(0)
    assert woke == ["a"]
    clock.advance(0.2)
    await asyncio.gather(*tasks)
    assert woke == ["a", "b", "c"]
    assert clock.sleepers == 0 and clock.next_deadline is None


async def test_manual_clock_past_deadline_returns_at_once() -> None:
    clock = ManualClock(start=5.0)
    await clock.sleep_until(4.0)
    assert clock.now() == 5.0


async def test_manual_clock_cancelled_sleeper_is_skipped() -> None:
    clock = ManualClock()
    task = asyncio.create_task(clock.sleep_until(1.0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0
    clock.advance(2.0)  # must not try to wake the cancelled future


async def test_manual_clock_autoadvance_jumps_to_deadline() -> None:
    clock = ManualClock(autoadvance=True)
    await clock.sleep_until(3.5)
    assert clock.now() == 3.5


def test_manual_clock_cannot_go_backwards() -> None:
    clock = ManualClock(start=1.0)
    with pytest.raises(ValueError):
        clock.advance(-0.1)
    with pytest.raises(ValueError):
        clock.set(0.5)
