"""Caps on the calls a batch starts: how many at once, how many per minute, and pauses after a 429.

The Realtime API limits an account's concurrent sessions and the sessions it may start per
minute; a large batch that ignores them gets ``429 rate_limit_exceeded`` answers. A
:class:`CallLimits` says what the batch may do; a limiter enforces it for every call of the
batch, wherever the call runs:

- :class:`LocalLimiter` shares the caps between the calls of one event loop;
- ``livetalk.scenarios.cluster`` wraps the same :class:`RateGate` in a Ray actor, so every
  task of a cluster draws from one budget.

A call takes a lease with :meth:`CallLimiter.acquire` before it connects and gives it back
with :meth:`CallLimiter.release` when it hangs up. When the API answers 429 anyway, the
runner calls :meth:`CallLimiter.backoff` with the ``Retry-After`` seconds: no call of the
batch starts before then, and the refused call tries again (see
:func:`livetalk.scenarios.run_scenario`).

:class:`RateGate` holds the bookkeeping and takes the time as an argument, so its rules are
tested without waiting.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from dataclasses import dataclass
from typing import Final, Protocol

from livetalk.errors import ConfigError

__all__ = ["CallLimiter", "CallLimits", "LimiterStatistics", "LocalLimiter", "RateGate"]

WINDOW_S: Final = 60.0
"""The window of ``CallLimits.per_minute``, in seconds."""
_IDLE_POLL_S: Final = 1.0
"""Longest sleep of a waiting acquire between re-checks (releases also wake it)."""


@dataclass(frozen=True, slots=True)
class CallLimits:
    """What a batch may do at most; None means no cap.

    Attributes:
        max_concurrent: calls live at the same time, across the whole batch.
        per_minute: calls started in any 60-second window.
    """

    max_concurrent: int | None = None
    per_minute: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_concurrent", "per_minute"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigError(f"CallLimits.{name} must be a whole number >= 1 or None, "
                                  f"got {value!r}")

    @property
    def active(self) -> bool:
        """True when any cap is set."""
        return self.max_concurrent is not None or self.per_minute is not None


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """What a limiter has done so far.

    Attributes:
        in_use: leases held now.
        max_in_use: the most leases held at once.
        granted: leases handed out (one per connection attempt).
        backoffs: 429 answers reported through ``backoff``.
        paused_until_s: seconds from now until calls may start again (0 when not paused).
    """

    in_use: int
    max_in_use: int
    granted: int
    backoffs: int
    paused_until_s: float


class RateGate:
    """The bookkeeping of :class:`CallLimits`, with the clock passed in (no waiting here).

    Leases are numbered and may belong to an owner (a task), so that the leases of a task
    that died can be returned with :meth:`release_owner`.
    """

    def __init__(self, limits: CallLimits) -> None:
        self.limits = limits
        self._held: dict[int, str | None] = {}
        self._starts: collections.deque[float] = collections.deque()
        self._paused_until = 0.0
        self._ids = itertools.count(1)
        self._max_in_use = 0
        self._granted = 0
        self._backoffs = 0

    def try_acquire(self, now: float, owner: str | None = None) -> tuple[int | None, float]:
        """Take a lease if the caps allow one at ``now``.

        Returns:
            ``(lease, 0.0)`` when granted, else ``(None, seconds)``: how long until a start
            could be allowed (when only the concurrency cap blocks, the time to the next
            re-check; a release may come sooner).
        """
        while self._starts and self._starts[0] <= now - WINDOW_S:
            self._starts.popleft()
        wait = max(self._paused_until - now, 0.0)
        per_minute = self.limits.per_minute
        if per_minute is not None and len(self._starts) >= per_minute:
            wait = max(wait, self._starts[0] + WINDOW_S - now)
        cap = self.limits.max_concurrent
        if cap is not None and len(self._held) >= cap:
            wait = max(wait, _IDLE_POLL_S)
        if wait > 0:
            return None, wait
        lease = next(self._ids)
        self._held[lease] = owner
        self._starts.append(now)
        self._granted += 1
        self._max_in_use = max(self._max_in_use, len(self._held))
        return lease, 0.0

    def release(self, lease: int) -> bool:
        """Give a lease back; False if it was not held (already returned)."""
        if lease not in self._held:
            return False
        del self._held[lease]
        return True

    def release_owner(self, owner: str) -> int:
        """Give back every lease of ``owner``; returns how many were held."""
        leases = [lease for lease, who in self._held.items() if who == owner]
        for lease in leases:
            del self._held[lease]
        return len(leases)

    def backoff(self, now: float, seconds: float) -> None:
        """Start no call before ``now + seconds`` (after a 429 with that ``Retry-After``)."""
        self._backoffs += 1
        self._paused_until = max(self._paused_until, now + max(seconds, 0.0))

    def statistics(self, now: float) -> LimiterStatistics:
        """The counters (see :class:`LimiterStatistics`)."""
        return LimiterStatistics(in_use=len(self._held), max_in_use=self._max_in_use,
                                 granted=self._granted, backoffs=self._backoffs,
                                 paused_until_s=max(self._paused_until - now, 0.0))


class CallLimiter(Protocol):
    """What the scenario runner asks of a limiter (local or cluster-wide)."""

    async def acquire(self) -> int:
        """Wait until a call may start; returns its lease."""
        ...

    async def release(self, lease: int) -> None:
        """The call with this lease has ended."""
        ...

    async def backoff(self, seconds: float) -> None:
        """The API answered 429: start no call for ``seconds``."""
        ...


class LocalLimiter:
    """:class:`CallLimits` for the calls of one event loop (``livetalk script`` without Ray).

    Args:
        limits: the caps.
        owner: recorded with every lease (see :meth:`RateGate.release_owner`).
    """

    def __init__(self, limits: CallLimits, *, owner: str | None = None) -> None:
        self.gate = RateGate(limits)
        self.owner = owner
        self._changed = asyncio.Event()

    async def acquire(self, owner: str | None = None) -> int:
        """Wait until the caps allow a call to start; returns its lease (recorded for
        ``owner``, default the limiter's). Cancellation safe: a cancelled wait holds
        nothing."""
        while True:
            lease, wait = self.gate.try_acquire(time.monotonic(), owner or self.owner)
            if lease is not None:
                return lease
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(wait, _IDLE_POLL_S))
            except TimeoutError:
                pass

    async def release(self, lease: int) -> None:
        """Give a lease back (wakes waiting calls)."""
        self.gate.release(lease)
        self._changed.set()

    async def release_owner(self, owner: str) -> int:
        """Give back every lease of ``owner`` (a task that died); returns how many."""
        count = self.gate.release_owner(owner)
        self._changed.set()
        return count

    async def backoff(self, seconds: float) -> None:
        """Start no call for ``seconds``."""
        self.gate.backoff(time.monotonic(), seconds)

    def statistics(self) -> LimiterStatistics:
        """The counters (see :class:`LimiterStatistics`)."""
        return self.gate.statistics(time.monotonic())
