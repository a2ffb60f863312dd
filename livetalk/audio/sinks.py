"""Audio sinks: where PCM goes.

A sink has a ``rate`` (Hz), ``await sink.write(pcm)`` and ``await sink.close()``, and is an
async context manager that closes on exit. Writes must match the sink's rate (resample first
with :class:`~livetalk.audio.resample.Resampler`).

- :class:`WavSink`: a file; ``.wav`` through the standard ``wave`` module, any other
  extension (``.ogg``, ``.opus``, ``.flac``, ``.mp3``, ``.m4a``) encoded through PyAV.
- :class:`BufferSink`: keeps everything in memory; ``.array()`` returns it.
- :class:`NullSink`: counts samples and discards them.
- :class:`ChunkQueueSink`: an async iterator of the chunks written, with a bounded queue that
  drops the oldest chunk when full.
- :class:`TeeSink`: writes to several sinks (e.g. the speaker and a recording).
- ``SpeakerSink`` lives in :mod:`livetalk.audio.devices`.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import os
import wave
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO, Protocol, Self, runtime_checkable

import av
import numpy as np

from livetalk._tasks import ClosesOnce
from livetalk.audio.format import API_RATE, PCM, check_pcm, check_rate, samples_to_ms
from livetalk.errors import AudioError, AudioFileError, AudioFormatError

__all__ = [
    "AudioSink",
    "BufferSink",
    "ChunkQueueSink",
    "NullSink",
    "Sink",
    "TeeSink",
    "WavSink",
]

_CODECS = {
    ".ogg": "libopus",
    ".opus": "libopus",
    ".webm": "libopus",
    ".mp3": "libmp3lame",
    ".flac": "flac",
    ".m4a": "aac",
}
"""Encoder per file extension for non-WAV files; other extensions use the container default."""


@runtime_checkable
class Sink(Protocol):
    """What livetalk accepts as a sink: a rate, ``write(pcm)`` and ``close()``."""

    @property
    def rate(self) -> int:
        """Sample rate expected by :meth:`write`, in Hz."""
        ...

    async def write(self, pcm: PCM) -> None:
        """Consume PCM at ``rate``."""
        ...

    async def close(self) -> None:
        """Finish and release resources."""
        ...


class AudioSink(ClosesOnce, ABC):
    """Base class of the shipped sinks: validation, closing and ``async with``.

    Subclasses implement :meth:`_write` and optionally :meth:`_close`.
    """

    def __init__(self, rate: int) -> None:
        self._rate = check_rate(rate)

    @property
    def rate(self) -> int:
        """Sample rate expected by :meth:`write`, in Hz."""
        return self._rate

    async def write(self, pcm: PCM) -> None:
        """Consume PCM at ``rate``.

        Raises:
            AudioFormatError: ``pcm`` is not a 1-D int16 array.
            AudioError: the sink is closed.
        """
        if self._closed:
            raise AudioError(f"{type(self).__name__} is closed")
        await self._write(check_pcm(pcm))



    @abstractmethod
    async def _write(self, pcm: PCM) -> None:
        """Consume validated PCM."""



class WavSink(AudioSink):
    """Writes PCM to an audio file; despite the name, any extension PyAV can mux works.

    ``.wav`` is written as 16-bit mono PCM with the ``wave`` module. Other extensions are
    encoded through PyAV: ``.ogg``/``.opus``/``.webm`` as Opus, ``.flac`` as FLAC, ``.mp3``
    as MP3, ``.m4a`` as AAC, anything else with the container's default audio codec. The file
    is created at once and complete after :meth:`close`.

    Args:
        path: the file to create (overwritten if it exists).
        rate: sample rate of the written PCM in Hz. (Opus only stores 8/12/16/24/48 kHz; other
            rates are resampled to the next one up.)

    Raises:
        AudioFileError: the file cannot be created or the format is not supported.
    """

    def __init__(self, path: str | os.PathLike[str], rate: int = API_RATE) -> None:
        super().__init__(rate)
        self.path = Path(path)
        self.samples = 0
        """Samples written so far."""
        self._wave: wave.Wave_write | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.AudioStream | None = None
        self._file: BinaryIO | None = None
        self._time_base = fractions.Fraction(1, self._rate)
        try:
            file = open(self.path, "wb")  # closed by close()
        except OSError as exc:
            raise AudioFileError(
                f"cannot create audio file {str(self.path)!r}: {exc.strerror or exc}"
            ) from exc
        if self.path.suffix.lower() == ".wav":
            self._file = file
            self._wave = wave.open(file, "wb")
            self._wave.setnchannels(1)
            self._wave.setsampwidth(2)
            self._wave.setframerate(self._rate)
        else:
            file.close()
            try:
                self._open_av()
            except AudioFileError:
                self.path.unlink(missing_ok=True)
                raise

    def _open_av(self) -> None:
        where = str(self.path)
        try:
            container = av.open(os.fspath(self.path), "w")
        except (av.FFmpegError, ValueError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise AudioFileError(f"cannot create audio file {where!r}: {reason}") from exc
        try:
            codec_name = _CODECS.get(self.path.suffix.lower()) or container.default_audio_codec
            codec = av.Codec(codec_name, "w")
            rate = self._rate
            if codec.audio_rates and rate not in codec.audio_rates:
                rate = min(
                    (r for r in codec.audio_rates if r >= rate), default=max(codec.audio_rates)
                )
            stream = container.add_stream(codec_name, rate=rate, layout="mono")
            if not isinstance(stream, av.AudioStream):
                raise ValueError(f"{codec_name} is not an audio codec")
            formats = [f.name for f in codec.audio_formats or ()]
            if formats:
                stream.format = "s16" if "s16" in formats else formats[0]
        except (av.FFmpegError, ValueError) as exc:
            container.close()
            raise AudioFileError(f"cannot write audio to {where!r}: {exc}") from exc
        self._container = container
        self._stream = stream

    async def _write(self, pcm: PCM) -> None:
        if pcm.size == 0:
            return
        if self._wave is not None:
            self._wave.writeframesraw(np.ascontiguousarray(pcm, dtype="<i2").data)
        else:
            assert self._stream is not None and self._container is not None
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self._rate
            frame.pts = self.samples
            frame.time_base = self._time_base
            self._mux(frame)
        self.samples += pcm.size

    def _mux(self, frame: av.AudioFrame | None) -> None:
        assert self._stream is not None and self._container is not None
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise AudioFileError(f"cannot write audio to {str(self.path)!r}: {exc}") from exc

    async def _close(self) -> None:
        if self._wave is not None:
            assert self._file is not None
            try:
                self._wave.close()
            finally:
                self._file.close()
        elif self._container is not None:
            try:
                self._mux(None)
            finally:
                self._container.close()

    @property
    def duration(self) -> float:
        """Seconds of audio written so far."""
        return self.samples / self._rate


class BufferSink(AudioSink):
    """Keeps all audio written in memory (copied once into a growing array).

    Args:
        rate: sample rate in Hz.
    """

    def __init__(self, rate: int = API_RATE) -> None:
        super().__init__(rate)
        self._data: PCM = np.empty(4096, dtype=np.int16)
        self._size = 0

    @property
    def samples(self) -> int:
        """Samples held."""
        return self._size

    @property
    def duration(self) -> float:
        """Seconds of audio held."""
        return self._size / self._rate

    def array(self) -> PCM:
        """A copy of everything written so far, as one PCM array."""
        return self._data[: self._size].copy()

    def clear(self) -> None:
        """Forget what was written."""
        self._size = 0

    async def _write(self, pcm: PCM) -> None:
        end = self._size + pcm.size
        if end > self._data.size:
            grown = np.empty(max(end, 2 * self._data.size), dtype=np.int16)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = pcm
        self._size = end


class NullSink(AudioSink):
    """Discards audio, counting it.

    Args:
        rate: sample rate in Hz.
    """

    def __init__(self, rate: int = API_RATE) -> None:
        super().__init__(rate)
        self.samples = 0
        """Samples written so far."""

    async def _write(self, pcm: PCM) -> None:
        self.samples += pcm.size


class ChunkQueueSink(AudioSink):
    """A sink that is also an async iterator of the chunks written to it.

    Writes never block: when ``maxsize`` chunks are waiting, the oldest is dropped and counted
    in :attr:`dropped`. Iteration ends after :meth:`close`, once the queue is empty. The chunks
    are the arrays written (not copies).

    Args:
        rate: sample rate in Hz.
        maxsize: most chunks held, > 0.
    """

    def __init__(self, rate: int = API_RATE, *, maxsize: int = 50) -> None:
        super().__init__(rate)
        if maxsize <= 0:
            raise ValueError(f"maxsize must be > 0, got {maxsize}")
        self._queue: collections.deque[PCM] = collections.deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        """Chunks dropped because the queue was full."""
        self.dropped_samples = 0
        """Samples in the dropped chunks."""

    @property
    def queued(self) -> int:
        """Chunks waiting to be read."""
        return len(self._queue)

    @property
    def queued_ms(self) -> float:
        """Audio waiting to be read, in milliseconds."""
        return samples_to_ms(sum(c.size for c in self._queue), self._rate)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> PCM:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    async def _write(self, pcm: PCM) -> None:
        if len(self._queue) >= self._maxsize:
            self.dropped += 1
            self.dropped_samples += self._queue.popleft().size
        self._queue.append(pcm)
        self._wake()

    async def _close(self) -> None:
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class TeeSink(AudioSink):
    """Writes the same audio to several sinks of the same rate, in order.

    Closing the tee closes every sink, even if one of them fails (the first error is raised).

    Args:
        *sinks: the sinks, at least one.

    Raises:
        AudioFormatError: no sinks, or sinks with different rates.
    """

    def __init__(self, *sinks: Sink) -> None:
        if not sinks:
            raise AudioFormatError("TeeSink needs at least one sink")
        rates = {s.rate for s in sinks}
        if len(rates) > 1:
            raise AudioFormatError(f"TeeSink needs sinks of one sample rate, got {sorted(rates)}")
        super().__init__(sinks[0].rate)
        self.sinks = sinks

    async def _write(self, pcm: PCM) -> None:
        for sink in self.sinks:
            await sink.write(pcm)

    async def _close(self) -> None:
        error: BaseException | None = None
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as exc:  # close the others, then re-raise
                error = error or exc
        if error is not None:
            raise error
