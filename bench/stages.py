"""One measurement per function: the building blocks that :mod:`bench.run_all` repeats.

Every function opens its own call, measures once, closes it and returns plain numbers (ms
unless named otherwise), so the runner can alternate livetalk and the baseline and take
medians. ``low_latency`` means :func:`livetalk.transport.jitter.set_peer_receive_prefetch`
with :data:`~livetalk.transport.jitter.LOW_LATENCY_PREFETCH` applied right after connect.
"""

from __future__ import annotations

import asyncio
import base64
import cProfile
import io
import pstats
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

import livetalk
from bench.echo_peer import EchoPeer, EchoTrack
from bench.raw_client import RawClient
from bench.signals import MeasurementError, Recording, chirp, chirp_latency, tone
from livetalk.audio.resample import resample
from livetalk.audio.sources import ArraySource
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from livetalk.server.tts import Synthesizer, render_turns

__all__ = [
    "API_KEY",
    "LatencySample",
    "accelerated_feed",
    "connect_livetalk",
    "connect_raw",
    "latency_livetalk",
    "latency_raw",
    "profile_call",
    "reply_delay_webrtc",
    "reply_delay_websocket",
    "speech_sample",
]

API_KEY = "sk-bench-local"
_LOUD = 1000
"""Reply audio louder than this (int16) counts as speech."""
_SETTLE_S = 0.3
_LISTEN_S = 0.5


@dataclass(frozen=True)
class LatencySample:
    """One chirp measurement of each direction over one call (ms)."""

    down_ms: float
    """Far end hands a frame to aiortc -> the client's audio consumer has it (echo - up)."""
    up_ms: float
    """The client's track hands a frame to aiortc -> the far end has it decoded."""
    echo_ms: float
    """Client send -> far end returns it at once -> client consumer (round trip)."""


# ------------------------------------------------------------------------------ connect
async def connect_livetalk(base_url: str) -> float:
    """Milliseconds from calling ``livetalk.connect`` to a usable call (``session.created``)."""
    t0 = time.monotonic()
    call = await livetalk.connect(base_url=base_url, api_key=API_KEY)
    elapsed = (time.monotonic() - t0) * 1000
    await call.close()
    return elapsed


async def connect_raw(base_url: str) -> float:
    """The same for the raw-aiortc client."""
    client = await RawClient.connect(base_url, API_KEY)
    await client.close(base_url, API_KEY)
    return client.connect_ms


# ------------------------------------------------------------------------------ latency
async def latency_livetalk(peer: EchoPeer, *, low_latency: bool, repeats: int = 2
                           ) -> list[LatencySample]:
    """Chirp latencies over one livetalk call to an echo peer."""
    call = await livetalk.connect(base_url=peer.base_url, api_key=API_KEY,
                                  low_latency=low_latency)
    try:
        transport: Any = call._transport
        heard = Recording(24000)
        transport.add_audio_consumer(heard.add)
        sent: list[float] = []
        call.outbound_track.on_frame_sent = lambda _ms: sent.append(time.monotonic())
        await asyncio.sleep(_SETTLE_S)

        async def send_chirp() -> float:
            sent.clear()
            call.send_audio(chirp(24000), 24000)
            await asyncio.sleep(_LISTEN_S)
            return sent[0]

        return await _measure(peer, heard, send_chirp, repeats)
    finally:
        await call.close()


async def latency_raw(peer: EchoPeer, *, repeats: int = 2) -> list[LatencySample]:
    """Chirp latencies over one raw-aiortc call to an echo peer."""
    client = await RawClient.connect(peer.base_url, API_KEY)
    try:
        await asyncio.sleep(_SETTLE_S)

        async def send_chirp() -> float:
            before = len(client.track.sent)
            client.track.enqueue(chirp(48000))
            await asyncio.sleep(_LISTEN_S)
            return client.track.sent[before][1]

        return await _measure(peer, client.received, send_chirp, repeats)
    finally:
        await client.close(peer.base_url, API_KEY)


async def _measure(peer: EchoPeer, heard: Recording, send_chirp: Any, repeats: int
                   ) -> list[LatencySample]:
    track = peer.latest.track
    assert isinstance(track, EchoTrack), "the latency stage needs an echo peer"
    out = []
    for _ in range(repeats):
        heard.mark()
        track.received.mark()
        sent_at = await send_chirp()
        heard.stop()
        track.received.stop()
        up = chirp_latency(track.received, chirp(48000), sent_at)
        echo = chirp_latency(heard, chirp(heard.rate), sent_at)
        out.append(LatencySample(down_ms=echo - up, up_ms=up, echo_ms=echo))
    return out


# ------------------------------------------------------------------------------ end of speech
def speech_sample(synthesizer: Synthesizer, phrase: str, *, tail_s: float = 3.0
                  ) -> tuple[np.ndarray, float]:
    """One spoken phrase at 24 kHz followed by silence, and where its speech ends (ms)."""
    pcm, rate = synthesizer.synthesize(phrase)
    speech = resample(pcm, rate, 24000)
    loud = np.flatnonzero(np.abs(speech.astype(np.int32)) > 200)
    end_ms = (loud[-1] + 1) * 1000 / 24000
    lead = np.zeros(12000, dtype=np.int16)
    audio = np.concatenate([lead, speech, np.zeros(round(tail_s * 24000), dtype=np.int16)])
    return audio, end_ms + 500


def _first_loud_after(heard: Recording, after: float) -> float | None:
    pcm = heard.pcm()
    for index in np.flatnonzero(np.abs(pcm.astype(np.int32)) > _LOUD):
        at = heard.delivery_time(int(index))
        if at > after:
            return at
    return None


async def reply_delay_webrtc(base_url: str, audio: np.ndarray, end_ms: float,
                             *, timeout: float = 10.0) -> float:
    """End of the user's speech -> first reply audio at the client, with livetalk (ms)."""
    call = await livetalk.connect(base_url=base_url, api_key=API_KEY)
    try:
        transport: Any = call._transport
        heard = Recording(24000)
        transport.add_audio_consumer(heard.add)
        heard.mark()
        frames: list[tuple[float, float]] = []
        call.outbound_track.on_frame_sent = lambda ms: frames.append((ms, time.monotonic()))
        streaming = asyncio.ensure_future(call.stream(ArraySource(audio, 24000)))
        deadline = time.monotonic() + audio.size / 24000 + timeout
        reply_at = None
        while reply_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if frames and frames[-1][0] >= end_ms:
                origin = min(t - (ms - 20) / 1000 for ms, t in frames)
                reply_at = _first_loud_after(heard, origin + end_ms / 1000)
        streaming.cancel()
        await asyncio.gather(streaming, return_exceptions=True)
        if reply_at is None:
            raise MeasurementError("no reply audio over WebRTC")
        return (reply_at - origin - end_ms / 1000) * 1000
    finally:
        await call.close()


async def reply_delay_websocket(base_url: str, audio: np.ndarray, end_ms: float,
                                *, timeout: float = 10.0) -> float:
    """The same with the official ``openai`` SDK over WebSocket (100 ms appends, real time)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY)
    heard = Recording(24000)
    heard.mark()
    step = 2400
    async with client.realtime.connect(model="gpt-realtime") as conn:
        async for event in conn:
            if event.type == "session.created":
                break
        origin = time.monotonic()

        async def feed() -> None:
            for i in range(0, audio.size, step):
                # a chunk leaves when a microphone would have captured its last sample
                await asyncio.sleep(max(0.0, origin + (i + step) / 24000 - time.monotonic()))
                chunk = audio[i:i + step].astype("<i2").tobytes()
                await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())

        feeding = asyncio.ensure_future(feed())
        end_at = origin + end_ms / 1000
        reply_at = None
        try:
            async with asyncio.timeout(audio.size / 24000 + timeout):
                async for event in conn:
                    if event.type == "response.output_audio.delta":
                        pcm = np.frombuffer(base64.b64decode(event.delta), dtype="<i2")
                        heard.add(pcm.astype(np.int16))
                        reply_at = _first_loud_after(heard, end_at)
                        if reply_at is not None:
                            break
        finally:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
    await client.close()
    if reply_at is None:
        raise MeasurementError("no reply audio over WebSocket")
    return (reply_at - end_at) * 1000


# ------------------------------------------------------------------------------ accelerated
ACCELERATED_PHRASES = (
    "hello can you hear me",
    "what is the weather like today",
    "please turn on the lights in the kitchen",
    "what time is it",
    "set a timer for ten minutes",
    "play some music in the living room",
    "how far is the station",
    "thank you goodbye",
)


@dataclass(frozen=True)
class AcceleratedResult:
    """One accelerated run: how long it took and how many user turns came back right."""

    audio_s: float
    wall_s: float
    phrases: int
    user_turns: int
    correct: int


async def accelerated_feed(make_server: Any, synthesizer: Synthesizer, *, audio_s: float,
                           speed: float) -> AcceleratedResult:
    """Feed a multi-turn recording of about ``audio_s`` seconds at ``speed`` x real time."""
    sequence: list[str] = []
    total_s = 0.5
    while total_s < audio_s:
        phrase = ACCELERATED_PHRASES[len(sequence) % len(ACCELERATED_PHRASES)]
        pcm, rate = synthesizer.synthesize(phrase)
        sequence.append(phrase)
        total_s += pcm.size / rate + 1.5
    pcm = render_turns(sequence, gap_s=1.5, rate=24000, synthesizer=synthesizer)
    config = SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                           turn_detection=ServerVAD(silence_duration_ms=500))
    # pocketsphinx told the phrases hears them word for word, so `correct` counts exact turns
    async with make_server(realtime_factor=speed, phrases=list(ACCELERATED_PHRASES),
                           asr="pocketsphinx") as srv:
        t0 = time.monotonic()
        async with livetalk.connect(base_url=srv.base_url, api_key=API_KEY, session=config,
                                    speed=speed) as call:
            await call.stream(ArraySource(pcm, 24000))
            try:
                await call.wait_for_turns(len(sequence), role="user",
                                          timeout=5.0 + pcm.size / 24000 / speed)
            except TimeoutError:
                pass
            user = [t for t in call.turns_so_far if t.role == "user"]
        wall = time.monotonic() - t0
    correct = sum(t.text == p for t, p in zip(user, sequence, strict=False))
    return AcceleratedResult(audio_s=pcm.size / 24000, wall_s=wall, phrases=len(sequence),
                             user_turns=len(user), correct=correct)


# ------------------------------------------------------------------------------ profile
async def profile_call(base_url: str, *, seconds: float, top: int = 15) -> dict[str, Any]:
    """cProfile the event-loop thread over one livetalk call streaming a tone both ways.

    Returns the CPU seconds of the process (all threads), the time the loop sat idle in
    ``epoll``, and the ``top`` functions by own time (idle excluded).
    """
    call = await livetalk.connect(base_url=base_url, api_key=API_KEY)
    try:
        await asyncio.sleep(0.5)
        profiler = cProfile.Profile()
        cpu0 = time.process_time()
        profiler.enable()
        call.send_audio(tone(seconds, 24000), 24000)
        await asyncio.sleep(seconds)
        profiler.disable()
        cpu = time.process_time() - cpu0
    finally:
        await call.close()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    idle = 0.0
    for (path, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "poll' of 'select" in name:  # the loop waiting for I/O: idle, not work
            idle += own
            continue
        rows.append({"function": f"{_short(path)}:{line}({name})", "calls": calls,
                     "own_ms": round(own * 1000, 1), "cumulative_ms": round(cumulative * 1000, 1)})
    rows.sort(key=lambda r: r["own_ms"], reverse=True)
    return {"seconds": seconds, "cpu_s": round(cpu, 3), "loop_idle_s": round(idle, 3),
            "top": rows[:top]}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/livetalk/", "/bench/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1] if marker == "site-packages/" else (
                marker.strip("/") + "/" + path.split(marker, 1)[1])
    return path
