"""Tests for livetalk.audio.sinks."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from livetalk.audio.format import rms_dbfs
from livetalk.audio.sinks import (
    AudioSink,
    BufferSink,
    ChunkQueueSink,
    NullSink,
    Sink,
    TeeSink,
    WavSink,
)
from livetalk.errors import AudioError, AudioFileError, AudioFormatError


def sine(rate: int, seconds: float, amp: float = 10000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(np.sin(2 * np.pi * 500 * t) * amp).astype(np.int16)


async def test_wav_sink_writes_exact_pcm(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    pcm = np.arange(-5000, 5000, dtype=np.int16)
    async with WavSink(path, rate=16000) as sink:
        assert isinstance(sink, Sink)
        for i in range(0, pcm.size, 1600):
            await sink.write(pcm[i : i + 1600])
        assert sink.samples == pcm.size and sink.duration == pytest.approx(10000 / 16000)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert data.tolist() == pcm.tolist()


@pytest.mark.parametrize(
    ("ext", "codec"),
    [("ogg", "opus"), ("opus", "opus"), ("flac", "flac"), ("mp3", "mp3"), ("m4a", "aac")],
)
async def test_wav_sink_other_formats(tmp_path: Path, ext: str, codec: str) -> None:
    path = tmp_path / f"out.{ext}"
    pcm = sine(24000, 1.0)
    async with WavSink(path) as sink:
        for i in range(0, pcm.size, 2400):
            await sink.write(pcm[i : i + 2400])
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name.startswith(codec)
        to_s16 = av.AudioResampler(format="s16", layout="mono")
        decoded = np.concatenate(
            [g.to_ndarray()[0] for f in container.decode(stream) for g in to_s16.resample(f)]
        )
    assert rms_dbfs(decoded) == pytest.approx(rms_dbfs(pcm), abs=1.5)


async def test_wav_sink_opus_unsupported_rate_is_resampled(tmp_path: Path) -> None:
    path = tmp_path / "odd.opus"
    async with WavSink(path, rate=22050) as sink:
        await sink.write(sine(22050, 0.5))
    with av.open(str(path)) as container:
        frames = list(container.decode(container.streams.audio[0]))
    assert 0.45 <= sum(f.samples for f in frames) / frames[0].sample_rate <= 0.6


def test_wav_sink_cannot_create(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="nodir"):
        WavSink(tmp_path / "nodir" / "x.wav")
    with pytest.raises(AudioFileError, match="nodir"):
        WavSink(tmp_path / "nodir" / "x.flac")
    with pytest.raises(AudioFileError, match=r"x\.unknownext"):
        WavSink(tmp_path / "x.unknownext")
    assert not (tmp_path / "x.unknownext").exists()


async def test_write_validates_and_refuses_after_close() -> None:
    sink = NullSink()
    with pytest.raises(AudioFormatError):
        await sink.write(np.zeros(10, dtype=np.float32))
    await sink.write(np.zeros(10, dtype=np.int16))
    await sink.close()
    await sink.close()
    assert sink.closed and sink.samples == 10
    with pytest.raises(AudioError, match="closed"):
        await sink.write(np.zeros(10, dtype=np.int16))


async def test_buffer_sink_keeps_a_copy() -> None:
    sink = BufferSink(rate=8000)
    block = np.ones(3000, dtype=np.int16)
    for _ in range(3):
        await sink.write(block)
        block[:] += 1  # the producer reuses its buffer
    out = sink.array()
    assert out.tolist() == [1] * 3000 + [2] * 3000 + [3] * 3000
    assert sink.samples == 9000 and sink.duration == pytest.approx(9000 / 8000)
    sink.clear()
    assert sink.array().size == 0


async def test_chunk_queue_sink_iterates_until_closed() -> None:
    sink = ChunkQueueSink(maxsize=10)

    async def produce() -> None:
        for i in range(5):
            await sink.write(np.full(4, i, dtype=np.int16))
            await asyncio.sleep(0)
        await sink.close()

    task = asyncio.create_task(produce())
    got = [int(c[0]) async for c in sink]
    await task
    assert got == [0, 1, 2, 3, 4]
    assert sink.dropped == 0


async def test_chunk_queue_sink_drops_oldest_when_full() -> None:
    sink = ChunkQueueSink(rate=1000, maxsize=3)
    for i in range(5):
        await sink.write(np.full(10, i, dtype=np.int16))
    assert sink.dropped == 2 and sink.dropped_samples == 20
    assert sink.queued == 3 and sink.queued_ms == 30.0
    await sink.close()
    assert [int(c[0]) async for c in sink] == [2, 3, 4]


def test_chunk_queue_sink_rejects_bad_size() -> None:
    with pytest.raises(ValueError):
        ChunkQueueSink(maxsize=0)


async def test_tee_sink_writes_everywhere_and_closes_all() -> None:
    a, b = BufferSink(), NullSink()
    async with TeeSink(a, b) as tee:
        assert tee.rate == 24000
        await tee.write(np.arange(100, dtype=np.int16))
    assert a.array().tolist() == list(range(100))
    assert b.samples == 100
    assert a.closed and b.closed


async def test_tee_sink_close_survives_a_failing_sink() -> None:
    class Broken(AudioSink):
        async def _write(self, pcm: np.ndarray) -> None:
            pass

        async def _close(self) -> None:
            raise AudioError("disk full")

    good = NullSink()
    tee = TeeSink(Broken(24000), good)
    with pytest.raises(AudioError, match="disk full"):
        await tee.close()
    assert good.closed


def test_tee_sink_validation() -> None:
    with pytest.raises(AudioFormatError, match="at least one"):
        TeeSink()
    with pytest.raises(AudioFormatError, match="one sample rate"):
        TeeSink(NullSink(24000), NullSink(16000))
