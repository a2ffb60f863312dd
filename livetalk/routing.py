"""Routing user turns to the host's own agent, and the handles of requested replies.

The central use of livetalk: the realtime session hears the user, each completed user turn
goes to the host's agent (an LLM call, a planner, a database), and the host's answer is spoken
back. ``connect(route=handler)`` sets it up (see ``docs/routing.md``):

* the session's turn detection gets ``create_response: false`` (merged into the caller's own
  settings), so the model does not answer by itself;
* a :class:`Router` calls ``handler(turn)`` for every user turn, in conversation order, one at
  a time, in a task of its own; a plain (non-async) handler runs in a worker thread, so even a
  blocking agent never stalls events, transcript deltas or barge-in (it must then not touch
  the call itself: return the text instead);
* a returned string is spoken verbatim (:meth:`livetalk.call.Call.say`); ``None`` or ``""``
  stays silent; a handler that raises or returns something else is logged at ERROR and
  reported as a ``route_error`` notice, and the call goes on;
* answers are spoken in the order of the turns they answer. When the user spoke again before
  an answer was ready, the answer is *stale*: with ``stale="speak"`` (the default) it is
  still spoken, in order; with ``stale="drop"`` it is dropped (a ``stale_answer`` notice says
  so) and only the newest turn's answer is spoken.

Every request for a response (:meth:`~livetalk.call.Call.say`,
:meth:`~livetalk.call.Call.create_response`) returns a :class:`Reply` at once. Requests wait
their turn (the API runs one response at a time), so none is refused or lost; ``await reply``
gives the assistant :class:`~livetalk.protocol.conversation.Turn` once its audio has stopped
playing: ``completed``, or ``cancelled`` with the text heard when the user barged in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Literal

from livetalk.errors import ConfigError, LivetalkError, Timeout
from livetalk.protocol.conversation import Role, Turn

__all__ = ["Reply", "RouteHandler", "Router", "StalePolicy"]

log = logging.getLogger("livetalk")

RouteHandler = Callable[[Turn], "str | None | Awaitable[str | None]"]
"""``handler(turn)`` for each user turn: returns (or resolves to) the text to speak, or None."""

StalePolicy = Literal["speak", "drop"]


class Reply:
    """The handle of one requested response; ``await reply`` for its assistant turn.

    Attributes:
        id: the reply's id (also in ``response.metadata.livetalk_reply`` on the wire).
    """

    def __init__(self, reply_id: str) -> None:
        self.id = reply_id
        self._future: asyncio.Future[Turn | None] = asyncio.get_running_loop().create_future()
        # an unawaited failure is the caller's choice, not a "never retrieved" warning
        self._future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def __repr__(self) -> str:
        state = "pending"
        if self._future.done():
            state = "failed" if self._future.exception() else "done"
        return f"<Reply {self.id} {state}>"

    def __await__(self) -> Generator[Any, None, Turn | None]:
        return asyncio.shield(self._future).__await__()

    async def wait(self, timeout: float | None = None) -> Turn | None:
        """Wait for the reply's assistant turn (None if the response produced no message).

        Raises:
            Timeout: not finished within ``timeout`` seconds (the reply goes on).
            CallClosedError: the call ended before the reply finished.
            ServerError: the server refused the request; ResponseFailedError: it failed.
        """
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError:
            raise Timeout(f"reply {self.id} did not finish within {timeout:g} s") from None

    def done(self) -> bool:
        """Whether the reply has finished (well or not)."""
        return self._future.done()

    @property
    def turn(self) -> Turn | None:
        """The assistant turn, once finished successfully (else None)."""
        if self._future.done() and not self._future.exception():
            return self._future.result()
        return None

    @property
    def error(self) -> BaseException | None:
        """Why the reply failed, once it has (else None)."""
        return self._future.exception() if self._future.done() else None

    def _resolve(self, turn: Turn | None) -> None:
        if not self._future.done():
            self._future.set_result(turn)

    def _fail(self, error: LivetalkError) -> None:
        if not self._future.done():
            self._future.set_exception(error)


class Router:
    """Calls the host's handler for each user turn and speaks its answers, in order.

    Args:
        handler: the host's agent (see :data:`RouteHandler`).
        say: speaks a text (the call's ``say``), returning its :class:`Reply`.
        hold, release: tell the session that an answer is being prepared (for
            ``wait_until_quiet``).
        notify: reports ``(kind, turn, error)`` to the host (the call's notices).
        newest_user_index: the index of the latest user turn so far (stale answers).
        stale: what to do with an answer whose user spoke again meanwhile.
    """

    def __init__(
        self,
        handler: RouteHandler,
        *,
        say: Callable[[str], Reply],
        hold: Callable[[str], None],
        release: Callable[[str], None],
        notify: Callable[[str, Turn, str | None], None],
        newest_user_index: Callable[[], int],
        stale: StalePolicy = "speak",
    ) -> None:
        if not callable(handler):
            raise ConfigError(f"route must be a callable taking a Turn, got {handler!r}")
        if stale not in ("speak", "drop"):
            raise ConfigError(f"route_stale must be 'speak' or 'drop', got {stale!r}")
        self._handler = handler
        self._say = say
        self._hold = hold
        self._release = release
        self._notify = notify
        self._newest = newest_user_index
        self._stale = stale
        self._queue: asyncio.Queue[Turn] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.replies: dict[str, Reply] = {}
        """The reply of each answered turn, by the user turn's item id."""

    def on_turn(self, turn: Turn) -> None:
        """Take a released turn (assistant turns are ignored)."""
        if turn.role is not Role.USER:
            return
        self._hold(_key(turn))
        self._queue.put_nowait(turn)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def close(self) -> None:
        """Stop calling the handler (a running call is cancelled)."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def _work(self) -> None:
        while not self._queue.empty():
            turn = self._queue.get_nowait()
            try:
                await self._answer(turn)
            finally:
                self._release(_key(turn))

    async def _answer(self, turn: Turn) -> None:
        try:
            if asyncio.iscoroutinefunction(self._handler):
                result: Any = await self._handler(turn)
            else:  # a blocking agent must not stall the event loop
                result = await asyncio.to_thread(self._handler, turn)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the host's agent failed: report it, the call goes on
            log.error("the route handler failed on turn %s: %s: %s", turn.item_id,
                      type(exc).__name__, exc, exc_info=exc)
            self._notify("route_error", turn, f"{type(exc).__name__}: {exc}")
            return
        if result is None or (isinstance(result, str) and not result.strip()):
            return
        if not isinstance(result, str):
            message = f"the route handler returned {type(result).__name__}, not str or None"
            log.error("%s (turn %s); nothing is spoken", message, turn.item_id)
            self._notify("route_error", turn, message)
            return
        if self._stale == "drop" and (not self._queue.empty()
                                      or self._newest() > turn.index):
            log.info("dropping the stale answer to turn %s: the user spoke again", turn.item_id)
            self._notify("stale_answer", turn, None)
            return
        try:
            self.replies[turn.item_id] = self._say(result)
        except LivetalkError as exc:  # the call closed meanwhile
            self._notify("route_error", turn, str(exc))


def _key(turn: Turn) -> str:
    return f"route:{turn.item_id}"
