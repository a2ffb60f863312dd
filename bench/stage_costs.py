"""CPU per second of audio for each stage of the media path.

Each stage runs on 10 s of synthetic speech-like audio (a modulated tone) in 20 ms or
100 ms pieces, the way a call feeds it, and is timed with ``time.process_time``; the
figure is CPU milliseconds per second of audio. aiortc's own encode path (a stereo frame
with its audio-level loop), which livetalk's pre-encoding track replaces, is measured beside.

    python -m bench.stage_costs
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import rtp
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from livetalk.audio.clock import ManualClock
from livetalk.audio.history import AudioHistory
from livetalk.audio.playout import PlayoutBuffer
from livetalk.audio.resample import Resampler
from livetalk.audio.vad import TurnDetector
from livetalk.transport.tracks import OutboundAudioTrack

SECONDS = 10.0


def _speechlike(rate: int, seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-rate modulation
    signal = np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 1330 * t)
    return (signal * envelope * 8000).astype(np.int16)


def _time(fn: Callable[[], Any]) -> float:
    """CPU ms per second of audio for one pass of ``fn`` over SECONDS of audio."""
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) * 1000 / SECONDS


def _frames48(pcm48: np.ndarray, stereo: bool) -> list[av.AudioFrame]:
    frames = []
    for i in range(0, pcm48.size - 959, 960):
        chunk = pcm48[i:i + 960]
        data = np.repeat(chunk, 2).reshape(1, -1) if stereo else chunk.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16",
                                           layout="stereo" if stereo else "mono")
        frame.sample_rate = 48000
        frame.pts = i
        frames.append(frame)
    return frames


async def _track_pass(pcm24: np.ndarray) -> float:
    """livetalk's outbound track: resample 24k -> 48k, pace (manual clock), encode mono."""
    clock = ManualClock(autoadvance=True)
    track = OutboundAudioTrack(clock=clock)
    track.enqueue(pcm24, 24000)
    frames = int(SECONDS * 50)
    t0 = time.process_time()
    for _ in range(frames):
        await track.recv()
    cost = (time.process_time() - t0) * 1000 / SECONDS
    track.stop()
    return cost


def measure() -> list[dict[str, Any]]:
    """Every stage's CPU ms per second of audio (livetalk, and aiortc's way where it has one)."""
    pcm24 = _speechlike(24000)
    pcm48 = _speechlike(48000)
    rows: list[dict[str, Any]] = []

    def add(stage: str, ms_per_s: float) -> None:
        rows.append({"stage": stage, "ms_per_s": round(ms_per_s, 3)})

    def resample_pass() -> None:
        r = Resampler(24000, 48000)
        for i in range(0, pcm24.size, 2400):
            r.process(pcm24[i:i + 2400])

    add("resample 24 -> 48 kHz (stateful, 100 ms chunks)", _time(resample_pass))

    add("outbound track: pace + resample + encode mono Opus (preencode)",
        asyncio.run(_track_pass(pcm24)))

    stereo = _frames48(pcm48, stereo=True)
    encoder = OpusEncoder()

    def aiortc_encode() -> None:
        for frame in stereo:
            rtp.compute_audio_level_dbov(frame)
            encoder.encode(frame)

    add("aiortc encode of a stereo frame + its audio-level loop (what preencode avoids)",
        _time(aiortc_encode))

    packets = [p for f in _frames48(pcm48, stereo=True) for p in OpusEncoder().encode(f)[0]]
    decoder = OpusDecoder()

    def decode() -> None:
        for i, payload in enumerate(packets):
            decoder.decode(JitterFrame(data=payload, timestamp=i * 960))

    add("aiortc Opus decode (receive side, its thread)", _time(decode))

    received = _frames48(pcm48, stereo=True)

    def downmix() -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
        for frame in received:
            for out in resampler.resample(frame):
                out.to_ndarray()

    add("remote track: downmix + resample 48k stereo -> 24k mono", _time(downmix))

    def playout() -> None:
        buf = PlayoutBuffer(24000, capacity_ms=2000, prebuffer_ms=60)
        out = np.zeros(480, dtype=np.int16)
        for i in range(0, pcm24.size, 480):
            buf.write(pcm24[i:i + 480])
            buf.read_into(out)

    add("playout buffer write + read (20 ms)", _time(playout))

    def vad() -> None:
        detector = TurnDetector(24000)
        for i in range(0, pcm24.size, 480):
            detector.feed(pcm24[i:i + 480])

    add("turn detector (webrtcvad + energy gate), 24 kHz", _time(vad))

    def history() -> None:
        h = AudioHistory(24000, 60)
        for i in range(0, pcm24.size, 480):
            h.write(pcm24[i:i + 480])

    add("sent-audio history (user-turn audio)", _time(history))
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| Stage | CPU ms per second of audio |", "|---|---|"]
    for row in rows:
        lines.append(f"| {row['stage']} | {row['livetalk_ms_per_s']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(measure()))
