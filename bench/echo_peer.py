"""A minimal far end for the benchmarks: an aiortc answerer behind ``POST /v1/realtime/calls``.

It speaks just enough of the Realtime API for both clients to connect (multipart or raw SDP,
``Location: .../rtc_<hex>``, ``session.created`` on ``oai-events``, ``.../hangup``) and keeps
aiortc's defaults everywhere, so only the client side changes between runs. Two modes:

* ``echo``: every received frame is sent straight back, and can be recorded with the time it
  was decoded: a chirp's arrival there is the one-way latency up, its return to the client
  the round trip, and the difference the one-way latency down.
* ``tone``: sends a pre-encoded Opus tone (no encoding cost, see docs/platform-notes.md, for
  load tests) and drains what it receives.

Run it alone, pinned to a core, for the load stages::

    python -m bench.echo_peer --mode tone --cpu 1   # prints "READY http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiohttp import BodyPartReader, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.signals import Recording, tone
from livetalk.protocol.session import default_session
from livetalk.transport.ice import loopback_candidates

__all__ = ["EchoPeer", "PeerCall", "encode_tone"]

RATE = 48000
FRAME = 960
_TIME_BASE = fractions.Fraction(1, RATE)


def encode_tone(seconds: float = 1.0) -> list[bytes]:
    """Opus packets (20 ms, 48 kHz stereo) of a 440 Hz tone that loops seamlessly."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = 64000
    codec.sample_rate = RATE
    codec.layout = "stereo"
    codec.format = "s16"
    codec.time_base = _TIME_BASE
    stereo = np.repeat(tone(seconds, RATE), 2)
    packets: list[bytes] = []
    for k in range(stereo.size // (2 * FRAME)):
        frame = av.AudioFrame.from_ndarray(
            stereo[2 * FRAME * k: 2 * FRAME * (k + 1)].reshape(1, -1), format="s16",
            layout="stereo")
        frame.sample_rate = RATE
        frame.pts = k * FRAME
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets


class EchoTrack(MediaStreamTrack):
    """Returns every frame received on ``source`` at once; :attr:`received` can record them."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source
        self.received = Recording(RATE)
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        frame = await self._source.recv()
        pairs = frame.to_ndarray().reshape(-1, 2)
        self.received.add(pairs[:, 0])
        out = av.AudioFrame.from_ndarray(pairs.reshape(1, -1), format="s16", layout="stereo")
        out.sample_rate = RATE
        out.pts = self._pts
        out.time_base = _TIME_BASE
        self._pts += pairs.shape[0]
        return out


class ToneTrack(MediaStreamTrack):
    """Paced pre-encoded Opus packets (aiortc's sender only packetizes them)."""

    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self._packets = packets
        self._start: float | None = None
        self._index = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._index * FRAME / RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self._packets[self._index % len(self._packets)])
        packet.pts = self._index * FRAME
        packet.time_base = _TIME_BASE
        self._index += 1
        return packet


@dataclass
class PeerCall:
    """One answered call."""

    id: str
    pc: RTCPeerConnection
    track: EchoTrack | ToneTrack | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def read_offer(request: web.Request) -> str:
    """The SDP of a raw ``application/sdp`` body or of the multipart ``sdp`` part."""
    if request.content_type != "multipart/form-data":
        return await request.text()
    async for part in await request.multipart():
        if isinstance(part, BodyPartReader) and part.name == "sdp":
            return (await part.read(decode=True)).decode("utf-8")
    raise web.HTTPBadRequest(text="no sdp part")


async def drain(track: MediaStreamTrack) -> None:
    """Read a remote track until it ends, so aiortc's receive queue does not grow."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


class EchoPeer:
    """The far end; ``async with EchoPeer() as peer:`` then connect to :attr:`base_url`.

    Args:
        mode: ``"echo"`` or ``"tone"`` (see the module docstring).
        port: TCP port on 127.0.0.1; 0 picks a free one.
    """

    def __init__(self, *, mode: str = "echo", port: int = 0) -> None:
        if mode not in ("echo", "tone"):
            raise ValueError(f"mode must be 'echo' or 'tone', got {mode!r}")
        self.mode = mode
        self.port = port
        self.calls: dict[str, PeerCall] = {}
        self._packets = encode_tone() if mode == "tone" else []
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def latest(self) -> PeerCall:
        """The most recently answered call."""
        return list(self.calls.values())[-1]

    async def __aenter__(self) -> EchoPeer:
        app = web.Application()
        app.router.add_post("/v1/realtime/calls", self._answer)
        app.router.add_post("/v1/realtime/calls/{call_id}/hangup", self._hangup)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for call in list(self.calls.values()):
            await self._close(call)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        sdp = await read_offer(request)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        call = PeerCall(id="rtc_" + secrets.token_hex(8), pc=pc)

        @pc.on("track")
        def on_track(remote: MediaStreamTrack) -> None:
            if self.mode == "echo":
                call.track = EchoTrack(remote)
            else:
                call.track = ToneTrack(self._packets)
                call.tasks.append(asyncio.ensure_future(drain(remote)))

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            channel.send(json.dumps({"type": "session.created", "event_id": "event_bench",
                                     "session": default_session()}))

        with loopback_candidates():
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            assert call.track is not None, "the offer has no audio"
            pc.addTrack(call.track)
            await pc.setLocalDescription(await pc.createAnswer())
        self.calls[call.id] = call
        return web.Response(status=201, text=pc.localDescription.sdp,
                            content_type="application/sdp",
                            headers={"Location": f"/v1/realtime/calls/{call.id}"})

    async def _hangup(self, request: web.Request) -> web.Response:
        call = self.calls.get(request.match_info["call_id"])
        if call is not None:
            await self._close(call)
        return web.Response(status=200)

    async def _close(self, call: PeerCall) -> None:
        self.calls.pop(call.id, None)
        for task in call.tasks:
            task.cancel()
        await asyncio.gather(*call.tasks, return_exceptions=True)
        await call.pc.close()


async def _serve(mode: str, port: int) -> None:
    async with EchoPeer(mode=mode, port=port) as peer:
        print("READY", peer.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main() -> None:
    """Serve until stdin closes (the parent process ends it that way)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("echo", "tone"), default="tone")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(_serve(args.mode, args.port))


if __name__ == "__main__":
    main()
