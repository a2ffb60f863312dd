"""SessionConfig: validation, the GA wire shape, and parsing back."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from openai.types.realtime import RealtimeClientEvent
from pydantic import BaseModel, Field, TypeAdapter

from livetalk.errors import ConfigError
from livetalk.protocol.events import SessionUpdate
from livetalk.protocol.session import (
    UNSET,
    AudioFormat,
    Eagerness,
    FunctionTool,
    Modality,
    NoiseReduction,
    SemanticVAD,
    ServerVAD,
    SessionConfig,
    ToolChoice,
    Transcription,
    Voice,
)

SDK_CLIENT = TypeAdapter(Annotated[RealtimeClientEvent, Field(discriminator="type")])

WEATHER = FunctionTool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]},
)
FULL = SessionConfig(
    model="gpt-realtime",
    instructions="Be brief.",
    output_modalities=["audio"],
    voice="marin",
    speed=1.1,
    input_format="audio/pcm",
    output_format=AudioFormat.PCMU,
    noise_reduction=NoiseReduction.FAR_FIELD,
    transcription=Transcription(model="gpt-4o-transcribe", language="en", prompt="Paris, Rome"),
    turn_detection=ServerVAD(threshold=0.6, prefix_padding_ms=300, silence_duration_ms=500,
                             create_response=True, interrupt_response=True,
                             idle_timeout_ms=6000),
    tools=[WEATHER],
    tool_choice="auto",
    max_output_tokens=1024,
    extra={"tracing": "auto", "truncation": "auto"},
)


def _unknown_fields(obj: object, path: str = "") -> list[str]:
    """Dotted paths of fields the SDK models do not declare (they all allow extras)."""
    out: list[str] = []
    if isinstance(obj, BaseModel):
        out += [f"{path}.{key}" if path else key for key in obj.model_extra or {}]
        for name in type(obj).model_fields:
            out += _unknown_fields(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            out += _unknown_fields(item, f"{path}[{i}]")
    return out


def _validate_as_session_update(config: SessionConfig) -> None:
    wire = SessionUpdate(session=config.to_dict()).to_dict()
    model = SDK_CLIENT.validate_python(wire, strict=True)
    assert _unknown_fields(model) == []


@pytest.mark.parametrize(
    "config",
    [
        FULL,
        SessionConfig(),
        SessionConfig(turn_detection=None, transcription=None, noise_reduction=None),
        SessionConfig(turn_detection=SemanticVAD(eagerness="high", create_response=False),
                      output_modalities="text", voice={"id": "voice_123abc"}),
        SessionConfig(tools=[], tool_choice={"type": "function", "name": "get_weather"},
                      max_output_tokens="inf", instructions=""),
        SessionConfig(transcription=Transcription(), turn_detection=ServerVAD()),
    ],
)
def test_to_dict_validates_as_sdk_session_update(config: SessionConfig) -> None:
    _validate_as_session_update(config)


def test_full_to_dict_has_the_ga_shape() -> None:
    assert FULL.to_dict() == {
        "type": "realtime",
        "model": "gpt-realtime",
        "instructions": "Be brief.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "noise_reduction": {"type": "far_field"},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en",
                                  "prompt": "Paris, Rome"},
                "turn_detection": {"type": "server_vad", "threshold": 0.6,
                                   "prefix_padding_ms": 300, "silence_duration_ms": 500,
                                   "create_response": True, "interrupt_response": True,
                                   "idle_timeout_ms": 6000},
            },
            "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.1},
        },
        "tools": [{"type": "function", "name": "get_weather",
                   "description": "Current weather for a city.",
                   "parameters": {"type": "object",
                                  "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}}],
        "tool_choice": "auto",
        "max_output_tokens": 1024,
        "tracing": "auto",
        "truncation": "auto",
    }


def test_unset_fields_are_omitted_but_explicit_none_is_null() -> None:
    assert SessionConfig().to_dict() == {"type": "realtime"}
    assert SessionConfig(instructions="x").to_dict() == {"type": "realtime", "instructions": "x"}
    assert SessionConfig(turn_detection=None).to_dict() == {
        "type": "realtime", "audio": {"input": {"turn_detection": None}}}
    assert SessionConfig(voice="ash").to_dict() == {
        "type": "realtime", "audio": {"output": {"voice": "ash"}}}
    config = SessionConfig()
    assert config.turn_detection is UNSET and config.transcription is UNSET
    assert repr(UNSET) == "UNSET"


def test_strings_are_normalised_to_enums() -> None:
    config = SessionConfig(voice="cedar", output_modalities=["text"], input_format="audio/pcma",
                           tool_choice="required", noise_reduction="near_field")
    assert config.voice is Voice.CEDAR
    assert config.output_modalities == (Modality.TEXT,)
    assert config.input_format is AudioFormat.PCMA
    assert config.tool_choice is ToolChoice.REQUIRED
    assert config.noise_reduction is NoiseReduction.NEAR_FIELD
    assert SemanticVAD(eagerness="low").eagerness is Eagerness.LOW


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"model": ""}, "SessionConfig.model"),
        ({"model": 3}, "SessionConfig.model"),
        ({"instructions": 3}, "SessionConfig.instructions"),
        ({"output_modalities": ["audio", "text"]}, "exactly one"),
        ({"output_modalities": []}, "exactly one"),
        ({"output_modalities": ["video"]}, "must be one of audio, text"),
        ({"voice": "bob"}, "alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar"),
        ({"voice": {"name": "x"}}, "SessionConfig.voice"),
        ({"voice": {"id": ""}}, "SessionConfig.voice"),
        ({"speed": 0.2}, "from 0.25 to 1.5"),
        ({"speed": 1.6}, "from 0.25 to 1.5"),
        ({"speed": True}, "SessionConfig.speed"),
        ({"input_format": "audio/wav"}, "audio/pcm, audio/pcmu, audio/pcma"),
        ({"output_format": {"type": "audio/pcm", "rate": 16000}}, "rate must be 24000"),
        ({"noise_reduction": "studio"}, "near_field, far_field"),
        ({"transcription": "whisper-1"}, "SessionConfig.transcription"),
        ({"turn_detection": "server_vad"}, "SessionConfig.turn_detection"),
        ({"tools": [{"name": "x"}]}, "FunctionTool objects"),
        ({"tools": [WEATHER, WEATHER]}, "duplicate names: get_weather"),
        ({"tool_choice": "sometimes"}, "auto, none, required"),
        ({"tool_choice": {"type": "function"}}, "SessionConfig.tool_choice"),
        ({"max_output_tokens": 0}, "from 1 to 4096"),
        ({"max_output_tokens": 4097}, "from 1 to 4096"),
        ({"max_output_tokens": "infinite"}, "or 'inf'"),
        ({"max_output_tokens": 1.5}, "must be an integer"),
        ({"extra": {"voice": "ash"}}, "must not set 'voice'"),
        ({"extra": {"audio": {}}}, "must not set 'audio'"),
        ({"extra": {"modalities": ["audio"]}}, "output_modalities"),
        ({"extra": {"temperature": 0.7}}, "no longer accepts"),
        ({"extra": ["tracing"]}, "SessionConfig.extra"),
    ],
)
def test_invalid_session_values_raise_config_error(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig(**kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: ServerVAD(threshold=1.5), "ServerVAD.threshold"),
        (lambda: ServerVAD(threshold=-0.1), "ServerVAD.threshold"),
        (lambda: ServerVAD(prefix_padding_ms=-1), "ServerVAD.prefix_padding_ms must be >= 0"),
        (lambda: ServerVAD(silence_duration_ms=2.5), "ServerVAD.silence_duration_ms"),  # type: ignore[arg-type]
        (lambda: ServerVAD(idle_timeout_ms=4999), "from 5000 to 30000"),
        (lambda: ServerVAD(idle_timeout_ms=30001), "from 5000 to 30000"),
        (lambda: ServerVAD(create_response="yes"), "ServerVAD.create_response"),  # type: ignore[arg-type]
        (lambda: SemanticVAD(eagerness="eager"), "low, medium, high, auto"),
        (lambda: SemanticVAD(interrupt_response=1), "SemanticVAD.interrupt_response"),  # type: ignore[arg-type]
        (lambda: Transcription(language="EN"), "ISO-639-1"),
        (lambda: Transcription(language="eng"), "ISO-639-1"),
        (lambda: Transcription(model=""), "Transcription.model"),
        (lambda: Transcription(prompt=5), "Transcription.prompt"),  # type: ignore[arg-type]
        (lambda: FunctionTool(name="get weather"), "FunctionTool.name"),
        (lambda: FunctionTool(name="x" * 65), "FunctionTool.name"),
        (lambda: FunctionTool(name="ok", description=None), "FunctionTool.description"),  # type: ignore[arg-type]
        (lambda: FunctionTool(name="ok", parameters="{}"), "FunctionTool.parameters"),  # type: ignore[arg-type]
    ],
)
def test_invalid_nested_values_raise_config_error(build: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        build()


def test_from_dict_round_trips() -> None:
    assert SessionConfig.from_dict(FULL.to_dict()) == FULL
    sparse = SessionConfig(turn_detection=None, transcription=None)
    assert SessionConfig.from_dict(sparse.to_dict()) == sparse
    semantic = SessionConfig(turn_detection=SemanticVAD(eagerness="auto"))
    assert SessionConfig.from_dict(semantic.to_dict()) == semantic


SERVER_SESSION = {
    "type": "realtime", "object": "realtime.session", "id": "sess_1", "expires_at": 0,
    "model": "gpt-realtime", "output_modalities": ["audio"], "instructions": "Hi",
    "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": None,
    "truncation": "auto", "prompt": None, "include": None,
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                  "noise_reduction": None,
                  "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                     "prefix_padding_ms": 300, "silence_duration_ms": 200,
                                     "idle_timeout_ms": None, "create_response": True,
                                     "interrupt_response": True}},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin",
                   "speed": 1},
    },
}


def test_from_dict_reads_the_servers_session() -> None:
    config = SessionConfig.from_dict(SERVER_SESSION)
    assert config.model == "gpt-realtime"
    assert config.voice is Voice.MARIN
    assert config.transcription is None
    assert config.turn_detection == ServerVAD(threshold=0.5, prefix_padding_ms=300,
                                              silence_duration_ms=200, create_response=True,
                                              interrupt_response=True)
    assert config.tools == ()
    assert config.extra == {"tracing": None, "truncation": "auto", "prompt": None,
                            "include": None}
    assert "id" not in config.to_dict() and "object" not in config.to_dict()


@pytest.mark.parametrize(
    ("beta", "ga"),
    [
        ({"modalities": ["audio"]}, "output_modalities"),
        ({"voice": "alloy"}, "audio.output.voice"),
        ({"turn_detection": None}, "audio.input.turn_detection"),
        ({"input_audio_transcription": {"model": "whisper-1"}}, "audio.input.transcription"),
        ({"input_audio_format": "pcm16"}, "audio.input.format"),
        ({"max_response_output_tokens": 10}, "max_output_tokens"),
        ({"temperature": 0.8}, "no longer accepts"),
    ],
)
def test_from_dict_rejects_beta_fields_naming_the_ga_place(beta: dict[str, Any], ga: str) -> None:
    with pytest.raises(ConfigError, match=ga.replace(".", r"\.")):
        SessionConfig.from_dict({"type": "realtime", **beta})


@pytest.mark.parametrize(
    "data",
    [
        {"type": "realtime", "colour": "blue"},
        {"type": "realtime", "audio": {"input": {"echo_cancel": True}}},
        {"type": "realtime", "audio": {"output": {"volume": 3}}},
        {"type": "realtime", "audio": {"mixer": {}}},
        {"type": "realtime", "audio": {"input": {"transcription": {"model": "x", "delay": "low"}}}},
        {"type": "realtime", "audio": {"input": {"noise_reduction": {"type": "near_field",
                                                                     "strength": 0.5}}}},
        {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                    "foo": 1}}}},
        {"type": "realtime", "tools": [{"type": "function", "name": "a", "strict": True}]},
    ],
)
def test_from_dict_strict_rejects_unknown_fields_lenient_skips_them(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        SessionConfig.from_dict(data)
    SessionConfig.from_dict(data, strict=False)


def test_from_dict_lenient_skips_beta_fields() -> None:
    assert SessionConfig.from_dict({"voice": "alloy", "model": "m"}, strict=False) == SessionConfig(
        model="m")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"type": "transcription"}, "transcription sessions are not supported"),
        ({"type": "realtime", "audio": "loud"}, "session.audio must be an object"),
        ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "vad"}}}},
         "server_vad or semantic_vad"),
        ({"type": "realtime", "tools": {"a": 1}}, "must be a list"),
        ({"type": "realtime", "tools": [{"type": "mcp", "server_label": "x"}]}, "MCP"),
        ({"type": "realtime", "audio": {"output": {"voice": "bob"}}}, "SessionConfig.voice"),
        ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/opus"}}}},
         "session.audio.input.format"),
        (["type", "realtime"], "session must be an object"),
    ],
)
def test_from_dict_rejects_invalid_values(data: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        SessionConfig.from_dict(data)


def test_merged_takes_what_the_other_sets() -> None:
    base = SessionConfig(model="gpt-realtime", voice="marin", turn_detection=ServerVAD(),
                         extra={"tracing": "auto"})
    update = SessionConfig(instructions="New.", turn_detection=None,
                           extra={"truncation": "disabled"})
    merged = base.merged(update)
    assert merged == SessionConfig(model="gpt-realtime", voice="marin", instructions="New.",
                                   turn_detection=None,
                                   extra={"tracing": "auto", "truncation": "disabled"})
    assert base.merged(SessionConfig()) == base


def test_replace_revalidates() -> None:
    config = FULL.replace(voice="ash", turn_detection=None)
    assert config.voice is Voice.ASH and config.turn_detection is None
    assert config.model == FULL.model
    with pytest.raises(ConfigError):
        FULL.replace(speed=9)


def test_function_tool_defaults_and_from_dict() -> None:
    tool = FunctionTool(name="ping")
    assert tool.to_dict() == {"type": "function", "name": "ping", "description": "",
                              "parameters": {"type": "object", "properties": {}}}
    assert FunctionTool.from_dict(WEATHER.to_dict()) == WEATHER
