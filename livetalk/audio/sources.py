"""Audio sources: async iterators of 100 ms PCM chunks.

A source has a ``rate`` (Hz), yields 1-D int16 mono chunks of
:data:`~livetalk.audio.format.CHUNK_MS` (100) milliseconds, and is closed with
``await source.aclose()`` (or ``async with source:``). Only the last chunk of a finite source
may be shorter: it is emitted short, never padded, so durations stay exact. Sources are not
paced; the consumer (the outbound track's ``play()``) sets the pace.

- :class:`ArraySource`: a numpy array already in memory.
- :class:`FileSource`: any file PyAV decodes (wav, mp3, ogg, flac, m4a, ...), decoded in a
  worker thread.
- :class:`SilenceSource`: silence, for a duration or endless.
- :func:`concat`: sources one after the other.
- ``MicrophoneSource`` lives in :mod:`livetalk.audio.devices`.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import av
import numpy as np

from livetalk._tasks import ClosesOnce
from livetalk.audio.format import (
    API_RATE,
    CHUNK_MS,
    PCM,
    Chunker,
    check_rate,
    ms_to_samples,
    to_int16_mono,
)
from livetalk.audio.resample import resample
from livetalk.errors import AudioFileError, AudioFormatError

__all__ = [
    "ArraySource",
    "AudioSource",
    "FileSource",
    "SilenceSource",
    "Source",
    "concat",
]

_DECODE_STEP_MS = 1000
"""Audio decoded per worker-thread step by FileSource."""


@runtime_checkable
class Source(Protocol):
    """What livetalk accepts as a source: async iteration of PCM chunks, a rate, ``aclose()``."""

    @property
    def rate(self) -> int:
        """Sample rate of the chunks, in Hz."""
        ...

    def __aiter__(self) -> AsyncIterator[PCM]: ...

    async def aclose(self) -> None:
        """Release what the source holds; iteration ends."""
        ...


class AudioSource(ClosesOnce, ABC):
    """Base class of the shipped sources: iteration, closing and ``async with``.

    Subclasses implement :meth:`_next_chunk` (return None at the end) and optionally
    :meth:`_close`.
    """

    def __init__(self, rate: int) -> None:
        self._rate = check_rate(rate)
        self._chunk = ms_to_samples(CHUNK_MS, self._rate)

    @property
    def rate(self) -> int:
        """Sample rate of the chunks, in Hz."""
        return self._rate

    @property
    def chunk_samples(self) -> int:
        """Samples in a full 100 ms chunk."""
        return self._chunk

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> PCM:
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = await self._next_chunk()
        except Exception:
            await self.aclose()
            raise
        if chunk is None:
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        """Close the source and release its resources; idempotent (as :meth:`close`)."""
        await self.close()


    @abstractmethod
    async def _next_chunk(self) -> PCM | None:
        """Return the next chunk, or None at the end."""



class ArraySource(AudioSource):
    """Chunks of an array held in memory.

    Args:
        array: int16, or float32/float64 in [-1, 1]; 1-D mono or 2-D ``(samples, channels)``
            (channels are averaged).
        rate: sample rate of ``array`` in Hz.
        target_rate: resample to this rate first (the source's ``rate`` is then
            ``target_rate``); None keeps ``rate``.

    Raises:
        AudioFormatError: unsupported dtype or shape, NaN, or a bad rate.
    """

    def __init__(self, array: Any, rate: int, *, target_rate: int | None = None) -> None:
        rate = check_rate(rate)
        pcm = to_int16_mono(array)
        if target_rate is not None:
            target_rate = check_rate(target_rate, "target_rate")
            pcm = resample(pcm, rate, target_rate)
            rate = target_rate
        super().__init__(rate)
        self._pcm = pcm
        self._pos = 0

    @property
    def duration(self) -> float:
        """Duration of the whole array in seconds."""
        return self._pcm.size / self._rate

    async def _next_chunk(self) -> PCM | None:
        pos = self._pos
        if pos >= self._pcm.size:
            return None
        self._pos = pos + self._chunk
        return self._pcm[pos : pos + self._chunk]


class SilenceSource(AudioSource):
    """Digital silence.

    Args:
        seconds: duration; None for endless silence.
        rate: sample rate in Hz.

    Raises:
        AudioFormatError: negative ``seconds`` or a bad rate.
    """

    def __init__(self, seconds: float | None, rate: int = API_RATE) -> None:
        super().__init__(rate)
        if seconds is not None and not seconds >= 0:
            raise AudioFormatError(f"seconds must be >= 0 or None, got {seconds!r}")
        self._remaining = None if seconds is None else round(seconds * self._rate)
        zeros = np.zeros(self._chunk, dtype=np.int16)
        zeros.flags.writeable = False
        self._zeros = zeros

    async def _next_chunk(self) -> PCM | None:
        if self._remaining is None:
            return self._zeros
        if self._remaining <= 0:
            return None
        n = min(self._remaining, self._chunk)
        self._remaining -= n
        return self._zeros[:n]


class FileSource(AudioSource):
    """Chunks decoded from an audio file (anything PyAV opens: wav, mp3, ogg, flac, m4a, ...).

    The first audio stream is decoded, downmixed to mono and resampled (statefully) to ``rate``
    in a worker thread, about a second of audio per step, so the event loop is never blocked
    on decoding. The constructor only checks that the file exists; it is opened and probed on
    the first iteration.

    Args:
        path: the file.
        rate: sample rate of the chunks in Hz.

    Raises:
        AudioFileError: the file does not exist or is not a regular file; or (when iterating)
            it cannot be opened, holds no audio stream, or fails to decode. The message names
            the file.
    """

    def __init__(self, path: str | os.PathLike[str], rate: int = API_RATE) -> None:
        super().__init__(rate)
        self.path = Path(path)
        if not self.path.is_file():
            reason = "not a regular file" if self.path.exists() else "no such file"
            raise AudioFileError(f"cannot open audio file {str(self.path)!r}: {reason}")
        self._container: av.container.InputContainer | None = None
        self._frames: Any = None
        self._resampler: av.AudioResampler | None = None
        self._eof = False
        self._chunker = Chunker(self._chunk)
        self._ready: list[PCM] = []
        self._step: asyncio.Future[list[PCM]] | None = None

    async def check(self) -> None:
        """Open the file and decode its first second now, before anything costly starts.

        A file that is not audio (a text file renamed ``.wav``), an empty file or one with
        no samples fails here instead of in the middle of a call. The decoded audio is kept:
        iterating afterwards still yields the file from its start.

        Raises:
            AudioFileError: the file cannot be opened or decoded, or holds no audio samples.
        """
        if self._ready or self._closed:
            return
        try:
            chunk = await self._next_chunk()
        except AudioFileError:
            await self.aclose()
            raise
        if chunk is None:
            await self.aclose()
            raise AudioFileError(f"audio file {str(self.path)!r} holds no audio samples")
        self._ready.append(chunk)  # the next one popped

    async def _next_chunk(self) -> PCM | None:
        while not self._ready:
            step = self._step
            if step is None:
                if self._eof:
                    return None
                step = self._step = asyncio.get_running_loop().run_in_executor(
                    None, self._decode_step
                )
            # Shielded: if the caller is cancelled, the step runs on in its thread; the next
            # call takes its chunks, and aclose() waits for it before closing the container.
            chunks = await asyncio.shield(step)
            self._step = None
            chunks.reverse()
            self._ready = chunks
        return self._ready.pop()

    def _decode_step(self) -> list[PCM]:
        """Decode about one step of audio (in a worker thread); return the completed chunks."""
        try:
            if self._container is None:
                self._open()
            assert self._resampler is not None
            wanted = ms_to_samples(_DECODE_STEP_MS, self._rate)
            got = 0
            chunks: list[PCM] = []
            while got < wanted:
                frame = next(self._frames, None)
                out = self._resampler.resample(frame)
                for f in out:
                    pcm = f.to_ndarray()[0]
                    got += pcm.size
                    chunks.extend(self._chunker.push(pcm))
                if frame is None:
                    self._eof = True
                    rest = self._chunker.flush()
                    if rest.size:
                        chunks.append(rest)
                    break
            return chunks
        except AudioFileError:
            self._eof = True
            raise
        except (av.FFmpegError, ValueError, OSError) as exc:
            self._eof = True
            raise AudioFileError(f"cannot decode audio file {str(self.path)!r}: {exc}") from exc

    def _open(self) -> None:
        try:
            container = av.open(os.fspath(self.path))
        except (av.FFmpegError, ValueError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise AudioFileError(f"cannot open audio file {str(self.path)!r}: {reason}") from exc
        if not container.streams.audio:
            container.close()
            raise AudioFileError(f"no audio stream in file {str(self.path)!r}")
        self._container = container
        self._frames = container.decode(container.streams.audio[0])
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self._rate)

    async def _close(self) -> None:
        step, self._step = self._step, None
        if step is not None and not step.done():
            await asyncio.wait([step])
        container, self._container = self._container, None
        self._frames = None
        self._ready = []
        if container is not None:
            container.close()


class _Concat(AudioSource):
    """Sources played one after the other, re-chunked so chunks stay 100 ms across joins."""

    def __init__(self, sources: tuple[Source, ...]) -> None:
        rates = {s.rate for s in sources}
        if len(rates) > 1:
            raise AudioFormatError(
                f"concat() needs sources of one sample rate, got {sorted(rates)} Hz; "
                "resample with FileSource(..., rate=) or ArraySource(..., target_rate=)"
            )
        super().__init__(rates.pop() if rates else API_RATE)
        self._sources = list(sources)
        self._iter: AsyncIterator[PCM] | None = None
        self._chunker = Chunker(self._chunk)
        self._ready: list[PCM] = []

    async def _next_chunk(self) -> PCM | None:
        while not self._ready:
            if not self._sources:
                rest = self._chunker.flush()
                return rest if rest.size else None
            if self._iter is None:
                self._iter = aiter(self._sources[0])
            try:
                pcm = await anext(self._iter)
            except StopAsyncIteration:
                await self._sources.pop(0).aclose()
                self._iter = None
                continue
            self._ready = self._chunker.push(pcm)
            self._ready.reverse()
        return self._ready.pop()

    async def _close(self) -> None:
        sources, self._sources = self._sources, []
        self._chunker.flush()
        self._ready = []
        for source in sources:
            await source.aclose()


def concat(*sources: Source) -> AudioSource:
    """Play ``sources`` one after the other, as one source.

    Chunks stay 100 ms across the joins (only the very last may be shorter). Each source is
    closed when it ends; closing the result closes those not yet finished.

    Raises:
        AudioFormatError: the sources do not all have the same rate.
    """
    return _Concat(sources)
