"""Sound card input and output through sounddevice (PortAudio).

This is the only module that imports sounddevice, and it does so lazily: importing livetalk
never needs PortAudio. ``import sounddevice`` raises OSError when the PortAudio library is
missing; every entry point here turns that (and PortAudio's own errors) into a one-line
:class:`~livetalk.errors.AudioDeviceError` that says what is missing and how to fix it.

PortAudio calls back from its own thread. :class:`MicrophoneSource` copies each block and hands
it to the event loop with ``loop.call_soon_threadsafe`` into a bounded queue; lost audio is
counted in ``overflows`` (and logged once), never dropped silently. :class:`SpeakerSink` reads a
thread-safe :class:`~livetalk.audio.playout.PlayoutBuffer` in the callback.

Every class and function takes ``sd=``: the sounddevice module, or any object with the same
functions (a fake in tests); None imports the real one.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from livetalk._extras import missing_extra
from livetalk.audio.format import API_RATE, CHUNK_MS, PCM, Chunker, ms_to_samples, samples_to_ms
from livetalk.audio.playout import PlayoutBuffer, PlayoutStatistics
from livetalk.audio.resample import Resampler
from livetalk.audio.sinks import AudioSink
from livetalk.audio.sources import AudioSource
from livetalk.errors import AudioDeviceError, ConfigError

__all__ = [
    "DeviceInfo",
    "MicrophoneSource",
    "MicrophoneStatistics",
    "SpeakerSink",
    "SpeakerStatistics",
    "list_devices",
]

logger = logging.getLogger(__name__)

_PORTAUDIO_MISSING = (
    "PortAudio library not found: install it with `apt install libportaudio2` (Debian/Ubuntu) "
    "or `brew install portaudio` (macOS)"
)


def _import_sounddevice(
    import_module: Callable[[str], ModuleType] = importlib.import_module,
) -> Any:
    """Import sounddevice; a missing PortAudio library is an AudioDeviceError, a missing
    package a MissingExtraError naming the ``devices`` extra.

    Args:
        import_module: the importer (injectable for tests).
    """
    try:
        return import_module("sounddevice")
    except OSError as exc:
        raise AudioDeviceError(_PORTAUDIO_MISSING) from exc
    except ImportError as exc:
        raise missing_extra("devices", "the microphone and the speaker", ["sounddevice"]) from exc


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device, as listed by :func:`list_devices`.

    Attributes:
        index: the device id to pass as ``device=``.
        name: the device name (also accepted as ``device=``).
        hostapi: the host API's name (ALSA, Core Audio, WASAPI, ...).
        max_input_channels: input channels (0 for output-only devices).
        max_output_channels: output channels (0 for input-only devices).
        default_samplerate: the device's native rate in Hz.
        is_default_input: the system's default input device.
        is_default_output: the system's default output device.
    """

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool


@dataclass(frozen=True, slots=True)
class MicrophoneStatistics:
    """What a :class:`MicrophoneSource` has lost and holds, at one moment.

    Attributes:
        overflows: times audio was lost (PortAudio input overflows plus blocks dropped
            because the consumer fell behind).
        dropped_ms: audio dropped because the consumer fell behind.
        queued_blocks: device blocks waiting for the consumer.
        device_rate: the rate the device runs at, in Hz.
    """

    overflows: int
    dropped_ms: float
    queued_blocks: int
    device_rate: int


@dataclass(frozen=True, slots=True)
class SpeakerStatistics:
    """What a :class:`SpeakerSink` has played, at one moment.

    Attributes:
        playout: its playout buffer's figures (at the device rate).
        underflows: PortAudio output underflows reported to the callback.
    """

    playout: PlayoutStatistics
    underflows: int


def list_devices(*, sd: Any = None) -> list[DeviceInfo]:
    """List the audio devices PortAudio sees (empty on a machine without a sound card).

    Args:
        sd: the sounddevice module or a stand-in; None imports it.

    Raises:
        AudioDeviceError: the PortAudio library is missing, or the query failed.
        MissingExtraError: sounddevice is not installed (the ``devices`` extra).
    """
    sd = sd if sd is not None else _import_sounddevice()
    try:
        devices = list(sd.query_devices())
        hostapis = [h["name"] for h in sd.query_hostapis()]
        default_in, default_out = (int(i) for i in sd.default.device)
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"cannot list audio devices: {exc}") from exc
    return [
        DeviceInfo(
            index=int(d["index"]),
            name=str(d["name"]),
            hostapi=hostapis[d["hostapi"]] if 0 <= d["hostapi"] < len(hostapis) else "",
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_samplerate=float(d["default_samplerate"]),
            is_default_input=int(d["index"]) == default_in,
            is_default_output=int(d["index"]) == default_out,
        )
        for d in devices
    ]


def _negotiate_rate(sd: Any, device: int | str | None, rate: int, kind: str) -> int:
    """The rate to open ``device`` at: ``rate`` if supported, else the device's native rate.

    Raises:
        AudioDeviceError: there is no such device, or it supports neither rate.
    """
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device, channels=1, dtype="int16", samplerate=rate)
        return rate
    except (sd.PortAudioError, ValueError) as exc:
        first = exc
    try:
        native = int(sd.query_devices(device, kind)["default_samplerate"])
        if native != rate:
            check(device=device, channels=1, dtype="int16", samplerate=native)
            return native
    except (sd.PortAudioError, ValueError):
        pass
    which = "the default" if device is None else repr(device)
    what = "microphone" if kind == "input" else "speaker"
    raise AudioDeviceError(
        f"no usable audio {kind} device ({which}: {first}): connect a {what} or pass another "
        "device= (list_devices() shows them)"
    ) from first


def _device_name(sd: Any, device: int | str | None, kind: str) -> str:
    """The name PortAudio gives ``device`` (the default one if None); "" if unknown."""
    try:
        return str(sd.query_devices(device, kind)["name"])
    except (sd.PortAudioError, ValueError, KeyError, TypeError):
        return ""


class _Device:
    """The PortAudio side the microphone and the speaker share: the device, the rate it runs
    at, its name, and the open stream (mixed in before the source or sink base class)."""

    _kind: str
    """``"input"`` or ``"output"``."""
    _what: str
    """What the device is called in errors."""

    def _find_device(self, sd: Any, device: int | str | None, rate: int) -> None:
        """Import sounddevice (unless given) and pick the device's rate and name.

        Raises:
            AudioDeviceError: PortAudio is missing, or the device supports no usable rate.
        """
        self._sd = sd if sd is not None else _import_sounddevice()
        self.device = device
        self.device_rate = _negotiate_rate(self._sd, device, rate, self._kind)
        """The rate the device runs at (``rate`` unless it is unsupported)."""
        self.name = _device_name(self._sd, device, self._kind)
        """The device's name as PortAudio reports it ("" if unknown)."""
        self._stream: Any = None

    @property
    def latency_ms(self) -> float | None:
        """The latency PortAudio reports for the open stream (None until it is open)."""
        try:
            return float(self._stream.latency) * 1000 if self._stream is not None else None
        except (AttributeError, TypeError, ValueError):
            return None

    async def _open_stream(self, callback: Callable[..., None], **options: Any) -> None:
        """Open and start a mono int16 stream at ``device_rate`` (in a worker thread).

        Raises:
            AudioDeviceError: PortAudio refused to open it.
        """
        sd = self._sd
        kind = sd.InputStream if self._kind == "input" else sd.OutputStream

        def open_stream() -> Any:
            stream = kind(device=self.device, samplerate=self.device_rate, channels=1,
                          dtype="int16", callback=callback, **options)
            stream.start()
            return stream

        try:
            self._stream = await asyncio.to_thread(open_stream)
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"cannot open the {self._what} ({exc})") from exc

    async def _close_stream(self) -> None:
        """Stop and close the stream, if open (in a worker thread)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(_stop_stream, stream)


class MicrophoneSource(_Device, AudioSource):
    """Live audio from a sound card input, as chunks of ``block_ms`` (100 ms) at ``rate``.

    The stream opens on the first iteration and runs until :meth:`aclose`. If the device does
    not support ``rate`` it is opened at its native rate and resampled. When the consumer falls
    behind by more than ``max_queue_ms``, the oldest audio is dropped and counted in
    :attr:`overflows`, like PortAudio's own input overflows.

    Args:
        device: PortAudio device index or name; None for the default input.
        rate: sample rate of the chunks in Hz.
        max_queue_ms: audio held for a slow consumer before dropping.
        block_ms: the length of each device block and chunk, a multiple of 10 ms. Every
            sample waits for its block to fill, so this is latency added to everything the
            microphone hears: ``livetalk talk`` uses 20 ms (the frame WebRTC sends) so that
            the server hears the user sooner; the default suits recording and batch use.
        sd: the sounddevice module or a stand-in; None imports it.

    Raises:
        AudioDeviceError: PortAudio is missing, or there is no usable input device.
        ConfigError: ``block_ms`` is not a positive multiple of 10.
    """

    _kind = "input"
    _what = "microphone"

    def __init__(
        self,
        device: int | str | None = None,
        rate: int = API_RATE,
        *,
        max_queue_ms: int = 2000,
        block_ms: int = CHUNK_MS,
        sd: Any = None,
    ) -> None:
        super().__init__(rate)
        if isinstance(block_ms, bool) or not isinstance(block_ms, int) or block_ms <= 0 \
                or block_ms % 10:
            raise ConfigError(f"block_ms must be a positive multiple of 10, got {block_ms!r}")
        self.block_ms = block_ms
        """The length of each device block and chunk, in ms."""
        self._chunk = ms_to_samples(block_ms, self._rate)
        self._find_device(sd, device, self._rate)
        self._resampler = Resampler(self.device_rate, self._rate)
        self._chunker = Chunker(self._chunk)
        self._primed = False  # the resampler's delay is made up for (see _resample)
        self._blocks: collections.deque[PCM] = collections.deque()
        self._max_blocks = max(1, max_queue_ms // block_ms)
        self._ready: list[PCM] = []
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.overflows = 0
        """Times audio was lost: PortAudio input overflows plus blocks dropped from the queue."""
        self.dropped_samples = 0
        """Device-rate samples dropped because the consumer fell behind."""

    def statistics(self) -> MicrophoneStatistics:
        """The loss counters and the queue now."""
        return MicrophoneStatistics(
            overflows=self.overflows,
            dropped_ms=samples_to_ms(self.dropped_samples, self.device_rate),
            queued_blocks=len(self._blocks),
            device_rate=self.device_rate,
        )

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._open_stream(self._callback,
                                blocksize=ms_to_samples(self.block_ms, self.device_rate))

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio thread: copy the block and hand it to the event loop."""
        block = np.array(indata[:, 0], dtype=np.int16)
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver, block, bool(status.input_overflow))
        except RuntimeError:  # the loop is closed: the stream is being torn down
            pass

    def _deliver(self, block: PCM, overflowed: bool) -> None:
        """Event loop: queue a block from the callback, dropping the oldest when full."""
        if overflowed:
            self._count_overflow("PortAudio input overflow")
        if len(self._blocks) >= self._max_blocks:
            self.dropped_samples += self._blocks.popleft().size
            self._count_overflow("the consumer fell behind; dropping the oldest audio")
        self._blocks.append(block)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _count_overflow(self, reason: str) -> None:
        if self.overflows == 0:
            logger.warning("microphone audio lost (%s); counted in .overflows", reason)
        self.overflows += 1

    async def _next_chunk(self) -> PCM | None:
        if self._stream is None:
            await self._start()
        while not self._ready:
            while not self._blocks:
                if self._closed:
                    return None
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            self._ready = self._chunker.push(self._resample(self._blocks.popleft()))
            self._ready.reverse()
        return self._ready.pop()

    def _resample(self, block: PCM) -> PCM:
        """The block at ``rate``; the first one is padded in front by what the resampler's
        filter holds back, so every device block completes its own chunk.

        Without the padding the converter's few held samples (16 from 48 to 24 kHz) leave
        each chunk short until the next block arrives: the microphone would run a whole
        block late, and an echo canceller placing the speaker's output by the microphone's
        clock would place it that much too early.
        """
        out = self._resampler.process(block)
        if self._primed or self._resampler.passthrough:
            return out
        self._primed = True
        short = block.size * self._rate // self.device_rate - out.size
        return np.concatenate((np.zeros(short, np.int16), out)) if short > 0 else out

    async def _close(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        await self._close_stream()
        self._loop = None
        self._blocks.clear()


class SpeakerSink(_Device, AudioSink):
    """Plays PCM on a sound card output through a :class:`PlayoutBuffer`.

    The stream opens on the first write. Writes return at once while the buffer is less than
    half full, so a real-time stream never waits; a faster producer (a file) is held back to
    real time. :meth:`clear` drops what is queued (barge-in).

    Args:
        device: PortAudio device index or name; None for the default output.
        rate: sample rate of the written PCM in Hz.
        capacity_ms: the playout buffer's capacity.
        prebuffer_ms: audio accumulated before playback starts (absorbs network jitter).
        sd: the sounddevice module or a stand-in; None imports it.

    Raises:
        AudioDeviceError: PortAudio is missing, or there is no usable output device.
    """

    _kind = "output"
    _what = "speaker"

    def __init__(
        self,
        device: int | str | None = None,
        rate: int = API_RATE,
        *,
        capacity_ms: int = 2000,
        prebuffer_ms: int = 60,
        sd: Any = None,
    ) -> None:
        super().__init__(rate)
        self._find_device(sd, device, self._rate)
        self.buffer = PlayoutBuffer(self.device_rate, capacity_ms, prebuffer_ms)
        """The playout buffer the callback reads (at ``device_rate``)."""
        self._resampler = Resampler(self._rate, self.device_rate)
        self._drain = True
        self.underflows = 0
        """PortAudio output underflows reported to the callback."""

    def clear(self, fade_ms: float = 5) -> float:
        """Stop playing what is queued (fading out over ``fade_ms``); return the ms dropped."""
        self._resampler.flush()
        return self.buffer.clear(fade_ms)

    def statistics(self) -> SpeakerStatistics:
        """The playout buffer's figures plus PortAudio's underflows, now."""
        return SpeakerStatistics(self.buffer.statistics(), self.underflows)

    async def close(self, *, drain: bool = True) -> None:
        """Stop the stream, by default after playing what is buffered.

        Args:
            drain: play out the buffered audio first (bounded by twice its duration).
        """
        self._drain = drain
        await super().close()

    async def _write(self, pcm: PCM) -> None:
        if self._stream is None:
            await self._start()
        buffer = self.buffer
        buffer.write(self._resampler.process(pcm))
        high_ms = buffer.capacity_ms / 2
        while buffer.buffered_ms > high_ms and self._stream is not None:
            await asyncio.sleep((buffer.buffered_ms - high_ms) / 1000)

    async def _start(self) -> None:
        await self._open_stream(self._callback)

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio thread: fill the device buffer from the playout buffer."""
        if status.output_underflow:
            self.underflows += 1
        self.buffer.read_into(outdata[:, 0])

    async def _close(self) -> None:
        buffer = self.buffer
        if self._stream is None:
            return
        tail = self._resampler.flush()
        if self._drain:
            buffer.write(tail)
            buffer.mark_end()
            deadline = asyncio.get_running_loop().time() + 2 * buffer.buffered_ms / 1000 + 0.5
            while buffer.buffered and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(max(buffer.buffered_ms / 1000, 0.01))
        await self._close_stream()


def _stop_stream(stream: Any) -> None:
    try:
        stream.stop()
    finally:
        stream.close()
