"""Synthetic speech for tests: multi-turn recordings with known boundaries, optionally noisy.

A plain module (not a conftest) so that unit and integration tests can both import it::

    from tests.speech_helpers import make_turns, shared_synthesizer
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from livetalk.audio.resample import resample
from livetalk.audio.vad import TurnDetector, VadEvent
from livetalk.server.tts import EspeakSynthesizer

__all__ = [
    "DEMO_PHRASES",
    "FIVE_GAPS_S",
    "FIVE_PHRASES",
    "Turns",
    "add_noise",
    "feed_in_chunks",
    "make_turns",
    "shared_synthesizer",
    "word_errors",
]

DEMO_PHRASES = ("hello can you hear me", "what is the weather like today", "thank you goodbye")
"""The phrases of the bundled ``livetalk/data/demo.wav``."""

FIVE_PHRASES = (
    "hello can you hear me",
    "what is the weather like today",
    "please turn on the lights in the kitchen",
    "what time is it",
    "thank you goodbye",
)

FIVE_GAPS_S = (1.2, 1.5, 2.0, 1.3)
"""Silences between the five phrases, as in the field notes' VAD measurements."""

_SPEECH_FLOOR = 200
"""Samples quieter than this (int16) are taken for the synthesizer's own silence."""


@functools.cache
def shared_synthesizer() -> EspeakSynthesizer:
    """One shared eSpeak synthesizer for the whole test session."""
    return EspeakSynthesizer()


@dataclass(frozen=True)
class Turns:
    """A multi-turn recording.

    Attributes:
        pcm: int16 mono samples.
        rate: their sample rate in Hz.
        bounds_ms: (start, end) of the audible speech of each phrase, in ms.
    """

    pcm: np.ndarray
    rate: int
    bounds_ms: list[tuple[float, float]]


def make_turns(
    phrases: Sequence[str],
    gaps_s: Sequence[float],
    rate: int,
    *,
    lead_s: float = 1.0,
    tail_s: float = 2.0,
    snr_db: float | None = None,
    seed: int = 0,
) -> Turns:
    """Lay phrases out with silences between them, optionally under white noise.

    Args:
        phrases: the sentences.
        gaps_s: silence after each phrase but the last (len(phrases) - 1 values).
        rate: sample rate of the result.
        lead_s: silence before the first phrase.
        tail_s: silence after the last phrase.
        snr_db: if given, add white noise at this speech-to-noise power ratio.
        seed: seed of the noise.
    """
    assert len(gaps_s) == len(phrases) - 1
    parts = [np.zeros(round(lead_s * rate), dtype=np.int16)]
    bounds: list[tuple[float, float]] = []
    pos = parts[0].size
    for i, phrase in enumerate(phrases):
        native, native_rate = shared_synthesizer().synthesize(phrase)
        pcm = resample(native, native_rate, rate)
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > _SPEECH_FLOOR)
        bounds.append(((pos + loud[0]) * 1000 / rate, (pos + loud[-1] + 1) * 1000 / rate))
        silence = tail_s if i == len(phrases) - 1 else gaps_s[i]
        parts += [pcm, np.zeros(round(silence * rate), dtype=np.int16)]
        pos += pcm.size + parts[-1].size
    out = np.concatenate(parts)
    if snr_db is not None:
        out = add_noise(out, rate, bounds, snr_db, seed)
    return Turns(out, rate, bounds)


def add_noise(
    pcm: np.ndarray, rate: int, bounds_ms: list[tuple[float, float]], snr_db: float, seed: int
) -> np.ndarray:
    """Add seeded white noise at ``snr_db`` below the mean power of the speech in ``bounds_ms``."""
    x = pcm.astype(np.float64)
    speech = np.concatenate([x[int(a * rate / 1000):int(b * rate / 1000)] for a, b in bounds_ms])
    noise_power = np.mean(speech**2) / 10 ** (snr_db / 10)
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(noise_power), x.size)
    return np.clip(np.rint(x + noise), -32768, 32767).astype(np.int16)


def feed_in_chunks(detector: TurnDetector, pcm: np.ndarray, chunk: int) -> list[VadEvent]:
    """Feed ``pcm`` to ``detector`` ``chunk`` samples at a time; return all the events."""
    events: list[VadEvent] = []
    for i in range(0, pcm.size, chunk):
        events += detector.feed(pcm[i:i + chunk])
    return events


def word_errors(reference: str, hypothesis: str) -> int:
    """Word-level edit distance (substitutions + insertions + deletions) between two texts,
    after :func:`~livetalk.server.asr.normalize_phrase` (case and punctuation ignored).

    The word error rate of a set of turns is the sum of this over the sum of the reference
    word counts.
    """
    from livetalk.server.asr import normalize_phrase

    ref, hyp = normalize_phrase(reference).split(), normalize_phrase(hypothesis).split()
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1,
                                           diagonal + (word != other))
    return row[-1]
