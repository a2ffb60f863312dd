"""An append-only broadcast log that any number of async iterators read independently.

Every reader sees every item from the start of the log (or from the moment it subscribed,
for logs created with ``replay=False``), so two consumers of ``call.turns()`` never steal
items from each other. When the log is closed the readers finish what is there and then
stop normally, or raise the closing exception after the last item (a failed call still
delivers every transcript received before the failure).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Feed"]


class Feed(Generic[T]):
    """A broadcast log with history.

    Args:
        replay: new readers start at the oldest retained item (True) or at the next one.
        maxlen: retain at most this many items (oldest dropped); None keeps everything.
    """

    def __init__(self, *, replay: bool = True, maxlen: int | None = None) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._offset = 0  # absolute index of self._items[0]
        self._replay = replay
        self._closed = False
        self._error: BaseException | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return self._offset + len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def items(self) -> list[T]:
        """A snapshot of the retained items."""
        return list(self._items)

    def publish(self, item: T) -> None:
        """Append an item and wake every waiting reader."""
        if self._closed:
            return
        if self._items.maxlen is not None and len(self._items) == self._items.maxlen:
            self._offset += 1
        self._items.append(item)
        self._wake()

    def close(self, error: BaseException | None = None) -> None:
        """End the log; readers stop after the last item, raising ``error`` if given."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._wake()

    async def wait_closed(self) -> None:
        """Wait until the log is closed."""
        while not self._closed:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def __aiter__(self) -> AsyncIterator[T]:
        position = self._offset if self._replay else len(self)
        while True:
            position = max(position, self._offset)
            while position < len(self):
                yield self._items[position - self._offset]
                # a slow reader skips what was dropped while it held the item
                position = max(position + 1, self._offset)
            if self._closed:
                if self._error is not None:
                    raise self._error
                return
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut
