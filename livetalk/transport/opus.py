"""An Opus decoder with packet-loss concealment and in-band FEC: libopus through ctypes.

PyAV (which aiortc uses) decodes Opus with FFmpeg's libopus wrapper, and that wrapper exposes
neither of libopus's two loss tools: an empty packet is FFmpeg's end-of-stream signal, so the
decoder cannot be asked to *conceal* a missing frame, and FFmpeg always decodes with
``decode_fec=0``, so the redundancy an encoder may put in the next packet is never used. The
receive jitter buffer needs both, so this module calls libopus itself:

- :meth:`OpusDecoder.decode` decodes one packet (``opus_decode``);
- :meth:`OpusDecoder.conceal` fills a missing frame with libopus's own packet-loss
  concealment (``opus_decode`` with no data): it extrapolates the pitch and spectrum of the
  audio before the gap and fades out over consecutive losses;
- :meth:`OpusDecoder.recover` rebuilds a missing frame from the *next* packet's in-band FEC
  (``decode_fec=1``); when that packet carries none (libopus only adds it in SILK and hybrid
  modes, with FEC enabled at the encoder), libopus conceals instead, so it never does worse.

The library is the libopus that the PyAV wheel bundles (no system package needed), or the
system's ``libopus`` when PyAV was built against a shared one. :func:`load_libopus` finds it;
when neither is found, :func:`opus_decoder_available` is False and the jitter buffer falls
back to PyAV's decoder with fade-and-repeat concealment (:mod:`livetalk.transport.jitterbuffer`).

Decoding straight to the rate the application wants (8, 12, 16, 24 or 48 kHz) and to mono is
done by libopus itself, band-limited, so no resampler runs after it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
from pathlib import Path

import numpy as np

from livetalk.audio.format import PCM, RTC_RATE
from livetalk.errors import ConfigError, OpusError

__all__ = [
    "OPUS_RATES",
    "OpusDecoder",
    "OpusError",
    "load_libopus",
    "opus_decoder_available",
    "packet_samples",
]

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
"""The output rates libopus decodes to natively."""
_MAX_FRAME_MS = 120
"""The longest Opus packet (RFC 6716): what one decode call must have room for."""


def _candidates() -> list[str]:
    """Paths or names of libopus to try, the one bundled with PyAV first."""
    out: list[str] = []
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency of aiortc
        av = None  # type: ignore[assignment]
    if av is not None and av.__file__:
        package = Path(av.__file__).resolve().parent
        patterns = [
            str(package.parent / "av.libs" / "libopus*.so*"),  # manylinux (auditwheel)
            str(package / ".dylibs" / "libopus*.dylib"),  # macOS (delocate)
            str(package.parent / "av.libs" / "*opus*.dll"),  # Windows (delvewheel)
        ]
        for pattern in patterns:
            out += sorted(glob.glob(pattern))
    system = ctypes.util.find_library("opus")
    if system:
        out.append(system)
    return out


@functools.cache
def load_libopus() -> ctypes.CDLL | None:
    """The libopus shared library with its decoder functions typed, or None if not found.

    Set ``LIVETALK_LIBOPUS`` to a path to force a particular library, or to an empty string
    to force the PyAV fallback (no PLC).
    """
    forced = os.environ.get("LIVETALK_LIBOPUS")
    names = ([forced] if forced else []) if forced is not None else _candidates()
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            lib.opus_decoder_create.restype = ctypes.c_void_p
        except (OSError, AttributeError):
            continue
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int)]
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_decoder_destroy.restype = None
        lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                    ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_strerror.argtypes = [ctypes.c_int]
        lib.opus_strerror.restype = ctypes.c_char_p
        lib.opus_get_version_string.restype = ctypes.c_char_p
        lib.opus_packet_get_nb_samples.argtypes = [ctypes.c_char_p, ctypes.c_int32,
                                                   ctypes.c_int32]
        lib.opus_packet_get_nb_samples.restype = ctypes.c_int
        return lib
    return None


def opus_decoder_available() -> bool:
    """True when libopus was found, so :class:`OpusDecoder` can conceal losses."""
    return load_libopus() is not None


def packet_samples(packet: bytes, rate: int = RTC_RATE) -> int | None:
    """How many samples per channel at ``rate`` an Opus packet holds (from its header), or
    None when libopus is not available or the packet is malformed."""
    lib = load_libopus()
    if lib is None or not packet:
        return None
    samples = int(lib.opus_packet_get_nb_samples(packet, len(packet), rate))
    return samples if samples > 0 else None


class OpusDecoder:
    """One libopus decoder state: mono int16 PCM at ``rate`` from Opus packets.

    Args:
        rate: output rate in Hz, one of :data:`OPUS_RATES`.
        channels: 1 (mono, the default: a stereo stream is downmixed by libopus) or 2
            (interleaved samples).

    Raises:
        ConfigError: a rate libopus cannot decode to, or a channel count other than 1 or 2.
        OpusError: libopus is not available (see :func:`opus_decoder_available`).
    """

    def __init__(self, rate: int = RTC_RATE, channels: int = 1) -> None:
        if rate not in OPUS_RATES:
            raise ConfigError(f"Opus decodes to {OPUS_RATES} Hz only, got {rate!r}")
        if channels not in (1, 2):
            raise ConfigError(f"channels must be 1 or 2, got {channels!r}")
        lib = load_libopus()
        if lib is None:
            raise OpusError("libopus was not found (neither bundled with PyAV nor installed); "
                            "install libopus (apt install libopus0, brew install opus)")
        self._lib = lib
        self.rate = rate
        self.channels = channels
        error = ctypes.c_int(0)
        self._state: int | None = lib.opus_decoder_create(rate, channels, ctypes.byref(error))
        if error.value != 0 or not self._state:
            raise OpusError(f"opus_decoder_create failed: {self._strerror(error.value)}")
        self._out = np.zeros(rate * _MAX_FRAME_MS // 1000 * channels, dtype=np.int16)
        self._out_ptr = self._out.ctypes.data_as(ctypes.c_void_p)
        self._capacity = rate * _MAX_FRAME_MS // 1000

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Free the decoder state (idempotent)."""
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_decoder_destroy(state)

    @property
    def version(self) -> str:
        """libopus's version string."""
        return str(self._lib.opus_get_version_string().decode())

    def decode(self, packet: bytes) -> PCM:
        """Decode one packet (any duration up to 120 ms) into a new PCM array.

        Raises:
            OpusError: a corrupt packet (the decoder state is kept: conceal and go on).
        """
        if not packet:
            raise OpusError("an empty Opus packet; call conceal() for a missing frame")
        return self._run(packet, self._capacity, 0)

    def conceal(self, samples: int) -> PCM:
        """libopus's packet-loss concealment for ``samples`` missing samples (a multiple of
        2.5 ms at the decoder's rate)."""
        return self._run(None, samples, 0)

    def recover(self, next_packet: bytes, samples: int) -> PCM:
        """Rebuild the ``samples`` lost just before ``next_packet`` from its in-band FEC.

        libopus conceals instead when ``next_packet`` carries no FEC. Decode ``next_packet``
        itself afterwards, as usual.
        """
        return self._run(next_packet, samples, 1)

    def _run(self, packet: bytes | None, samples: int, fec: int) -> PCM:
        if not self._state:
            raise OpusError("the decoder is closed")
        size = len(packet) if packet is not None else 0
        got = self._lib.opus_decode(self._state, packet, size, self._out_ptr,
                                    min(samples, self._capacity), fec)
        if got < 0:
            raise OpusError(f"opus_decode failed: {self._strerror(got)}")
        return self._out[: got * self.channels].copy()

    def _strerror(self, code: int) -> str:
        return str(self._lib.opus_strerror(code).decode())

    def __repr__(self) -> str:
        return f"<OpusDecoder {self.rate} Hz x{self.channels}>"
