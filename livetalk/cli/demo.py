"""``livetalk demo``: the offline demo (a local server in-process, the bundled recording)."""

from __future__ import annotations

import argparse
from typing import Any

from livetalk._extras import require
from livetalk.cli._args import HelpFormatter, check_output_path, positive
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import ExitStatus
from livetalk.cli.run import RunOptions, printer_for, run_file

__all__ = ["add_parser", "main"]

DEMO_KEY = "sk-livetalk-demo"
"""The key the demo's call presents to its own local server."""

DESCRIPTION = """\
Start livetalk's local Realtime-compatible server in this process, open a real WebRTC call
to it, stream the bundled recording (livetalk.data.DEMO_WAV: three short questions), print
the transcript and the turns, and save the assistant's spoken replies to --out. The local
server hears with Whisper when the 'asr' extra is installed (else pocketsphinx, told the
recording's phrases, livetalk.data.DEMO_PHRASES) and its brain answers "You said: ...".
No network, no API key. Needs the 'server' extra.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the sub-commands."""
    p = sub.add_parser("demo", help="offline demo: a local server and a bundled recording",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--out", default="demo-reply.wav", metavar="OUT",
                   help="where to save the assistant's spoken replies")
    p.add_argument("--jsonl", action="store_true",
                   help="print one JSON object per line on stdout instead of text")
    p.add_argument("--speed", type=positive, default=1.0, metavar="N",
                   help="run the recording and the server's clock N times faster")
    p.set_defaults(command=main)


async def main(args: argparse.Namespace, runtime: Runtime) -> ExitStatus:
    """Run ``livetalk demo``."""
    require("server", "livetalk demo")
    check_output_path(args.out, "--out")
    from livetalk.data import DEMO_PHRASES, DEMO_WAV
    from livetalk.server import LocalServer
    from livetalk.server.asr import load_phrases
    from livetalk.server.whisper import whisper_missing

    printer = printer_for(args.jsonl, runtime)
    if whisper_missing() is None:  # open vocabulary: no phrase list needed
        ears: dict[str, Any] = {"asr": "whisper"}
    else:  # the light fallback is accurate only on the phrases the recording says
        ears = {"asr": "pocketsphinx", "phrases": load_phrases(DEMO_PHRASES)}
    async with LocalServer(port=0, realtime_factor=args.speed, **ears) as server:
        printer.message(f"local server on {server.base_url} (ears: {server.transcriber!r}); "
                        f"streaming {DEMO_WAV}")
        summary = await run_file(
            str(DEMO_WAV), RunOptions(base_url=server.base_url, api_key=DEMO_KEY,
                                      save_reply=args.out, speed=args.speed),
            printer, runtime)
    printer.message(f"saved the assistant's spoken replies to {args.out}")
    return ExitStatus.OK if summary.assistant_turns > 0 else ExitStatus.API
