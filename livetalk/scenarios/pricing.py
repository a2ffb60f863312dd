"""Estimated cost of token usage, from a per-model price table you can override.

Prices are USD per one million tokens, for six kinds of token: text and audio, each as
uncached input, cached input and output. :data:`DEFAULT_PRICES` holds OpenAI's published list
prices for the realtime models at the time of writing (autumn 2025); check
https://openai.com/api/pricing and override them with a JSON or YAML file::

    gpt-realtime:
      text_input: 4.00
      text_cached_input: 0.40
      text_output: 16.00
      audio_input: 32.00
      audio_cached_input: 0.40
      audio_output: 64.00

Read it with :func:`load_prices` (``livetalk script --prices FILE``): entries for known models
may give only the prices they change; a new model must give all six. The cost of input
transcription (billed separately, per minute or per token of the transcription model) is not
included.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

from livetalk._extras import install_hint
from livetalk.errors import ConfigError
from livetalk.protocol.events import Usage

__all__ = [
    "DEFAULT_PRICES",
    "ModelPrices",
    "PriceTable",
    "PriceTableError",
    "estimate_cost",
    "load_prices",
]


class PriceTableError(ConfigError):
    """A price file that cannot be read or holds invalid prices (the message names the file,
    the model and the field)."""


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """USD per one million tokens of one model."""

    text_input: float
    text_cached_input: float
    text_output: float
    audio_input: float
    audio_cached_input: float
    audio_output: float

    def to_dict(self) -> dict[str, float]:
        """The six prices by name."""
        return asdict(self)


PriceTable = Mapping[str, ModelPrices]
"""Prices by model name (a model ``gpt-realtime-2025-08-28`` falls back to ``gpt-realtime``)."""

DEFAULT_PRICES: Final[PriceTable] = {
    "gpt-realtime": ModelPrices(4.00, 0.40, 16.00, 32.00, 0.40, 64.00),
    "gpt-realtime-mini": ModelPrices(0.60, 0.06, 2.40, 10.00, 0.30, 20.00),
    "gpt-4o-realtime-preview": ModelPrices(5.00, 2.50, 20.00, 40.00, 2.50, 80.00),
    "gpt-4o-mini-realtime-preview": ModelPrices(0.60, 0.30, 2.40, 10.00, 0.30, 20.00),
}
"""OpenAI list prices (USD per 1M tokens) at the time of writing; override with a file."""

_FIELDS: Final = tuple(f.name for f in fields(ModelPrices))


def _lookup(table: PriceTable, model: str) -> ModelPrices | None:
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name + "-")]
    return table[max(matches, key=len)] if matches else None


def estimate_cost(usage: Usage, model: str, prices: PriceTable = DEFAULT_PRICES) -> float | None:
    """Estimated USD cost of ``usage`` on ``model``, or None when the table has no price.

    Cached input tokens are charged at the cached price and the rest of the input at the
    input price, per modality.
    """
    p = _lookup(prices, model)
    if p is None:
        return None
    text_in = max(usage.input_text_tokens - usage.cached_text_tokens, 0)
    audio_in = max(usage.input_audio_tokens - usage.cached_audio_tokens, 0)
    total = (
        text_in * p.text_input
        + usage.cached_text_tokens * p.text_cached_input
        + usage.output_text_tokens * p.text_output
        + audio_in * p.audio_input
        + usage.cached_audio_tokens * p.audio_cached_input
        + usage.output_audio_tokens * p.audio_output
    )
    return total / 1_000_000


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceTableError(f"{path}: cannot read the price file: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except ImportError:
        raise PriceTableError(f"{path}: reading YAML needs PyYAML: "
                              f"{install_hint('scenarios')} (or use .json)") from None
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise PriceTableError(f"{path}: invalid price file: {exc}") from None


def load_prices(path: str | Path, base: PriceTable = DEFAULT_PRICES) -> dict[str, ModelPrices]:
    """Read a price file (JSON, or YAML for any other suffix) over ``base``.

    Args:
        path: a mapping of model name to a mapping of prices (see the module docstring).
        base: the table to update.

    Returns:
        A new table: ``base`` with the file's entries applied.

    Raises:
        PriceTableError: unreadable file, unknown field, a negative or non-numeric price, or
            a new model missing some of the six prices.
    """
    file = Path(path)
    data = _read(file)
    if not isinstance(data, Mapping):
        raise PriceTableError(f"{file}: must map model names to prices")
    table = dict(base)
    for model, entry in data.items():
        where = f"{file}: {model}"
        if not isinstance(entry, Mapping):
            raise PriceTableError(f"{where}: must be a mapping of prices; got {entry!r}")
        for key, value in entry.items():
            if key not in _FIELDS:
                raise PriceTableError(f"{where}.{key}: unknown price; allowed: "
                                      f"{', '.join(_FIELDS)}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise PriceTableError(f"{where}.{key}: must be a number >= 0 (USD per 1M "
                                      f"tokens); got {value!r}")
        values = {k: float(v) for k, v in entry.items()}
        current = table.get(str(model))
        if current is not None:
            table[str(model)] = replace(current, **values)
            continue
        missing = [k for k in _FIELDS if k not in values]
        if missing:
            raise PriceTableError(f"{where}: a new model needs every price; missing "
                                  f"{', '.join(missing)}")
        table[str(model)] = ModelPrices(**values)
    return table
