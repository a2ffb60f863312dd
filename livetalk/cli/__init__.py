"""The ``livetalk`` command line: ``serve``, ``run``, ``demo``, ``talk``, ``devices``,
``script``, ``mint``.

One module per command, each with ``add_parser(subparsers)`` and an async ``main(args,
runtime)`` returning an :class:`ExitStatus`; the shared parts are ``_args`` (parser, help
format, argument types, shared options), ``_output`` (human and JSONL output, error
lines), ``_runtime`` (the event loop, signals, a closed stdout) and ``_status`` (the exit
statuses and the table deriving them from the exception classes).

The command line imports the library, never the reverse: no library module imports
``argparse`` or ``livetalk.cli`` (a test checks it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from livetalk import __version__
from livetalk.cli import demo, devices, mint, run, script, serve, talk
from livetalk.cli._args import HelpFormatter, Parser
from livetalk.cli._output import error_line
from livetalk.cli._runtime import Runtime, run as run_command
from livetalk.cli._status import ExitStatus, status_for

__all__ = ["ExitStatus", "build_parser", "main"]

COMMANDS = (serve, run, demo, talk, devices, script, mint)
"""The command modules, in the order ``livetalk --help`` lists them."""

DESCRIPTION = """\
Live voice with OpenAI's Realtime API over WebRTC, and a local Realtime-compatible server
for offline work. 'livetalk COMMAND --help' describes each command; docs/cli.md has them
all, with the exit statuses.

  livetalk demo                      the offline demo (needs the 'server' extra)
  livetalk serve --port 8765 --phrases livetalk/data/demo_phrases.txt
  livetalk run livetalk/data/demo.wav --base-url http://127.0.0.1:8765/v1 --api-key sk-local
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``livetalk`` argument parser, with every command."""
    parser = Parser(prog="livetalk", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"livetalk {__version__}")
    sub = parser.add_subparsers(dest="name", required=True, metavar="COMMAND",
                                parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``livetalk`` console script; returns the exit status.

    A user error (a :class:`~livetalk.errors.LivetalkError`, an output path that cannot be
    written) prints one line on stderr and exits with the status the exception's class maps
    to; an unexpected error shows its traceback (please report it).
    """
    args = build_parser().parse_args(argv)

    async def command(runtime: Runtime) -> ExitStatus:
        status: ExitStatus = await args.command(args, runtime)
        return status

    try:
        status = run_command(command)
    except KeyboardInterrupt:  # before the event loop took over the signals
        status = ExitStatus.INTERRUPTED
    except BrokenPipeError:
        status = ExitStatus.BROKEN_PIPE
    except Exception as exc:
        known = status_for(exc)
        if known is None:
            raise
        print(error_line(exc), file=sys.stderr)
        return known
    if status is ExitStatus.BROKEN_PIPE:
        _silence_stdout()
    elif status in _SIGNAL_MESSAGES:
        print(f"livetalk: {_SIGNAL_MESSAGES[status]}", file=sys.stderr)
    return status


_SIGNAL_MESSAGES = {ExitStatus.INTERRUPTED: "interrupted (SIGINT)",
                    ExitStatus.TERMINATED: "terminated (SIGTERM)"}


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush cannot fail."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
