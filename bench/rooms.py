"""Simulated rooms between a speaker and a microphone, for the echo benchmark and tests.

Each :class:`Setup` is a room (size, reverberation time) with the speaker at a distance from
the microphone and a sound-device delay. Room impulse responses come from pyroomacoustics
(image-source shoebox rooms, absorption from the target RT60 by Sabine's formula); the
speaker is mildly non-linear (soft clipping); the microphone also picks up the user (from
their own position in the room) and background noise.

- :func:`acoustics` builds (and caches) the impulse responses of a setup.
- :class:`EchoPath` turns what the speaker plays into what the microphone hears of it,
  block by block (streaming: the echo of a block can only depend on what was played before),
  delayed by the device delay.
- :func:`pink_noise`, :func:`spectral_correlation` and :func:`power` are the measuring helpers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "ROOMS",
    "SETUPS",
    "Acoustics",
    "EchoPath",
    "PartitionedConvolver",
    "Room",
    "Setup",
    "acoustics",
    "loudspeaker",
    "pink_noise",
    "power",
    "spectral_correlation",
]

Floats = npt.NDArray[np.float64]

SPEAKER_GAIN_AT_1M = 0.25
"""Echo amplitude per unit of played signal along the direct path at 1 m (-12 dB)."""
USER_DISTANCE_M = 0.6
"""How far the user sits from the microphone."""
CLIP_DRIVE = 2.0
"""Loudspeaker non-linearity: ``tanh(drive * x) / drive`` on full-scale samples; 2.0 rounds
off peaks above about -12 dBFS (mild: the replies peak near -4 dBFS)."""


@dataclass(frozen=True)
class Room:
    """A shoebox room with the microphone (and the speaker next to it) on a desk.

    Attributes:
        name: what it stands for.
        dims: length, width, height in metres.
        rt60: the reverberation time asked of pyroomacoustics, in seconds.
        mic: the microphone's position.
    """

    name: str
    dims: tuple[float, float, float]
    rt60: float
    mic: tuple[float, float, float]


ROOMS = (
    Room("small office", (3.6, 3.0, 2.7), 0.25, (1.4, 1.3, 0.9)),
    Room("living room", (6.0, 4.5, 2.6), 0.4, (2.5, 2.0, 0.8)),
    Room("reverberant kitchen", (4.2, 3.2, 2.5), 0.55, (1.7, 1.4, 1.0)),
)


@dataclass(frozen=True)
class Setup:
    """A room, the speaker-microphone distance and the sound devices' delay."""

    room: Room
    distance_m: float
    device_delay_ms: float

    @property
    def name(self) -> str:
        return f"{self.room.name}, {self.distance_m:g} m, {self.device_delay_ms:g} ms"


SETUPS = (
    Setup(ROOMS[0], 0.3, 20),
    Setup(ROOMS[0], 1.2, 150),
    Setup(ROOMS[1], 0.3, 60),
    Setup(ROOMS[1], 1.2, 100),
    Setup(ROOMS[2], 0.3, 150),
    Setup(ROOMS[2], 1.2, 40),
)
"""Three rooms x two distances (a laptop's own speaker, a speaker across the desk), device
delays spread over 20-150 ms."""


@dataclass(frozen=True)
class Acoustics:
    """The impulse responses of a setup at one rate.

    Attributes:
        rate: sample rate in Hz.
        echo_rir: speaker to microphone, scaled by :data:`SPEAKER_GAIN_AT_1M`.
        user_rir: user to microphone, direct path at unit gain.
        rt60_s: the reverberation time measured on ``echo_rir``.
    """

    rate: int
    echo_rir: Floats
    user_rir: Floats
    rt60_s: float


@functools.lru_cache(maxsize=16)
def acoustics(setup: Setup, rate: int) -> Acoustics:
    """Compute the impulse responses of ``setup`` at ``rate`` (cached)."""
    import pyroomacoustics as pra

    room = setup.room
    absorption, max_order = pra.inverse_sabine(room.rt60, list(room.dims))
    shoebox = pra.ShoeBox(list(room.dims), fs=rate, materials=pra.Material(absorption),
                          max_order=max_order)
    mx, my, mz = room.mic
    shoebox.add_source([mx + setup.distance_m, my, mz])          # the speaker
    shoebox.add_source([mx, my - USER_DISTANCE_M, mz + 0.3])     # the user's mouth
    shoebox.add_microphone([mx, my, mz])
    shoebox.compute_rir()
    echo = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    user = np.asarray(shoebox.rir[0][1], dtype=np.float64)
    # pyroomacoustics' direct-path peak is about 1/distance: normalise to the chosen gains
    echo *= SPEAKER_GAIN_AT_1M
    user *= USER_DISTANCE_M
    rt60 = float(pra.experimental.measure_rt60(echo, fs=rate))
    return Acoustics(rate, echo, user, rt60)


def loudspeaker(played: npt.NDArray[np.int16] | Floats) -> Floats:
    """The speaker's mild non-linearity: soft clipping of the played samples."""
    x = np.asarray(played, dtype=np.float64) / 32768.0
    return np.tanh(CLIP_DRIVE * x) / CLIP_DRIVE * 32768.0


class PartitionedConvolver:
    """Streaming convolution with a long fixed filter (uniformly partitioned, in the
    frequency domain), one block of ``block`` samples at a time.

    Args:
        taps: the filter (e.g. a room impulse response).
        block: samples per call of :meth:`process`.
    """

    def __init__(self, taps: Floats, block: int) -> None:
        self.block = block
        parts = max(1, math.ceil(taps.size / block))
        padded = np.zeros(parts * block)
        padded[: taps.size] = taps
        self._h = np.fft.rfft(padded.reshape(parts, block), n=2 * block, axis=1)
        self._x = np.zeros_like(self._h)  # spectra of the last `parts` input blocks
        self._prev = np.zeros(block)

    def process(self, x: Floats) -> Floats:
        """Convolve the next block (exactly ``block`` samples) and return as many."""
        spectrum = np.fft.rfft(np.concatenate((self._prev, x)))
        self._prev = np.asarray(x, dtype=np.float64).copy()
        self._x = np.roll(self._x, 1, axis=0)
        self._x[0] = spectrum
        y = np.fft.irfft(np.einsum("pk,pk->k", self._x, self._h), n=2 * self.block)
        return y[self.block :]


class EchoPath:
    """What the microphone hears of the speaker: soft clipping, the room, the device delay.

    Push what the speaker played, block by block (``block`` samples each); each call returns
    the echo for the same stretch of microphone time.

    Args:
        setup: the room and delay.
        rate: sample rate in Hz.
        block: samples per call.
    """

    def __init__(self, setup: Setup, rate: int, block: int) -> None:
        self.acoustics = acoustics(setup, rate)
        self._conv = PartitionedConvolver(self.acoustics.echo_rir, block)
        delay = int(setup.device_delay_ms * rate / 1000)
        self._line = np.zeros(delay)

    def process(self, played: npt.NDArray[np.int16] | Floats) -> Floats:
        """The echo reaching the microphone during the next ``block`` samples."""
        echo = self._conv.process(loudspeaker(played))
        if self._line.size == 0:
            return echo
        line = np.concatenate((self._line, echo))
        self._line = line[echo.size :]
        return line[: echo.size]


def pink_noise(n: int, rate: int, dbfs: float, seed: int = 0) -> Floats:
    """``n`` samples of pink (1/f) noise at ``dbfs`` RMS, band-limited to 50 Hz-8 kHz."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    shape = np.zeros_like(freqs)
    band = (freqs >= 50) & (freqs <= 8000)
    shape[band] = 1 / np.sqrt(freqs[band])
    noise = np.fft.irfft(spectrum * shape, n=n)
    noise *= 32768 * 10 ** (dbfs / 20) / math.sqrt(np.mean(noise**2))
    return noise


def power(x: npt.NDArray[np.int16] | Floats) -> float:
    """Mean square of ``x`` (0 for an empty array)."""
    if len(x) == 0:
        return 0.0
    f = np.asarray(x, dtype=np.float64)
    return float(np.dot(f, f) / f.size)


def spectral_correlation(estimate: npt.NDArray[np.int16] | Floats, reference: Floats,
                         rate: int) -> float:
    """How much of ``reference`` survives in ``estimate``: the correlation (0-1) of their
    short-time magnitude spectra (20 ms frames, 10 ms hop, 100 Hz-8 kHz).

    Magnitudes, not waveforms: the WebRTC module's filter bank shifts phases, which a
    waveform measure (SI-SDR) would count as distortion although the speech is intact.
    1.0 is the reference untouched; a silent estimate scores 0.
    """
    frame, hop = rate // 50, rate // 100

    def mags(x: npt.NDArray[np.int16] | Floats) -> Floats:
        f = np.asarray(x, dtype=np.float64)
        n = 1 + max(0, (f.size - frame) // hop)
        idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
        spec = np.abs(np.fft.rfft(f[idx] * np.hanning(frame), axis=1))
        freqs = np.fft.rfftfreq(frame, 1 / rate)
        return spec[:, (freqs >= 100) & (freqs <= 8000)].ravel()

    a, b = mags(estimate), mags(reference)
    if not a.any() or not b.any():
        return 0.0
    return max(0.0, float(np.corrcoef(a, b)[0, 1]))
