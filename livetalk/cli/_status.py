"""Exit statuses of the ``livetalk`` command, and the one table that maps errors to them.

The status of a failure is derived from the class of the exception: :data:`ERROR_STATUS` is
searched in order and the first class the exception is an instance of wins, so more
specific classes come before their bases (a test checks that no row hides a later one).
``docs/cli.md`` shows the same table.
"""

from __future__ import annotations

import enum

from livetalk import errors

__all__ = ["ERROR_STATUS", "ExitStatus", "status_for", "status_for_class"]


class ExitStatus(enum.IntEnum):
    """Every status ``livetalk`` exits with."""

    OK = 0
    """Success."""
    FAILED = 1
    """An unexpected internal error (please report it); for ``script``: an expectation
    failed or a turn could not be measured."""
    USAGE = 2
    """Bad arguments or input: an unreadable or non-audio file, an unwritable output, an
    invalid config, a missing optional extra."""
    AUTH = 3
    """The key was refused (401/403), or there is no API key at all."""
    CONNECT = 4
    """The server could not be reached, or the call did not connect."""
    TIMEOUT = 5
    """Timed out (connecting, or waiting for the last reply)."""
    API = 6
    """The API answered with another error, or the call failed mid-way."""
    DEVICE = 7
    """No audio device, or no PortAudio library."""
    INTERRUPTED = 130  # 128 + SIGINT, as shells report it
    """Interrupted by Ctrl-C (SIGINT): 130."""
    BROKEN_PIPE = 141  # 128 + SIGPIPE
    """The reader of stdout went away (``livetalk run --jsonl | head -1``): 141, quietly."""
    TERMINATED = 143  # 128 + SIGTERM
    """Stopped by SIGTERM: 143."""


ERROR_STATUS: tuple[tuple[type[BaseException], ExitStatus], ...] = (
    (errors.MissingAPIKeyError, ExitStatus.AUTH),
    (errors.MissingExtraError, ExitStatus.USAGE),
    (errors.AuthenticationError, ExitStatus.AUTH),
    (TimeoutError, ExitStatus.TIMEOUT),  # ConnectTimeout and every other timeout
    (errors.AudioDeviceError, ExitStatus.DEVICE),
    (errors.ConfigError, ExitStatus.USAGE),
    (errors.AudioError, ExitStatus.USAGE),
    (errors.APIStatusError, ExitStatus.API),
    (errors.SignalingError, ExitStatus.CONNECT),
    (errors.ConnectError, ExitStatus.CONNECT),
    (errors.ServerError, ExitStatus.API),
    (errors.CallClosedError, ExitStatus.API),
    (errors.RemoteProtocolError, ExitStatus.API),
    (errors.LivetalkError, ExitStatus.FAILED),
    (OSError, ExitStatus.USAGE),  # an output path that cannot be written
)
"""``(exception class, status)``, most specific first; the first match wins."""


def status_for_class(cls: type[BaseException]) -> ExitStatus | None:
    """The exit status of an error of class ``cls``; None when the table has no row for it
    (an unexpected error: the command shows its traceback)."""
    for error_class, status in ERROR_STATUS:
        if issubclass(cls, error_class):
            return status
    return None


def status_for(exc: BaseException) -> ExitStatus | None:
    """The exit status of ``exc``; None for an unexpected error."""
    return status_for_class(type(exc))
