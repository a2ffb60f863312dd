"""Tests for livetalk.audio.sources: array, silence, file and concatenated sources."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from livetalk.audio.format import rms_dbfs
from livetalk.audio.sinks import WavSink
from livetalk.audio.sources import (
    ArraySource,
    AudioSource,
    FileSource,
    SilenceSource,
    Source,
    concat,
)
from livetalk.errors import AudioFileError, AudioFormatError
from tests.resampling import spy_on_resampling


def sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 10000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(np.sin(2 * np.pi * freq * t) * amp).astype(np.int16)


async def collect(source: Source) -> list[np.ndarray]:
    return [chunk async for chunk in source]


def write_wav(path: Path, pcm: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


async def test_array_source_chunks_and_short_last_chunk() -> None:
    pcm = np.arange(5000, dtype=np.int16)
    source = ArraySource(pcm, 24000)
    assert source.rate == 24000 and source.chunk_samples == 2400
    assert isinstance(source, Source)
    chunks = await collect(source)
    assert [c.size for c in chunks] == [2400, 2400, 200]
    assert np.concatenate(chunks).tolist() == pcm.tolist()
    assert source.closed
    assert await collect(source) == []


async def test_array_source_float_stereo_with_target_rate() -> None:
    left = sine(16000, 1.0).astype(np.float32) / 32768
    stereo = np.stack([left, left], axis=1)
    source = ArraySource(stereo, 16000, target_rate=24000)
    assert source.rate == 24000
    out = np.concatenate(await collect(source))
    assert abs(out.size - 24000) <= 2
    assert rms_dbfs(out) == pytest.approx(rms_dbfs(sine(16000, 1.0)), abs=0.2)
    assert source.duration == pytest.approx(out.size / 24000)


def test_array_source_validation() -> None:
    with pytest.raises(AudioFormatError, match="dtype int32"):
        ArraySource(np.zeros(10, dtype=np.int32), 24000)
    with pytest.raises(AudioFormatError, match="rate"):
        ArraySource(np.zeros(10, dtype=np.int16), 0)
    with pytest.raises(AudioFormatError, match="target_rate"):
        ArraySource(np.zeros(10, dtype=np.int16), 24000, target_rate=-5)


async def test_silence_source_finite() -> None:
    chunks = await collect(SilenceSource(0.25, rate=16000))
    assert [c.size for c in chunks] == [1600, 1600, 800]
    assert not any(c.any() for c in chunks)


async def test_silence_source_endless_and_closable() -> None:
    source = SilenceSource(None)
    got = 0
    async for chunk in source:
        got += 1
        assert chunk.size == 2400 and not chunk.any()
        if got == 50:
            break
    await source.aclose()
    assert await collect(source) == []


def test_silence_source_rejects_negative() -> None:
    with pytest.raises(AudioFormatError):
        SilenceSource(-1.0)


async def test_concat_rechunks_across_joins() -> None:
    a = ArraySource(np.full(3000, 1, dtype=np.int16), 24000)
    b = SilenceSource(0.05)
    c = ArraySource(np.full(2000, 3, dtype=np.int16), 24000)
    joined = concat(a, b, c)
    chunks = await collect(joined)
    assert [x.size for x in chunks] == [2400, 2400, 1400]
    flat = np.concatenate(chunks)
    assert flat.tolist() == [1] * 3000 + [0] * 1200 + [3] * 2000
    assert a.closed and b.closed and c.closed


async def test_concat_close_closes_remaining_sources() -> None:
    a = SilenceSource(None)
    b = SilenceSource(1.0)
    joined = concat(a, b)
    async with joined:
        await anext(aiter(joined))
    assert a.closed and b.closed


def test_concat_rejects_mixed_rates() -> None:
    with pytest.raises(AudioFormatError, match="one sample rate"):
        concat(SilenceSource(1.0, rate=24000), SilenceSource(1.0, rate=16000))


async def test_file_source_wav_resampled(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    pcm = sine(48000, 1.0)
    write_wav(path, pcm, 48000)
    source = FileSource(path)
    chunks = await collect(source)
    assert all(c.size == 2400 for c in chunks[:-1]) and 0 < chunks[-1].size <= 2400
    out = np.concatenate(chunks)
    assert abs(out.size - 24000) <= 2
    assert rms_dbfs(out) == pytest.approx(rms_dbfs(pcm), abs=0.2)
    assert source.closed


async def test_file_source_same_rate_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "b.wav"
    pcm = np.arange(-3000, 3000, dtype=np.int16)
    write_wav(path, pcm, 24000)
    out = np.concatenate(await collect(FileSource(path, rate=24000)))
    assert out.tolist() == pcm.tolist()


async def test_file_source_at_the_files_rate_is_not_resampled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 48 kHz file read at 48 kHz (what ``call.stream(path)`` does over WebRTC)."""
    log = spy_on_resampling(monkeypatch)
    path = tmp_path / "native.wav"
    pcm = sine(48000, 1.05)
    write_wav(path, pcm, 48000)
    chunks = await collect(FileSource(path, rate=48000))
    assert [c.size for c in chunks] == [4800] * 10 + [2400]
    assert np.concatenate(chunks).tolist() == pcm.tolist()
    assert log.conversions == []


async def test_file_source_stereo_downmix(tmp_path: Path) -> None:
    path = tmp_path / "st.wav"
    inter = np.zeros(2 * 2400, dtype=np.int16)
    inter[0::2] = 8000
    inter[1::2] = 2000
    write_wav(path, inter, 24000, channels=2)
    out = np.concatenate(await collect(FileSource(path)))
    assert out.size == 2400 and set(out.tolist()) == {5000}


@pytest.mark.parametrize("ext", ["mp3", "ogg", "flac", "m4a"])
async def test_file_source_compressed_formats(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"c.{ext}"
    pcm = sine(24000, 1.0, freq=500)
    async with WavSink(path, 24000) as sink:
        await sink.write(pcm)
    out = np.concatenate(await collect(FileSource(path)))
    assert 23000 <= out.size <= 26000  # codec priming / padding
    assert rms_dbfs(out) == pytest.approx(rms_dbfs(pcm), abs=1.5)


def test_file_source_missing_file_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="missing.wav.*no such file"):
        FileSource(tmp_path / "missing.wav")


async def test_file_source_deleted_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "gone.wav"
    write_wav(path, sine(24000, 0.1), 24000)
    source = FileSource(path)
    path.unlink()
    with pytest.raises(AudioFileError, match="gone.wav") as info:
        await collect(source)
    assert "No such file" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


async def test_file_source_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not audio\n" * 20)
    source = FileSource(path)
    with pytest.raises(AudioFileError, match="notes.txt") as info:
        await anext(aiter(source))
    assert info.value.__cause__ is not None
    with pytest.raises(StopAsyncIteration):
        await anext(aiter(source))
    await source.aclose()


async def test_file_source_check_keeps_the_audio(tmp_path: Path) -> None:
    path = tmp_path / "k.wav"
    pcm = np.arange(-6000, 6000, dtype=np.int16)  # half a second
    write_wav(path, pcm, 24000)
    source = FileSource(path, rate=24000)
    await source.check()
    await source.check()  # a second check decodes nothing more
    out = np.concatenate(await collect(source))
    assert out.tolist() == pcm.tolist()


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("renamed.wav", b"just some notes\n" * 50, "cannot open audio file"),
        ("empty.wav", b"", "cannot open audio file"),
    ],
)
async def test_file_source_check_rejects_non_audio(
    tmp_path: Path, name: str, content: bytes, needle: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    source = FileSource(path)
    with pytest.raises(AudioFileError, match=needle) as info:
        await source.check()
    assert name in str(info.value)
    assert source.closed


async def test_file_source_check_rejects_a_file_without_samples(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    write_wav(path, np.zeros(0, dtype=np.int16), 24000)
    with pytest.raises(AudioFileError, match="holds no audio samples"):
        await FileSource(path).check()


def test_file_source_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="not a regular file"):
        FileSource(tmp_path)


async def test_file_source_corrupt_files(tmp_path: Path) -> None:
    good = tmp_path / "good.mp3"
    async with WavSink(good) as sink:
        await sink.write(sine(24000, 1.0))
    data = good.read_bytes()

    stub = tmp_path / "stub.mp3"
    stub.write_bytes(data[:300])
    with pytest.raises(AudioFileError, match="cannot open audio file .*stub.mp3"):
        await collect(FileSource(stub))

    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(data[:2000] + bytes(2000) + data[4000:])
    with pytest.raises(AudioFileError, match="cannot decode audio file .*damaged.mp3") as info:
        await collect(FileSource(damaged))
    assert info.value.__cause__ is not None


async def test_file_source_early_close_and_cancel(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    write_wav(path, sine(24000, 5.0), 24000)
    source = FileSource(path)
    first = await anext(aiter(source))
    assert first.size == 2400
    await source.aclose()
    assert await collect(source) == []

    source = FileSource(path)
    task = asyncio.create_task(anext(aiter(source)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await source.aclose()  # waits for the decode step in flight, then closes
    assert source.closed


async def test_file_source_cancelled_read_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    pcm = sine(24000, 3.0)
    write_wav(path, pcm, 24000)
    source = FileSource(path)
    task = asyncio.create_task(anext(aiter(source)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    out = np.concatenate(await collect(source))
    assert out.tolist() == pcm.tolist()


async def test_custom_source_subclass_context_manager() -> None:
    class Countdown(AudioSource):
        def __init__(self) -> None:
            super().__init__(8000)
            self.left = 3
            self.released = False

        async def _next_chunk(self) -> np.ndarray | None:
            if not self.left:
                return None
            self.left -= 1
            return np.full(self.chunk_samples, self.left, dtype=np.int16)

        async def _close(self) -> None:
            self.released = True

    async with Countdown() as source:
        chunks = await collect(source)
    assert [int(c[0]) for c in chunks] == [2, 1, 0]
    assert source.released
