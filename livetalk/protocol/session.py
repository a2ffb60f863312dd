"""The GA Realtime session object: its schema, one validator for both roles, and the typed config.

Three layers, from the wire up:

* :data:`KNOWN_FIELDS` names every field of every object inside a GA session (``session``,
  ``audio.input``, ``transcription``, ``server_vad``, ``mcp_tool`` ...). A test compares these
  sets with the installed ``openai`` SDK's types, so a field the SDK gains shows up as a failing
  test here rather than as a refusal in a user's hands.
* :func:`validate_session` checks a raw session dict and raises
  :class:`~livetalk.errors.SessionConfigError` carrying the API's own ``code``, ``message`` and
  ``param``. It has two modes. ``strict=True`` behaves as the API does (unknown fields are
  refused with ``unknown_parameter``); livetalk's local server uses it for ``session.update``,
  the multipart ``session`` part of ``POST /realtime/calls`` and ``client_secrets``.
  ``strict=False`` is the client's: it checks every field it knows and passes the others
  through untouched, so a field the API adds after this release still works.
  :func:`merge_session` and :func:`default_session` give the server's effective session.
* :class:`SessionConfig` and its parts are the typed view. ``SessionConfig(...)`` holds only
  what you set, and its ``to_dict()`` is the ``session`` object of a ``session.update`` with
  exactly those fields, because the server merges an update into the running session.
  ``SessionConfig.from_dict()`` reads any GA session: fields it does not model are kept in
  ``extra`` (on the object they belong to) and written back by ``to_dict()``, never dropped.

Two kinds of "not set" exist. Fields the API never accepts as ``null`` (``model``, ``voice``,
``speed``, ...) use ``None``. Fields where ``null`` means something (``transcription``,
``turn_detection`` and ``noise_reduction``: off; ``prompt``: no stored prompt; ``tracing``:
no traces) default to the :data:`UNSET` sentinel, so ``turn_detection=None`` sends
``"turn_detection": null`` (manual turns) while leaving it out sends nothing.

Invalid values raise :class:`~livetalk.errors.SessionConfigError` (a
:class:`~livetalk.errors.ConfigError`) when the object is built, with the message the API
would give for the same session; beta-era fields (``voice`` at the top level, ``modalities``,
``temperature`` ...) are refused with a hint naming their GA place.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, ClassVar, Final, Literal, TypeVar

from livetalk.errors import ConfigError, SessionConfigError

__all__ = [
    "BETA_FIELDS",
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_MODEL",
    "DEFAULT_TRANSCRIPTION_MODEL",
    "KNOWN_FIELDS",
    "PCM_RATE",
    "READ_ONLY_FIELDS",
    "SAY_EXACTLY_PREFIX",
    "UNSET",
    "AudioFormat",
    "Eagerness",
    "FunctionTool",
    "Include",
    "Modality",
    "NoiseReduction",
    "Reasoning",
    "ReasoningEffort",
    "SemanticVAD",
    "ServerVAD",
    "SessionConfig",
    "ToolChoice",
    "Transcription",
    "TranscriptionDelay",
    "Unset",
    "Voice",
    "default_session",
    "merge_session",
    "validate_session",
]

DEFAULT_MODEL: Final = "gpt-realtime-2.1"
"""The model of a new session when none is given (the official agents SDKs' default; the older
``gpt-realtime`` and ``gpt-realtime-mini`` are deprecated, shutdown 2027-01-20)."""

DEFAULT_TRANSCRIPTION_MODEL: Final = "gpt-transcribe"
"""The input transcription model :class:`Transcription` uses when none is given
(``whisper-1`` and the ``gpt-4o(-mini)-transcribe`` models are deprecated, shutdown 2027-02-26)."""

PCM_RATE: Final = 24000
"""The sample rate of ``audio/pcm``: the API's only PCM rate, and livetalk's internal rate."""

#: ``response.instructions`` that make the model speak a host's text verbatim: what
#: ``Call.say()`` sends, and what livetalk's local server recognises.
SAY_EXACTLY_PREFIX = "Say exactly the following, word for word, and nothing else:"

DEFAULT_INSTRUCTIONS: Final = (
    "You are a helpful, friendly voice assistant. This is livetalk's local server: "
    "replies come from its configured brain, not from a language model."
)
"""The instructions of a session that livetalk's local server starts (the real API fills in
its own default prompt the same way, visible in ``session.created``)."""


class Unset(Enum):
    """Type of the :data:`UNSET` sentinel."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET
"""Default of the nullable session fields: "not set", as opposed to ``None`` (send ``null``)."""


class Voice(StrEnum):
    """The built-in voices (``audio.output.voice``); ``marin`` and ``cedar`` sound best.

    :class:`SessionConfig` also accepts any other voice name (the API adds voices) and a
    custom voice as ``{"id": "voice_..."}``.
    """

    ALLOY = "alloy"
    ASH = "ash"
    BALLAD = "ballad"
    CORAL = "coral"
    ECHO = "echo"
    SAGE = "sage"
    SHIMMER = "shimmer"
    VERSE = "verse"
    MARIN = "marin"
    CEDAR = "cedar"


class Modality(StrEnum):
    """What the model answers with (``output_modalities``); audio always has a transcript."""

    AUDIO = "audio"
    TEXT = "text"


class Eagerness(StrEnum):
    """How soon semantic VAD ends a turn (``auto`` is ``medium``)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    AUTO = "auto"


class AudioFormat(StrEnum):
    """Audio format of base64 audio in events (WebRTC media is Opus whatever this says)."""

    PCM = "audio/pcm"
    PCMU = "audio/pcmu"
    PCMA = "audio/pcma"


class NoiseReduction(StrEnum):
    """Input noise reduction: ``near_field`` for headsets, ``far_field`` for laptop mics."""

    NEAR_FIELD = "near_field"
    FAR_FIELD = "far_field"


class ToolChoice(StrEnum):
    """Whether the model may, must not or must call a tool."""

    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"


class TranscriptionDelay(StrEnum):
    """How long the transcription model waits before emitting text (``gpt-realtime-whisper``);
    longer waits are more accurate."""

    MINIMAL = "minimal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    XHIGH = "xhigh"


class ReasoningEffort(StrEnum):
    """How hard a reasoning model (``gpt-realtime-2`` and later) thinks before it answers."""

    MINIMAL = "minimal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    XHIGH = "xhigh"


class Include(StrEnum):
    """Extra fields the server may add to its events (``include``)."""

    TRANSCRIPTION_LOGPROBS = "item.input_audio_transcription.logprobs"


_VOICES: Final = frozenset(v.value for v in Voice)
_SESSION_TYPES: Final = ("realtime", "transcription")
_TRUNCATION_MODES: Final = ("auto", "disabled")
_TRACING_MODES: Final = ("auto",)
_MCP_APPROVAL_MODES: Final = ("always", "never")
_MCP_CALLERS: Final = ("direct", "programmatic")
_TOOL_NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_LANGUAGE: Final = re.compile(r"[a-z]{2}")

BETA_FIELDS: Final[Mapping[str, str | None]] = {
    "modalities": "output_modalities",
    "voice": "audio.output.voice",
    "speed": "audio.output.speed",
    "input_audio_format": "audio.input.format",
    "output_audio_format": "audio.output.format",
    "input_audio_transcription": "audio.input.transcription",
    "turn_detection": "audio.input.turn_detection",
    "input_audio_noise_reduction": "audio.input.noise_reduction",
    "max_response_output_tokens": "max_output_tokens",
    "temperature": None,
}
"""Beta-era flat session fields and where the GA session keeps them (None: nowhere)."""

READ_ONLY_FIELDS: Final = frozenset({"id", "object", "expires_at"})
"""Fields of the server's session object (``session.created``) that a client may echo back;
they are accepted and ignored."""


# ============================================================================ the validator
#
# A _Spec lists the fields of one GA object and the check of each. The checks are plain
# functions ``check(validator, value, param)`` that raise SessionConfigError with the API's
# code and message; ``param`` is the dotted path the API reports (``session.tools[0].name``).

_Check = Callable[["_Validator", Any, str], None]


@dataclass(frozen=True, slots=True)
class _Spec:
    fields: Mapping[str, _Check]
    required: frozenset[str] = frozenset()
    nullable: frozenset[str] = frozenset()


def _show(value: Any) -> str:
    """A value the way the API quotes it in a message."""
    if isinstance(value, str):
        return f"'{value}'"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _choices(values: Iterable[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _invalid_type(param: str, expected: str, value: Any) -> SessionConfigError:
    return SessionConfigError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param,
    )


def _invalid_value(param: str, value: Any, supported: Iterable[str]) -> SessionConfigError:
    return SessionConfigError(
        "invalid_value",
        f"Invalid value: {_show(value)}. Supported values are: {_choices(supported)}.",
        param,
    )


def _invalid(param: str, reason: str) -> SessionConfigError:
    return SessionConfigError("invalid_value", f"Invalid '{param}': {reason}.", param)


def _missing(param: str) -> SessionConfigError:
    return SessionConfigError(
        "missing_required_parameter", f"Missing required parameter: '{param}'.", param
    )


def _unknown(param: str, hint: str = "") -> SessionConfigError:
    return SessionConfigError("unknown_parameter", f"Unknown parameter: '{param}'.{hint}", param)


def _out_of_range(param: str, value: float, low: float | None, high: float | None,
                  integer: bool) -> SessionConfigError | None:
    kind = "integer" if integer else "decimal"
    if low is not None and value < low:
        return SessionConfigError(
            f"{kind}_below_min_value",
            f"Invalid '{param}': {kind} below minimum value. Expected a value >= "
            f"{_number_text(low)}, but got {_number_text(value)} instead.",
            param,
        )
    if high is not None and value > high:
        return SessionConfigError(
            f"{kind}_above_max_value",
            f"Invalid '{param}': {kind} above maximum value. Expected a value <= "
            f"{_number_text(high)}, but got {_number_text(value)} instead.",
            param,
        )
    return None


def _beta_hint(key: str) -> str:
    target = BETA_FIELDS[key]
    if target is None:
        return f" 'session.{key}' is a beta-era field; the GA API has no such setting."
    return f" 'session.{key}' is a beta-era field; in the GA session it is 'session.{target}'."


class _Validator:
    """One validation pass, strict (as the API) or lenient (as the client)."""

    __slots__ = ("strict",)

    def __init__(self, strict: bool) -> None:
        self.strict = strict

    def check(self, spec: _Spec, value: Any, param: str) -> Mapping[str, Any]:
        """Check an object against ``spec``; unknown fields are refused only when strict."""
        obj = _object(self, value, param)
        for name in sorted(spec.required):
            if name not in obj:
                raise _missing(f"{param}.{name}")
        for key, item in obj.items():
            where = f"{param}.{key}"
            check = spec.fields.get(key)
            if check is None:
                if self.strict:
                    raise _unknown(where)
                continue
            if item is None and (key in spec.nullable or not self.strict):
                continue  # lenient: a null reads as "not set", as the server's echo has it
            check(self, item, where)
        return obj


# ---------------------------------------------------------------------------- checks


def _object(v: _Validator, value: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid_type(param, "an object", value)
    return value


def _free_object(v: _Validator, value: Any, param: str) -> None:
    """An object whose content is free-form (JSON Schema, prompt variables)."""
    _object(v, value, param)


def _any(v: _Validator, value: Any, param: str) -> None:
    """Free-form content (tracing metadata): passed through."""


def _string(v: _Validator, value: Any, param: str) -> None:
    if not isinstance(value, str):
        raise _invalid_type(param, "a string", value)


def _name(v: _Validator, value: Any, param: str) -> None:
    _string(v, value, param)
    if not value:
        raise _invalid(param, "empty string. Expected a string with minimum length 1")


def _boolean(v: _Validator, value: Any, param: str) -> None:
    if not isinstance(value, bool):
        raise _invalid_type(param, "a boolean", value)


def _number(low: float | None = None, high: float | None = None) -> _Check:
    def check(v: _Validator, value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid_type(param, "a number", value)
        error = _out_of_range(param, value, low, high, integer=False)
        if error is not None:
            raise error
    return check


def _integer(low: int | None = None, high: int | None = None) -> _Check:
    def check(v: _Validator, value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid_type(param, "an integer", value)
        error = _out_of_range(param, value, low, high, integer=True)
        if error is not None:
            raise error
    return check


def _enum(values: Iterable[str]) -> _Check:
    allowed = tuple(values)

    def check(v: _Validator, value: Any, param: str) -> None:
        _string(v, value, param)
        if value not in allowed:
            raise _invalid_value(param, value, allowed)
    return check


def _array(item: _Check) -> _Check:
    def check(v: _Validator, value: Any, param: str) -> None:
        if not isinstance(value, list | tuple):
            raise _invalid_type(param, "an array", value)
        for i, element in enumerate(value):
            item(v, element, f"{param}[{i}]")
    return check


def _nested(spec: _Spec) -> _Check:
    def check(v: _Validator, value: Any, param: str) -> None:
        v.check(spec, value, param)
    return check


def _language(v: _Validator, value: Any, param: str) -> None:
    _string(v, value, param)
    if not _LANGUAGE.fullmatch(value):
        raise _invalid(param, f"{_show(value)} is not an ISO-639-1 language code. Expected two "
                              "lowercase letters such as 'en'")


def _modalities(v: _Validator, value: Any, param: str) -> None:
    _array(_enum(m.value for m in Modality))(v, value, param)
    if len(value) != 1:
        raise _invalid(param, f"{_show(list(value))} is not supported. Expected exactly one of "
                              "'audio' and 'text' (audio always comes with a transcript)")


def _max_output_tokens(v: _Validator, value: Any, param: str) -> None:
    if isinstance(value, str):
        if value != "inf":
            raise _invalid_value(param, value, ["inf"])
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(param, "one of an integer or the string 'inf'", value)
    _integer(1, 4096)(v, value, param)


def _voice(v: _Validator, value: Any, param: str) -> None:
    if isinstance(value, Mapping):
        v.check(_VOICE_ID, value, param)
        _name(v, value["id"], f"{param}.id")
        return
    if not isinstance(value, str):
        raise _invalid_type(param, "one of a string or an object", value)
    _name(v, value, param)
    if v.strict and value not in _VOICES:
        raise _invalid_value(param, value, [m.value for m in Voice])


def _format(v: _Validator, value: Any, param: str) -> None:
    obj = v.check(_FORMAT, value, param)
    if obj.get("type") == AudioFormat.PCM:
        if "rate" not in obj:
            if v.strict:  # observed: the API requires the rate of audio/pcm
                raise _missing(f"{param}.rate")
        elif obj["rate"] != PCM_RATE:
            raise _invalid_value(f"{param}.rate", obj["rate"], [str(PCM_RATE)])


def _turn_detection(v: _Validator, value: Any, param: str) -> None:
    obj = _object(v, value, param)
    kind = obj.get("type")
    if kind is None:
        raise _missing(f"{param}.type")
    specs = {"server_vad": _SERVER_VAD, "semantic_vad": _SEMANTIC_VAD}
    _string(v, kind, f"{param}.type")
    if kind not in specs:
        raise _invalid_value(f"{param}.type", kind, specs)
    v.check(specs[kind], obj, param)


def _tool(v: _Validator, value: Any, param: str) -> None:
    obj = _object(v, value, param)
    kind = obj.get("type", "function")  # the SDK makes a function tool's type optional
    if kind == "function":
        v.check(_FUNCTION_TOOL, obj, param)
        name = obj["name"]
        if not _TOOL_NAME.fullmatch(name):
            raise _invalid(f"{param}.name", f"string does not match pattern. Expected a string "
                                            f"that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
                                            f", but got {_show(name)}")
    elif kind == "mcp":
        v.check(_MCP_TOOL, obj, param)
    elif v.strict or not isinstance(kind, str):
        _string(v, kind, f"{param}.type")
        raise _invalid_value(f"{param}.type", kind, ["function", "mcp"])


def _tools(v: _Validator, value: Any, param: str) -> None:
    _array(_tool)(v, value, param)
    seen: set[str] = set()
    for i, tool in enumerate(value):
        name = tool.get("name") if tool.get("type", "function") == "function" else None
        if isinstance(name, str):
            if name in seen:
                raise _invalid(f"{param}[{i}].name", f"duplicate function name {_show(name)}. "
                                                     "Each tool needs its own name")
            seen.add(name)


def _tool_choice(v: _Validator, value: Any, param: str) -> None:
    if isinstance(value, str):
        _enum(m.value for m in ToolChoice)(v, value, param)
        return
    obj = _object(v, value, param)
    kind = obj.get("type")
    if kind == "function":
        v.check(_TOOL_CHOICE_FUNCTION, obj, param)
    elif kind == "mcp":
        v.check(_TOOL_CHOICE_MCP, obj, param)
    elif kind is None:
        raise _missing(f"{param}.type")
    else:
        raise _invalid_value(f"{param}.type", kind, ["function", "mcp"])


def _tracing(v: _Validator, value: Any, param: str) -> None:
    if isinstance(value, str):
        _enum(_TRACING_MODES)(v, value, param)
    else:
        v.check(_TRACING, value, param)


def _truncation(v: _Validator, value: Any, param: str) -> None:
    if isinstance(value, str):
        _enum(_TRUNCATION_MODES)(v, value, param)
    else:
        v.check(_TRUNCATION, value, param)


def _mcp_allowed_tools(v: _Validator, value: Any, param: str) -> None:
    if isinstance(value, list | tuple):
        _array(_string)(v, value, param)
    else:
        v.check(_MCP_FILTER, value, param)


def _mcp_require_approval(v: _Validator, value: Any, param: str) -> None:
    if isinstance(value, str):
        _enum(_MCP_APPROVAL_MODES)(v, value, param)
    else:
        v.check(_MCP_APPROVAL, value, param)


def _headers(v: _Validator, value: Any, param: str) -> None:
    for key, item in _object(v, value, param).items():
        _string(v, item, f"{param}.{key}")


# ---------------------------------------------------------------------------- the specs

_VOICE_ID: Final = _Spec({"id": _name}, required=frozenset({"id"}))
_FORMAT: Final = _Spec(
    {"type": _enum(f.value for f in AudioFormat), "rate": _integer()},
    required=frozenset({"type"}),
)
_NOISE_REDUCTION: Final = _Spec({
    "type": _enum(n.value for n in NoiseReduction),
    "strength": _number(0.0),
})
_TRANSCRIPTION: Final = _Spec({
    "model": _name,
    "language": _language,
    "prompt": _string,
    "delay": _enum(d.value for d in TranscriptionDelay),
    "keywords": _array(_string),
    "languages": _array(_language),
})
_SERVER_VAD: Final = _Spec(
    {
        "type": _enum(["server_vad"]),
        "threshold": _number(0.0, 1.0),
        "prefix_padding_ms": _integer(0),
        "silence_duration_ms": _integer(0),
        "idle_timeout_ms": _integer(5000, 30000),
        "create_response": _boolean,
        "interrupt_response": _boolean,
    },
    nullable=frozenset({"idle_timeout_ms"}),
)
_SEMANTIC_VAD: Final = _Spec({
    "type": _enum(["semantic_vad"]),
    "eagerness": _enum(e.value for e in Eagerness),
    "create_response": _boolean,
    "interrupt_response": _boolean,
})
_AUDIO_INPUT: Final = _Spec(
    {
        "format": _format,
        "noise_reduction": _nested(_NOISE_REDUCTION),
        "transcription": _nested(_TRANSCRIPTION),
        "turn_detection": _turn_detection,
    },
    nullable=frozenset({"noise_reduction", "transcription", "turn_detection"}),
)
_AUDIO_OUTPUT: Final = _Spec({
    "format": _format,
    "voice": _voice,
    "speed": _number(0.25, 1.5),
})
_AUDIO: Final = _Spec({"input": _nested(_AUDIO_INPUT), "output": _nested(_AUDIO_OUTPUT)})
_FUNCTION_TOOL: Final = _Spec(
    {
        "type": _enum(["function"]),
        "name": _name,
        "description": _string,
        "parameters": _free_object,
    },
    required=frozenset({"name"}),
)
_MCP_FILTER: Final = _Spec({"read_only": _boolean, "tool_names": _array(_string)})
_MCP_APPROVAL: Final = _Spec({"always": _nested(_MCP_FILTER), "never": _nested(_MCP_FILTER)})
_MCP_TOOL: Final = _Spec(
    {
        "type": _enum(["mcp"]),
        "server_label": _name,
        "server_url": _string,
        "connector_id": _string,
        "tunnel_id": _string,
        "authorization": _string,
        "headers": _headers,
        "server_description": _string,
        "allowed_tools": _mcp_allowed_tools,
        "allowed_callers": _array(_enum(_MCP_CALLERS)),
        "require_approval": _mcp_require_approval,
        "defer_loading": _boolean,
    },
    required=frozenset({"server_label"}),
    nullable=frozenset({"headers", "allowed_tools", "allowed_callers", "require_approval"}),
)
_TOOL_CHOICE_FUNCTION: Final = _Spec(
    {"type": _enum(["function"]), "name": _name}, required=frozenset({"name"})
)
_TOOL_CHOICE_MCP: Final = _Spec(
    {"type": _enum(["mcp"]), "server_label": _name, "name": _string},
    required=frozenset({"server_label"}), nullable=frozenset({"name"}),
)
_REASONING: Final = _Spec({"effort": _enum(e.value for e in ReasoningEffort)})
_PROMPT: Final = _Spec(
    {"id": _name, "version": _string, "variables": _free_object},
    required=frozenset({"id"}), nullable=frozenset({"version", "variables"}),
)
_TRACING: Final = _Spec({"workflow_name": _string, "group_id": _string, "metadata": _any})
_TOKEN_LIMITS: Final = _Spec({"post_instructions": _integer(1)})
_TRUNCATION: Final = _Spec(
    {
        "type": _enum(["retention_ratio"]),
        "retention_ratio": _number(0.0, 1.0),
        "token_limits": _nested(_TOKEN_LIMITS),
    },
    required=frozenset({"type", "retention_ratio"}),
)
_SESSION: Final = _Spec(
    {
        "type": _enum(_SESSION_TYPES),
        "model": _name,
        "instructions": _string,
        "output_modalities": _modalities,
        "audio": _nested(_AUDIO),
        "tools": _tools,
        "tool_choice": _tool_choice,
        "max_output_tokens": _max_output_tokens,
        "reasoning": _nested(_REASONING),
        "parallel_tool_calls": _boolean,
        "prompt": _nested(_PROMPT),
        "tracing": _tracing,
        "truncation": _truncation,
        "include": _array(_enum(i.value for i in Include)),
        **{name: _any for name in READ_ONLY_FIELDS},
    },
    nullable=frozenset({"prompt", "tracing", "include"} | READ_ONLY_FIELDS),
)

KNOWN_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    name: frozenset(spec.fields) - (READ_ONLY_FIELDS if name == "session" else frozenset())
    for name, spec in {
        "session": _SESSION,
        "audio": _AUDIO,
        "audio.input": _AUDIO_INPUT,
        "audio.output": _AUDIO_OUTPUT,
        "audio.format": _FORMAT,
        "noise_reduction": _NOISE_REDUCTION,
        "transcription": _TRANSCRIPTION,
        "server_vad": _SERVER_VAD,
        "semantic_vad": _SEMANTIC_VAD,
        "function_tool": _FUNCTION_TOOL,
        "mcp_tool": _MCP_TOOL,
        "tool_choice.function": _TOOL_CHOICE_FUNCTION,
        "tool_choice.mcp": _TOOL_CHOICE_MCP,
        "reasoning": _REASONING,
        "prompt": _PROMPT,
        "tracing": _TRACING,
        "truncation": _TRUNCATION,
        "truncation.token_limits": _TOKEN_LIMITS,
    }.items()
}
"""The fields livetalk knows, per GA object (the session's read-only fields excluded)."""


def validate_session(session: Any, *, strict: bool = True, param: str = "session"
                     ) -> dict[str, Any]:
    """Check a raw GA session object; return a copy of it, or raise.

    Args:
        session: the ``session`` of a ``session.update``, of the multipart ``POST
            /realtime/calls`` or of ``client_secrets``.
        strict: behave as the API does and refuse fields not in :data:`KNOWN_FIELDS` (what
            livetalk's local server does). False checks the known fields only and passes the
            rest through (what the client does, so fields newer than livetalk still work);
            a missing ``type`` then reads as ``realtime``, and ``null`` in a field that has
            no ``null`` reads as "not set".
        param: the path of the object in error messages.

    Returns:
        A shallow copy of ``session`` as a dict (nothing is added or removed).

    Raises:
        SessionConfigError: with the API's ``code`` (``unknown_parameter``,
            ``missing_required_parameter``, ``invalid_type``, ``invalid_value``,
            ``integer_below_min_value`` ...), ``message`` and ``param``. A beta-era field is
            ``unknown_parameter``; when not strict its message also names the GA place.
    """
    v = _Validator(strict)
    obj = _object(v, session, param)
    if "type" not in obj:
        if strict:
            raise _missing(f"{param}.type")
    elif obj["type"] == "transcription":
        raise SessionConfigError(
            "invalid_value",
            "Passing a transcription session update event to a realtime session is not "
            "allowed." + ("" if strict else " livetalk supports realtime sessions only."),
            f"{param}.type",
        )
    else:
        _enum(_SESSION_TYPES)(v, obj["type"], f"{param}.type")
    for key in obj:
        if key in BETA_FIELDS:
            raise _unknown(f"{param}.{key}", "" if strict else _beta_hint(key))
    v.check(_SESSION, obj, param)
    return dict(obj)


# ============================================================================ effective session


def default_session(model: str = DEFAULT_MODEL, *, lifetime_s: int = 3600) -> dict[str, Any]:
    """The full effective session a server starts a call with (as in ``session.created``)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_" + secrets.token_hex(12),
        "model": model,
        "output_modalities": [Modality.AUDIO.value],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": ToolChoice.AUTO.value,
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + lifetime_s,
        "audio": {
            "input": {
                "format": {"type": AudioFormat.PCM.value, "rate": PCM_RATE},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": _turn_detection_defaults("server_vad"),
            },
            "output": {
                "format": {"type": AudioFormat.PCM.value, "rate": PCM_RATE},
                "voice": Voice.MARIN.value,
                "speed": 1.0,
            },
        },
        "include": None,
    }


def _turn_detection_defaults(kind: str | None) -> dict[str, Any]:
    if kind == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": "auto", "create_response": True,
                "interrupt_response": True}
    return {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 500, "idle_timeout_ms": None, "create_response": True,
            "interrupt_response": True}


def merge_session(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a validated update as the API does: the fields present replace, ``audio`` merges
    per direction, a turn detection of the same type and a noise reduction merge field by
    field (a new turn detection type starts from its defaults), ``null`` clears; the
    read-only fields and ``type`` never change. Neither argument is modified."""
    merged = copy.deepcopy(dict(current))
    for key, value in update.items():
        if key in READ_ONLY_FIELDS or key == "type":
            continue
        if key == "audio" and isinstance(value, Mapping):
            audio = merged.setdefault("audio", {})
            for direction, fields in value.items():
                target = audio.setdefault(direction, {})
                for name, item in (fields or {}).items():
                    target[name] = _merge_audio_field(name, target.get(name), item)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_audio_field(name: str, current: Any, value: Any) -> Any:
    if name == "turn_detection" and isinstance(value, Mapping):
        base = current if isinstance(current, Mapping) else {}
        kind = value.get("type", base.get("type"))
        if base.get("type") != kind:
            base = {}
        return {**_turn_detection_defaults(kind), **base, **copy.deepcopy(dict(value))}
    if name == "noise_reduction" and isinstance(value, Mapping) and isinstance(current, Mapping):
        return {**current, **copy.deepcopy(dict(value))}  # an omitted strength is kept
    return copy.deepcopy(value)


# ============================================================================ the typed config

_E = TypeVar("_E", bound=StrEnum)
_LENIENT: Final = _Validator(strict=False)


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalising a field of a frozen dataclass


def _as_enum(cls: type[_E], value: Any) -> _E | Any:
    """``value`` as a member of ``cls`` when it names one (validation has run before)."""
    try:
        return cls(value)
    except ValueError:
        return value


def _own_extra(extra: Any, known: Iterable[str], owner: str) -> dict[str, Any]:
    """Check the ``extra`` of a typed object: unknown fields only, never modelled ones."""
    if not isinstance(extra, Mapping):
        raise ConfigError(f"{owner}.extra must be a mapping of field names to values; "
                          f"got {extra!r}")
    modelled = set(known)
    for key in extra:
        if key in modelled:
            raise ConfigError(f"{owner}.extra must not set {key!r}: it is a field of "
                              f"{owner}; set it there")
    return copy.deepcopy(dict(extra))


def _split(data: Mapping[str, Any], known: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(modelled fields that are not null, unknown fields) of a validated object."""
    names = set(known)
    kwargs = {k: v for k, v in data.items() if k in names and v is not None}
    extra = {k: copy.deepcopy(v) for k, v in data.items() if k not in names}
    return kwargs, extra


def _strings(value: Any) -> Any:
    """A list of strings as a tuple (anything else is left for validation to report)."""
    return tuple(value) if isinstance(value, list | tuple) else value


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcription:
    """Input audio transcription (``audio.input.transcription``).

    Attributes:
        model: e.g. ``gpt-transcribe`` (the default), ``gpt-live-transcribe``,
            ``gpt-realtime-whisper``; any model name the API knows.
        language: ISO-639-1 code such as ``"en"``; improves accuracy and latency.
        prompt: vocabulary or style hints (not supported by ``gpt-realtime-whisper``).
        delay: a :class:`TranscriptionDelay` (``gpt-realtime-whisper`` only).
        keywords: words or phrases to listen for (``gpt-transcribe``, ``gpt-live-transcribe``).
        languages: the ISO-639-1 codes the audio may be in (same models).
        extra: fields of the transcription object this class does not model, sent as given.
    """

    _FIELDS: ClassVar[tuple[str, ...]] = ("model", "language", "prompt", "delay", "keywords",
                                          "languages")
    model: str = DEFAULT_TRANSCRIPTION_MODEL
    language: str | None = None
    prompt: str | None = None
    delay: TranscriptionDelay | str | None = None
    keywords: Sequence[str] | None = None
    languages: Sequence[str] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "keywords", _strings(self.keywords))
        _set(self, "languages", _strings(self.languages))
        _set(self, "extra", _own_extra(self.extra, self._FIELDS, "Transcription"))
        _LENIENT.check(_TRANSCRIPTION, self.to_dict(), "session.audio.input.transcription")
        if self.delay is not None:
            _set(self, "delay", TranscriptionDelay(self.delay))

    def to_dict(self) -> dict[str, Any]:
        """Return the GA ``transcription`` object."""
        out: dict[str, Any] = {}
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = _plain(value)
        return {**out, **copy.deepcopy(dict(self.extra))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> Transcription:
        """Read a GA ``transcription`` object (``null`` members read as unset; fields this
        class does not model go to ``extra``, or are refused when ``strict``)."""
        _Validator(strict).check(_TRANSCRIPTION, data, "session.audio.input.transcription")
        kwargs, extra = _split(data, cls._FIELDS)
        return cls(**kwargs, extra=extra)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerVAD:
    """Energy-based turn detection; ``None`` leaves a parameter at the server's default.

    Attributes:
        threshold: 0 to 1; higher needs louder speech (default 0.5).
        prefix_padding_ms: audio kept before the detected start (default 300).
        silence_duration_ms: silence that ends a turn (default 500; lower answers sooner).
        create_response: answer each turn automatically (default true).
        interrupt_response: let speech cut an ongoing reply (default true).
        idle_timeout_ms: 5000 to 30000; prompt the model after this long without speech.
        extra: fields of the turn detection object this class does not model.
    """

    type: ClassVar[str] = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "extra", _own_extra(self.extra, _vad_fields(self) | {"type"}, "ServerVAD"))
        _LENIENT.check(_SERVER_VAD, self.to_dict(), "session.audio.input.turn_detection")

    def to_dict(self) -> dict[str, Any]:
        """Return the GA ``turn_detection`` object."""
        return _vad_dict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class SemanticVAD:
    """Turn detection by a model that judges whether the user has finished.

    Attributes:
        eagerness: how soon to end a turn (``low`` waits up to 8 s, ``high`` 2 s).
        create_response: answer each turn automatically (default true).
        interrupt_response: let speech cut an ongoing reply (default true).
        extra: fields of the turn detection object this class does not model.
    """

    type: ClassVar[str] = "semantic_vad"
    eagerness: Eagerness | str | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "extra", _own_extra(self.extra, _vad_fields(self) | {"type"}, "SemanticVAD"))
        _LENIENT.check(_SEMANTIC_VAD, self.to_dict(), "session.audio.input.turn_detection")
        if self.eagerness is not None:
            _set(self, "eagerness", Eagerness(self.eagerness))

    def to_dict(self) -> dict[str, Any]:
        """Return the GA ``turn_detection`` object."""
        return _vad_dict(self)


def _vad_fields(vad: ServerVAD | SemanticVAD) -> set[str]:
    return {f.name for f in dataclasses.fields(vad)} - {"extra"}


def _vad_dict(vad: ServerVAD | SemanticVAD) -> dict[str, Any]:
    out: dict[str, Any] = {"type": vad.type}
    for name in sorted(_vad_fields(vad)):
        value = getattr(vad, name)
        if value is not None:
            out[name] = _plain(value)
    return {**out, **copy.deepcopy(dict(vad.extra))}


def _vad_from_dict(data: Mapping[str, Any], strict: bool) -> ServerVAD | SemanticVAD:
    _turn_detection(_Validator(strict), data, "session.audio.input.turn_detection")
    cls: type[ServerVAD] | type[SemanticVAD] = (
        ServerVAD if data["type"] == ServerVAD.type else SemanticVAD)
    kwargs, extra = _split(data, {f.name for f in dataclasses.fields(cls)} | {"type"})
    kwargs.pop("type", None)
    return cls(**kwargs, extra=extra)


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionTool:
    """A function the model may call; you get a ``FunctionCallDone`` and answer it.

    MCP tools (``{"type": "mcp", "server_label": ..., ...}``) go into
    ``SessionConfig.tools`` as plain dicts next to these.

    Attributes:
        name: 1 to 64 letters, digits, ``_`` or ``-``.
        description: when and why to call it (the model reads this).
        parameters: JSON Schema of the arguments object.
        extra: fields of the tool object this class does not model.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "extra", _own_extra(self.extra, KNOWN_FIELDS["function_tool"],
                                       "FunctionTool"))
        _tool(_LENIENT, self.to_dict(), "session.tools[]")
        _set(self, "parameters", copy.deepcopy(dict(self.parameters)))

    def to_dict(self) -> dict[str, Any]:
        """Return the GA tool object."""
        out: dict[str, Any] = {"type": "function", "name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out["parameters"] = _plain(self.parameters)
        return {**out, **copy.deepcopy(dict(self.extra))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> FunctionTool:
        """Read a GA ``{"type": "function", ...}`` tool object (the type may be left out)."""
        v = _Validator(strict)
        if _object(v, data, "session.tools[]").get("type", "function") != "function":
            raise _invalid_value("session.tools[].type", data.get("type"), ["function"])
        _tool(v, data, "session.tools[]")
        kwargs, extra = _split(data, KNOWN_FIELDS["function_tool"])
        kwargs.pop("type", None)
        return cls(**kwargs, extra=extra)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reasoning:
    """Reasoning settings of reasoning models (``gpt-realtime-2`` and later; older models
    refuse the field).

    Attributes:
        effort: a :class:`ReasoningEffort`; more effort answers better but later.
        extra: fields of the reasoning object this class does not model.
    """

    effort: ReasoningEffort | str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "extra", _own_extra(self.extra, KNOWN_FIELDS["reasoning"], "Reasoning"))
        _LENIENT.check(_REASONING, self.to_dict(), "session.reasoning")
        if self.effort is not None:
            _set(self, "effort", ReasoningEffort(self.effort))

    def to_dict(self) -> dict[str, Any]:
        """Return the GA ``reasoning`` object."""
        out = {} if self.effort is None else {"effort": _plain(self.effort)}
        return {**out, **copy.deepcopy(dict(self.extra))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> Reasoning:
        """Read a GA ``reasoning`` object."""
        _Validator(strict).check(_REASONING, data, "session.reasoning")
        kwargs, extra = _split(data, KNOWN_FIELDS["reasoning"])
        return cls(**kwargs, extra=extra)


# What SessionConfig models, as a tree of the GA session: None is a field SessionConfig
# holds (``extra`` may not set it), a dict an object whose other fields ``extra`` may add.
_LEAF: Final = None
_MODELLED: Final[dict[str, Any]] = {
    **{name: _LEAF for name in KNOWN_FIELDS["session"] | READ_ONLY_FIELDS},
    "audio": {
        "input": {
            "format": {name: _LEAF for name in KNOWN_FIELDS["audio.format"]},
            "noise_reduction": {name: _LEAF for name in KNOWN_FIELDS["noise_reduction"]},
            "transcription": _LEAF,
            "turn_detection": _LEAF,
        },
        "output": {
            "format": {name: _LEAF for name in KNOWN_FIELDS["audio.format"]},
            "voice": _LEAF,
            "speed": _LEAF,
        },
    },
}


def _check_extra(extra: Mapping[str, Any], tree: Mapping[str, Any], path: str) -> None:
    for key, value in extra.items():
        where = f"{path}.{key}"
        if key not in tree:
            if path == "session" and key in BETA_FIELDS:
                raise _unknown(where, _beta_hint(key))
            continue
        sub = tree[key]
        if sub is _LEAF:
            raise ConfigError(f"SessionConfig.extra must not set {where}: SessionConfig "
                              "models it; set the field instead")
        if not isinstance(value, Mapping):
            raise ConfigError(f"SessionConfig.extra: {where} must be an object; got {value!r}")
        _check_extra(value, sub, where)


def _merge_into(out: dict[str, Any], extra: Mapping[str, Any], path: str) -> None:
    for key, value in extra.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and isinstance(value, Mapping):
            _merge_into(out[key], value, f"{path}.{key}")
        else:
            raise ConfigError(f"SessionConfig.extra sets fields inside {path}.{key}, which "
                              f"is {_show(out[key])}")


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(out.get(key), dict) and isinstance(value, Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_dict(fmt: Any) -> Any:
    if isinstance(fmt, Mapping):
        return copy.deepcopy(dict(fmt))
    if fmt == AudioFormat.PCM:
        return {"type": AudioFormat.PCM.value, "rate": PCM_RATE}
    return {"type": str(fmt)} if isinstance(fmt, str) else fmt


def _format_enum(fmt: Any) -> Any:
    return _as_enum(AudioFormat, fmt.get("type") if isinstance(fmt, Mapping) else fmt)


def _plain(value: Any) -> Any:
    """A value as it goes on the wire: enums as their string, mappings as dicts."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """A GA realtime session configuration (``type`` is always ``"realtime"``).

    Build it with the fields you want to set, pass it to the call, and later send changes with
    ``config.replace(...)`` or ``SessionConfig(...)`` holding just the changed fields.

    Attributes:
        model: e.g. ``gpt-realtime-2.1`` (:data:`DEFAULT_MODEL`); fixed once the session runs.
        instructions: the system prompt (``""`` clears the server's default).
        output_modalities: ``["audio"]`` or ``["text"]``, not both.
        voice: a :class:`Voice`, any other voice name, or ``{"id": "voice_..."}``; fixed
            once the model has spoken.
        speed: 0.25 to 1.5 (1.0 is normal).
        input_format, output_format: the :class:`AudioFormat` of base64 audio in events.
        noise_reduction: a :class:`NoiseReduction`, ``None`` to switch it off, or UNSET.
        noise_reduction_strength: how hard noise is suppressed (the API's default is 1);
            left out, an update keeps the current strength.
        transcription: a :class:`Transcription`, ``None`` to switch it off, or UNSET.
        turn_detection: :class:`ServerVAD`, :class:`SemanticVAD`, ``None`` for manual
            (push-to-talk) turns, or UNSET.
        tools: :class:`FunctionTool` objects, and MCP tools as dicts (``[]`` clears the list).
        tool_choice: a :class:`ToolChoice`, ``{"type": "function", "name": ...}`` or
            ``{"type": "mcp", "server_label": ...}``.
        max_output_tokens: 1 to 4096, or ``"inf"``.
        reasoning: a :class:`Reasoning` (reasoning models only).
        parallel_tool_calls: let the model call several tools at once (reasoning models).
        prompt: a stored prompt ``{"id": ..., "version": ..., "variables": {...}}``, ``None``
            to drop it, or UNSET.
        tracing: ``"auto"`` or ``{"workflow_name": ..., "group_id": ..., "metadata": ...}``
            to write traces, ``None`` for none, or UNSET; fixed once enabled.
        truncation: how the context is cut when full: ``"auto"``, ``"disabled"`` or
            ``{"type": "retention_ratio", "retention_ratio": 0.8}``.
        include: extra event fields, e.g. ``["item.input_audio_transcription.logprobs"]``.
        extra: GA session fields this class does not model, in the session's own shape
            (``{"new_field": 1, "audio": {"input": {"new_knob": 2}}}``); sent as given.
    """

    type: ClassVar[str] = "realtime"
    model: str | None = None
    instructions: str | None = None
    output_modalities: Sequence[Modality | str] | None = None
    voice: Voice | str | Mapping[str, str] | None = None
    speed: float | None = None
    input_format: AudioFormat | str | None = None
    output_format: AudioFormat | str | None = None
    noise_reduction: NoiseReduction | str | None | Unset = UNSET
    noise_reduction_strength: float | None = None
    transcription: Transcription | None | Unset = UNSET
    turn_detection: ServerVAD | SemanticVAD | None | Unset = UNSET
    tools: Sequence[FunctionTool | Mapping[str, Any]] | None = None
    tool_choice: ToolChoice | str | Mapping[str, Any] | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    reasoning: Reasoning | None = None
    parallel_tool_calls: bool | None = None
    prompt: Mapping[str, Any] | None | Unset = UNSET
    tracing: Literal["auto"] | Mapping[str, Any] | None | Unset = UNSET
    truncation: Literal["auto", "disabled"] | Mapping[str, Any] | None = None
    include: Sequence[Include | str] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    # Fields where None means "send null" and UNSET means "not set".
    _NULLABLE: ClassVar[frozenset[str]] = frozenset(
        {"noise_reduction", "transcription", "turn_detection", "prompt", "tracing"})

    def __post_init__(self) -> None:
        # 1. Python-level shapes the GA dict cannot express.
        if isinstance(self.transcription, Mapping):
            _set(self, "transcription", Transcription.from_dict(self.transcription))
        elif not isinstance(self.transcription, Transcription | None | Unset):
            raise ConfigError("SessionConfig.transcription must be a Transcription, a dict or "
                              f"None; got {self.transcription!r}")
        if isinstance(self.reasoning, Mapping):
            _set(self, "reasoning", Reasoning.from_dict(self.reasoning))
        elif not isinstance(self.reasoning, Reasoning | None):
            raise ConfigError(f"SessionConfig.reasoning must be a Reasoning or a dict; got "
                              f"{self.reasoning!r}")
        if isinstance(self.turn_detection, Mapping):
            _set(self, "turn_detection", _vad_from_dict(self.turn_detection, strict=False))
        elif not isinstance(self.turn_detection, ServerVAD | SemanticVAD | None | Unset):
            raise ConfigError("SessionConfig.turn_detection must be ServerVAD, SemanticVAD, a "
                              f"dict or None; got {self.turn_detection!r}")
        if isinstance(self.output_modalities, str):
            _set(self, "output_modalities", (self.output_modalities,))
        for name in ("output_modalities", "tools", "include"):
            _set(self, name, _strings(getattr(self, name)))
        if self.noise_reduction is None and self.noise_reduction_strength is not None:
            raise ConfigError("SessionConfig.noise_reduction_strength needs noise reduction: "
                              "noise_reduction=None switches it off")
        if not isinstance(self.extra, Mapping):
            raise ConfigError(f"SessionConfig.extra must be a mapping; got {self.extra!r}")
        _set(self, "extra", copy.deepcopy(dict(self.extra)))
        _check_extra(self.extra, _MODELLED, "session")
        # 2. One validation of the GA object, the same checks the local server runs.
        validate_session(self.to_dict(), strict=False)
        # 3. Normalise to the typed forms.
        if self.output_modalities is not None:
            _set(self, "output_modalities",
                 tuple(Modality(m) for m in self.output_modalities))
        if isinstance(self.voice, Mapping):
            _set(self, "voice", dict(self.voice))
        elif self.voice is not None:
            _set(self, "voice", _as_enum(Voice, self.voice))
        for name, direction in (("input_format", "input"), ("output_format", "output")):
            fmt = getattr(self, name)
            if isinstance(fmt, Mapping):  # unknown members of a format dict move to extra
                _known, unknown = _split(fmt, KNOWN_FIELDS["audio.format"])
                if unknown:
                    _set(self, "extra", _deep_merge(
                        self.extra, {"audio": {direction: {"format": unknown}}}))
            if fmt is not None:
                _set(self, name, _format_enum(fmt))
        if isinstance(self.noise_reduction, str):
            _set(self, "noise_reduction", NoiseReduction(self.noise_reduction))
        if self.tools is not None:
            _set(self, "tools", tuple(
                FunctionTool.from_dict(t) if isinstance(t, Mapping)
                and t.get("type", "function") == "function" else _plain(t)
                if isinstance(t, Mapping) else t for t in self.tools))
        if isinstance(self.tool_choice, str):
            _set(self, "tool_choice", ToolChoice(self.tool_choice))
        elif self.tool_choice is not None:
            _set(self, "tool_choice", _plain(self.tool_choice))
        for name in ("prompt", "tracing", "truncation"):
            if isinstance(getattr(self, name), Mapping):
                _set(self, name, _plain(getattr(self, name)))
        if self.include is not None:
            _set(self, "include", tuple(Include(i) for i in self.include))

    def to_dict(self) -> dict[str, Any]:
        """Return the GA ``session`` object holding exactly the fields that were set."""
        out: dict[str, Any] = {"type": self.type}
        for name in ("model", "instructions", "output_modalities"):
            if getattr(self, name) is not None:
                out[name] = _plain(getattr(self, name))
        audio_in: dict[str, Any] = {}
        if self.input_format is not None:
            audio_in["format"] = _format_dict(self.input_format)
        if self.noise_reduction is None:
            audio_in["noise_reduction"] = None
        elif self.noise_reduction is not UNSET or self.noise_reduction_strength is not None:
            reduction: dict[str, Any] = {}
            if self.noise_reduction is not UNSET:
                reduction["type"] = _plain(self.noise_reduction)
            if self.noise_reduction_strength is not None:
                reduction["strength"] = self.noise_reduction_strength
            audio_in["noise_reduction"] = reduction
        for name in ("transcription", "turn_detection"):
            value = getattr(self, name)
            if value is not UNSET:
                audio_in[name] = None if value is None else value.to_dict()
        audio_out: dict[str, Any] = {}
        if self.output_format is not None:
            audio_out["format"] = _format_dict(self.output_format)
        for name in ("voice", "speed"):
            if getattr(self, name) is not None:
                audio_out[name] = _plain(getattr(self, name))
        audio = {k: v for k, v in (("input", audio_in), ("output", audio_out)) if v}
        if audio:
            out["audio"] = audio
        if self.tools is not None:
            out["tools"] = [t.to_dict() if isinstance(t, FunctionTool) else _plain(t)
                            for t in self.tools] if isinstance(self.tools, tuple) else self.tools
        for name in ("tool_choice", "max_output_tokens", "parallel_tool_calls", "truncation",
                     "include"):
            if getattr(self, name) is not None:
                out[name] = _plain(getattr(self, name))
        if self.reasoning is not None:
            out["reasoning"] = self.reasoning.to_dict()
        for name in ("prompt", "tracing"):
            if getattr(self, name) is not UNSET:
                out[name] = _plain(getattr(self, name))
        _merge_into(out, self.extra, "session")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> SessionConfig:
        """Read a GA ``session`` object, e.g. of a ``session.update`` or ``session.updated``.

        Args:
            data: the session object (``type`` may be left out).
            strict: refuse fields livetalk does not know, as the API does. By default they
                are kept in ``extra`` (on the object they belong to: a session field in
                ``SessionConfig.extra``, a transcription field in ``Transcription.extra``
                ...) and written back by ``to_dict()``, so a field newer than livetalk
                passes through.

        The server's read-only fields (``id``, ``object``, ``expires_at``) are dropped, and
        ``null`` in a field that cannot be null reads as "not set".

        Raises:
            SessionConfigError: an invalid value of a field livetalk models, a beta-era field
                (the message names its GA place), a transcription session, or (strict) an
                unknown field; ``.code`` and ``.param`` are what the API would report.
        """
        session = validate_session(data, strict=strict)
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        plain = ("model", "instructions", "output_modalities", "tool_choice",
                 "max_output_tokens", "parallel_tool_calls", "truncation", "include")
        for key, value in session.items():
            if key in ("type", "audio") or key in READ_ONLY_FIELDS:
                continue
            if key in ("prompt", "tracing"):
                kwargs[key] = value
            elif value is None:
                continue
            elif key in plain:
                kwargs[key] = value
            elif key == "tools":
                kwargs[key] = [FunctionTool.from_dict(t, strict=strict)
                               if t.get("type", "function") == "function" else t for t in value]
            elif key == "reasoning":
                kwargs[key] = Reasoning.from_dict(value, strict=strict)
            else:
                extra[key] = copy.deepcopy(value)
        audio = session.get("audio")
        if isinstance(audio, Mapping):
            audio_extra = cls._audio_from(audio, kwargs, strict)
            if audio_extra:
                extra["audio"] = audio_extra
        return cls(**kwargs, extra=extra)

    @staticmethod
    def _audio_from(audio: Mapping[str, Any], kwargs: dict[str, Any], strict: bool
                    ) -> dict[str, Any]:
        """Read ``audio`` into ``kwargs``; return its unknown fields (in the GA shape)."""
        extra: dict[str, Any] = {
            k: copy.deepcopy(v) for k, v in audio.items() if k not in ("input", "output")}
        audio_in = audio.get("input") or {}
        audio_out = audio.get("output") or {}
        in_extra: dict[str, Any] = {}
        for key, value in audio_in.items():
            if key == "format":
                if value is not None:
                    kwargs["input_format"], fmt_extra = _format_from(value)
                    if fmt_extra:
                        in_extra["format"] = fmt_extra
            elif key == "noise_reduction":
                if value is None:
                    kwargs["noise_reduction"] = None
                    continue
                known, unknown = _split(value, KNOWN_FIELDS["noise_reduction"])
                if "type" in known:
                    kwargs["noise_reduction"] = known["type"]
                if "strength" in known:
                    kwargs["noise_reduction_strength"] = known["strength"]
                if unknown:
                    in_extra["noise_reduction"] = unknown
            elif key == "transcription":
                kwargs["transcription"] = None if value is None else Transcription.from_dict(
                    value, strict=strict)
            elif key == "turn_detection":
                kwargs["turn_detection"] = None if value is None else _vad_from_dict(
                    value, strict)
            else:
                in_extra[key] = copy.deepcopy(value)
        out_extra: dict[str, Any] = {}
        for key, value in audio_out.items():
            if key == "format":
                if value is not None:
                    kwargs["output_format"], fmt_extra = _format_from(value)
                    if fmt_extra:
                        out_extra["format"] = fmt_extra
            elif key in ("voice", "speed"):
                if value is not None:
                    kwargs[key] = value
            else:
                out_extra[key] = copy.deepcopy(value)
        for direction, fields in (("input", in_extra), ("output", out_extra)):
            if fields:
                extra[direction] = fields
        return extra

    def merged(self, other: SessionConfig) -> SessionConfig:
        """Return this config updated by every field ``other`` sets (as the server merges)."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(other, f.name)
            unset = value is UNSET if f.name in self._NULLABLE else value is None
            kwargs[f.name] = getattr(self, f.name) if unset else value
        if other.noise_reduction is None:
            kwargs["noise_reduction_strength"] = None
        return SessionConfig(**kwargs, extra=_deep_merge(self.extra, other.extra))

    def replace(self, **changes: Any) -> SessionConfig:
        """Return a copy with ``changes`` applied (validated like the constructor)."""
        return dataclasses.replace(self, **changes)


def _format_from(value: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(the format type, the format object's unknown fields) of a validated format."""
    _known, unknown = _split(value, KNOWN_FIELDS["audio.format"])
    return value.get("type"), unknown
