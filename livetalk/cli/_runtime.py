"""Running a command: one event loop, SIGINT and SIGTERM, a closed stdout.

A command is a coroutine function taking the parsed arguments and a :class:`Runtime`. The
runtime turns SIGINT and SIGTERM into a cancellation of the command, so its ``finally``
blocks run (the call hangs up, recordings are finalised, the closing summary is printed),
and the command then exits 130 or 143. A command may handle the first signal itself
instead (``livetalk serve`` stops serving, ``livetalk talk`` ends the conversation with its
summary) by setting :attr:`Runtime.graceful`. When the reader of
stdout goes away, output code calls :meth:`Runtime.stop` with ``BROKEN_PIPE`` and the
command ends quietly with 141.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from livetalk.cli._status import ExitStatus

__all__ = ["Runtime", "run"]

_SIGNAL_STATUS = {
    signal.SIGINT: ExitStatus.INTERRUPTED,
    signal.SIGTERM: ExitStatus.TERMINATED,
}


class Runtime:
    """The running command's handle on its own end: why it stopped, and how to stop it."""

    def __init__(self) -> None:
        self.stopped: ExitStatus | None = None
        """Why the command was stopped early (a signal or a closed stdout), or None."""
        self.reason = ""
        """The same as a phrase, e.g. ``"interrupted by SIGTERM"``."""
        self.graceful: Callable[[signal.Signals], None] | None = None
        """Called with the first SIGINT or SIGTERM instead of cancelling the command, which
        must then end by itself, with the status it chooses; a second signal cancels it."""
        self._task: asyncio.Task[ExitStatus] | None = None

    def stop(self, status: ExitStatus, reason: str) -> None:
        """Stop the command now (cancel it); the first reason is the one reported."""
        if self.stopped is not None:
            return
        self.stopped, self.reason = status, reason
        if self._task is not None:
            self._task.cancel(reason)

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.graceful is not None:
            graceful, self.graceful = self.graceful, None
            graceful(signum)
            return
        if self.stopped is not None:  # a second signal while shutting down: stop at once
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.stop(_SIGNAL_STATUS[signum], f"interrupted by {signum.name}")

    async def _main(self, command: Callable[[Runtime], Awaitable[ExitStatus]]) -> ExitStatus:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        installed = []
        for signum in _SIGNAL_STATUS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, signum)
                installed.append(signum)
        try:
            status = await command(self)
        except asyncio.CancelledError:
            if self.stopped is None:
                raise
            return self.stopped
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
        return self.stopped if self.stopped is not None else status


def run(command: Callable[[Runtime], Awaitable[ExitStatus]]) -> ExitStatus:
    """Run ``command`` in a new event loop; return its status (or the stopping signal's)."""
    runtime = Runtime()
    return asyncio.run(runtime._main(command))
