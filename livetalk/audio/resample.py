"""Stateful sample-rate conversion of PCM, on top of FFmpeg's swresample (through PyAV).

A :class:`Resampler` keeps the filter's history between calls, so a stream resampled chunk by
chunk is (to within rounding) the same as the whole signal resampled at once: no clicks at
chunk boundaries. Use one resampler per continuous stream, :meth:`Resampler.flush` at its end,
and :func:`resample` for a one-shot conversion of a whole array.
"""

from __future__ import annotations

from typing import cast

import av
import numpy as np

from livetalk.audio.format import PCM, check_pcm, check_rate, empty_pcm

__all__ = ["Resampler", "resample"]


class Resampler:
    """Converts a continuous PCM stream from ``in_rate`` to ``out_rate``.

    When the rates are equal, :meth:`process` returns its input unchanged (no copy).
    The converter delays its output by a few samples; :meth:`flush` returns them at the end of
    the stream, after which the resampler starts a new stream.

    Args:
        in_rate: input sample rate in Hz.
        out_rate: output sample rate in Hz.

    Raises:
        AudioFormatError: a rate is not a positive integer.
    """

    __slots__ = ("_av", "in_rate", "out_rate")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = check_rate(in_rate, "input rate")
        self.out_rate = check_rate(out_rate, "output rate")
        self._av: av.AudioResampler | None = None

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and audio passes through untouched."""
        return self.in_rate == self.out_rate

    def process(self, pcm: PCM) -> PCM:
        """Resample the next piece of the stream.

        Args:
            pcm: 1-D int16 samples at ``in_rate``.

        Returns:
            The samples now available at ``out_rate`` (the count varies slightly from call to
            call as the filter's delay line fills).

        Raises:
            AudioFormatError: ``pcm`` is not a 1-D int16 array.
        """
        check_pcm(pcm)
        if self.in_rate == self.out_rate or pcm.size == 0:
            return pcm
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.in_rate
        if self._av is None:
            self._av = av.AudioResampler(format="s16", layout="mono", rate=self.out_rate)
        return _frames_to_pcm(self._av.resample(frame))

    def flush(self) -> PCM:
        """End the stream: return the samples still held in the filter and reset.

        Returns:
            The remaining output samples (empty if nothing is held, or for equal rates).
        """
        resampler, self._av = self._av, None
        if resampler is None:
            return empty_pcm()
        return _frames_to_pcm(resampler.resample(None))

    def __repr__(self) -> str:
        return f"Resampler({self.in_rate}, {self.out_rate})"


def resample(pcm: PCM, in_rate: int, out_rate: int) -> PCM:
    """Resample a whole signal at once.

    Args:
        pcm: 1-D int16 samples at ``in_rate``.
        in_rate: input sample rate in Hz.
        out_rate: output sample rate in Hz.

    Returns:
        The signal at ``out_rate``; ``pcm`` itself when the rates are equal.
    """
    resampler = Resampler(in_rate, out_rate)
    head = resampler.process(pcm)
    if resampler.passthrough:
        return head
    tail = resampler.flush()
    return np.concatenate((head, tail)) if tail.size else head


def _frames_to_pcm(frames: list[av.AudioFrame]) -> PCM:
    if not frames:
        return empty_pcm()
    if len(frames) == 1:
        return cast(PCM, frames[0].to_ndarray()[0])
    return np.concatenate([f.to_ndarray()[0] for f in frames])
