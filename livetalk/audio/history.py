"""A bounded record of a continuous audio stream, addressable by stream time.

The call keeps what it sent on one of these so that a user turn reported by the server
(``speech_started.audio_start_ms`` .. ``speech_stopped.audio_end_ms``, in the server's
input-stream time) can be handed to the host as numpy audio.
"""

from __future__ import annotations

import numpy as np

from livetalk.audio.format import PCM, check_pcm, check_rate

__all__ = ["AudioHistory"]


class AudioHistory:
    """The last ``seconds`` of a stream, as a numpy ring buffer.

    Args:
        rate: sample rate of the stream in Hz.
        seconds: how much to retain; older audio is forgotten.
    """

    def __init__(self, rate: int, seconds: float) -> None:
        self.rate = check_rate(rate)
        self._ring = np.zeros(max(1, round(rate * seconds)), dtype=np.int16)
        self._total = 0  # samples written since the stream began

    @property
    def end_ms(self) -> float:
        """Stream time of the end of what has been written."""
        return self._total * 1000.0 / self.rate

    def write(self, pcm: PCM) -> None:
        """Append the next samples of the stream."""
        pcm = check_pcm(pcm)
        size = self._ring.size
        skipped = max(0, pcm.size - size)  # only the last `size` samples can be kept
        kept = pcm[skipped:]
        n = kept.size
        start = (self._total + skipped) % size
        first = min(n, size - start)
        self._ring[start:start + first] = kept[:first]
        if first < n:
            self._ring[: n - first] = kept[first:]
        self._total += pcm.size

    def slice_ms(self, start_ms: float, end_ms: float) -> PCM:
        """A copy of the audio between two stream times (clipped to what is retained)."""
        size = self._ring.size
        lo = max(round(start_ms * self.rate / 1000), self._total - size, 0)
        hi = min(round(end_ms * self.rate / 1000), self._total)
        if hi <= lo:
            return np.zeros(0, dtype=np.int16)
        a, b = lo % size, hi % size
        if a < b:
            return self._ring[a:b].copy()
        return np.concatenate([self._ring[a:], self._ring[:b]])
