"""What the installed ``openai`` SDK says: the model names its Literals list, the names its
docstrings mark as deprecated ("Deprecated values: ... Announced shutdown date"), and
:data:`EVERYTHING`, a GA session that sets every field the SDK's session types describe."""

from __future__ import annotations

import inspect
import re
import typing
from types import ModuleType
from typing import Any, Literal

from openai.types.realtime import audio_transcription_param, realtime_session_create_request_param

__all__ = [
    "DEPRECATED_MODELS",
    "EVERYTHING",
    "REALTIME_MODELS",
    "TRANSCRIPTION_MODELS",
    "hint",
    "literals",
]


def literals(tp: Any) -> set[str]:
    """Every string Literal value inside a type (through Union, List, Optional ...)."""
    if typing.get_origin(tp) is Literal:
        return {a for a in typing.get_args(tp) if isinstance(a, str)}
    return set().union(*(literals(a) for a in typing.get_args(tp)))


def hint(typed_dict: Any, name: str) -> Any:
    """The resolved type of one field of a TypedDict."""
    return typing.get_type_hints(typed_dict)[name]


def _deprecated(module: ModuleType) -> set[str]:
    blocks = re.findall(r"Deprecated values:(.*?)Announced shutdown", inspect.getsource(module),
                        re.S)
    return {name for block in blocks for name in re.findall(r'"([^"]+)"', block)}


REALTIME_MODELS: list[str] = sorted(literals(hint(
    realtime_session_create_request_param.RealtimeSessionCreateRequestParam, "model")))
TRANSCRIPTION_MODELS: list[str] = sorted(literals(hint(
    audio_transcription_param.AudioTranscriptionParam, "model")))
DEPRECATED_MODELS: frozenset[str] = frozenset(
    _deprecated(realtime_session_create_request_param) | _deprecated(audio_transcription_param))

# Every field the SDK describes, with valid values (tests/protocol/test_session.py checks it
# against the SDK's types).
EVERYTHING: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime-2.1",
    "instructions": "Be brief.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "noise_reduction": {"type": "far_field", "strength": 0.6},
            "transcription": {"model": "gpt-live-transcribe", "language": "en",
                              "prompt": "weather", "delay": "low",
                              "keywords": ["Paris", "Rome"], "languages": ["en", "fr"]},
            "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 300,
                               "silence_duration_ms": 500, "idle_timeout_ms": 6000,
                               "create_response": True, "interrupt_response": True},
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "cedar", "speed": 1.1},
    },
    "tools": [
        {"type": "function", "name": "get_weather", "description": "Weather in a city.",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.test",
         "authorization": "token", "headers": {"X-Team": "a"}, "server_description": "Docs.",
         "allowed_tools": {"tool_names": ["search"], "read_only": True},
         "allowed_callers": ["direct"], "require_approval": {"never": {"tool_names": ["search"]}},
         "defer_loading": False},
        {"type": "mcp", "server_label": "mail", "connector_id": "connector_gmail",
         "require_approval": "always", "allowed_tools": ["read"]},
    ],
    "tool_choice": {"type": "mcp", "server_label": "docs", "name": "search"},
    "max_output_tokens": 2048,
    "reasoning": {"effort": "low"},
    "parallel_tool_calls": True,
    "prompt": {"id": "pmpt_123", "version": "2", "variables": {"city": "Paris"}},
    "tracing": {"workflow_name": "support", "group_id": "g1", "metadata": {"tier": 1}},
    "truncation": {"type": "retention_ratio", "retention_ratio": 0.8,
                   "token_limits": {"post_instructions": 8000}},
    "include": ["item.input_audio_transcription.logprobs"],
}
