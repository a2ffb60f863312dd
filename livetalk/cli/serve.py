"""``livetalk serve``: the local Realtime-compatible server, in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from livetalk._extras import require
from livetalk.cli._args import HelpFormatter, port, positive
from livetalk.cli._output import Output
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import ExitStatus

__all__ = ["add_parser", "main"]

LOGGER = "livetalk.server"
"""The logger the server writes its one line per call to."""

DESCRIPTION = """\
Serve the Realtime API's calls, WebSocket and client-secret endpoints on HOST:PORT, with
real WebRTC, Whisper ears (pocketsphinx without the 'asr' extra) and an espeak-ng voice:
offline development and tests, no API key. The first line on stdout is "listening on
http://HOST:PORT/v1"; then stderr gets one line per call (connected, closed, errors).
SIGINT or SIGTERM stops it (status 0). Needs the 'server' extra.

Whisper (pip install 'livetalk[asr]') hears free English; --phrases biases it toward the
words you list. The pocketsphinx fallback is accurate only on the phrases of --phrases (the
bundled recording's are in livetalk/data/demo_phrases.txt); without a list it mishears
most of what is said. --brain chat answers with any OpenAI-compatible Chat Completions
endpoint (a llama.cpp or vLLM server) instead of the echo.

  livetalk serve --port 8765 --phrases livetalk/data/demo_phrases.txt
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the sub-commands."""
    p = sub.add_parser("serve", help="run the local Realtime-compatible server",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=port, default=8765, help="TCP port (0: any free port)")
    p.add_argument("--api-key", metavar="KEY",
                   help="accept only this standard key (default: any key starting sk-)")
    p.add_argument("--phrases", metavar="FILE",
                   help="phrase list, one per line: Whisper's hot words; the only sentences "
                   "pocketsphinx recognises")
    p.add_argument("--asr", choices=["auto", "whisper", "pocketsphinx"], default="auto",
                   help="the recogniser (auto: Whisper with the 'asr' extra, else pocketsphinx)")
    p.add_argument("--whisper-model", metavar="DIR",
                   help="a CTranslate2 Whisper model directory (default: the packaged tiny.en)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--reply", choices=["echo"], default="echo",
                       help="the brain: echo answers 'You said: ...'")
    group.add_argument("--script", metavar="FILE",
                       help="answer with scripted replies from FILE (text lines, JSON or YAML)")
    group.add_argument("--brain", choices=["echo", "chat"],
                       help="chat: answer with an OpenAI-compatible Chat Completions endpoint")
    p.add_argument("--chat-base-url", metavar="URL",
                   help="the chat endpoint's API root, e.g. http://127.0.0.1:8080/v1 (its key, "
                   "if any, in LIVETALK_CHAT_API_KEY)")
    p.add_argument("--chat-model", metavar="NAME", help="the model the chat endpoint serves")
    p.add_argument("--realtime-factor", type=positive, default=1.0, metavar="N",
                   help="run the media clock N times faster than real time (clients then "
                   "use --speed N)")
    p.add_argument("--fault", action="append", default=[], metavar="NAME",
                   help="inject a fault, e.g. calls-429 or rtp-loss=0.05 (repeatable; "
                   "docs/reliability.md lists them)")
    p.add_argument("--max-call-s", type=positive, default=3600.0, metavar="S",
                   help="session length limit in seconds (the API's)")
    p.add_argument("--tls-cert", metavar="PEM",
                   help="serve https:// and wss:// with this certificate (chain); needs --tls-key")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    loudness = p.add_mutually_exclusive_group()
    loudness.add_argument("--verbose", "-v", action="store_true",
                          help="also log each request and the server's debug messages")
    loudness.add_argument("--quiet", "-q", action="store_true",
                          help="no line per call; warnings and errors only")
    p.set_defaults(command=main)


def configure_logging(*, verbose: bool, quiet: bool) -> None:
    """Send the server's log to stderr: one line per call, more with ``verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger(LOGGER)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logging.getLogger(f"{LOGGER}.access").setLevel(logging.INFO if verbose else logging.WARNING)


async def main(args: argparse.Namespace, runtime: Runtime) -> ExitStatus:
    """Run ``livetalk serve`` until SIGINT or SIGTERM."""
    require("server", "livetalk serve")
    from livetalk.server import LocalServer
    from livetalk.server.faults import Faults

    brain: Any = args.script or args.reply
    if args.brain == "chat":
        from livetalk.server.chat import ChatBrain

        brain = ChatBrain(args.chat_base_url or "", args.chat_model or "")
    server = LocalServer(host=args.host, port=args.port, api_key=args.api_key, brain=brain,
                         phrases=args.phrases, asr=args.asr, whisper_model=args.whisper_model,
                         realtime_factor=args.realtime_factor,
                         faults=Faults.parse(args.fault), max_call_s=args.max_call_s,
                         tls_cert=args.tls_cert, tls_key=args.tls_key)
    configure_logging(verbose=args.verbose, quiet=args.quiet)
    stop = asyncio.Event()
    runtime.graceful = lambda signum: stop.set()  # set before the URL is printed: no race
    await server.start()
    try:
        Output(runtime).write(f"listening on {server.base_url}\n")
        await stop.wait()
    finally:
        await server.stop()
        if not args.quiet:
            print("stopped", file=sys.stderr, flush=True)
    return ExitStatus.OK
