"""The price table: cost arithmetic, model fallback, override files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from livetalk.errors import ConfigError
from livetalk.protocol.events import Usage
from livetalk.scenarios import (
    DEFAULT_PRICES,
    TRANSCRIPTION_PRICES,
    ModelPrices,
    PriceTableError,
    TranscriptionPrices,
    estimate_cost,
    estimate_transcription_cost,
    load_prices,
)
from tests.sdk_types import REALTIME_MODELS, TRANSCRIPTION_MODELS

USAGE = Usage(input_tokens=1500, output_tokens=700, total_tokens=2200,
              input_text_tokens=1000, input_audio_tokens=500, cached_tokens=300,
              cached_text_tokens=200, cached_audio_tokens=100,
              output_text_tokens=200, output_audio_tokens=500)


def test_cost_splits_cached_input_per_modality() -> None:
    prices = {"m": ModelPrices(1, 2, 3, 10, 20, 30)}
    # text: 800 uncached x1 + 200 cached x2 + 200 out x3 = 1800
    # audio: 400 uncached x10 + 100 cached x20 + 500 out x30 = 21000
    assert estimate_cost(USAGE, "m", prices) == pytest.approx(22800 / 1e6)


def test_default_prices_and_model_fallback() -> None:
    one_m_audio_out = Usage(output_tokens=1_000_000, output_audio_tokens=1_000_000)
    one_m_text_out = Usage(output_tokens=1_000_000, output_text_tokens=1_000_000)
    assert estimate_cost(one_m_audio_out, "gpt-realtime-2.1") == pytest.approx(64.0)
    assert estimate_cost(one_m_text_out, "gpt-realtime-2.1") == pytest.approx(24.0)
    assert estimate_cost(one_m_text_out, "gpt-realtime-2.1-mini") == pytest.approx(2.4)
    assert estimate_cost(one_m_audio_out, "gpt-realtime") == pytest.approx(64.0)
    assert estimate_cost(one_m_audio_out, "gpt-realtime-2025-08-28") == pytest.approx(64.0)
    assert estimate_cost(one_m_audio_out, "gpt-realtime-mini-2025-10-06") == pytest.approx(20.0)
    assert estimate_cost(one_m_audio_out, "my-model") is None
    assert estimate_cost(Usage(), "gpt-realtime-2.1") == 0


@pytest.mark.parametrize("model", REALTIME_MODELS)
def test_every_realtime_model_the_sdk_lists_has_a_price(model: str) -> None:
    one_m_audio_in = Usage(input_tokens=1_000_000, input_audio_tokens=1_000_000)
    cost = estimate_cost(one_m_audio_in, model)
    assert cost is not None and cost > 0


@pytest.mark.parametrize("model", TRANSCRIPTION_MODELS)
def test_every_transcription_model_the_sdk_lists_has_a_price(model: str) -> None:
    minute = estimate_transcription_cost({"type": "duration", "seconds": 60}, model)
    tokens = estimate_transcription_cost(
        {"type": "tokens", "input_tokens": 1_000_000, "output_tokens": 0}, model)
    assert (minute or 0) > 0 or (tokens or 0) > 0


def test_transcription_cost_by_duration_or_by_token() -> None:
    assert estimate_transcription_cost({"type": "duration", "seconds": 120},
                                       "gpt-transcribe") == pytest.approx(0.009)
    assert estimate_transcription_cost(
        {"type": "tokens", "input_tokens": 2000, "output_tokens": 100,
         "input_token_details": {"audio_tokens": 2000, "text_tokens": 0}},
        "gpt-4o-transcribe") == pytest.approx((2000 * 2.5 + 100 * 10) / 1e6)
    # a dated snapshot falls back to its model
    assert estimate_transcription_cost({"type": "duration", "seconds": 60},
                                       "gpt-4o-mini-transcribe-2025-12-15") is None
    assert estimate_transcription_cost(
        {"type": "tokens", "input_tokens": 1_000_000, "output_tokens": 0},
        "gpt-4o-mini-transcribe-2025-12-15") == pytest.approx(1.25)


@pytest.mark.parametrize(("usage", "model"), [
    ({"type": "tokens", "input_tokens": 10, "output_tokens": 1}, "gpt-transcribe"),
    ({"type": "duration", "seconds": 10}, "gpt-4o-transcribe"),
    ({"type": "duration", "seconds": 10}, "my-transcriber"),
    ({"type": "duration", "seconds": "ten"}, "gpt-transcribe"),
    ({"type": "tokens", "input_tokens": -1, "output_tokens": 1}, "gpt-4o-transcribe"),
    ({"type": "bytes", "count": 3}, "gpt-transcribe"),
    ({}, "gpt-transcribe"),
])
def test_transcription_usage_that_cannot_be_priced_is_none(usage: dict[str, object],
                                                           model: str) -> None:
    assert estimate_transcription_cost(usage, model) is None


def test_transcription_prices_are_one_unit_each() -> None:
    for model, prices in TRANSCRIPTION_PRICES.items():
        by_minute = prices.per_minute is not None
        by_token = prices.input is not None and prices.output is not None
        assert by_minute != by_token, model
    custom = {"local": TranscriptionPrices(per_minute=1.0)}
    assert estimate_transcription_cost({"type": "duration", "seconds": 30}, "local",
                                       custom) == pytest.approx(0.5)


def test_price_file_overrides_and_adds(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("gpt-realtime:\n  audio_output: 50\nlocal:\n"
                    "  text_input: 0\n  text_cached_input: 0\n  text_output: 0\n"
                    "  audio_input: 0\n  audio_cached_input: 0\n  audio_output: 1\n")
    table = load_prices(path)
    assert table["gpt-realtime"].audio_output == 50
    assert table["gpt-realtime"].text_input == DEFAULT_PRICES["gpt-realtime"].text_input
    assert table["local"] == ModelPrices(0, 0, 0, 0, 0, 1)
    assert DEFAULT_PRICES["gpt-realtime"].audio_output == 64  # the defaults are untouched


@pytest.mark.parametrize(("content", "words"), [
    ({"gpt-realtime": {"audio_out": 1}}, "gpt-realtime.audio_out: unknown price"),
    ({"gpt-realtime": {"audio_output": -1}}, "gpt-realtime.audio_output: must be a number"),
    ({"gpt-realtime": {"audio_output": "cheap"}}, "must be a number >= 0"),
    ({"new-model": {"audio_output": 1}}, "new-model: a new model needs every price"),
    ({"gpt-realtime": 5}, "must be a mapping of prices"),
    ([1, 2], "must map model names to prices"),
])
def test_price_file_errors(tmp_path: Path, content: object, words: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(content))
    with pytest.raises(PriceTableError, match=words) as info:
        load_prices(path)
    assert isinstance(info.value, ConfigError)
    assert str(path) in str(info.value)


def test_unreadable_price_file(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match="cannot read"):
        load_prices(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(PriceTableError, match="invalid price file"):
        load_prices(bad)
