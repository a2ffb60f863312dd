"""The local server's "voice": text to speech with eSpeak NG, and helpers around it.

:class:`EspeakSynthesizer` drives the eSpeak NG library bundled in the ``espeakng-loader`` wheel
through ctypes, so no system package is needed. eSpeak NG is one global C library: every call
into it holds a process-wide lock, and the synthesizer keeps an LRU cache of recent utterances
so that repeated replies cost nothing.

Synthesis is deterministic: the same text with the same voice and speed always gives the same
samples. eSpeak's pitch flutter and roughness modulation keep state from one utterance to the
next, so the synthesizer turns both off in the voice it loads (the speech sounds a little
flatter than the ``espeak-ng`` command's).

Other "voices" plug in through the :class:`Synthesizer` protocol. :func:`word_timings` spreads
a text's words over its audio, for transcript deltas while the audio plays; :func:`render_turns`
lays phrases out as a multi-turn recording (the bundled ``livetalk/data/demo.wav`` is made
with it).
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from livetalk._extras import install_hint
from livetalk.audio.format import PCM, check_rate, empty_pcm
from livetalk.audio.resample import resample
from livetalk.errors import ConfigError, SynthesisError

__all__ = [
    "EspeakSynthesizer",
    "SynthesisError",
    "Synthesizer",
    "SynthesizerStatistics",
    "render_turns",
    "word_timings",
]

MIN_WPM = 80
"""Slowest speaking rate eSpeak NG accepts, in words per minute."""
MAX_WPM = 450
"""Fastest speaking rate eSpeak NG accepts, in words per minute."""

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_EE_OK = 0

# Appended to the voice so that output does not depend on earlier utterances.
_DETERMINISTIC_VOICE = "\nflutter 0\nroughness 0\n"



@runtime_checkable
class Synthesizer(Protocol):
    """Anything that turns text into speech.

    The server calls :meth:`synthesize` in an executor thread, so it may block.
    """

    def synthesize(self, text: str) -> tuple[PCM, int]:
        """Speak ``text``.

        Returns:
            ``(pcm, rate)``: 1-D int16 mono samples and their sample rate in Hz. Empty or
            blank text gives an empty array.
        """
        ...


@dataclass(frozen=True, slots=True)
class SynthesizerStatistics:
    """Counters of an :class:`EspeakSynthesizer`'s cache.

    Attributes:
        cache_hits: calls answered from the cache.
        cache_misses: calls that ran the synthesizer.
        cached: utterances held now.
    """

    cache_hits: int
    cache_misses: int
    cached: int


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Espeak:
    """The process-wide eSpeak NG library: loaded once, used under :attr:`lock`."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise SynthesisError(
                f"espeak-ng is not available: install it with {install_hint('server')} "
                "(the espeakng-loader wheel bundles the library and its data)"
            ) from exc
        self.data_path = Path(espeakng_loader.get_data_path())
        lib_path = espeakng_loader.get_library_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise SynthesisError(f"cannot load the espeak-ng library {lib_path}: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByFile.argtypes = [ctypes.c_char_p]
        lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_EspeakVoice)
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise SynthesisError(f"espeak-ng failed to initialise with data in {self.data_path}")
        self.rate: int = rate
        self.lib = lib
        self.lock = threading.Lock()
        self._chunks: list[PCM] = []
        self._callback = _SynthCallback(self._on_samples)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self._callback)
        self._voice_key: tuple[str, int] | None = None

    def _on_samples(self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: int) -> int:
        if wav and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def select_voice(self, voice: str, wpm: int) -> None:
        """Load ``voice`` (deterministic variant) at ``wpm``; call with :attr:`lock` held."""
        if self._voice_key == (voice, wpm):
            return
        self._voice_key = None
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise SynthesisError(f"espeak-ng has no voice {voice!r} (try 'en-us' or 'en')")
        identifier = self.lib.espeak_GetCurrentVoice().contents.identifier.decode()
        language, _, variant = identifier.partition("+")
        parts = [self._voice_file(("lang", "voices"), language)]
        if variant:
            parts.append(self._voice_file(("voices/!v",), variant))
        fd, path = tempfile.mkstemp(prefix="livetalk-voice-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("\n".join(parts) + _DETERMINISTIC_VOICE)
            status = self.lib.espeak_SetVoiceByFile(path.encode())
        finally:
            os.unlink(path)
        if status != _EE_OK:
            raise SynthesisError(f"espeak-ng could not load voice {voice!r} (status {status})")
        self.lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
        self._voice_key = (voice, wpm)

    def _voice_file(self, folders: tuple[str, ...], name: str) -> str:
        for folder in folders:
            path = self.data_path / folder / name
            if path.is_file():
                return path.read_text(encoding="utf-8", errors="replace")
        raise SynthesisError(f"espeak-ng voice file {name!r} not found in {self.data_path}")

    def synthesize(self, text: str, voice: str, wpm: int) -> PCM:
        with self.lock:
            self.select_voice(voice, wpm)
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data, len(data))
            self._chunks = []
            status = self.lib.espeak_Synth(
                buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            self.lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if status != _EE_OK:
            raise SynthesisError(f"espeak-ng synthesis failed (status {status})")
        return np.concatenate(chunks) if chunks else empty_pcm()


class _EspeakVoice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_engine: _Espeak | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Espeak:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Espeak()
        return _engine


class EspeakSynthesizer:
    """Text to speech with the eSpeak NG library bundled in the ``espeakng-loader`` wheel.

    Output is int16 mono at eSpeak's native 22 050 Hz. Thread-safe; blocking (about 1 ms of CPU
    per second of speech), so call it from an executor in async code.

    Args:
        voice: an eSpeak NG voice name, such as ``"en-us"``, ``"en"`` or ``"en-us+f3"``.
        rate_wpm: speaking rate in words per minute, 80 to 450.
        cache_size: how many recent utterances to keep (0 disables the cache).

    Raises:
        ConfigError: ``rate_wpm`` or ``cache_size`` out of range.
        SynthesisError: the library cannot be loaded or has no such voice.
    """

    def __init__(self, voice: str = "en-us", rate_wpm: int = 175, *, cache_size: int = 64) -> None:
        if isinstance(rate_wpm, bool) or not isinstance(rate_wpm, int):
            raise ConfigError(f"rate_wpm must be an int, got {rate_wpm!r}")
        if not MIN_WPM <= rate_wpm <= MAX_WPM:
            raise ConfigError(f"rate_wpm must be {MIN_WPM} to {MAX_WPM}, got {rate_wpm}")
        if cache_size < 0:
            raise ConfigError(f"cache_size must be >= 0, got {cache_size}")
        self.voice = voice
        self.rate_wpm = rate_wpm
        self._engine = _get_engine()
        self.rate = self._engine.rate
        self._cache_size = cache_size
        self._cache: OrderedDict[str, PCM] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        with self._engine.lock:  # fail now, not at the first reply, on a bad voice
            self._engine.select_voice(voice, rate_wpm)

    def synthesize(self, text: str) -> tuple[PCM, int]:
        """Speak ``text``.

        Args:
            text: plain text (not SSML).

        Returns:
            ``(pcm, rate)``: a read-only int16 array (it may be shared with the cache) and
            :attr:`rate`. Blank text gives an empty array.

        Raises:
            SynthesisError: eSpeak NG failed.
        """
        if not text.strip():
            return empty_pcm(), self.rate
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                self._hits += 1
                return cached, self.rate
            self._misses += 1
        pcm = self._engine.synthesize(text, self.voice, self.rate_wpm)
        pcm.flags.writeable = False
        if self._cache_size:
            with self._cache_lock:
                self._cache[text] = pcm
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return pcm, self.rate

    def statistics(self) -> SynthesizerStatistics:
        """The cache counters."""
        with self._cache_lock:
            return SynthesizerStatistics(self._hits, self._misses, len(self._cache))

    def __repr__(self) -> str:
        return f"EspeakSynthesizer(voice={self.voice!r}, rate_wpm={self.rate_wpm})"


def word_timings(text: str, n_samples: int, rate: int) -> list[tuple[str, float]]:
    """Approximate when each word of ``text`` starts in its spoken audio.

    Time is shared out in proportion to the characters of each word (plus one for the space
    before it), which is close enough to pace transcript deltas along with playback.

    Args:
        text: the text that was spoken.
        n_samples: length of its audio in samples.
        rate: sample rate of the audio in Hz.

    Returns:
        ``(word, start_ms)`` for each whitespace-separated word, in order; the first starts at
        0.0 ms. Joining the words with single spaces gives the text with its whitespace
        normalised.
    """
    words = text.split()
    if not words:
        return []
    duration_ms = n_samples * 1000.0 / check_rate(rate)
    weights = np.array([len(w) + 1 for w in words], dtype=np.float64)
    starts = np.concatenate(([0.0], np.cumsum(weights)[:-1])) / weights.sum() * duration_ms
    return [(w, float(t)) for w, t in zip(words, starts, strict=True)]


def render_turns(
    phrases: Sequence[str],
    gap_s: float = 1.5,
    rate: int = 16000,
    *,
    lead_s: float = 0.5,
    synthesizer: Synthesizer | None = None,
) -> PCM:
    """Speak phrases one after another as a multi-turn recording.

    The layout is ``lead_s`` of silence, then each phrase followed by ``gap_s`` of silence
    (the last one too, so that a turn detector can see the last turn end).

    Args:
        phrases: the sentences, in order.
        gap_s: seconds of silence after each phrase.
        rate: sample rate of the result in Hz.
        lead_s: seconds of silence before the first phrase.
        synthesizer: the voice; a default :class:`EspeakSynthesizer` if None.

    Returns:
        int16 mono samples at ``rate``.

    Raises:
        ConfigError: a negative duration.
    """
    if gap_s < 0 or lead_s < 0:
        raise ConfigError(f"gap_s and lead_s must be >= 0, got {gap_s} and {lead_s}")
    rate = check_rate(rate)
    voice = synthesizer if synthesizer is not None else EspeakSynthesizer()
    parts: list[PCM] = [np.zeros(round(lead_s * rate), dtype=np.int16)]
    gap = np.zeros(round(gap_s * rate), dtype=np.int16)
    for phrase in phrases:
        pcm, native = voice.synthesize(phrase)
        parts += [resample(pcm, native, rate), gap]
    return np.concatenate(parts)
