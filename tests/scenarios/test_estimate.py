"""The cost estimate that --dry-run prints."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from livetalk.protocol.session import DEFAULT_MODEL
from livetalk.scenarios import DEFAULT_PRICES, estimate_cost, scenario_from_dict
from livetalk.scenarios.estimate import (
    ASSUMED_SPEECH_WPM,
    AUDIO_INPUT_TOKENS_PER_S,
    AUDIO_OUTPUT_TOKENS_PER_S,
    estimate_batch,
    estimate_scenario,
)


def test_conversation_grows_and_history_is_cached() -> None:
    words = "one two three four five six seven"  # 7 words: 2.4 s at 175 wpm
    scenario = scenario_from_dict({"session": {"instructions": "x" * 400},
                                   "turns": [{"say": words}, {"pause_ms": 1000},
                                             {"say": words}]})
    est = estimate_scenario(scenario, reply_s=2.0)
    speech_s = 7 * 60 / ASSUMED_SPEECH_WPM
    assert est.spoken_turns == 2
    assert est.user_audio_s == pytest.approx(2 * speech_s + 1.0)
    assert est.reply_audio_s == 4.0
    user = round(speech_s * AUDIO_INPUT_TOKENS_PER_S)
    reply = 2 * AUDIO_OUTPUT_TOKENS_PER_S
    u = est.usage
    assert u.output_audio_tokens == 2 * reply
    # reply 1 reads the first turn; reply 2 reads it again (cached) plus the new turn and
    # the first reply
    assert u.input_audio_tokens == user + (user + user + reply)
    assert u.cached_audio_tokens == user
    assert u.input_text_tokens == 200 and u.cached_text_tokens == 100
    assert est.model == DEFAULT_MODEL
    assert est.cost_usd == pytest.approx(estimate_cost(u, DEFAULT_MODEL, DEFAULT_PRICES))
    assert est.cost_usd is not None and est.cost_usd > 0


def test_recording_length_comes_from_the_file(tmp_path: Path) -> None:
    recording = tmp_path / "three_seconds.wav"
    with wave.open(str(recording), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.zeros(48000, dtype="<i2").tobytes())
    (tmp_path / "s.json").write_text(json.dumps({"turns": [{"audio": str(recording)}]}))
    from livetalk.scenarios import load_scenario

    est = estimate_scenario(load_scenario(tmp_path / "s.json"))
    assert est.user_audio_s == pytest.approx(3.0, abs=0.01)


def test_unknown_model_has_no_price_and_the_total_says_so() -> None:
    scenario = scenario_from_dict({"session": {"model": "my-model"}, "turns": [{"say": "hi"}]})
    batch = estimate_batch([scenario, scenario])
    assert batch.cost_usd is None
    assert "unknown" in batch.lines()[-1]
