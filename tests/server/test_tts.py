"""EspeakSynthesizer (the bundled eSpeak NG through ctypes), word_timings and render_turns."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from livetalk.errors import ConfigError
from livetalk.server.asr import load_phrases
from livetalk.server.tts import (
    EspeakSynthesizer,
    SynthesisError,
    Synthesizer,
    render_turns,
    word_timings,
)

DATA = Path(__file__).resolve().parents[2] / "livetalk" / "data"


def test_speaks_plausible_audio() -> None:
    synth = EspeakSynthesizer()
    assert isinstance(synth, Synthesizer)
    pcm, rate = synth.synthesize("hello can you hear me")
    assert rate == 22050 and pcm.dtype == np.int16 and pcm.ndim == 1
    assert 0.6 < pcm.size / rate < 2.5  # five words at 175 words per minute
    assert np.abs(pcm.astype(np.int32)).max() > 5000
    longer, _ = synth.synthesize("hello can you hear me, what is the weather like today")
    assert longer.size > 1.5 * pcm.size


def test_faster_rate_gives_shorter_audio() -> None:
    text = "what is the weather like today"
    slow, _ = EspeakSynthesizer(rate_wpm=120, cache_size=0).synthesize(text)
    fast, _ = EspeakSynthesizer(rate_wpm=300, cache_size=0).synthesize(text)
    assert fast.size < 0.7 * slow.size


def test_synthesis_is_deterministic_whatever_came_before() -> None:
    a = EspeakSynthesizer(cache_size=0)
    b = EspeakSynthesizer("en-us+f3", cache_size=0)
    first, _ = a.synthesize("thank you goodbye")
    b.synthesize("a different voice says something else first")
    a.synthesize("and a longer sentence in between, with a pause")
    again, _ = a.synthesize("thank you goodbye")
    np.testing.assert_array_equal(first, again)


def test_cache_returns_the_same_read_only_array() -> None:
    synth = EspeakSynthesizer(cache_size=2)
    first, _ = synth.synthesize("one")
    assert synth.synthesize("one")[0] is first
    assert not first.flags.writeable
    stats = synth.statistics()
    assert (stats.cache_hits, stats.cache_misses, stats.cached) == (1, 1, 1)
    synth.synthesize("two")
    synth.synthesize("three")  # evicts "one", the least recently used
    assert synth.statistics().cached == 2
    again, _ = synth.synthesize("one")
    assert again is not first
    np.testing.assert_array_equal(again, first)
    assert synth.statistics().cache_misses == 4


def test_blank_text_gives_empty_audio() -> None:
    pcm, rate = EspeakSynthesizer().synthesize("  ")
    assert pcm.size == 0 and pcm.dtype == np.int16 and rate == 22050


def test_concurrent_calls_are_serialised() -> None:
    texts = [f"number {n}" for n in ("one", "two", "three", "four")]
    expected = {t: EspeakSynthesizer(cache_size=0).synthesize(t)[0] for t in texts}
    synth = EspeakSynthesizer(cache_size=0)
    results: dict[str, list[np.ndarray]] = {t: [] for t in texts}

    def work(text: str) -> None:
        for _ in range(5):
            results[text].append(synth.synthesize(text)[0])

    threads = [threading.Thread(target=work, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for text, outputs in results.items():
        for pcm in outputs:
            np.testing.assert_array_equal(pcm, expected[text])


def test_bad_settings_raise_clear_errors() -> None:
    with pytest.raises(SynthesisError, match="no voice"):
        EspeakSynthesizer("xx-not-a-voice")
    with pytest.raises(ConfigError):
        EspeakSynthesizer(rate_wpm=10)
    with pytest.raises(ConfigError):
        EspeakSynthesizer(cache_size=-1)


def test_word_timings_share_time_by_characters() -> None:
    timings = word_timings("hi  there everyone", 22050, 22050)
    assert [w for w, _ in timings] == ["hi", "there", "everyone"]
    starts = [t for _, t in timings]
    # weights 3, 6, 9 of 18 characters over 1000 ms
    assert starts == pytest.approx([0.0, 1000 * 3 / 18, 1000 * 9 / 18])
    assert word_timings("   ", 1000, 22050) == []


def test_render_turns_regenerates_the_bundled_demo() -> None:
    phrases = load_phrases(DATA / "demo_phrases.txt")
    assert len(phrases) == 3
    with wave.open(str(DATA / "demo.wav"), "rb") as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, 16000)
        bundled = f.getnframes()
    assert (DATA / "demo.wav").stat().st_size < 500_000
    # gaps longer than the echo replies (about 2 s), so no reply is cut off by the next turn
    pcm = render_turns(phrases, 3.2, 16000)
    assert pcm.size == bundled
    assert not pcm[:8000].any()  # 0.5 s of leading silence


def test_render_turns_layout() -> None:
    synth = EspeakSynthesizer()
    pcm = render_turns(["yes", "no"], 1.0, 8000, lead_s=0.25, synthesizer=synth)
    spoken = sum(round(synth.synthesize(p)[0].size * 8000 / 22050) for p in ("yes", "no"))
    assert abs(pcm.size - (2000 + 2 * 8000 + spoken)) <= 4
    with pytest.raises(ConfigError):
        render_turns(["yes"], -1.0)
