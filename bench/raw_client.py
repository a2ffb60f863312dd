"""The baseline: the smallest raw-aiortc Realtime client, with aiortc's defaults.

What a developer writes by hand from aiortc's examples: an ``RTCPeerConnection``, the
``oai-events`` data channel, a paced track in the style of aiortc's ``AudioStreamTrack``
(48 kHz mono, 20 ms frames, sleeping on ``time.time()``), an httpx POST of the offer to
``/realtime/calls`` and a loop draining the remote track. The only non-default is offering
127.0.0.1 as an ICE candidate (:func:`livetalk.transport.ice.loopback_candidates`), without
which two peers on a loopback-only machine cannot connect at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections import deque

import av
import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.signals import Recording
from livetalk.transport.ice import loopback_candidates

__all__ = ["RawClient", "RawTrack"]

RATE = 48000
FRAME = 960


class RawTrack(MediaStreamTrack):
    """Paced 48 kHz mono frames from queued PCM (silence when nothing is queued)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: deque[np.ndarray] = deque()
        self.sent: list[tuple[int, float]] = []
        """(frame index, time it was handed to aiortc) of each frame that carried queued PCM."""
        self._start: float | None = None
        self._index = 0

    def enqueue(self, pcm: np.ndarray) -> None:
        """Queue 48 kHz int16 mono PCM (cut into 20 ms frames)."""
        for i in range(0, pcm.size, FRAME):
            chunk = np.zeros(FRAME, dtype=np.int16)
            part = pcm[i:i + FRAME]
            chunk[:part.size] = part
            self.queue.append(chunk)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(self._start + self._index * FRAME / RATE - time.time())
        if self.queue:
            samples = self.queue.popleft()
            self.sent.append((self._index, time.monotonic()))
        else:
            samples = np.zeros(FRAME, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._index * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._index += 1
        return frame


class RawClient:
    """One call: ``await RawClient.connect(base_url, api_key)``, then ``await close()``."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.track = RawTrack()
        self.received = Recording(RATE)
        self.call_id = ""
        self.connect_ms = 0.0
        self.frames_received = 0
        self._reader: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient()

    @classmethod
    async def connect(cls, base_url: str, api_key: str, timeout: float = 15.0) -> RawClient:
        """Open a call; returns once ``session.created`` arrived."""
        t0 = time.monotonic()
        self = cls()
        created = asyncio.get_running_loop().create_future()
        channel = self.pc.createDataChannel("oai-events")
        self.pc.addTrack(self.track)

        @channel.on("message")
        def on_message(message: str) -> None:
            if json.loads(message).get("type") == "session.created" and not created.done():
                created.set_result(None)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._reader = asyncio.ensure_future(self._drain(track))

        with loopback_candidates():
            await self.pc.setLocalDescription(await self.pc.createOffer())
        reply = await self._http.post(
            f"{base_url}/realtime/calls", content=self.pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/sdp"})
        reply.raise_for_status()
        self.call_id = reply.headers["Location"].rsplit("/", 1)[-1]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply.text, type="answer"))
        await asyncio.wait_for(created, timeout)
        self.connect_ms = (time.monotonic() - t0) * 1000
        return self

    async def _drain(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames_received += 1
                self.received.add(frame.to_ndarray().reshape(-1, 2)[:, 0])

    async def close(self, base_url: str, api_key: str) -> None:
        """Hang up, stop draining and close the peer connection."""
        with contextlib.suppress(httpx.HTTPError):
            await self._http.post(f"{base_url}/realtime/calls/{self.call_id}/hangup",
                                  headers={"Authorization": f"Bearer {api_key}"})
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()
        await self._http.aclose()
