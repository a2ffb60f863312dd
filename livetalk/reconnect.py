"""Opt-in automatic reconnection and the proactive recycle before the session limit.

The Realtime API has no session resume: a dropped call is gone, and every session ends at 60
minutes. With ``connect(reconnect=Reconnect())`` a :class:`Reconnector` watches the call:

* on an abnormal drop it opens a new call with backoff, replays the session config and the
  conversation so far (as text items), re-queues the replies that had not finished, and
  publishes :class:`CallNotice` items on :meth:`~livetalk.call.Call.notices`;
* with ``recycle_after_s`` it replaces the call before the limit (make before break).

Every new call takes a fresh key from the ``api_key`` provider when one was given
(``connect(api_key=async_function)``): an ``ek_`` client secret minted for the first call has
usually expired by then. A refused key ends the reconnect at once with a message that says
so, rather than a loop of 401s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livetalk.errors import AuthenticationError, CallClosedError, ConfigError, LivetalkError

__all__ = ["CallNotice", "Reconnect", "Reconnector"]

log = logging.getLogger("livetalk")


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Opt-in automatic reconnection (``connect(reconnect=Reconnect())``).

    An in-progress :meth:`~livetalk.call.Call.stream` ends at the drop; stream again (a
    microphone source simply continues).

    Attributes:
        max_attempts: attempts per drop before the call fails with CallClosedError.
        initial_backoff_s: delay before the first attempt; doubles on each failure.
        max_backoff_s: the longest delay.
        recycle_after_s: replace the call after this long (None: never). The API ends
            sessions at 3600 s; 3300 leaves room.
    """

    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    recycle_after_s: float | None = 3300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"Reconnect.max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ConfigError("Reconnect backoff must satisfy 0 <= initial <= max")
        if self.recycle_after_s is not None and self.recycle_after_s <= 0:
            raise ConfigError("Reconnect.recycle_after_s must be > 0 or None")


@dataclass(frozen=True, slots=True)
class CallNotice:
    """Something that happened to the call itself (not a protocol event).

    Attributes:
        kind: ``"reconnecting"`` (after a drop; ``error`` says why), ``"reconnected"``,
            ``"recycled"`` (proactive replacement before the session limit),
            ``"route_error"`` (the route handler raised or returned something unusable for
            the turn ``item_id``), ``"stale_answer"`` (an answer dropped because the user
            spoke again, with ``route_stale="drop"``).
        attempt: the attempt number for reconnecting/reconnected, else 0.
        call_id: the new call's id once reconnected or recycled.
        error: the cause, as text.
        item_id: the user turn a route notice is about.
    """

    kind: str
    attempt: int = 0
    call_id: str | None = None
    error: str | None = None
    item_id: str | None = None


class Reconnector:
    """Carries out a :class:`Reconnect` policy for one call.

    Args:
        policy: the policy.
        reopen: opens a replacement call and swaps it in (``recycle=True``: the old one is
            still up and is closed after the swap); returns the new call id.
        notify: publishes a notice.
        fail: ends the call with an error.
        is_closed: whether the call was closed meanwhile.
        spawn: starts a background task of the call.
    """

    def __init__(
        self,
        policy: Reconnect,
        *,
        reopen: Callable[[bool], Awaitable[str | None]],
        notify: Callable[[CallNotice], None],
        fail: Callable[[LivetalkError], Awaitable[None]],
        is_closed: Callable[[], bool],
        spawn: Callable[[Any], asyncio.Task[Any]],
    ) -> None:
        self.policy = policy
        self._reopen = reopen
        self._notify = notify
        self._fail = fail
        self._is_closed = is_closed
        self._spawn = spawn
        self._timer: asyncio.TimerHandle | None = None

    def schedule_recycle(self) -> None:
        """Start the countdown to the next proactive recycle (if the policy has one)."""
        self.cancel()
        after = self.policy.recycle_after_s
        if after is not None:
            self._timer = asyncio.get_running_loop().call_later(
                after, lambda: self._spawn(self._recycle()))

    def cancel(self) -> None:
        """Stop the recycle countdown."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_drop(self, error: BaseException) -> None:
        """The call dropped abnormally: start reconnecting."""
        self.cancel()
        self._spawn(self._reconnect(error))

    async def _reconnect(self, error: BaseException) -> None:
        policy = self.policy
        delay = policy.initial_backoff_s
        last: BaseException = error
        for attempt in range(1, policy.max_attempts + 1):
            self._notify(CallNotice("reconnecting", attempt, error=str(last)))
            await asyncio.sleep(delay)
            if self._is_closed():
                return
            try:
                call_id = await self._reopen(False)
            except AuthenticationError as exc:
                await self._fail(CallClosedError(
                    f"the call dropped ({error}) and the key was refused when reconnecting "
                    f"({exc.message}); an ek_ client secret has usually expired by then: pass "
                    "api_key=<an async function minting a fresh secret> to connect()"))
                return
            except LivetalkError as exc:
                last = exc
                delay = min(delay * 2 or 0.1, policy.max_backoff_s)
                continue
            self._notify(CallNotice("reconnected", attempt, call_id=call_id))
            self.schedule_recycle()
            return
        await self._fail(CallClosedError(
            f"the call dropped ({error}) and {policy.max_attempts} reconnect attempts failed; "
            f"last error: {last}"))

    async def _recycle(self) -> None:
        if self._is_closed():
            return
        try:
            call_id = await self._reopen(True)
        except LivetalkError as exc:
            log.warning("proactive recycle failed (%s); keeping the current call", exc)
            self.schedule_recycle()
            return
        self._notify(CallNotice("recycled", call_id=call_id))
        self.schedule_recycle()
