"""Background tasks owned by one object, and the idempotent async-close pattern.

:class:`TaskSet` keeps the tasks an object starts (a call's tool runs and reconnects, a server
session's responses) so that closing the object cancels and awaits every one of them; a task
that fails is logged, never lost silently. :class:`AsyncClosing` gives an object with an
async ``close()`` the ``async with`` protocol, and :class:`ClosesOnce` makes that ``close()``
idempotent around a ``_close()`` hook (sources, sinks, recorders).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Self

__all__ = ["AsyncClosing", "ClosesOnce", "TaskSet"]


class TaskSet:
    """The background tasks of one owner.

    Args:
        log: where a task's unexpected exception is reported.
        name: the owner, for that report.
    """

    def __init__(self, log: logging.Logger, name: str) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = log
        self._name = name

    def __len__(self) -> int:
        return sum(not t.done() for t in self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start ``coro`` as a task of this set."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("a background task of %s failed", self._name,
                            exc_info=task.exception())

    async def cancel_all(self) -> None:
        """Cancel every task (but the caller's own) and wait until they have ended."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class AsyncClosing:
    """Mixin: ``async with obj`` closes it on exit; subclasses implement ``async close()``."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ClosesOnce(AsyncClosing):
    """Mixin: an idempotent ``close()`` that runs the ``_close()`` hook once."""

    _closed: bool = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    async def close(self) -> None:
        """Finish and release resources; idempotent."""
        if not self._closed:
            self._closed = True
            await self._close()

    async def _close(self) -> None:
        """Release resources (called once)."""
