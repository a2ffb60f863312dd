"""The price table: cost arithmetic, model fallback, override files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from livetalk.errors import ConfigError
from livetalk.protocol.events import Usage
from livetalk.scenarios import (
    DEFAULT_PRICES,
    ModelPrices,
    PriceTableError,
    estimate_cost,
    load_prices,
)

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
    assert estimate_cost(one_m_audio_out, "gpt-realtime") == pytest.approx(64.0)
    assert estimate_cost(one_m_audio_out, "gpt-realtime-2025-08-28") == pytest.approx(64.0)
    assert estimate_cost(one_m_audio_out, "gpt-realtime-mini-2025-10-06") == pytest.approx(20.0)
    assert estimate_cost(one_m_audio_out, "my-model") is None
    assert estimate_cost(Usage(), "gpt-realtime") == 0


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
