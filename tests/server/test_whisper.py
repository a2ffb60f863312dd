"""WhisperTranscriber: open-vocabulary recognition of eSpeak speech, hints, pieces, its pool."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import numpy as np
import pytest

from livetalk.audio.resample import resample
from livetalk.errors import AudioFormatError, ConfigError
from livetalk.server.asr import (
    StreamingTranscriber,
    TranscriptionHints,
    normalize_phrase,
    transcript_pieces,
)
from livetalk.server.whisper import WhisperTranscriber, bundled_model_path, whisper_missing
from tests.speech_helpers import FIVE_PHRASES, make_turns, shared_synthesizer

pytestmark = pytest.mark.slow

FREE = (
    "I would like to cancel my subscription",
    "What is the weather like today",
    "Please read me the latest news headlines",
)
"""Sentences no phrase list announces; Whisper tiny.en gets each of them word for word."""


def speech(text: str) -> tuple[np.ndarray, int]:
    return shared_synthesizer().synthesize(text)


def test_the_extra_is_installed_in_the_dev_environment() -> None:
    assert whisper_missing() is None
    model = bundled_model_path()
    assert {"model.bin", "config.json", "tokenizer.json"} <= {p.name for p in model.iterdir()}


@pytest.mark.parametrize("sentence", FREE)
def test_free_sentences_without_a_phrase_list(whisper: WhisperTranscriber, sentence: str) -> None:
    pcm, rate = speech(sentence)
    text = whisper.transcribe(pcm, rate)
    assert normalize_phrase(text) == normalize_phrase(sentence)
    assert text[0].isupper() and text[-1] in ".?!"  # Whisper's casing and punctuation


def test_any_rate_and_the_full_window(whisper: WhisperTranscriber) -> None:
    pcm, rate = speech(FREE[0])
    at_24k = resample(pcm, rate, 24000)
    assert normalize_phrase(whisper.transcribe(at_24k, 24000)) == normalize_phrase(FREE[0])
    full = WhisperTranscriber(window_s=30)
    assert full.executor is whisper.executor  # same model and settings: one engine
    assert normalize_phrase(full.transcribe(pcm, rate)) == normalize_phrase(FREE[0])


def test_a_two_sentence_turn_comes_out_in_pieces(whisper: WhisperTranscriber) -> None:
    turn = make_turns(FREE, [1.5, 1.5], 24000, lead_s=0.5, tail_s=0.5)
    pieces = list(whisper.segments(turn.pcm, 24000, TranscriptionHints()))
    assert len(pieces) >= 2  # Whisper's segments, as its decoder ends each one
    assert normalize_phrase(" ".join(pieces)) == normalize_phrase(" ".join(FREE))


def test_the_prompt_steers_spelling(whisper: WhisperTranscriber) -> None:
    # made-up names no model spells right unless told
    pcm, rate = speech("Zorblax the wizard lives in Quuxville")
    plain = whisper.transcribe(pcm, rate)
    assert "Zorblax" not in plain and "Quuxville" not in plain
    hinted = " ".join(whisper.segments(pcm, rate, TranscriptionHints(
        language="en", prompt="Zorblax the wizard, Quuxville.")))
    assert "Zorblax" in hinted and "Quuxville" in hinted


def test_phrases_become_hot_words() -> None:
    biased = WhisperTranscriber(phrases=list(FIVE_PHRASES))
    pcm, rate = speech("hello can you hear me")
    assert normalize_phrase(biased.transcribe(pcm, rate)) == "hello can you hear me"
    # a sentence outside the list is still recognised: hot words bias, they do not constrain
    pcm, rate = speech(FREE[0])
    assert normalize_phrase(biased.transcribe(pcm, rate)) == normalize_phrase(FREE[0])


def test_an_english_only_model_ignores_another_language(
        whisper: WhisperTranscriber, caplog: pytest.LogCaptureFixture) -> None:
    assert not whisper.multilingual
    pcm, rate = speech(FREE[1])
    with caplog.at_level(logging.DEBUG, logger="livetalk.server"):
        text = " ".join(whisper.segments(pcm, rate, TranscriptionHints(language="fr")))
    assert normalize_phrase(text) == normalize_phrase(FREE[1])
    assert "English-only" in caplog.text


def test_silence_gives_nothing(whisper: WhisperTranscriber) -> None:
    assert whisper.transcribe(np.zeros(24000, dtype=np.int16), 24000) == ""
    assert whisper.transcribe(np.zeros(0, dtype=np.int16), 16000) == ""


def test_bad_input_and_settings(whisper: WhisperTranscriber, tmp_path: Any) -> None:
    with pytest.raises(AudioFormatError):
        whisper.transcribe(np.zeros(100, dtype=np.float32), 16000)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="CTranslate2 Whisper model"):
        WhisperTranscriber(tmp_path)  # an empty directory
    with pytest.raises(ConfigError, match="CTranslate2 Whisper model"):
        WhisperTranscriber("no-such-model-anywhere")  # nothing is downloaded
    with pytest.raises(ConfigError, match="window_s"):
        WhisperTranscriber(window_s=45)
    with pytest.raises(ConfigError, match="compute_type"):
        WhisperTranscriber(compute_type="float64")
    with pytest.raises(ConfigError, match="list of phrases"):
        WhisperTranscriber(phrases="hello there")  # type: ignore[arg-type]
    assert "tiny.en" in repr(whisper)


def test_decoding_is_deterministic(whisper: WhisperTranscriber) -> None:
    # no temperature fallback (sampling) by default: hard audio gives the same text each time
    turn = make_turns(["The quick brown fox jumps over the lazy dog"], [], 24000,
                      snr_db=10.0, seed=3)
    texts = {whisper.transcribe(turn.pcm, 24000) for _ in range(3)}
    assert len(texts) == 1


async def test_concurrent_turns_queue_on_the_bounded_pool(whisper: WhisperTranscriber) -> None:
    assert isinstance(whisper, StreamingTranscriber)
    loop = asyncio.get_running_loop()
    turns = [speech(s) for s in FREE] * 2

    async def recognise(pcm: np.ndarray, rate: int) -> str:
        return " ".join([p async for p in transcript_pieces(whisper, pcm, rate)])

    jobs = [asyncio.ensure_future(recognise(pcm, rate)) for pcm, rate in turns]
    # the loop's default executor (speech synthesis, decoding uploads) stays free meanwhile
    assert await loop.run_in_executor(None, threading.current_thread) is not None
    assert not all(job.done() for job in jobs)
    texts = await asyncio.gather(*jobs)
    assert [normalize_phrase(t) for t in texts] == [normalize_phrase(s) for s in FREE] * 2
    workers = [t for t in threading.enumerate() if t.name.startswith("livetalk-whisper")]
    assert len(workers) == 1  # workers=1: six turns at once used one decoding thread


async def test_cancelling_a_recognition_is_safe(whisper: WhisperTranscriber) -> None:
    pcm, rate = speech(FREE[0])
    task = asyncio.ensure_future(
        asyncio.wait_for(anext(aiter(transcript_pieces(whisper, pcm, rate))), 0.001))
    with pytest.raises(asyncio.TimeoutError):
        await task
    # the pool is still usable, and the dropped result went nowhere
    text = " ".join([p async for p in transcript_pieces(whisper, pcm, rate)])
    assert normalize_phrase(text) == normalize_phrase(FREE[0])


def test_a_sentence_repeated_back_to_back_is_kept_once() -> None:
    from livetalk.server.whisper import _once

    assert _once("What is the weather like today? What is the weather like today?") == (
        "What is the weather like today?")
    assert _once("Yes. Yes. Yes.") == "Yes."
    assert _once("Yes. No.") == "Yes. No."
    assert _once("Turn it on") == "Turn it on"
