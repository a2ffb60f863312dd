"""``livetalk talk``: a live conversation through the microphone and the speaker."""

from __future__ import annotations

import argparse
import asyncio
import signal

from livetalk.audio.echo import EchoMode
from livetalk.cli._args import (
    HelpFormatter,
    add_api_options,
    add_connect_timeout,
    add_model_option,
    device,
    require_api_key,
)
from livetalk.cli._output import Output
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import ExitStatus

__all__ = ["add_parser", "main"]

DESCRIPTION = """\
Talk with the model: your microphone goes to the call, the model's voice to your speaker,
and the transcript grows on the terminal as you both speak. The first Ctrl-C ends the
conversation and prints a summary (status 0); SIGTERM does the same with status 143; a
second signal stops at once.

With speakers the model can hear itself: --echo aec (the default when the 'aec' extra is
installed) cancels the echo of the model's voice so you can interrupt it; --echo half-duplex
(the default otherwise) mutes the microphone while the assistant speaks; --echo gate lets
the microphone through only when it is louder than the playback. With headphones say
--headphones (or --echo off) and interrupt at will.
Needs the 'devices' extra and the PortAudio library ('livetalk devices' lists devices).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``talk`` to the sub-commands."""
    p = sub.add_parser("talk", help="talk with the model through the microphone and speaker",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    add_api_options(p)
    add_model_option(p)
    p.add_argument("--input-device", type=device, metavar="DEVICE",
                   help="microphone: index or name from 'livetalk devices' (default: the "
                   "system's)")
    p.add_argument("--output-device", type=device, metavar="DEVICE",
                   help="speaker: index or name from 'livetalk devices' (default: the "
                   "system's)")
    p.add_argument("--echo", choices=[m.value for m in EchoMode], default=None,
                   help="echo control (default: aec when the 'aec' extra is installed, else "
                   "half-duplex; off with --headphones)")
    p.add_argument("--headphones", action="store_true",
                   help="you wear headphones: no echo control by default (full duplex)")
    add_connect_timeout(p)
    p.set_defaults(command=main)


async def main(args: argparse.Namespace, runtime: Runtime, *, sd: object = None) -> ExitStatus:
    """Run ``livetalk talk``; ``sd`` stands in for the sounddevice module in tests."""
    from livetalk.talk import talk

    require_api_key(args)
    stop = asyncio.Event()
    ended_by: list[signal.Signals] = []

    def end(signum: signal.Signals) -> None:
        ended_by.append(signum)
        stop.set()

    runtime.graceful = end
    await talk(
        base_url=args.base_url, api_key=args.api_key, model=args.model,
        input_device=args.input_device, output_device=args.output_device,
        echo=args.echo, headphones=args.headphones, sd=sd, out=Output(runtime), stop=stop,
        connect_timeout=args.connect_timeout,
    )
    if ended_by == [signal.SIGTERM]:
        return ExitStatus.TERMINATED
    return ExitStatus.OK
