"""A bounded playout buffer: a numpy ring of int16 samples between a writer and a reader.

The writer (the network side) pushes PCM whenever it arrives; the reader (a sound card callback
or the paced outbound track) pulls exactly ``n`` samples at a steady pace. The buffer absorbs the
jitter between them:

- It waits until ``prebuffer_ms`` is queued before it starts playing, and again after it ran dry,
  so that playback does not stutter on every late packet.
- Reading never blocks: missing samples are zeros. Running dry while playing counts an
  underrun, unless :meth:`PlayoutBuffer.mark_end` said the stream ended there.
- Writing never blocks: when the buffer is full the oldest samples are dropped and counted.
- :meth:`PlayoutBuffer.clear` (barge-in) fades out what is about to play and drops the rest.

All methods are thread-safe (a sound card callback may read while the event loop writes). Memory
grows with use, up to ``capacity_ms``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from livetalk.audio.format import PCM, check_pcm, check_rate, ms_to_samples, samples_to_ms
from livetalk.errors import AudioFormatError

__all__ = ["PlayoutBuffer", "PlayoutStatistics"]

_INITIAL_SAMPLES = 8192


@dataclass(frozen=True, slots=True)
class PlayoutStatistics:
    """What a :class:`PlayoutBuffer` holds and has done, at one moment.

    Attributes:
        buffered_ms: audio waiting to be read.
        capacity_ms: the most audio the buffer holds.
        playing: the prebuffer was reached and the buffer has not run dry since.
        overruns: writes that overflowed the capacity and dropped old samples.
        dropped_samples: samples dropped by overruns.
        underruns: times the buffer ran dry while playing.
        cleared_samples: samples dropped by :meth:`PlayoutBuffer.clear`.
        written_samples: samples ever written.
        played_samples: buffered samples ever read (zeros filled in are not counted).
    """

    buffered_ms: float
    capacity_ms: float
    playing: bool
    overruns: int
    dropped_samples: int
    underruns: int
    cleared_samples: int
    written_samples: int
    played_samples: int


class PlayoutBuffer:
    """A ring buffer of mono int16 samples with prebuffering, drop-oldest and fade-out clear.

    Args:
        rate: sample rate in Hz of what is written and read.
        capacity_ms: most audio held; older samples are dropped beyond it.
        prebuffer_ms: audio to accumulate before playing starts (and restarts after an
            underrun); 0 plays as soon as anything is there.

    Raises:
        AudioFormatError: a non-positive rate or capacity, or a prebuffer beyond the capacity.
    """

    def __init__(self, rate: int, capacity_ms: float = 2000, prebuffer_ms: float = 60) -> None:
        self.rate = check_rate(rate)
        self._capacity = ms_to_samples(capacity_ms, self.rate)
        self._prebuffer = ms_to_samples(prebuffer_ms, self.rate)
        if self._capacity <= 0:
            raise AudioFormatError(f"capacity_ms must hold at least one sample, got {capacity_ms}")
        if not 0 <= self._prebuffer <= self._capacity:
            raise AudioFormatError(
                f"prebuffer_ms must be between 0 and capacity_ms ({capacity_ms}), "
                f"got {prebuffer_ms}"
            )
        self._ring: PCM = np.zeros(min(self._capacity, _INITIAL_SAMPLES), dtype=np.int16)
        self._head = 0
        self._size = 0
        self._playing = False
        self._ending = False
        self._lock = threading.Lock()
        self.overruns = 0
        """Writes that overflowed the capacity and dropped old samples."""
        self.dropped_samples = 0
        """Samples dropped by overruns."""
        self.underruns = 0
        """Times the buffer ran dry while playing (the reader got zeros mid-stream)."""
        self.cleared_samples = 0
        """Samples dropped by :meth:`clear`."""
        self.written_samples = 0
        """Samples ever written."""
        self.played_samples = 0
        """Buffered samples ever read (zeros filled in are not counted)."""

    @property
    def capacity_ms(self) -> float:
        """Most audio the buffer holds, in milliseconds."""
        return samples_to_ms(self._capacity, self.rate)

    @property
    def buffered(self) -> int:
        """Samples waiting to be read."""
        return self._size

    @property
    def buffered_ms(self) -> float:
        """Audio waiting to be read, in milliseconds."""
        return samples_to_ms(self._size, self.rate)

    @property
    def playing(self) -> bool:
        """True once the prebuffer was reached, until the buffer runs dry."""
        return self._playing

    def write(self, pcm: PCM) -> None:
        """Append samples; if the capacity is exceeded, drop the oldest and count an overrun.

        Raises:
            AudioFormatError: ``pcm`` is not a 1-D int16 array.
        """
        check_pcm(pcm)
        n = int(pcm.size)
        if n == 0:
            return
        with self._lock:
            self.written_samples += n
            self._ending = False
            cap = self._capacity
            if n >= cap:
                self._drop_oldest(self._size + n - cap)
                pcm = pcm[n - cap :]
                n = cap
                self._size = 0
                self._head = 0
            else:
                excess = self._size + n - cap
                if excess > 0:
                    self._drop_oldest(excess)
            if self._size + n > self._ring.size:
                self._grow(self._size + n)
            ring = self._ring
            length = ring.size
            tail = (self._head + self._size) % length
            first = min(n, length - tail)
            ring[tail : tail + first] = pcm[:first]
            if first < n:
                ring[: n - first] = pcm[first:]
            self._size += n

    def read(self, n: int) -> PCM:
        """Return exactly ``n`` samples: buffered audio, then zeros for what is missing."""
        out = np.empty(n, dtype=np.int16)
        self.read_into(out)
        return out

    def read_into(self, out: npt.NDArray[np.int16]) -> int:
        """Fill ``out`` (a 1-D int16 array or view) with the next samples.

        Zeros fill what is missing: everything while prebuffering, the remainder on an underrun.

        Returns:
            How many of the samples came from the buffer (the rest are zeros).
        """
        n = int(out.size)
        with self._lock:
            if not self._playing:
                size = self._size
                if size == 0 or (size < self._prebuffer and not self._ending):
                    out[:] = 0
                    return 0
                self._playing = True
            k = min(n, self._size)
            ring = self._ring
            length = ring.size
            head = self._head
            first = min(k, length - head)
            out[:first] = ring[head : head + first]
            if first < k:
                out[first:k] = ring[: k - first]
            if k < n:
                out[k:] = 0
            self._head = (head + k) % length
            self._size -= k
            self.played_samples += k
            if k < n:
                self._playing = False
                if not self._ending:
                    self.underruns += 1
                self._ending = False
            return k

    def mark_end(self) -> None:
        """Say that no more audio follows for now.

        What is buffered plays out even if it is shorter than the prebuffer, and running dry
        after it is not counted as an underrun. The next :meth:`write` starts a new stream.
        """
        with self._lock:
            self._ending = True

    def clear(self, fade_ms: float = 5) -> float:
        """Drop the buffered audio (barge-in), fading out rather than cutting.

        The next ``fade_ms`` of audio stays, ramped down to silence, so playback does not click;
        everything after it is dropped.

        Returns:
            Milliseconds of audio dropped (the faded part is not counted).
        """
        with self._lock:
            fade = min(self._size, max(0, ms_to_samples(fade_ms, self.rate)))
            dropped = self._size - fade
            if fade:
                ramp = np.arange(fade, 0, -1, dtype=np.float32) / np.float32(fade + 1)
                ring = self._ring
                length = ring.size
                head = self._head
                first = min(fade, length - head)
                seg = ring[head : head + first]
                seg[:] = np.rint(seg * ramp[:first])
                if first < fade:
                    seg = ring[: fade - first]
                    seg[:] = np.rint(seg * ramp[first:])
                self._ending = True
            self._size = fade
            self.cleared_samples += dropped
            return samples_to_ms(dropped, self.rate)

    def statistics(self) -> PlayoutStatistics:
        """The levels and counters now, taken together under the lock."""
        with self._lock:
            return PlayoutStatistics(
                buffered_ms=samples_to_ms(self._size, self.rate),
                capacity_ms=samples_to_ms(self._capacity, self.rate),
                playing=self._playing,
                overruns=self.overruns,
                dropped_samples=self.dropped_samples,
                underruns=self.underruns,
                cleared_samples=self.cleared_samples,
                written_samples=self.written_samples,
                played_samples=self.played_samples,
            )

    def _drop_oldest(self, count: int) -> None:
        if count <= 0:
            return
        self.overruns += 1
        self.dropped_samples += count
        dropped_buffered = min(count, self._size)
        self._head = (self._head + dropped_buffered) % self._ring.size
        self._size -= dropped_buffered

    def _grow(self, needed: int) -> None:
        length = self._ring.size
        new = np.zeros(min(self._capacity, max(2 * length, needed)), dtype=np.int16)
        first = min(self._size, length - self._head)
        new[:first] = self._ring[self._head : self._head + first]
        new[first : self._size] = self._ring[: self._size - first]
        self._ring = new
        self._head = 0

    def __repr__(self) -> str:
        return (
            f"PlayoutBuffer(rate={self.rate}, buffered_ms={self.buffered_ms:.0f}, "
            f"capacity_ms={self.capacity_ms:.0f})"
        )
