"""Audio through livetalk.testing.memory: one continuous resampling per stream, and
``Call.stream(path)`` decoding a file at the rate its transport sends."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import livetalk
from livetalk.audio.resample import Resampler
from livetalk.audio.sources import ArraySource
from livetalk.testing import MemoryTransport, memory_session
from tests.resampling import spy_on_resampling

KEY = "sk-test-memory"


def sweep(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(np.sin(2 * np.pi * (200 * t + 4000 * t**2)) * 8000).astype(np.int16)


def test_send_audio_at_another_rate_is_one_continuous_stream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = spy_on_resampling(monkeypatch)
    transport = MemoryTransport(memory_session())
    fed: list[np.ndarray] = []
    transport.on_sent_audio = fed.append
    pcm = sweep(48000, 1.0)
    for k in range(0, pcm.size, 4800):
        transport.send_audio(pcm[k:k + 4800], 48000)
    # one resampler for the whole stream: exactly what one Resampler makes of the whole
    assert len(log.calls) == 1 and log.calls_of(48000, 24000) == 10
    whole = Resampler(48000, 24000).process(pcm)
    assert np.concatenate(fed).tolist() == whole.tolist()


async def test_play_flushes_the_resampler_at_the_end() -> None:
    transport = MemoryTransport(memory_session(speed=50.0))
    fed: list[np.ndarray] = []
    transport.on_sent_audio = fed.append
    pcm = sweep(16000, 0.5)
    await transport.play(ArraySource(pcm, 16000))
    assert sum(f.size for f in fed) == 12000  # all of it: the filter's last samples too


async def test_call_stream_decodes_a_file_at_the_transports_input_rate(tmp_path: Path) -> None:
    path = tmp_path / "question.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(sweep(48000, 0.3).astype("<i2").tobytes())

    class Rated(MemoryTransport):
        input_rate = 48000  # as WebRTC's
        rates: list[int] = []

        async def play(self, source: Any) -> None:
            self.rates.append(source.rate)
            await super().play(source)

    transport = Rated(memory_session(speed=50.0))
    async with livetalk.connect(transport=transport, api_key=KEY, speed=50.0) as call:
        await call.stream(path)
    assert transport.rates == [48000]
