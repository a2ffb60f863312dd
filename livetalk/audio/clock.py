"""Media clocks: the time base that paces outbound audio.

Only media pacing uses these clocks; network timers (ICE, DTLS, SCTP) always stay on the real
event loop. :class:`MediaClock` runs at a multiple of real time (``livetalk run --speed N``
passes ``MediaClock(N)``); :class:`ManualClock` only moves when told to, for tests, or runs as
fast as the consumer asks with ``autoadvance=True``.

Both satisfy the :class:`Clock` protocol: ``now()`` in media seconds and
``await sleep_until(media_t)``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Protocol

from livetalk.errors import ConfigError

__all__ = ["Clock", "ManualClock", "MediaClock"]


class Clock(Protocol):
    """A source of media time, in seconds."""

    @property
    def speed(self) -> float:
        """Media seconds per real second (1 for a clock that is not tied to real time)."""
        ...

    def now(self) -> float:
        """Current media time in seconds."""
        ...

    async def sleep_until(self, media_t: float) -> None:
        """Return once media time has reached ``media_t`` (at once if it already has)."""
        ...


class MediaClock:
    """Media time that runs at ``speed`` times real (monotonic) time.

    Media time starts at 0 when the clock is created.

    Args:
        speed: how many media seconds pass per real second, > 0.
        time_fn: the real-time source in seconds; ``time.monotonic`` (the event loop's clock)
            unless injected.

    Raises:
        ConfigError: ``speed`` is not a finite number > 0.
    """

    def __init__(self, speed: float = 1.0, *, time_fn: Callable[[], float] = time.monotonic):
        if isinstance(speed, bool) or not isinstance(speed, int | float):
            raise ConfigError(f"clock speed must be a number > 0, got {speed!r}")
        if not math.isfinite(speed) or speed <= 0:
            raise ConfigError(f"clock speed must be a finite number > 0, got {speed!r}")
        self._speed = float(speed)
        self._time_fn = time_fn
        self._origin = time_fn()

    @property
    def speed(self) -> float:
        """Media seconds per real second."""
        return self._speed

    def now(self) -> float:
        """Media seconds since the clock was created (real elapsed time times ``speed``)."""
        return (self._time_fn() - self._origin) * self._speed

    async def sleep_until(self, media_t: float) -> None:
        """Sleep until media time ``media_t``; return at once if it has passed.

        Cancelling is safe.
        """
        delay = (media_t - self.now()) / self._speed
        if delay > 0:
            await asyncio.sleep(delay)

    def __repr__(self) -> str:
        return f"MediaClock(speed={self._speed:g})"


class ManualClock:
    """A clock that only moves when :meth:`advance` or :meth:`set` is called.

    Sleepers wake (in deadline order) when the clock reaches their deadline; they run at the
    event loop's next turns, so a test advances the clock and then awaits what it expects.
    With ``autoadvance=True`` a sleeper instead moves the clock to its deadline at once:
    virtual time that runs as fast as the consumer pulls.

    Args:
        start: the initial media time in seconds.
        autoadvance: jump to each requested deadline instead of waiting for :meth:`advance`.
    """

    def __init__(self, start: float = 0.0, *, autoadvance: bool = False) -> None:
        self._now = float(start)
        self.autoadvance = autoadvance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def speed(self) -> float:
        """1: a manual clock is not tied to real time (buffers size their margins as in
        real time)."""
        return 1.0

    def now(self) -> float:
        """Current media time in seconds."""
        return self._now

    @property
    def sleepers(self) -> int:
        """Number of tasks currently waiting in :meth:`sleep_until`."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline anyone is waiting for, or None."""
        pending = [t for t, _, fut in self._sleepers if not fut.done()]
        return min(pending) if pending else None

    async def sleep_until(self, media_t: float) -> None:
        """Wait until the clock reaches ``media_t``; return at once if it has.

        Cancelling is safe.
        """
        if media_t <= self._now:
            return
        if self.autoadvance:
            self.set(media_t)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (media_t, next(self._order), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0) and wake the sleepers now due."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        self.set(self._now + seconds)

    def set(self, media_t: float) -> None:
        """Move the clock forward to ``media_t`` and wake the sleepers now due."""
        if media_t < self._now:
            raise ValueError(f"a clock cannot go backwards (from {self._now} to {media_t})")
        self._now = float(media_t)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now:g})"
