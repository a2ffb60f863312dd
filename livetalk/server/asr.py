"""The local server's "ears": speech recognition for committed user turns.

Two recognisers ship with livetalk:

* :class:`~livetalk.server.whisper.WhisperTranscriber` (extra ``asr``): Whisper through
  faster-whisper, open vocabulary, with punctuation. The default when the extra is installed.
* :class:`PocketSphinxTranscriber` (extra ``server``): the light fallback. Its open-vocabulary
  recognition of synthetic speech is poor (58-78 % word error rate measured on eSpeak
  sentences); given the phrases your tests will say, it recognises one of them with a JSGF
  grammar (12 of 12 eSpeak sentences right, clean and after an Opus round trip).

:func:`make_transcriber` picks one from a server option. Any other recogniser plugs in through
the :class:`Transcriber` protocol (``transcribe(pcm, rate) -> str``), or as a plain callable
wrapped in :class:`CallableTranscriber`. A recogniser that can hand out its text piece by piece
as it decodes, and take the session's ``language`` and ``prompt``, implements
:class:`StreamingTranscriber` as well; :func:`transcript_pieces` runs either kind off the event
loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np

from livetalk._extras import install_hint
from livetalk.audio.format import PCM, check_pcm, check_rate, rms_dbfs
from livetalk.audio.resample import resample
from livetalk.audio.vad import speech_span
from livetalk.errors import ConfigError, TranscriptionError

__all__ = [
    "ASR_CHOICES",
    "AsrChoice",
    "CallableTranscriber",
    "PocketSphinxTranscriber",
    "StreamingTranscriber",
    "TranscriptionError",
    "TranscriptionHints",
    "Transcriber",
    "load_phrases",
    "make_transcriber",
    "normalize_phrase",
    "transcript_pieces",
]

log = logging.getLogger("livetalk.server")

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



@dataclass(frozen=True, slots=True)
class TranscriptionHints:
    """What the session tells the recogniser about a turn (``audio.input.transcription``).

    Attributes:
        language: ISO-639-1 code of the speech (``"en"``), or None to let the recogniser decide.
        prompt: text that the speech is likely to follow or resemble (names, vocabulary, the
            previous sentence), or None.
    """

    language: str | None = None
    prompt: str | None = None


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


@runtime_checkable
class StreamingTranscriber(Transcriber, Protocol):
    """A transcriber that yields its text as it decodes and takes the session's hints.

    :meth:`segments` runs in :attr:`executor` (the recogniser's own bounded pool, so that
    many calls recognising at once queue there instead of taking every thread of the event
    loop's default executor). It must be safe to call from several threads.

    A recogniser may also set a class attribute ``stateless = True`` (see
    :func:`decodes_statelessly`) when a decoding leaves nothing behind that changes the next
    ones: the server then starts recognising a turn before its commit.
    """

    @property
    def executor(self) -> Executor:
        """Where the server runs :meth:`segments` (and :meth:`transcribe`)."""
        ...

    def segments(self, pcm: PCM, rate: int, hints: TranscriptionHints) -> Iterator[str]:
        """Recognise one turn, yielding each piece of text (a segment) as it is decoded.

        Args:
            pcm: 1-D int16 mono samples of one turn.
            rate: their sample rate in Hz.
            hints: the session's language and prompt.

        Yields:
            Pieces of the transcript in order, each stripped; joined with spaces they make
            the whole transcript. Nothing for silence.
        """
        ...


def decodes_statelessly(transcriber: Transcriber) -> bool:
    """Whether ``transcriber`` declares ``stateless = True``: decoding a turn leaves nothing
    behind that changes the next results, so a speculative decoding (of a turn that may
    still go on) is free of side effects. Whisper is; pocketsphinx is not (its decoder
    adapts to what it heard: measured, the same committed audio came out as the phrase or
    as nothing depending on what it had decoded before).
    """
    return getattr(transcriber, "stateless", False) is True


_DONE = object()


async def transcript_pieces(
    transcriber: Transcriber, pcm: PCM, rate: int, hints: TranscriptionHints | None = None
) -> AsyncIterator[str]:
    """Run a transcriber off the event loop and yield its text as it comes.

    A :class:`StreamingTranscriber` runs in its own executor and each segment is yielded as
    soon as it is decoded; any other transcriber runs :meth:`Transcriber.transcribe` in the
    loop's default executor and its text is yielded once. Empty pieces are skipped.

    Cancelling the iteration is safe: the worker thread stops after the segment it is
    decoding (a decoder cannot be interrupted mid-segment) and its results are dropped.

    Raises:
        TranscriptionError: the recogniser failed (its exception is chained).
    """
    loop = asyncio.get_running_loop()
    if not isinstance(transcriber, StreamingTranscriber):
        try:
            text = await loop.run_in_executor(None, transcriber.transcribe, pcm, rate)
        except TranscriptionError:
            raise
        except Exception as exc:
            raise TranscriptionError(f"{transcriber!r} failed: {exc}") from exc
        if text.strip():
            yield text.strip()
        return
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()
    wanted = hints or TranscriptionHints()

    def put(item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        try:
            for piece in transcriber.segments(pcm, rate, wanted):
                if stop.is_set():
                    return
                put(piece)
        except BaseException as exc:  # handed to the event loop, raised there
            put(exc)
        finally:
            put(_DONE)

    future = loop.run_in_executor(transcriber.executor, work)
    try:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, TranscriptionError):
                raise item
            if isinstance(item, BaseException):
                raise TranscriptionError(f"{transcriber!r} failed: {item}") from item
            assert isinstance(item, str)
            if item:
                yield item
        await future
    finally:
        stop.set()


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

    One decoder per instance (loading takes about 0.3 s), used under a lock, and one worker
    thread of its own (:attr:`executor`): calls from several threads are serialised. Decoding
    a grammar costs about 1 % of real time. The session's language and prompt hints are
    ignored (the model is US English).

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
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="livetalk-pocketsphinx")

    @property
    def executor(self) -> Executor:
        """The one worker thread the server runs this decoder in."""
        return self._executor

    def segments(self, pcm: PCM, rate: int, hints: TranscriptionHints) -> Iterator[str]:
        """The whole transcript as one piece (pocketsphinx decodes a turn at once)."""
        text = self.transcribe(pcm, rate)
        if text:
            yield text

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


AsrChoice: TypeAlias = Literal["auto", "whisper", "pocketsphinx"]
"""Which recogniser the server uses: ``auto`` is Whisper when the ``asr`` extra is installed,
pocketsphinx otherwise."""
ASR_CHOICES: tuple[AsrChoice, ...] = ("auto", "whisper", "pocketsphinx")

_fallback_reported = False
"""Whether the fallback to pocketsphinx was logged already (it is said once per process)."""


def make_transcriber(
    asr: AsrChoice = "auto",
    *,
    phrases: Iterable[str] | None = None,
    whisper_model: str | Path | None = None,
) -> Transcriber:
    """Build the server's recogniser from its options.

    Args:
        asr: ``"whisper"`` (needs the ``asr`` extra), ``"pocketsphinx"``, or ``"auto"``:
            Whisper when the extra is installed, else pocketsphinx, saying so once per process
            with a warning on the ``livetalk.server`` logger.
        phrases: what the users will probably say. Whisper is biased towards them (as hot
            words); pocketsphinx recognises only them.
        whisper_model: a CTranslate2 Whisper model directory (or the name of one in the
            Hugging Face cache); default: the ``tiny.en`` model of the ``asr`` extra.

    Raises:
        MissingExtraError: ``"whisper"`` (or a ``whisper_model``) without the ``asr`` extra.
        ConfigError: an unknown ``asr``; a model that cannot be loaded; a ``whisper_model``
            with ``"pocketsphinx"``; a bad phrase list.
        TranscriptionError: pocketsphinx is not installed.
    """
    if asr not in ASR_CHOICES:
        raise ConfigError(f"asr must be one of {', '.join(ASR_CHOICES)}; got {asr!r}")
    phrase_list = None if phrases is None else list(phrases)
    if asr == "pocketsphinx" and whisper_model is not None:
        raise ConfigError("a Whisper model was given, but the recogniser is pocketsphinx")
    if asr != "pocketsphinx":
        from livetalk.server.whisper import WhisperTranscriber, require_whisper, whisper_missing

        missing = whisper_missing()
        if missing is None:
            return WhisperTranscriber(whisper_model, phrases=phrase_list)
        if asr == "whisper" or whisper_model is not None:
            require_whisper()  # raises MissingExtraError
        global _fallback_reported
        if not _fallback_reported:
            _fallback_reported = True
            log.warning("%s; recognising with pocketsphinx, which is accurate only on a "
                        "phrase list", missing)
    return PocketSphinxTranscriber(phrases=phrase_list)
