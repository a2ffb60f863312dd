"""Tests for livetalk.audio.devices with a stand-in sounddevice module (no sound card needed)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from livetalk.audio import devices
from livetalk.audio.devices import (
    DeviceInfo,
    MicrophoneSource,
    SpeakerSink,
    _import_sounddevice,
    list_devices,
)
from livetalk.errors import AudioDeviceError, ConfigError, MissingExtraError
from tests.fake_sounddevice import FakeDeviceTable, FakePortAudioError, mic_and_speakers

ROOT = Path(__file__).resolve().parents[2]


class FakeStream:
    def __init__(self, sd: FakeSoundDevice, **kwargs: Any) -> None:
        self.sd = sd
        self.kwargs = kwargs
        self.callback = kwargs["callback"]
        self.started = self.stopped = self.closed = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.closed = True

    def feed(self, block: np.ndarray, *, overflow: bool = False) -> None:
        """Call the input callback from another thread, as PortAudio does."""
        status = SimpleNamespace(input_overflow=overflow)
        indata = block.reshape(-1, 1).copy()
        thread = threading.Thread(target=self.callback, args=(indata, block.size, None, status))
        thread.start()
        thread.join()
        indata[:] = -1  # PortAudio reuses its buffer: the source must have copied

    def pull(self, frames: int, *, underflow: bool = False) -> np.ndarray:
        outdata = np.full((frames, 1), 99, dtype=np.int16)
        status = SimpleNamespace(output_underflow=underflow)
        self.callback(outdata, frames, None, status)
        return outdata[:, 0].copy()


class FakeSoundDevice(FakeDeviceTable):
    """Just enough of the sounddevice module's surface."""

    def __init__(
        self,
        devices: list[dict[str, Any]] | None = None,
        *,
        rates: set[int] | None = None,
        default: tuple[int, int] = (0, 1),
    ) -> None:
        super().__init__(
            devices if devices is not None else mic_and_speakers(),
            default=default,
            rates=rates if rates is not None else {16000, 24000, 44100, 48000},
        )
        self.streams: list[FakeStream] = []

    def InputStream(self, **kwargs: Any) -> FakeStream:  # noqa: N802 - sounddevice's name
        stream = FakeStream(self, **kwargs)
        self.streams.append(stream)
        return stream

    OutputStream = InputStream


# -- importing -------------------------------------------------------------------------------


def test_missing_portaudio_is_a_one_line_device_error() -> None:
    def no_portaudio(name: str) -> Any:
        raise OSError("PortAudio library not found")

    with pytest.raises(AudioDeviceError) as info:
        _import_sounddevice(no_portaudio)
    message = str(info.value)
    assert message.startswith("PortAudio library not found")
    assert "apt install libportaudio2" in message and "brew install portaudio" in message
    assert "\n" not in message
    assert isinstance(info.value.__cause__, OSError)


def test_missing_package_names_the_devices_extra() -> None:
    def no_package(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}")

    with pytest.raises(MissingExtraError, match=r"pip install 'livetalk\[devices\]'") as info:
        _import_sounddevice(no_package)
    assert info.value.extra == "devices" and isinstance(info.value, ImportError)


def test_real_import_either_works_or_explains() -> None:
    try:
        module = _import_sounddevice()
    except (AudioDeviceError, MissingExtraError) as exc:
        assert "\n" not in str(exc) and "install" in str(exc)
    else:
        assert hasattr(module, "InputStream")


# -- listing ---------------------------------------------------------------------------------


def test_list_devices() -> None:
    listed = list_devices(sd=FakeSoundDevice())
    assert listed == [
        DeviceInfo(0, "mic", "ALSA", 1, 0, 48000.0, True, False),
        DeviceInfo(1, "speakers", "ALSA", 0, 2, 48000.0, False, True),
    ]


def test_list_devices_empty_machine() -> None:
    assert list_devices(sd=FakeSoundDevice([], default=(-1, -1))) == []


def test_list_devices_query_failure() -> None:
    sd = FakeSoundDevice()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise FakePortAudioError("Error querying host APIs")

    sd.query_hostapis = broken  # type: ignore[method-assign]
    with pytest.raises(AudioDeviceError, match="cannot list audio devices"):
        list_devices(sd=sd)


# -- microphone ------------------------------------------------------------------------------


def test_microphone_without_a_device() -> None:
    sd = FakeSoundDevice([], default=(-1, -1))
    with pytest.raises(AudioDeviceError, match="no usable audio input device") as info:
        MicrophoneSource(sd=sd)
    assert "device -1" in str(info.value) and "\n" not in str(info.value)


def test_microphone_output_only_device() -> None:
    with pytest.raises(AudioDeviceError, match="'speakers'"):
        MicrophoneSource("speakers", sd=FakeSoundDevice())


async def test_microphone_delivers_chunks_in_order() -> None:
    sd = FakeSoundDevice()
    mic = MicrophoneSource(sd=sd)
    assert mic.device_rate == 24000
    first = asyncio.create_task(anext(aiter(mic)))
    while not sd.streams:
        await asyncio.sleep(0)
    stream = sd.streams[0]
    assert stream.started
    assert stream.kwargs["samplerate"] == 24000 and stream.kwargs["blocksize"] == 2400
    assert stream.kwargs["channels"] == 1 and stream.kwargs["dtype"] == "int16"
    for i in range(3):
        stream.feed(np.full(2400, i, dtype=np.int16))
    chunks = [await first, await anext(mic), await anext(mic)]
    assert [int(c[0]) for c in chunks] == [0, 1, 2]
    assert all(c.size == 2400 and (c == c[0]).all() for c in chunks)
    assert mic.overflows == 0
    await mic.aclose()
    assert stream.stopped and stream.closed
    assert [c async for c in mic] == []


async def test_microphone_counts_overflows() -> None:
    sd = FakeSoundDevice()
    mic = MicrophoneSource(sd=sd, max_queue_ms=300)
    await mic._start()
    stream = sd.streams[0]
    stream.feed(np.zeros(2400, dtype=np.int16), overflow=True)
    for i in range(5):  # nobody reads: the queue holds 3 blocks
        stream.feed(np.full(2400, i, dtype=np.int16))
    await asyncio.sleep(0)
    assert mic.overflows == 1 + 3
    assert mic.statistics().dropped_ms == 300.0
    got = [int((await anext(mic))[0]) for _ in range(3)]
    assert got == [2, 3, 4]
    await mic.aclose()


async def test_microphone_resamples_when_rate_unsupported() -> None:
    sd = FakeSoundDevice(rates={48000})
    mic = MicrophoneSource(sd=sd)
    assert mic.device_rate == 48000 and mic.rate == 24000
    await mic._start()
    stream = sd.streams[0]
    assert stream.kwargs["samplerate"] == 48000 and stream.kwargs["blocksize"] == 4800
    for _ in range(3):
        stream.feed(np.full(4800, 1000, dtype=np.int16))
    chunks = [await asyncio.wait_for(anext(mic), 5) for _ in range(3)]
    assert all(c.size == 2400 for c in chunks)
    assert abs(int(chunks[1][1200]) - 1000) <= 2
    await mic.aclose()


async def test_microphone_resampling_adds_no_block_of_delay() -> None:
    """Each device block completes its own chunk at once, although the resampler's filter
    holds a few samples back (made up by leading zeros, once): the chunks stay on the
    device's clock, a block at a time, with the signal in place."""
    sd = FakeSoundDevice(rates={48000})
    mic = MicrophoneSource(sd=sd)
    await mic._start()
    stream = sd.streams[0]
    ramp = (np.arange(4 * 4800) % 4800).astype(np.int16)  # a sawtooth, one tooth per block
    chunks = []
    for k in range(4):
        stream.feed(ramp[k * 4800 : (k + 1) * 4800])
        chunks.append(await asyncio.wait_for(anext(mic), 5))
    assert all(c.size == 2400 for c in chunks)
    assert mic._chunker.pending == 0
    # the tooth's drop lies at the end of each chunk (within the filter's delay), not inside
    out = np.concatenate(chunks).astype(np.int64)
    drops = np.flatnonzero(np.diff(out) < -2000) + 1
    assert drops.size == 3
    assert all(2400 * (k + 1) <= d <= 2400 * (k + 1) + 16 for k, d in enumerate(drops))
    await mic.aclose()


async def test_microphone_block_length_sets_device_blocks_and_chunks() -> None:
    sd = FakeSoundDevice(rates={48000})
    mic = MicrophoneSource(sd=sd, block_ms=20)
    assert mic.chunk_samples == 480 and mic.block_ms == 20
    await mic._start()
    stream = sd.streams[0]
    assert stream.kwargs["blocksize"] == 960
    for k in range(3):
        stream.feed(np.full(960, 100 * (k + 1), dtype=np.int16))
        chunk = await asyncio.wait_for(anext(mic), 5)
        assert chunk.size == 480 and abs(int(chunk[400]) - 100 * (k + 1)) <= 2
    await mic.aclose()
    for bad in (0, -20, 25, 20.0, True):
        with pytest.raises(ConfigError, match="block_ms"):
            MicrophoneSource(sd=sd, block_ms=bad)  # type: ignore[arg-type]


async def test_microphone_close_wakes_a_waiting_reader() -> None:
    sd = FakeSoundDevice()
    mic = MicrophoneSource(sd=sd)
    reader = asyncio.create_task(anext(aiter(mic)))
    while not sd.streams:
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    await mic.aclose()
    with pytest.raises(StopAsyncIteration):
        await reader


async def test_microphone_open_failure() -> None:
    sd = FakeSoundDevice()

    def refuse(**kwargs: Any) -> Any:
        raise FakePortAudioError("Device unavailable")

    sd.InputStream = refuse  # type: ignore[method-assign]
    mic = MicrophoneSource(sd=sd)
    with pytest.raises(AudioDeviceError, match="cannot open the microphone.*Device unavailable"):
        await anext(aiter(mic))


# -- speaker ---------------------------------------------------------------------------------


async def test_speaker_plays_through_playout_buffer() -> None:
    sd = FakeSoundDevice()
    speaker = SpeakerSink(sd=sd, prebuffer_ms=0)
    assert not sd.streams  # opened on the first write
    await speaker.write(np.arange(1, 481, dtype=np.int16))
    stream = sd.streams[0]
    assert stream.started and stream.kwargs["samplerate"] == 24000
    assert stream.pull(240).tolist() == list(range(1, 241))
    assert stream.pull(300).tolist() == list(range(241, 481)) + [0] * 60
    stream.pull(10, underflow=True)
    assert speaker.statistics().underflows == 1
    await speaker.close(drain=False)
    assert stream.stopped and stream.closed


async def test_speaker_clear_and_drain_on_close() -> None:
    sd = FakeSoundDevice()
    speaker = SpeakerSink(sd=sd, prebuffer_ms=0)
    await speaker.write(np.full(2400, 1000, dtype=np.int16))
    assert speaker.clear(fade_ms=5) == pytest.approx(95.0)
    stream = sd.streams[0]
    stream.pull(120)
    await speaker.write(np.full(24, 7, dtype=np.int16))
    closing = asyncio.create_task(speaker.close())
    await asyncio.sleep(0)
    assert not stream.closed  # waiting for the buffered tail to play
    assert stream.pull(30).tolist() == [7] * 24 + [0] * 6
    await closing
    assert stream.closed


async def test_speaker_holds_back_a_fast_writer() -> None:
    sd = FakeSoundDevice()
    speaker = SpeakerSink(sd=sd, capacity_ms=100, prebuffer_ms=0)
    await speaker.write(np.zeros(1000, dtype=np.int16))
    stream = sd.streams[0]
    writing = asyncio.create_task(speaker.write(np.zeros(1000, dtype=np.int16)))
    await asyncio.sleep(0)
    assert not writing.done()  # 2000 samples = 83 ms queued, above half the capacity
    while not writing.done():
        stream.pull(200)
        await asyncio.sleep(0.005)
    await writing
    assert speaker.buffer.buffered_ms <= 50
    assert speaker.buffer.overruns == 0
    await speaker.close(drain=False)


async def test_speaker_resamples_to_device_rate() -> None:
    sd = FakeSoundDevice(rates={48000})
    speaker = SpeakerSink(sd=sd, prebuffer_ms=0)
    assert speaker.device_rate == 48000
    await speaker.write(np.full(2400, 1000, dtype=np.int16))
    out = sd.streams[0].pull(4000)
    assert abs(int(out[2000]) - 1000) <= 2
    await speaker.close(drain=False)


def test_speaker_without_a_device() -> None:
    with pytest.raises(AudioDeviceError, match="no usable audio output device"):
        SpeakerSink(sd=FakeSoundDevice([], default=(-1, -1)))


def test_devices_module_does_not_import_sounddevice_eagerly() -> None:
    assert "sounddevice" not in vars(devices)


def test_importing_livetalk_audio_loads_neither_sounddevice_nor_aiortc() -> None:
    code = (
        "import sys, livetalk.audio; "
        "print(sorted(m for m in ('sounddevice', 'aiortc') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
