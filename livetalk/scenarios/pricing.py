"""Estimated cost of token usage, from a per-model price table you can override.

Prices are USD per one million tokens, for six kinds of token: text and audio, each as
uncached input, cached input and output. :data:`DEFAULT_PRICES` covers every realtime model
the ``openai`` SDK lists (a test checks it), with OpenAI's list prices as published on the
model pages ``https://developers.openai.com/api/docs/models/<model>``, read on 2026-11-29.
Where a price is not published, the table says so next to the entry and uses a stated
stand-in. Prices change: check the pricing page and override them with a JSON or YAML file::

    gpt-realtime-2.1:
      text_input: 4.00
      text_cached_input: 0.40
      text_output: 24.00
      audio_input: 32.00
      audio_cached_input: 0.40
      audio_output: 64.00

Read it with :func:`load_prices` (``livetalk script --prices FILE``): entries for known models
may give only the prices they change; a new model must give all six.

Input transcription is billed apart from the responses, by the transcription model: per minute
of audio (``gpt-transcribe``, ``gpt-live-transcribe``, ``gpt-realtime-whisper``, ``whisper-1``)
or per token (the ``gpt-4o`` transcribe models). :data:`TRANSCRIPTION_PRICES` and
:func:`estimate_transcription_cost` price the ``usage`` of one
``conversation.item.input_audio_transcription.completed`` event; the scenario reports do not
add it to their totals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Final, TypeGuard, TypeVar

from livetalk._extras import install_hint
from livetalk.errors import PriceTableError
from livetalk.protocol.events import Usage

__all__ = [
    "DEFAULT_PRICES",
    "TRANSCRIPTION_PRICES",
    "ModelPrices",
    "PriceTable",
    "PriceTableError",
    "TranscriptionPrices",
    "estimate_cost",
    "estimate_transcription_cost",
    "load_prices",
]

_T = TypeVar("_T")


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
"""Prices by model name (a dated snapshot such as ``gpt-realtime-mini-2025-12-15`` falls back
to the longest name it extends, ``gpt-realtime-mini``)."""

DEFAULT_PRICES: Final[PriceTable] = {
    # current models
    "gpt-realtime-2.1": ModelPrices(4.00, 0.40, 24.00, 32.00, 0.40, 64.00),
    "gpt-realtime-2.1-mini": ModelPrices(0.60, 0.06, 2.40, 10.00, 0.30, 20.00),
    "gpt-realtime-2": ModelPrices(4.00, 0.40, 24.00, 32.00, 0.40, 64.00),
    "gpt-realtime-1.5": ModelPrices(4.00, 0.40, 16.00, 32.00, 0.40, 64.00),
    # gpt-audio models: no cached-input price is published; the stand-in is the uncached
    # price (no cache discount). gpt-audio-mini's page gives text prices only; its audio
    # stand-in is gpt-realtime-mini's audio price.
    "gpt-audio-1.5": ModelPrices(2.50, 2.50, 10.00, 32.00, 32.00, 64.00),
    "gpt-audio-mini": ModelPrices(0.60, 0.60, 2.40, 10.00, 10.00, 20.00),
    # deprecated (shutdown 2027-01-20) or shut down; prices as last published
    "gpt-realtime": ModelPrices(4.00, 0.40, 16.00, 32.00, 0.40, 64.00),
    "gpt-realtime-mini": ModelPrices(0.60, 0.06, 2.40, 10.00, 0.30, 20.00),
    "gpt-4o-realtime-preview": ModelPrices(5.00, 2.50, 20.00, 40.00, 2.50, 80.00),
    "gpt-4o-mini-realtime-preview": ModelPrices(0.60, 0.30, 2.40, 10.00, 0.30, 20.00),
}
"""OpenAI list prices (USD per 1M tokens, read 2026-11-29); override with a file."""


@dataclass(frozen=True, slots=True)
class TranscriptionPrices:
    """USD prices of one input transcription model: per minute of audio, or per 1M tokens.

    Attributes:
        per_minute: USD per minute of transcribed audio, for models billed by duration.
        input: USD per 1M input tokens (audio, and the text of a prompt), for models billed
            by token.
        output: USD per 1M output (transcript) tokens, for models billed by token.
    """

    per_minute: float | None = None
    input: float | None = None
    output: float | None = None


TRANSCRIPTION_PRICES: Final[Mapping[str, TranscriptionPrices]] = {
    "gpt-transcribe": TranscriptionPrices(per_minute=0.0045),
    "gpt-live-transcribe": TranscriptionPrices(per_minute=0.017),
    "gpt-realtime-whisper": TranscriptionPrices(per_minute=0.017),
    # deprecated, shutdown 2027-02-26
    "gpt-4o-transcribe": TranscriptionPrices(input=2.50, output=10.00),
    "gpt-4o-mini-transcribe": TranscriptionPrices(input=1.25, output=5.00),
    # no published price found for the diarize model: stand-in = gpt-4o-transcribe's
    "gpt-4o-transcribe-diarize": TranscriptionPrices(input=2.50, output=10.00),
    # whisper-1's page was not in the sources read on 2026-11-29: its long-standing list
    # price of 0.006 USD per minute stands in
    "whisper-1": TranscriptionPrices(per_minute=0.006),
}
"""Input transcription prices by model (same fallback for dated snapshots)."""

_FIELDS: Final = tuple(f.name for f in fields(ModelPrices))


def _lookup(table: Mapping[str, _T], model: str) -> _T | None:
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


def estimate_transcription_cost(
    usage: Mapping[str, Any],
    model: str,
    prices: Mapping[str, TranscriptionPrices] = TRANSCRIPTION_PRICES,
) -> float | None:
    """Estimated USD cost of one transcription's ``usage``, or None when it cannot be priced.

    Args:
        usage: the ``usage`` of ``conversation.item.input_audio_transcription.completed``:
            ``{"type": "duration", "seconds": ...}`` or ``{"type": "tokens",
            "input_tokens": ..., "output_tokens": ...}``.
        model: the transcription model of the session.
        prices: the table to use.

    Returns:
        The cost, or None for a model without a price, or usage in a unit the model is not
        priced in (tokens for a per-minute model, or the other way round).
    """
    p = _lookup(prices, model)
    if p is None:
        return None
    if usage.get("type") == "duration":
        seconds = usage.get("seconds")
        if p.per_minute is None or not _is_number(seconds):
            return None
        return float(seconds) / 60 * p.per_minute
    if usage.get("type") == "tokens":
        if p.input is None or p.output is None:
            return None
        tokens_in, tokens_out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        if not (_is_number(tokens_in) and _is_number(tokens_out)):
            return None
        return (float(tokens_in) * p.input + float(tokens_out) * p.output) / 1_000_000
    return None


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


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
