"""livetalk's local server as its own pinned process, for the server CPU stage.

``python -m bench.local_server --cpu 1 [--frames]`` starts :func:`livetalk.server.serve` on
127.0.0.1 and prints ``READY <base_url> <pid>``; it serves until stdin closes. ``--frames``
makes the server's reply tracks hand stereo ``av.AudioFrame``s to aiortc
(``OutboundAudioTrack(preencode=False)``, what every track did before pre-encoding), so both
variants can be measured side by side; :mod:`bench.load_client` reads this process's CPU
time with ``--server-pid``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys

from livetalk.server import app, serve
from livetalk.transport.tracks import OutboundAudioTrack

__all__ = ["main"]


async def _serve() -> None:
    async with serve(port=0) as server:
        print("READY", server.base_url, os.getpid(), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main() -> None:
    """Parse the command line, pin, serve until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    parser.add_argument("--frames", action="store_true",
                        help="reply tracks send AudioFrames for aiortc to encode")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.frames:
        app.OutboundAudioTrack = functools.partial(  # type: ignore[misc]
            OutboundAudioTrack, preencode=False)
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
