"""The call caps: RateGate's rules on a given clock, LocalLimiter in an event loop."""

from __future__ import annotations

import asyncio

import pytest

from livetalk.errors import ConfigError
from livetalk.scenarios.limits import WINDOW_S, CallLimits, LocalLimiter, RateGate


def test_limits_validate_and_report_activity() -> None:
    assert not CallLimits().active
    assert CallLimits(max_concurrent=2).active and CallLimits(per_minute=5).active
    for bad in ({"max_concurrent": 0}, {"per_minute": -1}, {"per_minute": 2.5},
                {"max_concurrent": True}):
        with pytest.raises(ConfigError, match="whole number"):
            CallLimits(**bad)  # type: ignore[arg-type]


def test_concurrency_cap_holds_until_a_lease_returns() -> None:
    gate = RateGate(CallLimits(max_concurrent=2))
    first, _ = gate.try_acquire(0.0)
    second, _ = gate.try_acquire(0.0)
    refused, wait = gate.try_acquire(0.0)
    assert first is not None and second is not None and first != second
    assert refused is None and wait > 0
    assert gate.release(first) and not gate.release(first)  # a second release is a no-op
    third, wait = gate.try_acquire(0.1)
    assert third is not None and wait == 0.0
    stats = gate.statistics(0.1)
    assert (stats.in_use, stats.max_in_use, stats.granted) == (2, 2, 3)


def test_per_minute_cap_waits_for_the_oldest_start_to_leave_the_window() -> None:
    gate = RateGate(CallLimits(per_minute=3))
    for t in (0.0, 10.0, 20.0):
        lease, _ = gate.try_acquire(t)
        assert lease is not None
        gate.release(lease)  # ended calls still count against the minute
    refused, wait = gate.try_acquire(30.0)
    assert refused is None and wait == pytest.approx(WINDOW_S - 30.0)
    assert gate.try_acquire(59.9)[0] is None
    assert gate.try_acquire(60.0)[0] is not None  # the start at 0 s left the window
    assert gate.try_acquire(65.0)[0] is None  # the one at 10 s is still inside


def test_backoff_pauses_every_start_and_owner_leases_return_together() -> None:
    gate = RateGate(CallLimits(max_concurrent=10))
    held = [gate.try_acquire(0.0, owner="task-a")[0] for _ in range(3)]
    other, _ = gate.try_acquire(0.0, owner="task-b")
    assert None not in held and other is not None
    gate.backoff(1.0, 5.0)
    gate.backoff(2.0, 1.0)  # a shorter pause does not shorten the longer one
    refused, wait = gate.try_acquire(3.0)
    assert refused is None and wait == pytest.approx(3.0)
    assert gate.statistics(3.0).paused_until_s == pytest.approx(3.0)
    assert gate.release_owner("task-a") == 3
    assert gate.statistics(3.0).in_use == 1
    assert gate.try_acquire(6.0)[0] is not None
    assert gate.statistics(6.0).backoffs == 2


async def test_local_limiter_never_exceeds_its_cap() -> None:
    limiter = LocalLimiter(CallLimits(max_concurrent=2))
    live = 0
    peak = 0

    async def call() -> None:
        nonlocal live, peak
        lease = await limiter.acquire()
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.01)
        live -= 1
        await limiter.release(lease)

    await asyncio.gather(*(call() for _ in range(7)))
    stats = limiter.statistics()
    assert peak == 2 and stats.max_in_use == 2
    assert (stats.granted, stats.in_use) == (7, 0)


async def test_cancelled_acquire_holds_nothing() -> None:
    limiter = LocalLimiter(CallLimits(max_concurrent=1))
    lease = await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await limiter.release(lease)
    assert limiter.statistics().in_use == 0
    assert await limiter.acquire() > lease
