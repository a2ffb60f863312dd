"""Tests for livetalk.recording without a network (the call round trip is in
tests/test_talk.py)."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from livetalk._feed import Feed
from livetalk.audio.sinks import BufferSink
from livetalk.audio.sources import ArraySource
from livetalk.errors import AudioFileError, CallClosedError
from livetalk.recording import Recorder, TeeSource


def ramp(n: int) -> np.ndarray:
    return (np.arange(n) % 20000 - 10000).astype(np.int16)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16), (
            w.getframerate()
        )


class CallStandIn:
    """The two things a Recorder uses from a Call: send_audio() and audio_chunks()."""

    def __init__(self) -> None:
        self.sent: list[tuple[np.ndarray, int]] = []
        self.audio: Feed[np.ndarray] = Feed(replay=False)

    def send_audio(self, pcm: np.ndarray, rate: int = 24000) -> None:
        self.sent.append((pcm, rate))

    def audio_chunks(self) -> AsyncIterator[np.ndarray]:
        return aiter(self.audio)


async def test_tee_source_records_exactly_what_it_yields() -> None:
    audio = ramp(24000 * 2 + 700)
    sink = BufferSink(24000)
    tee = TeeSource(ArraySource(audio, 24000), sink)
    chunks = [c async for c in tee]
    assert [c.size for c in chunks] == [2400] * 20 + [700]
    assert np.array_equal(np.concatenate(chunks), audio)
    assert np.array_equal(sink.array(), audio)
    assert tee.closed and sink.closed


async def test_tee_source_stopped_early_records_only_what_was_fed() -> None:
    sink = BufferSink(24000)
    async with TeeSource(ArraySource(ramp(24000), 24000), sink, close_sink=False) as tee:
        first = [await anext(tee), await anext(tee)]
    assert np.array_equal(sink.array(), np.concatenate(first))
    assert tee.source.closed and not sink.closed


async def test_tee_source_resamples_for_the_sink() -> None:
    tone = (8000 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.int16)
    sink = BufferSink(24000)
    chunks = [c async for c in TeeSource(ArraySource(tone, 16000), sink)]
    assert sum(c.size for c in chunks) == 16000  # the consumer still gets 16 kHz
    assert abs(sink.samples - 24000) <= 48
    level = np.sqrt(np.mean(sink.array()[2400:-2400].astype(np.float64) ** 2))
    assert level == pytest.approx(8000 / np.sqrt(2), rel=0.05)


async def test_recorder_writes_both_sides(tmp_path: Path) -> None:
    call = CallStandIn()
    rec = Recorder(call, user_path=tmp_path / "user.wav", assistant_path=tmp_path / "bot.wav")
    await asyncio.sleep(0)  # the assistant pump subscribes
    user = ramp(4800)
    await rec.send_audio(user[:2400])
    source = rec.tee(ArraySource(user[2400:], 24000))
    async for chunk in source:
        call.send_audio(chunk, 24000)
    reply = ramp(960)[::-1].copy()
    call.audio.publish(reply[:480])
    call.audio.publish(reply[480:])
    await rec.close()
    call.audio.publish(ramp(100))  # after close: not recorded
    got_user, rate = read_wav(tmp_path / "user.wav")
    assert rate == 24000 and np.array_equal(got_user, user)
    got_bot, _ = read_wav(tmp_path / "bot.wav")
    assert np.array_equal(got_bot, reply)
    assert [pcm.size for pcm, _ in call.sent] == [2400, 2400]


async def test_recorder_resamples_pushed_audio(tmp_path: Path) -> None:
    call = CallStandIn()
    async with Recorder(call, user_path=tmp_path / "user.flac") as rec:
        for _ in range(10):
            await rec.send_audio(np.full(1600, 3000, dtype=np.int16), 16000)
        assert rec.assistant_sink is None
    assert call.sent[0][1] == 16000
    import av

    with av.open(str(tmp_path / "user.flac")) as container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
        assert container.streams.audio[0].rate == 24000
    samples = np.concatenate(frames, axis=1).ravel()
    assert abs(samples.size - 24000) <= 48
    assert abs(int(np.median(samples)) - 3000) <= 3


async def test_recorder_ends_with_a_failed_call(tmp_path: Path) -> None:
    call = CallStandIn()
    rec = Recorder(call, assistant_path=tmp_path / "bot.wav")
    await asyncio.sleep(0)
    call.audio.publish(ramp(240))
    call.audio.close(CallClosedError("the call ended abnormally"))
    await asyncio.sleep(0)
    await rec.close()
    got, _ = read_wav(tmp_path / "bot.wav")
    assert np.array_equal(got, ramp(240))
    source = ArraySource(ramp(10), 24000)
    assert rec.tee(source) is source  # no user file


async def test_recorder_bad_path_is_an_audio_file_error(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError):
        Recorder(CallStandIn(), user_path=tmp_path / "user.wav",
                 assistant_path=tmp_path / "missing" / "bot.wav")
    await asyncio.sleep(0.01)
    got, _ = read_wav(tmp_path / "user.wav")  # the first file was still finished
    assert got.size == 0
