"""Recording both directions of a call: what you sent, and what the model said.

- :class:`TeeSource` wraps a source and writes every chunk it hands on to a sink, so the
  recording holds exactly the audio that was fed to the call (after any processing done by the
  wrapped source, e.g. echo control).
- :class:`Recorder` records a whole call into two files (any format
  :class:`~livetalk.audio.sinks.WavSink` writes: ``.wav``, ``.ogg``, ``.flac``...): the user
  side through :meth:`Recorder.tee` (for ``call.stream``) or :meth:`Recorder.send_audio` (for
  pushed microphone audio), the assistant side from :meth:`Call.audio_chunks
  <livetalk.call.Call.audio_chunks>`::

      async with livetalk.connect(...) as call:
          async with Recorder(call, user_path="me.wav", assistant_path="model.wav") as rec:
              await call.stream(rec.tee(FileSource("question.wav")))
              await call.wait_for_turns(2)

The assistant file holds the remote track as received: over WebRTC that includes the silence
between replies, so its timeline follows the call's. The user file holds what was sent, back to
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from livetalk._tasks import ClosesOnce
from livetalk.audio.format import API_RATE, PCM
from livetalk.audio.resample import Resampler
from livetalk.audio.sinks import Sink, WavSink
from livetalk.audio.sources import AudioSource, Source
from livetalk.errors import CallClosedError, LivetalkError

if TYPE_CHECKING:
    from livetalk.call import Call

__all__ = ["Recorder", "TeeSource"]

_closing: set[asyncio.Task[None]] = set()
"""Sinks being closed in the background (a reference keeps the task alive)."""


class TeeSource(AudioSource):
    """A source that yields the chunks of ``source`` and writes each one to ``sink``.

    Chunks are written just before they are handed on, resampled if the sink's rate differs.
    Closing the tee closes the wrapped source and (unless ``close_sink=False``) the sink.

    Args:
        source: the source to record.
        sink: where the copy goes (a :class:`~livetalk.audio.sinks.WavSink`, a buffer...).
        close_sink: close the sink when the tee closes; False when the sink is shared.
    """

    def __init__(self, source: Source, sink: Sink, *, close_sink: bool = True) -> None:
        super().__init__(source.rate)
        self.source = source
        self.sink = sink
        self._close_sink = close_sink
        self._iter: AsyncIterator[PCM] | None = None
        self._resampler = Resampler(source.rate, sink.rate)

    async def _next_chunk(self) -> PCM | None:
        if self._iter is None:
            self._iter = aiter(self.source)
        try:
            chunk = await anext(self._iter)
        except StopAsyncIteration:
            return None
        await self.sink.write(self._resampler.process(chunk))
        return chunk

    async def _close(self) -> None:
        try:
            await self.source.aclose()
            tail = self._resampler.flush()
            if tail.size:
                await self.sink.write(tail)
        finally:
            if self._close_sink:
                await self.sink.close()


class Recorder(ClosesOnce):
    """Records a call's user audio and assistant audio into two files.

    The assistant side starts recording at once (from the next chunk received); the user side
    records what goes through :meth:`tee` or :meth:`send_audio`. Call :meth:`close` (or leave
    the ``async with`` block) to finish the files; closing the call also ends the assistant
    recording.

    Args:
        call: the open call.
        user_path: the file for the user audio; None records no user audio.
        assistant_path: the file for the assistant audio; None records no assistant audio.
        rate: the sample rate of both files in Hz (audio at other rates is resampled).

    Raises:
        AudioFileError: a file cannot be created.
    """

    def __init__(
        self,
        call: Call,
        *,
        user_path: str | os.PathLike[str] | None = None,
        assistant_path: str | os.PathLike[str] | None = None,
        rate: int = API_RATE,
    ) -> None:
        self.call = call
        self.user_sink: WavSink | None = None
        """The user recording (None when not recorded)."""
        self.assistant_sink: WavSink | None = None
        """The assistant recording (None when not recorded)."""
        self._resamplers: dict[int, Resampler] = {}
        self._pump: asyncio.Task[None] | None = None
        if user_path is not None:
            self.user_sink = WavSink(user_path, rate)
        if assistant_path is not None:
            try:
                self.assistant_sink = WavSink(assistant_path, rate)
            except LivetalkError:
                if self.user_sink is not None:  # finish the file already created
                    closing = asyncio.ensure_future(self.user_sink.close())
                    _closing.add(closing)
                    closing.add_done_callback(_closing.discard)
                raise
            self._pump = asyncio.ensure_future(self._record_assistant(self.assistant_sink))

    def tee(self, source: Source) -> Source:
        """Wrap ``source`` so that what it feeds is also written to the user file.

        Returns ``source`` itself when no user file is recorded.
        """
        if self.user_sink is None:
            return source
        return TeeSource(source, self.user_sink, close_sink=False)

    async def send_audio(self, pcm: PCM, rate: int = API_RATE) -> None:
        """Send ``pcm`` on the call (``call.send_audio``) and write it to the user file."""
        self.call.send_audio(pcm, rate)
        sink = self.user_sink
        if sink is not None:
            resampler = self._resamplers.get(rate)
            if resampler is None:
                resampler = self._resamplers[rate] = Resampler(rate, sink.rate)
            await sink.write(resampler.process(pcm))

    async def _record_assistant(self, sink: WavSink) -> None:
        with contextlib.suppress(CallClosedError):
            async for chunk in self.call.audio_chunks():
                await sink.write(chunk)

    async def _close(self) -> None:
        """Stop recording and finish both files (``close()``, idempotent, calls it once)."""
        pump, self._pump = self._pump, None
        if pump is not None:
            await asyncio.sleep(0)  # let chunks already received reach the file
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        try:
            if self.user_sink is not None:
                for resampler in self._resamplers.values():
                    tail = resampler.flush()
                    if tail.size:
                        await self.user_sink.write(tail)
                await self.user_sink.close()
        finally:
            if self.assistant_sink is not None:
                await self.assistant_sink.close()

