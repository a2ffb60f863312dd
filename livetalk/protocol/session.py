"""The GA Realtime session configuration, validated before anything goes on the wire.

:class:`SessionConfig` holds only what you set. Its ``to_dict()`` is the GA ``session`` object
of a ``session.update`` (or of the ``session`` part of ``POST /v1/realtime/calls``) with exactly
those fields, because the server merges an update into the running session: a field you leave
out keeps its current value.

Two kinds of "not set" exist. Fields the API never accepts as ``null`` (``model``, ``voice``,
``speed``, ...) use ``None``. Fields where ``null`` means something (``transcription``,
``turn_detection`` and ``noise_reduction``: ``null`` switches the feature off) default to the
:data:`UNSET` sentinel, so ``turn_detection=None`` sends ``"turn_detection": null`` (manual
turns) while leaving it out sends nothing.

Invalid values raise :class:`~livetalk.errors.ConfigError` when the object is built, naming
the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, ClassVar, Final, Literal, TypeVar

from livetalk.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TRANSCRIPTION_MODEL",
    "PCM_RATE",
    "SAY_EXACTLY_PREFIX",
    "UNSET",
    "AudioFormat",
    "Eagerness",
    "FunctionTool",
    "Modality",
    "NoiseReduction",
    "SemanticVAD",
    "ServerVAD",
    "SessionConfig",
    "ToolChoice",
    "Transcription",
    "Unset",
    "Voice",
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


class Unset(Enum):
    """Type of the :data:`UNSET` sentinel."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET
"""Default of the nullable session fields: "not set", as opposed to ``None`` (send ``null``)."""


class Voice(StrEnum):
    """The built-in voices (``audio.output.voice``); ``marin`` and ``cedar`` sound best."""

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


_VOICES: Final = frozenset(v.value for v in Voice)
# Fields where None means "send null" and UNSET means "not set".
_NULLABLE: Final = ("noise_reduction", "transcription", "turn_detection")
_LANGUAGE: Final = re.compile(r"[a-z]{2}")
_TOOL_NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")

# Beta-era flat session fields -> where the GA session keeps them.
_BETA_FIELDS: Final[Mapping[str, str | None]] = {
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
# GA fields SessionConfig passes through ``extra`` unchecked.
_PASSTHROUGH: Final = frozenset(
    {"tracing", "truncation", "include", "prompt", "reasoning", "parallel_tool_calls"}
)
# Read-only fields of the server's session object, dropped by ``from_dict``.
_READ_ONLY: Final = frozenset({"id", "object", "expires_at"})

_E = TypeVar("_E", bound=StrEnum)


def _enum(cls: type[_E], value: Any, where: str) -> _E:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ConfigError(f"{where} must be one of {allowed}; got {value!r}") from None


def _number(value: Any, where: str, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where} must be a number from {low} to {high}; got {value!r}")


def _int(value: Any, where: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer; got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{where} must be {allowed}; got {value!r}")


def _optional_bool(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false; got {value!r}")


def _optional_str(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string; got {value!r}")


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str, strict: bool) -> None:
    unknown = sorted(k for k in data if k not in allowed and data[k] is not None)
    if strict and unknown:
        raise ConfigError(
            f"unknown field {where}.{unknown[0]}; allowed: {', '.join(sorted(allowed))}"
        )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be an object; got {value!r}")
    return value


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalising a field of a frozen dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcription:
    """Input audio transcription (``audio.input.transcription``).

    Attributes:
        model: e.g. ``gpt-4o-mini-transcribe``, ``gpt-4o-transcribe``, ``whisper-1``.
        language: ISO-639-1 code such as ``"en"``; improves accuracy and latency.
        prompt: vocabulary hints (keywords for the gpt-4o models, free text for whisper).
    """

    model: str = DEFAULT_TRANSCRIPTION_MODEL
    language: str | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"Transcription.model must be a non-empty string; got {self.model!r}")
        if self.language is not None and (
            not isinstance(self.language, str) or not _LANGUAGE.fullmatch(self.language)
        ):
            raise ConfigError(
                "Transcription.language must be a two-letter lowercase ISO-639-1 code such as"
                f" 'en'; got {self.language!r}"
            )
        _optional_str(self.prompt, "Transcription.prompt")

    def to_dict(self) -> dict[str, Any]:
        """Return the GA ``transcription`` object."""
        out: dict[str, Any] = {"model": self.model}
        if self.language is not None:
            out["language"] = self.language
        if self.prompt is not None:
            out["prompt"] = self.prompt
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True) -> Transcription:
        """Read a GA ``transcription`` object (``null`` members read as unset)."""
        where = "audio.input.transcription"
        _check_keys(data, {"model", "language", "prompt"}, where, strict)
        kwargs = {k: data[k] for k in ("model", "language", "prompt") if data.get(k) is not None}
        return cls(**kwargs)


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
    """

    type: ClassVar[str] = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None:
            _number(self.threshold, "ServerVAD.threshold", 0.0, 1.0)
        if self.prefix_padding_ms is not None:
            _int(self.prefix_padding_ms, "ServerVAD.prefix_padding_ms", 0)
        if self.silence_duration_ms is not None:
            _int(self.silence_duration_ms, "ServerVAD.silence_duration_ms", 0)
        if self.idle_timeout_ms is not None:
            _int(self.idle_timeout_ms, "ServerVAD.idle_timeout_ms", 5000, 30000)
        _optional_bool(self.create_response, "ServerVAD.create_response")
        _optional_bool(self.interrupt_response, "ServerVAD.interrupt_response")

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
    """

    type: ClassVar[str] = "semantic_vad"
    eagerness: Eagerness | str | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None

    def __post_init__(self) -> None:
        if self.eagerness is not None:
            _set(self, "eagerness", _enum(Eagerness, self.eagerness, "SemanticVAD.eagerness"))
        _optional_bool(self.create_response, "SemanticVAD.create_response")
        _optional_bool(self.interrupt_response, "SemanticVAD.interrupt_response")

    def to_dict(self) -> dict[str, Any]:
        """Return the GA ``turn_detection`` object."""
        return _vad_dict(self)


def _vad_dict(vad: ServerVAD | SemanticVAD) -> dict[str, Any]:
    out: dict[str, Any] = {"type": vad.type}
    for f in dataclasses.fields(vad):
        value = getattr(vad, f.name)
        if value is not None:
            out[f.name] = value.value if isinstance(value, StrEnum) else value
    return out


def _vad_from_dict(data: Mapping[str, Any], strict: bool) -> ServerVAD | SemanticVAD:
    where = "audio.input.turn_detection"
    kinds: dict[str, type[ServerVAD] | type[SemanticVAD]] = {
        ServerVAD.type: ServerVAD,
        SemanticVAD.type: SemanticVAD,
    }
    kind = data.get("type")
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(
            f"{where}.type must be server_vad or semantic_vad; got {data.get('type')!r}"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    _check_keys(data, names | {"type"}, where, strict)
    return cls(**{k: data[k] for k in names if data.get(k) is not None})


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionTool:
    """A function the model may call; you get a ``FunctionCallDone`` and answer it.

    Attributes:
        name: 1 to 64 letters, digits, ``_`` or ``-``.
        description: when and why to call it (the model reads this).
        parameters: JSON Schema of the arguments object.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOOL_NAME.fullmatch(self.name):
            raise ConfigError(
                f"FunctionTool.name must match ^[a-zA-Z0-9_-]{{1,64}}$; got {self.name!r}"
            )
        if not isinstance(self.description, str):
            raise ConfigError(
                f"FunctionTool.description must be a string; got {self.description!r}"
            )
        _set(self, "parameters", dict(_mapping(self.parameters, "FunctionTool.parameters")))

    def to_dict(self) -> dict[str, Any]:
        """Return the GA tool object."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": dict(self.parameters)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True) -> FunctionTool:
        """Read a GA ``{"type": "function", ...}`` tool object."""
        if data.get("type") != "function":
            raise ConfigError(
                f"tools[].type must be 'function' (MCP tools are not supported); "
                f"got {data.get('type')!r}"
            )
        _check_keys(data, {"type", "name", "description", "parameters"}, "tools[]", strict)
        kwargs = {k: data[k] for k in ("name", "description", "parameters")
                  if data.get(k) is not None}
        return cls(**kwargs)


def _format(value: Any, where: str) -> AudioFormat:
    if isinstance(value, Mapping):
        if value.get("rate") not in (None, PCM_RATE):
            raise ConfigError(f"{where}.rate must be {PCM_RATE}; got {value.get('rate')!r}")
        value = value.get("type")
    return _enum(AudioFormat, value, where)


def _format_dict(fmt: AudioFormat) -> dict[str, Any]:
    if fmt is AudioFormat.PCM:
        return {"type": fmt.value, "rate": PCM_RATE}
    return {"type": fmt.value}


def _tool_choice(value: Any) -> ToolChoice | dict[str, Any]:
    where = "SessionConfig.tool_choice"
    if isinstance(value, str):
        return _enum(ToolChoice, value, where)
    choice = dict(_mapping(value, where))
    kind = choice.get("type")
    if kind == "function" and isinstance(choice.get("name"), str):
        return choice
    if kind == "mcp" and isinstance(choice.get("server_label"), str):
        return choice
    raise ConfigError(
        f"{where} must be auto, none, required, {{'type': 'function', 'name': ...}} or"
        f" {{'type': 'mcp', 'server_label': ...}}; got {value!r}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """A GA realtime session configuration (``type`` is always ``"realtime"``).

    Build it with the fields you want to set, pass it to the call, and later send changes with
    ``config.replace(...)`` or ``SessionConfig(...)`` holding just the changed fields.

    Attributes:
        model: e.g. ``gpt-realtime``; cannot change once the session runs.
        instructions: the system prompt (``""`` clears the server's default).
        output_modalities: ``["audio"]`` or ``["text"]``, not both.
        voice: a :class:`Voice` or ``{"id": "voice_..."}``; fixed once the model has spoken.
        speed: 0.25 to 1.5 (1.0 is normal).
        input_format, output_format: the :class:`AudioFormat` of base64 audio in events.
        noise_reduction: a :class:`NoiseReduction`, ``None`` to switch it off, or UNSET.
        transcription: a :class:`Transcription`, ``None`` to switch it off, or UNSET.
        turn_detection: :class:`ServerVAD`, :class:`SemanticVAD`, ``None`` for manual
            (push-to-talk) turns, or UNSET.
        tools: the :class:`FunctionTool` list (``[]`` clears it).
        tool_choice: a :class:`ToolChoice` or ``{"type": "function", "name": ...}``.
        max_output_tokens: 1 to 4096, or ``"inf"``.
        extra: other GA session fields sent as given (``tracing``, ``truncation``,
            ``include``, ``prompt``, ``reasoning``, ``parallel_tool_calls``, newer ones).
    """

    type: ClassVar[str] = "realtime"
    model: str | None = None
    instructions: str | None = None
    output_modalities: Sequence[str] | None = None
    voice: str | Mapping[str, str] | None = None
    speed: float | None = None
    input_format: str | None = None
    output_format: str | None = None
    noise_reduction: str | None | Unset = UNSET
    transcription: Transcription | None | Unset = UNSET
    turn_detection: ServerVAD | SemanticVAD | None | Unset = UNSET
    tools: Sequence[FunctionTool] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise ConfigError(f"SessionConfig.model must be a non-empty string; got {self.model!r}")
        _optional_str(self.instructions, "SessionConfig.instructions")
        if self.output_modalities is not None:
            _set(self, "output_modalities", self._modalities(self.output_modalities))
        if self.voice is not None:
            _set(self, "voice", self._voice(self.voice))
        if self.speed is not None:
            _number(self.speed, "SessionConfig.speed", 0.25, 1.5)
        for name in ("input_format", "output_format"):
            if getattr(self, name) is not None:
                _set(self, name, _format(getattr(self, name), f"SessionConfig.{name}"))
        if self.noise_reduction is not None and self.noise_reduction is not UNSET:
            _set(self, "noise_reduction",
                 _enum(NoiseReduction, self.noise_reduction, "SessionConfig.noise_reduction"))
        if not isinstance(self.transcription, Transcription | None | Unset):
            raise ConfigError(
                f"SessionConfig.transcription must be a Transcription or None; "
                f"got {self.transcription!r}"
            )
        if not isinstance(self.turn_detection, ServerVAD | SemanticVAD | None | Unset):
            raise ConfigError(
                "SessionConfig.turn_detection must be ServerVAD, SemanticVAD or None; "
                f"got {self.turn_detection!r}"
            )
        if self.tools is not None:
            _set(self, "tools", self._tools(self.tools))
        if self.tool_choice is not None:
            _set(self, "tool_choice", _tool_choice(self.tool_choice))
        if self.max_output_tokens is not None and self.max_output_tokens != "inf":
            if isinstance(self.max_output_tokens, str):
                raise ConfigError(
                    "SessionConfig.max_output_tokens must be an integer from 1 to 4096 or 'inf';"
                    f" got {self.max_output_tokens!r}"
                )
            _int(self.max_output_tokens, "SessionConfig.max_output_tokens", 1, 4096)
        _set(self, "extra", self._extra(self.extra))

    @staticmethod
    def _modalities(value: Sequence[str]) -> tuple[Modality, ...]:
        where = "SessionConfig.output_modalities"
        items = [value] if isinstance(value, str) else list(value)
        if len(items) != 1:
            raise ConfigError(f"{where} must be ['audio'] or ['text'] (exactly one); got {value!r}")
        return (_enum(Modality, items[0], where),)

    @staticmethod
    def _voice(value: str | Mapping[str, str]) -> Voice | dict[str, str]:
        if isinstance(value, Mapping):
            if set(value) == {"id"} and isinstance(value["id"], str) and value["id"]:
                return {"id": value["id"]}
        elif isinstance(value, str) and value in _VOICES:
            return Voice(value)
        allowed = ", ".join(v.value for v in Voice)
        raise ConfigError(
            f"SessionConfig.voice must be one of {allowed} or {{'id': 'voice_...'}};"
            f" got {value!r}"
        )

    @staticmethod
    def _tools(value: Sequence[FunctionTool]) -> tuple[FunctionTool, ...]:
        tools = tuple(value)
        for tool in tools:
            if not isinstance(tool, FunctionTool):
                raise ConfigError(
                    f"SessionConfig.tools must hold FunctionTool objects; got {tool!r}"
                )
        names = [t.name for t in tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"SessionConfig.tools has duplicate names: {', '.join(duplicates)}")
        return tools

    @staticmethod
    def _extra(value: Mapping[str, Any]) -> dict[str, Any]:
        extra = dict(_mapping(value, "SessionConfig.extra"))
        modelled = {f.name for f in dataclasses.fields(SessionConfig)} - {"extra"}
        for key in extra:
            if key in ("type", "audio") or key in modelled:
                raise ConfigError(f"SessionConfig.extra must not set {key!r}; use the field")
            if key in _BETA_FIELDS:
                raise ConfigError(_beta_message(key))
        return extra

    def to_dict(self) -> dict[str, Any]:
        """Return the GA ``session`` object holding exactly the fields that were set."""
        out: dict[str, Any] = {"type": self.type}
        if self.model is not None:
            out["model"] = self.model
        if self.instructions is not None:
            out["instructions"] = self.instructions
        if self.output_modalities is not None:
            out["output_modalities"] = [str(m) for m in self.output_modalities]
        audio_in: dict[str, Any] = {}
        if self.input_format is not None:
            audio_in["format"] = _format_dict(AudioFormat(self.input_format))
        if self.noise_reduction is not UNSET:
            audio_in["noise_reduction"] = (
                None if self.noise_reduction is None else {"type": str(self.noise_reduction)}
            )
        if self.transcription is not UNSET:
            audio_in["transcription"] = (
                None if self.transcription is None else self.transcription.to_dict()
            )
        if self.turn_detection is not UNSET:
            audio_in["turn_detection"] = (
                None if self.turn_detection is None else self.turn_detection.to_dict()
            )
        audio_out: dict[str, Any] = {}
        if self.output_format is not None:
            audio_out["format"] = _format_dict(AudioFormat(self.output_format))
        if self.voice is not None:
            audio_out["voice"] = dict(self.voice) if isinstance(self.voice, Mapping) else str(
                self.voice
            )
        if self.speed is not None:
            audio_out["speed"] = self.speed
        audio = {k: v for k, v in (("input", audio_in), ("output", audio_out)) if v}
        if audio:
            out["audio"] = audio
        if self.tools is not None:
            out["tools"] = [t.to_dict() for t in self.tools]
        if self.tool_choice is not None:
            out["tool_choice"] = (
                dict(self.tool_choice) if isinstance(self.tool_choice, Mapping)
                else str(self.tool_choice)
            )
        if self.max_output_tokens is not None:
            out["max_output_tokens"] = self.max_output_tokens
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True) -> SessionConfig:
        """Read a GA ``session`` object.

        Args:
            data: the session object, e.g. of a ``session.update`` or ``session.updated``.
            strict: raise on unknown fields (the default, for configs you were handed). Pass
                False to read the server's effective session, which may carry fields newer than
                this version; unknown fields are then skipped.

        The server's read-only fields (``id``, ``object``, ``expires_at``) are dropped; the
        GA fields this class does not model (``tracing``, ``truncation``, ...) go to ``extra``.

        Raises:
            ConfigError: an invalid value, a beta-era field (the message names its GA
                place), a session type other than ``realtime``, or (strict) an unknown field.
        """
        data = _mapping(data, "session")
        if data.get("type", cls.type) != cls.type:
            raise ConfigError(
                f"session.type must be 'realtime' (transcription sessions are not supported);"
                f" got {data.get('type')!r}"
            )
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("type", "audio") or key in _READ_ONLY:
                continue
            if key in ("model", "instructions", "output_modalities", "max_output_tokens"):
                if value is not None:
                    kwargs[key] = value
            elif key == "tools":
                if value is not None:
                    kwargs["tools"] = cls._tools_from(value, strict)
            elif key == "tool_choice":
                if value is not None:
                    kwargs["tool_choice"] = value
            elif key in _PASSTHROUGH:
                extra[key] = value
            elif strict and key in _BETA_FIELDS:
                raise ConfigError(_beta_message(key))
            elif strict:
                raise ConfigError(f"unknown session field {key!r}")
        if data.get("audio") is not None:
            kwargs.update(cls._audio_from(_mapping(data["audio"], "session.audio"), strict))
        return cls(**kwargs, extra=extra)

    @staticmethod
    def _tools_from(value: Any, strict: bool) -> list[FunctionTool]:
        if not isinstance(value, list):
            raise ConfigError(f"session.tools must be a list; got {value!r}")
        return [FunctionTool.from_dict(_mapping(t, "tools[]"), strict=strict) for t in value]

    @staticmethod
    def _audio_from(audio: Mapping[str, Any], strict: bool) -> dict[str, Any]:
        _check_keys(audio, {"input", "output"}, "session.audio", strict)
        kwargs: dict[str, Any] = {}
        audio_in = _mapping(audio.get("input") or {}, "session.audio.input")
        _check_keys(audio_in, {"format", "noise_reduction", "transcription", "turn_detection"},
                    "session.audio.input", strict)
        if audio_in.get("format") is not None:
            kwargs["input_format"] = _format(audio_in["format"], "session.audio.input.format")
        if "noise_reduction" in audio_in:
            reduction = audio_in["noise_reduction"]
            if reduction is not None:
                where = "session.audio.input.noise_reduction"
                reduction = _mapping(reduction, where)
                _check_keys(reduction, {"type"}, where, strict)
                reduction = reduction.get("type")
            kwargs["noise_reduction"] = reduction
        if "transcription" in audio_in:
            transcription = audio_in["transcription"]
            kwargs["transcription"] = None if transcription is None else Transcription.from_dict(
                _mapping(transcription, "session.audio.input.transcription"), strict=strict
            )
        if "turn_detection" in audio_in:
            vad = audio_in["turn_detection"]
            kwargs["turn_detection"] = None if vad is None else _vad_from_dict(
                _mapping(vad, "session.audio.input.turn_detection"), strict
            )
        audio_out = _mapping(audio.get("output") or {}, "session.audio.output")
        _check_keys(audio_out, {"format", "voice", "speed"}, "session.audio.output", strict)
        if audio_out.get("format") is not None:
            kwargs["output_format"] = _format(audio_out["format"], "session.audio.output.format")
        for key in ("voice", "speed"):
            if audio_out.get(key) is not None:
                kwargs[key] = audio_out[key]
        return kwargs

    def merged(self, other: SessionConfig) -> SessionConfig:
        """Return this config updated by every field ``other`` sets (as the server merges)."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(other, f.name)
            unset = value is UNSET if f.name in _NULLABLE else value is None
            kwargs[f.name] = getattr(self, f.name) if unset else value
        return SessionConfig(**kwargs, extra={**self.extra, **other.extra})

    def replace(self, **changes: Any) -> SessionConfig:
        """Return a copy with ``changes`` applied (validated like the constructor)."""
        return dataclasses.replace(self, **changes)


def _beta_message(key: str) -> str:
    target = _BETA_FIELDS[key]
    if target is None:
        return f"session.{key} is a beta-era field that the GA API no longer accepts"
    return f"session.{key} is a beta-era field; in the GA session it is {target}"
