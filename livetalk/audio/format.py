"""PCM conventions and small helpers shared by the audio and transport modules.

livetalk moves audio around as **PCM**: a 1-D, C-contiguous ``numpy.int16`` array of mono
samples at a rate stated next to it (a ``rate`` attribute or argument). The Realtime API speaks
24 kHz (:data:`API_RATE`); WebRTC media runs at 48 kHz (:data:`RTC_RATE`). Sources hand out
100 ms chunks (:data:`CHUNK_MS`); the outbound track sends 20 ms frames (:data:`FRAME_MS`).

PCM arrays are treated as immutable once handed on: producers never write into an array after
yielding it, and consumers that keep audio may keep the array itself.

Convert foreign arrays with :func:`to_int16_mono`; check arrays at API boundaries with
:func:`check_pcm`; re-block a stream of arrays into fixed-size chunks with :class:`Chunker`.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from livetalk.errors import AudioFormatError
from livetalk.protocol.session import PCM_RATE

__all__ = [
    "API_RATE",
    "CHUNK_MS",
    "FRAME_MS",
    "PCM",
    "RTC_RATE",
    "Chunker",
    "check_pcm",
    "check_rate",
    "empty_pcm",
    "ms_to_samples",
    "rms_dbfs",
    "samples_to_ms",
    "to_float32",
    "to_int16_mono",
]

PCM: TypeAlias = npt.NDArray[np.int16]
"""A 1-D array of mono int16 samples."""

API_RATE = PCM_RATE
"""Sample rate of the Realtime API's PCM audio, in Hz: the protocol's
:data:`~livetalk.protocol.session.PCM_RATE` itself, under the name the audio code uses."""
RTC_RATE = 48000
"""Sample rate of WebRTC Opus media, in Hz."""
FRAME_MS = 20
"""Duration of one WebRTC audio frame, in milliseconds."""
CHUNK_MS = 100
"""Duration of one source chunk, in milliseconds."""

_MAX_CHANNELS = 8
_FLOAT_LIMIT = 2.0
"""Float samples beyond this magnitude are taken for int-scaled data and refused."""
_INT16_SCALE = 32768.0


def check_rate(rate: object, what: str = "rate") -> int:
    """Validate a sample rate.

    Args:
        rate: the candidate rate in Hz.
        what: how to name the value in the error message.

    Returns:
        The rate as an int.

    Raises:
        AudioFormatError: ``rate`` is not a positive integer.
    """
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
        raise AudioFormatError(f"{what} must be a positive integer in Hz, got {rate!r}")
    return int(rate)


def ms_to_samples(ms: float, rate: int) -> int:
    """Number of samples in ``ms`` milliseconds at ``rate`` Hz (rounded down)."""
    return int(ms * rate) // 1000


def samples_to_ms(samples: int, rate: int) -> float:
    """Duration in milliseconds of ``samples`` samples at ``rate`` Hz."""
    return samples * 1000.0 / rate


def empty_pcm() -> PCM:
    """A new PCM array with no samples."""
    return np.empty(0, dtype=np.int16)


def check_pcm(pcm: object) -> PCM:
    """Check that ``pcm`` is PCM (a 1-D int16 array) and return it unchanged.

    This is the cheap check used on hot paths; use :func:`to_int16_mono` to convert.

    Raises:
        AudioFormatError: ``pcm`` is not a 1-D numpy int16 array.
    """
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise AudioFormatError(
            "expected PCM as a 1-D numpy int16 array (mono), got "
            + _describe(pcm)
            + "; convert with livetalk.audio.to_int16_mono()"
        )
    return pcm


def to_int16_mono(array: Any, *, channels_last: bool = True) -> PCM:
    """Convert an audio array to PCM (1-D int16 mono).

    Accepts int16 samples, or float32/float64 samples in [-1, 1] (values slightly beyond are
    clipped). A 1-D array is mono; a 2-D array holds several channels, which are averaged.
    A 1-D int16 C-contiguous array is returned as is, without a copy.

    Args:
        array: the samples, a numpy array.
        channels_last: for 2-D input, True if the shape is ``(samples, channels)`` (the
            sounddevice and soundfile layout), False if it is ``(channels, samples)`` (the
            PyAV planar layout).

    Returns:
        A 1-D C-contiguous int16 array.

    Raises:
        AudioFormatError: an unsupported dtype, a shape that is not 1-D or 2-D with 1 to 8
            channels, NaN or infinite floats, or floats far beyond [-1, 1] (int-scaled data).
    """
    if not isinstance(array, np.ndarray):
        raise AudioFormatError(f"expected a numpy array of audio samples, got {_describe(array)}")
    if array.dtype not in (np.int16, np.float32, np.float64):
        raise AudioFormatError(
            f"expected int16 samples or float32/float64 samples in [-1, 1], got dtype {array.dtype}"
        )
    if array.ndim == 2:
        if not channels_last:
            array = array.T
        channels = array.shape[1]
        if not 1 <= channels <= _MAX_CHANNELS:
            hint = ""
            if channels_last and array.shape[0] <= _MAX_CHANNELS:
                hint = "; for (channels, samples) arrays pass channels_last=False"
            raise AudioFormatError(
                f"expected a 2-D array shaped (samples, channels) with 1 to {_MAX_CHANNELS} "
                f"channels, got shape {array.shape}{hint}"
            )
    elif array.ndim != 1:
        raise AudioFormatError(
            f"expected a 1-D mono array or a 2-D (samples, channels) array, got shape {array.shape}"
        )
    if array.dtype == np.int16:
        if array.ndim == 2:
            if array.shape[1] == 1:
                array = array[:, 0]
            else:
                array = np.rint(array.mean(axis=1, dtype=np.float32)).astype(np.int16)
        return np.ascontiguousarray(array)
    if not np.isfinite(array).all():
        raise AudioFormatError("expected finite float samples in [-1, 1], got NaN or infinity")
    if array.ndim == 2:
        array = array.mean(axis=1)
    peak = float(np.abs(array).max()) if array.size else 0.0
    if peak > _FLOAT_LIMIT:
        raise AudioFormatError(
            f"expected float samples in [-1, 1], got a peak of {peak:g}; int-scaled samples "
            "should be converted to int16 (or divided by 32768)"
        )
    scaled = np.rint(array * _INT16_SCALE)
    np.clip(scaled, -32768, 32767, out=scaled)
    pcm: PCM = scaled.astype(np.int16)
    return pcm


def to_float32(pcm: PCM) -> npt.NDArray[np.float32]:
    """Convert PCM to float32 samples in [-1, 1) (the inverse of :func:`to_int16_mono`)."""
    out: npt.NDArray[np.float32] = check_pcm(pcm).astype(np.float32)
    out *= np.float32(1.0 / _INT16_SCALE)
    return out


def rms_dbfs(pcm: PCM) -> float:
    """Root-mean-square level of PCM, in dB relative to full scale.

    A full-scale square wave is 0 dBFS, a full-scale sine about -3 dBFS.

    Returns:
        The level in dBFS, or ``-math.inf`` for digital silence or an empty array.
    """
    check_pcm(pcm)
    if pcm.size == 0:
        return -math.inf
    x = pcm.astype(np.float64)
    mean_square = float(np.dot(x, x)) / pcm.size
    if mean_square == 0.0:
        return -math.inf
    return 10.0 * math.log10(mean_square / (_INT16_SCALE * _INT16_SCALE))


class Chunker:
    """Re-blocks a stream of PCM arrays into chunks of a fixed number of samples.

    Chunks are views of the input when the input lines up with the chunk grid, so a stream that
    is already chunked passes through without copies.

    Args:
        size: samples per chunk, > 0.
    """

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise AudioFormatError(f"chunk size must be a positive number of samples, got {size}")
        self.size = size
        self._rest: PCM = empty_pcm()

    @property
    def pending(self) -> int:
        """Samples held back until a chunk is full."""
        return int(self._rest.size)

    def push(self, pcm: PCM) -> list[PCM]:
        """Add samples and return the chunks completed by them (possibly none)."""
        if self._rest.size:
            pcm = np.concatenate((self._rest, pcm))
        size = self.size
        full = pcm.size - pcm.size % size
        self._rest = pcm[full:]
        return [pcm[i : i + size] for i in range(0, full, size)]

    def flush(self) -> PCM:
        """Return the held-back samples (shorter than a chunk, possibly empty) and reset."""
        rest, self._rest = self._rest, empty_pcm()
        return rest


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    return type(value).__name__
