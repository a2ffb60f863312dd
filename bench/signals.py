"""Test signals and what the benchmarks compute from them.

A :class:`Recording` keeps received PCM with the time each chunk was delivered;
:func:`chirp_latency` finds a chirp in it by cross-correlation and returns how long after it
was sent its first sample was delivered. :func:`lateness_ms` and :func:`percentile` turn frame
send times into the pacing figures of the load stage.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MeasurementError",
    "Recording",
    "chirp",
    "chirp_latency",
    "find_chirp",
    "lateness_histogram",
    "lateness_ms",
    "median",
    "percentile",
    "tone",
]

CHIRP_MS = 100
"""Length of the test chirp."""


class MeasurementError(RuntimeError):
    """A benchmark could not measure what it wanted (no chirp found, a lost turn...)."""


def chirp(rate: int, *, ms: float = CHIRP_MS, f0: float = 300.0, f1: float = 3400.0,
          amplitude: int = 12000) -> np.ndarray:
    """A linear sweep from ``f0`` to ``f1`` Hz with 5 ms ramps, int16 mono at ``rate``."""
    n = round(rate * ms / 1000)
    t = np.arange(n) / rate
    duration = n / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * duration))
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * rate))
    return np.rint(amplitude * ramp * np.sin(phase)).astype(np.int16)


def tone(seconds: float, rate: int, *, hz: float = 440.0, amplitude: int = 6000) -> np.ndarray:
    """A steady sine tone, int16 mono at ``rate`` (the load stages' "speech")."""
    t = np.arange(round(seconds * rate)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


class Recording:
    """Received mono PCM at ``rate`` with the delivery time of each chunk.

    Call :meth:`add` from the receive path (a livetalk audio consumer, a raw drain loop);
    :meth:`mark` before sending a chirp so that :func:`chirp_latency` only searches what came
    after it.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.times: list[float] = []
        self.starts: list[int] = []
        self.chunks: list[np.ndarray] = []
        self.samples = 0
        self.enabled = False

    def add(self, pcm: np.ndarray, at: float | None = None) -> None:
        """Append one delivered chunk (stamped now unless ``at`` is given)."""
        if not self.enabled:
            return
        self.times.append(time.monotonic() if at is None else at)
        self.starts.append(self.samples)
        self.chunks.append(np.asarray(pcm, dtype=np.int16).copy())
        self.samples += int(pcm.size)

    def mark(self) -> None:
        """Forget what was recorded and start recording."""
        self.times, self.starts, self.chunks, self.samples = [], [], [], 0
        self.enabled = True

    def stop(self) -> None:
        """Stop recording (what was recorded stays)."""
        self.enabled = False

    def pcm(self) -> np.ndarray:
        """Everything recorded since :meth:`mark`, as one array."""
        if not self.chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.chunks)

    def delivery_time(self, sample: int) -> float:
        """When ``sample`` reached the consumer, played back from its chunk's delivery time."""
        index = int(np.searchsorted(self.starts, sample, side="right")) - 1
        index = max(index, 0)
        return self.times[index] + (sample - self.starts[index]) / self.rate


def find_chirp(pcm: np.ndarray, reference: np.ndarray, *, min_score: float = 0.5) -> int:
    """The sample where ``reference`` starts in ``pcm`` (normalised cross-correlation peak).

    Raises:
        MeasurementError: the best match correlates less than ``min_score``.
    """
    if pcm.size < reference.size:
        raise MeasurementError(f"only {pcm.size} samples recorded, the chirp has {reference.size}")
    x = pcm.astype(np.float64)
    ref = reference.astype(np.float64)
    n = 1 << math.ceil(math.log2(x.size + ref.size))
    spectrum = np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n))
    corr = np.fft.irfft(spectrum, n)[: x.size - ref.size + 1]
    energy = np.convolve(x * x, np.ones(ref.size), mode="valid")
    score = corr / (np.sqrt(np.maximum(energy, 1e-9)) * np.linalg.norm(ref))
    best = int(np.argmax(score))
    if score[best] < min_score:
        raise MeasurementError(f"no chirp found (best correlation {score[best]:.2f})")
    return best


def chirp_latency(recording: Recording, reference: np.ndarray, sent_at: float) -> float:
    """Milliseconds from ``sent_at`` (when the chirp's first sample left) to its delivery."""
    start = find_chirp(recording.pcm(), reference)
    return (recording.delivery_time(start) - sent_at) * 1000


def lateness_ms(send_times: Sequence[tuple[int, float]], frame_ms: float = 20.0) -> np.ndarray:
    """Lateness of each paced frame from ``(frame index, send time)`` pairs.

    The schedule's origin is taken as the earliest ``time - index x frame``, i.e. the frame
    that was least late is taken as on time; lateness is measured from there.
    """
    if not send_times:
        return np.zeros(0)
    idx = np.array([i for i, _ in send_times], dtype=np.float64)
    at = np.array([t for _, t in send_times], dtype=np.float64)
    offsets = at - idx * frame_ms / 1000
    return np.asarray((offsets - offsets.min()) * 1000)


def lateness_histogram(late: np.ndarray) -> dict[str, int]:
    """Counts of frames by lateness bucket (ms)."""
    edges = [0, 2, 5, 10, 20, 50, 100, math.inf]
    out: dict[str, int] = {}
    for lo, hi in zip(edges, edges[1:], strict=False):
        label = f">={lo}" if hi == math.inf else f"{lo}-{hi}"
        out[label] = int(np.count_nonzero((late >= lo) & (late < hi)))
    return out


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0-100); NaN for no values."""
    arr = np.asarray(values, dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else math.nan


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values."""
    return float(statistics.median(values)) if values else math.nan
