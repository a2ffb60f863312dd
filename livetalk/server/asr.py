"""The local server's "ears": speech recognition for committed user turns.

:class:`PocketSphinxTranscriber` runs pocketsphinx (its wheel bundles the US English model) on
a whole turn. Open-vocabulary recognition of synthetic speech is poor (58-78 % word error rate
measured on eSpeak sentences), so give it the phrases your tests or demo will say: it then
recognises one of them with a JSGF grammar, which got 12 of 12 eSpeak sentences right, clean
and after an Opus round trip.

Any other recogniser plugs in through the :class:`Transcriber` protocol, or as a plain
callable wrapped in :class:`CallableTranscriber`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from livetalk._extras import install_hint
from livetalk.audio.format import PCM, check_pcm, check_rate, rms_dbfs
from livetalk.audio.resample import resample
from livetalk.audio.vad import speech_span
from livetalk.errors import ConfigError, TranscriptionError

__all__ = [
    "CallableTranscriber",
    "PocketSphinxTranscriber",
    "TranscriptionError",
    "Transcriber",
    "load_phrases",
    "normalize_phrase",
]

ASR_RATE = 16000
"""Sample rate of the pocketsphinx acoustic model, in Hz."""

_PAD_S = 0.25
"""Silence added around a turn, so that its first and last words are decoded whole."""
_DITHER = 1.0
"""Standard deviation of the noise added to the samples: exact digital silence upsets the
model's features (measured: 10/12 phrases right without it, 12/12 with it)."""
_SILENCE_DBFS = -60.0
"""Turns quieter than this are silence: a grammar decoder would still pick some phrase."""
_NOT_WORD = re.compile(r"[^a-z0-9']+")



@runtime_checkable
class Transcriber(Protocol):
    """Anything that turns a user's turn into text.

    The server calls :meth:`transcribe` in an executor thread, so it may block.
    """

    def transcribe(self, pcm: PCM, rate: int) -> str:
        """Recognise the speech in ``pcm``.

        Args:
            pcm: 1-D int16 mono samples of one turn.
            rate: their sample rate in Hz.

        Returns:
            The text, or ``""`` if nothing was recognised.
        """
        ...


def normalize_phrase(text: str) -> str:
    """Lower-case ``text``, turn punctuation into spaces and collapse whitespace.

    Apostrophes inside words are kept (``"What's up?"`` -> ``"what's up"``).
    """
    words = (w.strip("'") for w in _NOT_WORD.split(text.lower()))
    return " ".join(w for w in words if w)


def load_phrases(path: str | Path) -> list[str]:
    """Read a phrase list: one phrase per line; blank lines and ``#`` comments are skipped.

    Args:
        path: a UTF-8 text file.

    Returns:
        The phrases as written (stripped), in file order.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read phrase list {str(path)!r}: {exc}") from exc
    phrases = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            phrases.append(line)
    return phrases


class PocketSphinxTranscriber:
    """Offline recognition with pocketsphinx and its bundled US English model.

    With ``phrases``, the decoder only considers those phrases (a JSGF grammar of their
    normalised forms) and returns the one it heard, normalised (lower case, no punctuation),
    or ``""``. Without, it uses the general language model, whose accuracy on synthetic speech
    is poor: fine to show that something was heard, not to check what.

    One decoder per instance (loading takes about 0.3 s), used under a lock: calls from several
    threads are serialised. Decoding a grammar costs about 1 % of real time.

    Args:
        phrases: the phrases to recognise, or None for open vocabulary.

    Raises:
        ConfigError: ``phrases`` is a str, has no words, or has words missing from the
            pronunciation dictionary (they are listed).
        TranscriptionError: pocketsphinx is not installed or failed to load.
    """

    def __init__(self, phrases: Iterable[str] | None = None) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise TranscriptionError(
                f"pocketsphinx is not installed: {install_hint('server')}"
            ) from exc
        if isinstance(phrases, str):
            raise ConfigError("phrases must be a list of phrases; read a file with load_phrases()")
        self.phrases: list[str] | None = None
        grammar: str | None = None
        if phrases is not None:
            self.phrases = list(dict.fromkeys(p for p in map(normalize_phrase, phrases) if p))
            if not self.phrases:
                raise ConfigError("the phrase list has no words")
            grammar = (
                "#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = "
                + " | ".join(f"( {p} )" for p in self.phrases)
                + " ;\n"
            )
        try:
            if grammar is None:
                self._decoder = Decoder(samprate=ASR_RATE, loglevel="FATAL")
            else:
                # the lattice best-path pass drops the last word of grammar hypotheses
                self._decoder = Decoder(samprate=ASR_RATE, loglevel="FATAL", bestpath=False)
        except (RuntimeError, ValueError) as exc:
            raise TranscriptionError(f"pocketsphinx failed to load: {exc}") from exc
        if grammar is not None and self.phrases is not None:
            vocabulary = {w for p in self.phrases for w in p.split()}
            missing = sorted(w for w in vocabulary if self._decoder.lookup_word(w) is None)
            if missing:
                raise ConfigError(
                    "these words are not in the pocketsphinx dictionary, rephrase them: "
                    + ", ".join(missing)
                )
            try:
                self._decoder.add_jsgf_string("phrases", grammar)
                self._decoder.activate_search("phrases")
            except (RuntimeError, ValueError) as exc:
                raise ConfigError(f"pocketsphinx rejected the phrase grammar: {exc}") from exc
        self._lock = threading.Lock()

    def transcribe(self, pcm: PCM, rate: int) -> str:
        """Recognise one turn.

        Args:
            pcm: 1-D int16 mono samples, any rate (resampled to 16 kHz).
            rate: their sample rate in Hz.

        Returns:
            The recognised words, lower case, separated by single spaces; ``""`` for nothing
            (and for a turn quieter than -60 dBFS). With phrases, any other sound comes out
            as the closest phrase: the grammar has no "none of these".

        Raises:
            AudioFormatError: ``pcm`` is not 1-D int16, or ``rate`` is not a positive integer.
            TranscriptionError: pocketsphinx failed.
        """
        check_pcm(pcm)
        audio = resample(pcm, check_rate(rate), ASR_RATE)
        # decode only the speech: a committed buffer may hold seconds of silence or noise
        # around it (push-to-talk, local VAD), which pocketsphinx maps to a wrong phrase
        span = speech_span(audio, ASR_RATE)
        if span is not None:
            audio = audio[span[0]:span[1]]
        if rms_dbfs(audio) < _SILENCE_DBFS:
            return ""
        pad = np.zeros(round(_PAD_S * ASR_RATE), dtype=np.float64)
        signal = np.concatenate((pad, audio.astype(np.float64), pad))
        signal += np.random.default_rng(0).normal(0.0, _DITHER, signal.size)
        data = np.clip(np.rint(signal), -32768, 32767).astype("<i2").tobytes()
        with self._lock:
            try:
                self._decoder.start_utt()
                self._decoder.process_raw(data, full_utt=True)
                self._decoder.end_utt()
            except RuntimeError as exc:
                raise TranscriptionError(f"pocketsphinx failed: {exc}") from exc
            hyp = self._decoder.hyp()
        return " ".join(hyp.hypstr.split()) if hyp is not None else ""

    def __repr__(self) -> str:
        n = "open vocabulary" if self.phrases is None else f"{len(self.phrases)} phrases"
        return f"PocketSphinxTranscriber({n})"


class CallableTranscriber:
    """Wraps a host function ``fn(pcm, rate) -> str`` as a :class:`Transcriber`.

    Use it to plug in another recogniser (a cloud API, whisper, a lookup table in tests).
    The function is called in an executor thread.

    Args:
        fn: takes int16 mono samples and their rate, returns the text.

    Raises:
        ConfigError: ``fn`` is not callable.
    """

    def __init__(self, fn: Callable[[PCM, int], str]) -> None:
        if not callable(fn):
            raise ConfigError(f"expected a callable (pcm, rate) -> str, got {fn!r}")
        self._fn = fn

    def transcribe(self, pcm: PCM, rate: int) -> str:
        """Call the wrapped function.

        Raises:
            TranscriptionError: the function raised (chained as ``__cause__``) or returned
                something other than a str.
        """
        try:
            text = self._fn(pcm, rate)
        except Exception as exc:
            raise TranscriptionError(f"transcriber {self._fn!r} failed: {exc}") from exc
        if not isinstance(text, str):
            raise TranscriptionError(
                f"transcriber {self._fn!r} returned {type(text).__name__}, expected str"
            )
        return text

    def __repr__(self) -> str:
        return f"CallableTranscriber({self._fn!r})"
