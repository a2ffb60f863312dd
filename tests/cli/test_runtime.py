"""Running a command: SIGINT and SIGTERM cancel it (its cleanup runs), or reach its own
graceful handler; the status says which signal."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from livetalk.cli._runtime import Runtime, run
from livetalk.cli._status import ExitStatus


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, ExitStatus.INTERRUPTED),
                                                (signal.SIGTERM, ExitStatus.TERMINATED)])
def test_a_signal_cancels_the_command_and_its_cleanup_runs(signum: signal.Signals,
                                                           status: ExitStatus) -> None:
    cleaned: list[str] = []

    async def command(runtime: Runtime) -> ExitStatus:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signum)
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0)  # cleanup may still await
            cleaned.append(runtime.reason)
        return ExitStatus.OK

    assert run(command) is status
    assert cleaned == [f"interrupted by {signum.name}"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handlers are removed


def test_a_graceful_command_ends_by_itself() -> None:
    async def command(runtime: Runtime) -> ExitStatus:
        stop = asyncio.Event()
        got: list[signal.Signals] = []
        runtime.graceful = lambda signum: (got.append(signum), stop.set())  # type: ignore[func-returns-value]
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await stop.wait()
        assert got == [signal.SIGTERM] and runtime.stopped is None
        return ExitStatus.OK

    assert run(command) is ExitStatus.OK


def test_a_second_signal_cancels_a_graceful_command() -> None:
    async def command(runtime: Runtime) -> ExitStatus:
        runtime.graceful = lambda signum: None  # ignores the first signal
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        loop.call_later(0.2, os.kill, os.getpid(), signal.SIGINT)
        await asyncio.sleep(30)
        return ExitStatus.OK

    assert run(command) is ExitStatus.INTERRUPTED
