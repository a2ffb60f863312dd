"""The GA session object: the schema in step with the SDK, the one validator (strict and lenient),
SessionConfig's wire shape and parsing back, the server's effective session, the model defaults."""

from __future__ import annotations

import ast
import time
import typing
from pathlib import Path
from typing import Annotated, Any

import pytest
from openai.types import responses as sdk_responses
from openai.types.realtime import (
    RealtimeClientEvent,
    RealtimeSessionCreateResponse,
    audio_transcription_param,
    realtime_audio_config_input_param,
    realtime_audio_config_output_param,
    realtime_audio_config_param,
    realtime_audio_formats_param,
    realtime_audio_input_turn_detection_param,
    realtime_function_tool_param,
    realtime_reasoning_param,
    realtime_session_create_request_param,
    realtime_tools_config_param,
    realtime_tracing_config_param,
    realtime_truncation_param,
    realtime_truncation_retention_ratio_param,
)
from openai.types.responses import response_prompt_param
from pydantic import BaseModel, Field, TypeAdapter

import livetalk
from livetalk.errors import ConfigError, SessionConfigError
from livetalk.protocol.events import SessionUpdate
from livetalk.protocol.session import (
    BETA_FIELDS,
    DEFAULT_MODEL,
    DEFAULT_TRANSCRIPTION_MODEL,
    KNOWN_FIELDS,
    READ_ONLY_FIELDS,
    UNSET,
    AudioFormat,
    Eagerness,
    FunctionTool,
    Include,
    Modality,
    NoiseReduction,
    Reasoning,
    ReasoningEffort,
    SemanticVAD,
    ServerVAD,
    SessionConfig,
    ToolChoice,
    Transcription,
    TranscriptionDelay,
    Voice,
    default_session,
    merge_session,
    validate_session,
)
from tests.sdk_types import (
    DEPRECATED_MODELS,
    EVERYTHING,
    REALTIME_MODELS,
    TRANSCRIPTION_MODELS,
    hint,
    literals,
)

SDK_CLIENT = TypeAdapter(Annotated[RealtimeClientEvent, Field(discriminator="type")])
PACKAGE = Path(livetalk.__file__).parent

# ====================================================================== the SDK's own types

_SESSION_PARAM = realtime_session_create_request_param.RealtimeSessionCreateRequestParam
_OUTPUT_PARAM = realtime_audio_config_output_param.RealtimeAudioConfigOutputParam
_TRANSCRIPTION_PARAM = audio_transcription_param.AudioTranscriptionParam
_VAD = realtime_audio_input_turn_detection_param
_FORMATS = realtime_audio_formats_param
_RETENTION = realtime_truncation_retention_ratio_param
SDK_OBJECTS: dict[str, tuple[Any, ...]] = {
    "session": (_SESSION_PARAM,),
    "audio": (realtime_audio_config_param.RealtimeAudioConfigParam,),
    "audio.input": (realtime_audio_config_input_param.RealtimeAudioConfigInputParam,),
    "audio.output": (_OUTPUT_PARAM,),
    "audio.format": (_FORMATS.AudioPCM, _FORMATS.AudioPCMU, _FORMATS.AudioPCMA),
    "noise_reduction": (realtime_audio_config_input_param.NoiseReduction,),
    "transcription": (_TRANSCRIPTION_PARAM,),
    "server_vad": (_VAD.ServerVad,),
    "semantic_vad": (_VAD.SemanticVad,),
    "function_tool": (realtime_function_tool_param.RealtimeFunctionToolParam,),
    "mcp_tool": (realtime_tools_config_param.Mcp,),
    "tool_choice.function": (sdk_responses.ToolChoiceFunctionParam,),
    "tool_choice.mcp": (sdk_responses.ToolChoiceMcpParam,),
    "reasoning": (realtime_reasoning_param.RealtimeReasoningParam,),
    "prompt": (response_prompt_param.ResponsePromptParam,),
    "tracing": (realtime_tracing_config_param.TracingConfiguration,),
    "truncation": (_RETENTION.RealtimeTruncationRetentionRatioParam,),
    "truncation.token_limits": (_RETENTION.TokenLimits,),
}


def _keys(typed_dict: Any) -> set[str]:
    return set(typed_dict.__required_keys__ | typed_dict.__optional_keys__)


@pytest.mark.parametrize("name", sorted(SDK_OBJECTS))
def test_known_fields_match_the_sdk(name: str) -> None:
    """A field the SDK gains (or drops) fails here, not as a refusal in users' hands."""
    sdk = set().union(*(_keys(td) for td in SDK_OBJECTS[name]))
    assert set(KNOWN_FIELDS[name]) == sdk, name


def test_every_known_object_is_compared_with_the_sdk() -> None:
    assert set(KNOWN_FIELDS) == set(SDK_OBJECTS)


def test_read_only_fields_are_the_servers_extra_fields() -> None:
    response = set(RealtimeSessionCreateResponse.model_fields)
    assert READ_ONLY_FIELDS == response - _keys(_SESSION_PARAM)


@pytest.mark.parametrize(("ours", "theirs"), [
    ({v.value for v in Voice}, hint(_OUTPUT_PARAM, "voice")),
    ({m.value for m in Modality}, hint(_SESSION_PARAM, "output_modalities")),
    ({e.value for e in Eagerness}, hint(_VAD.SemanticVad, "eagerness")),
    ({f.value for f in AudioFormat}, typing.Union[tuple(  # noqa: UP007
        hint(td, "type") for td in SDK_OBJECTS["audio.format"])]),
    ({n.value for n in NoiseReduction}, hint(realtime_audio_config_input_param.NoiseReduction,
                                              "type")),
    ({t.value for t in ToolChoice}, sdk_responses.ToolChoiceOptions),
    ({d.value for d in TranscriptionDelay}, hint(_TRANSCRIPTION_PARAM, "delay")),
    ({r.value for r in ReasoningEffort}, hint(realtime_reasoning_param.RealtimeReasoningParam,
                                               "effort")),
    ({i.value for i in Include}, hint(_SESSION_PARAM, "include")),
    ({"auto", "disabled"}, realtime_truncation_param.RealtimeTruncationParam),
    ({"auto"}, hint(_SESSION_PARAM, "tracing")),
])
def test_value_sets_match_the_sdk(ours: set[str], theirs: Any) -> None:
    assert ours == literals(theirs)


# ====================================================================== the models

def test_the_defaults_are_current_models() -> None:
    assert DEFAULT_MODEL in REALTIME_MODELS and DEFAULT_MODEL not in DEPRECATED_MODELS
    assert DEFAULT_TRANSCRIPTION_MODEL in TRANSCRIPTION_MODELS
    assert DEFAULT_TRANSCRIPTION_MODEL not in DEPRECATED_MODELS
    assert {"gpt-realtime", "gpt-realtime-mini", "whisper-1",
            "gpt-4o-mini-transcribe"} <= DEPRECATED_MODELS  # the docstrings were read
    assert default_session()["model"] == DEFAULT_MODEL
    assert Transcription().model == DEFAULT_TRANSCRIPTION_MODEL


def test_no_deprecated_model_is_a_literal_in_the_package() -> None:
    """Defaults live in one place; only the price table names the older models."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "pricing.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in DEPRECATED_MODELS:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert found == []


@pytest.mark.parametrize("model", REALTIME_MODELS + ["gpt-realtime-3-preview"])
def test_every_realtime_model_name_is_accepted(model: str) -> None:
    session = {"type": "realtime", "model": model}
    assert validate_session(session) == session
    assert SessionConfig.from_dict(session).model == model


@pytest.mark.parametrize("model", TRANSCRIPTION_MODELS + ["gpt-transcribe-2"])
def test_every_transcription_model_name_is_accepted(model: str) -> None:
    session = {"type": "realtime", "audio": {"input": {"transcription": {"model": model}}}}
    validate_session(session)
    config = SessionConfig.from_dict(session)
    assert isinstance(config.transcription, Transcription)
    assert config.transcription.model == model


# ====================================================================== a full GA session

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


def _assert_sdk_session_update(session: dict[str, Any]) -> None:
    wire = SessionUpdate(session=session).to_dict()
    model = SDK_CLIENT.validate_python(wire, strict=True)
    assert _unknown_fields(model) == []


def test_the_full_session_is_what_the_sdk_describes() -> None:
    _assert_sdk_session_update(EVERYTHING)


@pytest.mark.parametrize("strict", [True, False])
def test_every_sdk_field_is_accepted_in_both_modes(strict: bool) -> None:
    assert validate_session(EVERYTHING, strict=strict) == EVERYTHING


def test_every_sdk_field_round_trips_through_session_config() -> None:
    config = SessionConfig.from_dict(EVERYTHING)
    assert config.to_dict() == EVERYTHING
    assert config.extra == {}  # everything is modelled
    assert config.reasoning == Reasoning(effort=ReasoningEffort.LOW)
    assert config.parallel_tool_calls is True
    assert config.noise_reduction is NoiseReduction.FAR_FIELD
    assert config.noise_reduction_strength == 0.6
    assert config.transcription == Transcription(
        model="gpt-live-transcribe", language="en", prompt="weather",
        delay=TranscriptionDelay.LOW, keywords=["Paris", "Rome"], languages=["en", "fr"])
    assert config.tools is not None and isinstance(config.tools[0], FunctionTool)
    assert config.tools[1] == EVERYTHING["tools"][1]  # MCP tools stay dicts
    assert config.include == (Include.TRANSCRIPTION_LOGPROBS,)
    assert SessionConfig.from_dict(config.to_dict()) == config


# ====================================================================== the validator

@pytest.mark.parametrize(("session", "code", "param", "message"), [
    ("realtime", "invalid_type", "session",
     "Invalid type for 'session': expected an object, but got a string instead."),
    ({}, "missing_required_parameter", "session.type",
     "Missing required parameter: 'session.type'."),
    ({"type": "translation"}, "invalid_value", "session.type",
     "Invalid value: 'translation'. Supported values are: 'realtime' and 'transcription'."),
    ({"type": "transcription"}, "invalid_value", "session.type",
     "Passing a transcription session update event to a realtime session is not allowed."),
    ({"type": "realtime", "voice": "alloy"}, "unknown_parameter", "session.voice",
     "Unknown parameter: 'session.voice'."),
    ({"type": "realtime", "colour": "blue"}, "unknown_parameter", "session.colour",
     "Unknown parameter: 'session.colour'."),
    ({"type": "realtime", "instructions": 3}, "invalid_type", "session.instructions",
     "Invalid type for 'session.instructions': expected a string, but got an integer instead."),
    ({"type": "realtime", "instructions": None}, "invalid_type", "session.instructions",
     "Invalid type for 'session.instructions': expected a string, but got null instead."),
    ({"type": "realtime", "model": ""}, "invalid_value", "session.model", None),
    ({"type": "realtime", "output_modalities": ["audio", "text"]}, "invalid_value",
     "session.output_modalities", None),
    ({"type": "realtime", "output_modalities": ["video"]}, "invalid_value",
     "session.output_modalities[0]",
     "Invalid value: 'video'. Supported values are: 'audio' and 'text'."),
    ({"type": "realtime", "max_output_tokens": 0}, "integer_below_min_value",
     "session.max_output_tokens",
     "Invalid 'session.max_output_tokens': integer below minimum value. Expected a value >= 1,"
     " but got 0 instead."),
    ({"type": "realtime", "max_output_tokens": 4097}, "integer_above_max_value",
     "session.max_output_tokens", None),
    ({"type": "realtime", "max_output_tokens": "infinite"}, "invalid_value",
     "session.max_output_tokens", None),
    ({"type": "realtime", "tools": {}}, "invalid_type", "session.tools",
     "Invalid type for 'session.tools': expected an array, but got an object instead."),
    ({"type": "realtime", "tools": [{"type": "function"}]}, "missing_required_parameter",
     "session.tools[0].name", None),
    ({"type": "realtime", "tools": [{"name": "get weather"}]}, "invalid_value",
     "session.tools[0].name", None),
    ({"type": "realtime", "tools": [{"name": "a"}, {"name": "a"}]}, "invalid_value",
     "session.tools[1].name", None),
    ({"type": "realtime", "tools": [{"type": "mcp"}]}, "missing_required_parameter",
     "session.tools[0].server_label", None),
    ({"type": "realtime", "tools": [{"type": "file_search"}]}, "invalid_value",
     "session.tools[0].type", None),
    ({"type": "realtime", "tools": [{"type": "function", "name": "a", "strict": True}]},
     "unknown_parameter", "session.tools[0].strict", None),
    ({"type": "realtime", "tool_choice": "sometimes"}, "invalid_value", "session.tool_choice",
     "Invalid value: 'sometimes'. Supported values are: 'auto', 'none', and 'required'."),
    ({"type": "realtime", "tool_choice": {"type": "function"}}, "missing_required_parameter",
     "session.tool_choice.name", None),
    ({"type": "realtime", "reasoning": {"effort": "extreme"}}, "invalid_value",
     "session.reasoning.effort", None),
    ({"type": "realtime", "parallel_tool_calls": "yes"}, "invalid_type",
     "session.parallel_tool_calls", None),
    ({"type": "realtime", "prompt": {"version": "1"}}, "missing_required_parameter",
     "session.prompt.id", None),
    ({"type": "realtime", "tracing": "manual"}, "invalid_value", "session.tracing", None),
    ({"type": "realtime", "truncation": {"type": "retention_ratio", "retention_ratio": 1.5}},
     "decimal_above_max_value", "session.truncation.retention_ratio", None),
    ({"type": "realtime", "include": ["everything"]}, "invalid_value", "session.include[0]",
     None),
    ({"type": "realtime", "audio": {"mixer": {}}}, "unknown_parameter", "session.audio.mixer",
     None),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                 "threshold": 2}}}},
     "decimal_above_max_value", "session.audio.input.turn_detection.threshold",
     "Invalid 'session.audio.input.turn_detection.threshold': decimal above maximum value."
     " Expected a value <= 1, but got 2 instead."),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {"silence_duration_ms": 1}}}},
     "missing_required_parameter", "session.audio.input.turn_detection.type", None),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "vad"}}}},
     "invalid_value", "session.audio.input.turn_detection.type",
     "Invalid value: 'vad'. Supported values are: 'server_vad' and 'semantic_vad'."),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad",
                                                                 "threshold": 0.5}}}},
     "unknown_parameter", "session.audio.input.turn_detection.threshold", None),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "silence_duration_ms": 2.5}}}},
     "invalid_type", "session.audio.input.turn_detection.silence_duration_ms",
     "Invalid type for 'session.audio.input.turn_detection.silence_duration_ms': expected an"
     " integer, but got a decimal number instead."),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "idle_timeout_ms": 4999}}}},
     "integer_below_min_value", "session.audio.input.turn_detection.idle_timeout_ms", None),
    ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
     "invalid_value", "session.audio.input.format.rate", None),
    ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm"}}}},
     "missing_required_parameter", "session.audio.input.format.rate", None),
    ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/opus"}}}},
     "invalid_value", "session.audio.input.format.type", None),
    ({"type": "realtime", "audio": {"input": {"noise_reduction": {"type": "studio"}}}},
     "invalid_value", "session.audio.input.noise_reduction.type", None),
    ({"type": "realtime", "audio": {"input": {"noise_reduction": {"strength": -1}}}},
     "decimal_below_min_value", "session.audio.input.noise_reduction.strength", None),
    ({"type": "realtime", "audio": {"input": {"transcription": {"language": "EN"}}}},
     "invalid_value", "session.audio.input.transcription.language", None),
    ({"type": "realtime", "audio": {"input": {"transcription": {"delay": "never"}}}},
     "invalid_value", "session.audio.input.transcription.delay", None),
    ({"type": "realtime", "audio": {"input": {"transcription": {"keywords": "Paris"}}}},
     "invalid_type", "session.audio.input.transcription.keywords", None),
    ({"type": "realtime", "audio": {"input": {"echo_cancel": True}}}, "unknown_parameter",
     "session.audio.input.echo_cancel", None),
    ({"type": "realtime", "audio": {"output": {"voice": "nobody"}}}, "invalid_value",
     "session.audio.output.voice", None),
    ({"type": "realtime", "audio": {"output": {"voice": {"name": "x"}}}},
     "missing_required_parameter", "session.audio.output.voice.id", None),
    ({"type": "realtime", "audio": {"output": {"voice": 7}}}, "invalid_type",
     "session.audio.output.voice", None),
    ({"type": "realtime", "audio": {"output": {"speed": 3}}}, "decimal_above_max_value",
     "session.audio.output.speed",
     "Invalid 'session.audio.output.speed': decimal above maximum value. Expected a value"
     " <= 1.5, but got 3 instead."),
    ({"type": "realtime", "audio": {"output": {"speed": 0.2}}}, "decimal_below_min_value",
     "session.audio.output.speed", None),
])
def test_strict_validation_refuses_with_the_apis_code_and_param(
        session: Any, code: str, param: str, message: str | None) -> None:
    with pytest.raises(SessionConfigError) as info:
        validate_session(session, strict=True)
    error = info.value
    assert (error.code, error.param) == (code, param)
    assert error.message.endswith(".") and str(error) == error.message
    if message is not None:
        assert error.message == message
    assert isinstance(error, ConfigError) and isinstance(error, ValueError)


@pytest.mark.parametrize("session", [
    {"type": "realtime", "colour": "blue"},
    {"type": "realtime", "audio": {"mixer": {}, "input": {"echo_cancel": True},
                                   "output": {"volume": 3}}},
    {"type": "realtime", "audio": {"input": {"transcription": {"model": "x", "diarize": True},
                                             "noise_reduction": {"type": "near_field",
                                                                 "gain": 2}}}},
    {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                "foo": 1}}}},
    {"type": "realtime", "tools": [{"type": "function", "name": "a", "strict": True},
                                   {"type": "web_search"}]},
    {"type": "realtime", "audio": {"output": {"voice": "nova"}}},
    {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm"}}}},
    {"model": "gpt-realtime-2.1"},  # no type: realtime
])
def test_lenient_validation_passes_unknown_fields_through(session: dict[str, Any]) -> None:
    with pytest.raises(SessionConfigError):
        validate_session(session, strict=True)
    assert validate_session(session, strict=False) == session


@pytest.mark.parametrize("strict", [True, False])
def test_known_fields_with_invalid_values_raise_in_both_modes(strict: bool) -> None:
    with pytest.raises(SessionConfigError) as info:
        validate_session({"type": "realtime", "audio": {"output": {"speed": 9}}}, strict=strict)
    assert info.value.param == "session.audio.output.speed"


@pytest.mark.parametrize(("field", "ga"), sorted(BETA_FIELDS.items()))
def test_beta_fields_are_unknown_parameters_with_a_hint_for_the_client(
        field: str, ga: str | None) -> None:
    session = {"type": "realtime", field: None}
    with pytest.raises(SessionConfigError) as strict:
        validate_session(session, strict=True)
    assert strict.value.message == f"Unknown parameter: 'session.{field}'."
    with pytest.raises(SessionConfigError) as lenient:
        validate_session(session, strict=False)
    assert lenient.value.code == "unknown_parameter"
    assert lenient.value.param == f"session.{field}"
    assert lenient.value.message.startswith(strict.value.message)
    assert (f"'session.{ga}'" if ga else "no such setting") in lenient.value.message


def test_validate_session_returns_a_copy_of_the_object() -> None:
    session = {"type": "realtime", "instructions": "Hi"}
    out = validate_session(session)
    assert out == session and out is not session


# ====================================================================== the effective session

def test_default_session_is_a_valid_ga_session_object() -> None:
    session = default_session("gpt-realtime-mini", lifetime_s=60)
    parsed = RealtimeSessionCreateResponse.model_validate(session)
    assert parsed.model == "gpt-realtime-mini"
    assert session["id"].startswith("sess_") and session["object"] == "realtime.session"
    assert 55 <= session["expires_at"] - time.time() <= 61
    assert default_session()["id"] != default_session()["id"]
    assert validate_session(default_session(), strict=True)  # a client may echo it back
    assert SessionConfig.from_dict(default_session()).to_dict()["model"] == DEFAULT_MODEL


def test_merge_changes_only_present_fields_and_null_clears() -> None:
    base = default_session()
    update = validate_session({
        "type": "realtime", "instructions": "Be brief.",
        "audio": {"input": {"transcription": {"model": "gpt-transcribe"},
                            "noise_reduction": {"type": "near_field", "strength": 0.4},
                            "turn_detection": {"type": "server_vad",
                                               "silence_duration_ms": 800}},
                  "output": {"voice": "alloy"}},
    })
    merged = merge_session(base, update)
    assert merged["instructions"] == "Be brief."
    assert merged["id"] == base["id"] and merged["model"] == base["model"]
    td = merged["audio"]["input"]["turn_detection"]
    assert td["silence_duration_ms"] == 800 and td["threshold"] == 0.5  # others kept
    assert merged["audio"]["output"] == {**base["audio"]["output"], "voice": "alloy"}
    assert base["instructions"] != "Be brief."  # the input is not mutated
    far = merge_session(merged, {"audio": {"input": {"noise_reduction": {"type": "far_field"}}}})
    assert far["audio"]["input"]["noise_reduction"] == {"type": "far_field", "strength": 0.4}
    cleared = merge_session(merged, {"type": "realtime",
                                     "audio": {"input": {"turn_detection": None}}})
    assert cleared["audio"]["input"]["turn_detection"] is None
    semantic = merge_session(merged, {"audio": {"input": {"turn_detection": {
        "type": "semantic_vad"}}}})
    assert semantic["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad", "eagerness": "auto", "create_response": True,
        "interrupt_response": True}
    assert merge_session(base, {"id": "sess_other", "type": "x"})["id"] == base["id"]


# ====================================================================== SessionConfig

WEATHER = FunctionTool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]},
)
MCP = {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.test",
       "require_approval": "never"}
FULL = SessionConfig(
    model="gpt-realtime-2.1",
    instructions="Be brief.",
    output_modalities=["audio"],
    voice="marin",
    speed=1.1,
    input_format="audio/pcm",
    output_format=AudioFormat.PCMU,
    noise_reduction=NoiseReduction.FAR_FIELD,
    noise_reduction_strength=0.5,
    transcription=Transcription(model="gpt-transcribe", language="en", prompt="Paris, Rome",
                                keywords=["Paris"], languages=["en", "it"]),
    turn_detection=ServerVAD(threshold=0.6, prefix_padding_ms=300, silence_duration_ms=500,
                             create_response=True, interrupt_response=True,
                             idle_timeout_ms=6000),
    tools=[WEATHER, MCP],
    tool_choice="auto",
    max_output_tokens=1024,
    reasoning=Reasoning(effort="low"),
    parallel_tool_calls=False,
    prompt={"id": "pmpt_1", "variables": {"city": "Rome"}},
    tracing="auto",
    truncation="auto",
    include=["item.input_audio_transcription.logprobs"],
)


@pytest.mark.parametrize(
    "config",
    [
        FULL,
        SessionConfig(),
        SessionConfig(turn_detection=None, transcription=None, noise_reduction=None,
                      prompt=None, tracing=None),
        SessionConfig(turn_detection=SemanticVAD(eagerness="high", create_response=False),
                      output_modalities="text", voice={"id": "voice_123abc"}),
        SessionConfig(tools=[], tool_choice={"type": "function", "name": "get_weather"},
                      max_output_tokens="inf", instructions=""),
        SessionConfig(transcription=Transcription(delay="xhigh", model="gpt-realtime-whisper"),
                      turn_detection=ServerVAD(), noise_reduction_strength=0.3,
                      truncation={"type": "retention_ratio", "retention_ratio": 0.5},
                      tracing={"workflow_name": "w"}),
    ],
)
def test_to_dict_validates_as_sdk_session_update(config: SessionConfig) -> None:
    _assert_sdk_session_update(config.to_dict())


def test_full_to_dict_has_the_ga_shape() -> None:
    assert FULL.to_dict() == {
        "type": "realtime",
        "model": "gpt-realtime-2.1",
        "instructions": "Be brief.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "noise_reduction": {"type": "far_field", "strength": 0.5},
                "transcription": {"model": "gpt-transcribe", "language": "en",
                                  "prompt": "Paris, Rome", "keywords": ["Paris"],
                                  "languages": ["en", "it"]},
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
                                  "required": ["city"]}},
                  MCP],
        "tool_choice": "auto",
        "max_output_tokens": 1024,
        "reasoning": {"effort": "low"},
        "parallel_tool_calls": False,
        "prompt": {"id": "pmpt_1", "variables": {"city": "Rome"}},
        "tracing": "auto",
        "truncation": "auto",
        "include": ["item.input_audio_transcription.logprobs"],
    }


def test_unset_fields_are_omitted_but_explicit_none_is_null() -> None:
    assert SessionConfig().to_dict() == {"type": "realtime"}
    assert SessionConfig(instructions="x").to_dict() == {"type": "realtime", "instructions": "x"}
    assert SessionConfig(turn_detection=None).to_dict() == {
        "type": "realtime", "audio": {"input": {"turn_detection": None}}}
    assert SessionConfig(voice="ash").to_dict() == {
        "type": "realtime", "audio": {"output": {"voice": "ash"}}}
    assert SessionConfig(prompt=None, tracing=None).to_dict() == {
        "type": "realtime", "prompt": None, "tracing": None}
    assert SessionConfig(noise_reduction_strength=0.2).to_dict() == {
        "type": "realtime", "audio": {"input": {"noise_reduction": {"strength": 0.2}}}}
    config = SessionConfig()
    assert config.turn_detection is UNSET and config.transcription is UNSET
    assert config.prompt is UNSET and config.tracing is UNSET
    assert repr(UNSET) == "UNSET"


def test_strings_are_normalised_to_enums() -> None:
    config = SessionConfig(voice="cedar", output_modalities=["text"], input_format="audio/pcma",
                           tool_choice="required", noise_reduction="near_field",
                           include=["item.input_audio_transcription.logprobs"])
    assert config.voice is Voice.CEDAR
    assert config.output_modalities == (Modality.TEXT,)
    assert config.input_format is AudioFormat.PCMA
    assert config.tool_choice is ToolChoice.REQUIRED
    assert config.noise_reduction is NoiseReduction.NEAR_FIELD
    assert config.include == (Include.TRANSCRIPTION_LOGPROBS,)
    assert SemanticVAD(eagerness="low").eagerness is Eagerness.LOW
    assert Transcription(delay="minimal").delay is TranscriptionDelay.MINIMAL
    assert Reasoning(effort="high").effort is ReasoningEffort.HIGH


def test_any_voice_name_and_custom_voices_are_accepted() -> None:
    assert SessionConfig(voice="nova").voice == "nova"  # a voice newer than this list
    assert SessionConfig(voice={"id": "voice_1"}).to_dict()["audio"]["output"] == {
        "voice": {"id": "voice_1"}}
    assert SessionConfig.from_dict({"audio": {"output": {"voice": "nova"}}}).voice == "nova"


def test_dicts_are_accepted_for_the_nested_parts() -> None:
    config = SessionConfig(transcription={"model": "gpt-transcribe", "keywords": ["a"]},
                           turn_detection={"type": "semantic_vad", "eagerness": "low"},
                           reasoning={"effort": "medium"},
                           tools=[{"name": "ping"}, MCP])
    assert config.transcription == Transcription(keywords=["a"])
    assert config.turn_detection == SemanticVAD(eagerness=Eagerness.LOW)
    assert config.reasoning == Reasoning(effort=ReasoningEffort.MEDIUM)
    assert config.tools == (FunctionTool(name="ping"), MCP)
    pcm = SessionConfig(output_format={"type": "audio/pcm", "rate": 24000, "channels": 1})
    assert pcm.output_format is AudioFormat.PCM  # the unknown member is kept, not dropped
    assert pcm.extra == {"audio": {"output": {"format": {"channels": 1}}}}
    assert pcm.to_dict()["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000,
                                                          "channels": 1}


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"model": ""}, "session.model"),
        ({"model": 3}, "session.model"),
        ({"instructions": 3}, "session.instructions"),
        ({"output_modalities": ["audio", "text"]}, "session.output_modalities"),
        ({"output_modalities": []}, "session.output_modalities"),
        ({"output_modalities": ["video"]}, "session.output_modalities[0]"),
        ({"output_modalities": 5}, "session.output_modalities"),
        ({"voice": {"name": "x"}}, "session.audio.output.voice.id"),
        ({"voice": {"id": ""}}, "session.audio.output.voice.id"),
        ({"voice": ""}, "session.audio.output.voice"),
        ({"speed": 0.2}, "session.audio.output.speed"),
        ({"speed": 1.6}, "session.audio.output.speed"),
        ({"speed": True}, "session.audio.output.speed"),
        ({"input_format": "audio/wav"}, "session.audio.input.format.type"),
        ({"output_format": {"type": "audio/pcm", "rate": 16000}},
         "session.audio.output.format.rate"),
        ({"noise_reduction": "studio"}, "session.audio.input.noise_reduction.type"),
        ({"noise_reduction_strength": -0.5}, "session.audio.input.noise_reduction.strength"),
        ({"tools": [{"name": "x y"}]}, "session.tools[0].name"),
        ({"tools": [WEATHER, WEATHER]}, "session.tools[1].name"),
        ({"tools": ["get_weather"]}, "session.tools[0]"),
        ({"tools": [{"type": "mcp"}]}, "session.tools[0].server_label"),
        ({"tool_choice": "sometimes"}, "session.tool_choice"),
        ({"tool_choice": {"type": "function"}}, "session.tool_choice.name"),
        ({"max_output_tokens": 0}, "session.max_output_tokens"),
        ({"max_output_tokens": 4097}, "session.max_output_tokens"),
        ({"max_output_tokens": "infinite"}, "session.max_output_tokens"),
        ({"max_output_tokens": 1.5}, "session.max_output_tokens"),
        ({"parallel_tool_calls": "yes"}, "session.parallel_tool_calls"),
        ({"prompt": {"version": "1"}}, "session.prompt.id"),
        ({"tracing": "on"}, "session.tracing"),
        ({"tracing": {"workflow": "w"}}, None),  # unknown inside a pass-through: kept
        ({"truncation": "never"}, "session.truncation"),
        ({"truncation": {"type": "retention_ratio"}}, "session.truncation.retention_ratio"),
        ({"include": ["logprobs"]}, "session.include[0]"),
        ({"extra": {"temperature": 0.7}}, "session.temperature"),
        ({"extra": {"modalities": ["audio"]}}, "session.modalities"),
    ],
)
def test_invalid_session_values_raise_the_apis_error(kwargs: dict[str, Any],
                                                    param: str | None) -> None:
    if param is None:
        assert SessionConfig(**kwargs).to_dict()["tracing"] == {"workflow": "w"}
        return
    with pytest.raises(SessionConfigError) as info:
        SessionConfig(**kwargs)
    assert info.value.param == param
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"transcription": "whisper-1"}, "SessionConfig.transcription"),
        ({"turn_detection": "server_vad"}, "SessionConfig.turn_detection"),
        ({"reasoning": "low"}, "SessionConfig.reasoning"),
        ({"noise_reduction": None, "noise_reduction_strength": 0.5}, "switches it off"),
        ({"extra": ["tracing"]}, "SessionConfig.extra"),
        ({"extra": {"voice": "ash"}}, "beta-era"),
        ({"extra": {"tracing": "auto"}}, "must not set session.tracing"),
        ({"extra": {"type": "realtime"}}, "must not set session.type"),
        ({"extra": {"audio": {"output": {"voice": "ash"}}}},
         "must not set session.audio.output.voice"),
        ({"extra": {"audio": "loud"}}, "session.audio must be an object"),
        ({"noise_reduction": None, "extra": {"audio": {"input": {"noise_reduction": {"x": 1}}}}},
         "inside session.audio.input.noise_reduction"),
    ],
)
def test_misused_python_arguments_raise_config_error(kwargs: dict[str, Any],
                                                     fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        SessionConfig(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("build", "param"),
    [
        (lambda: ServerVAD(threshold=1.5), "session.audio.input.turn_detection.threshold"),
        (lambda: ServerVAD(threshold=-0.1), "session.audio.input.turn_detection.threshold"),
        (lambda: ServerVAD(prefix_padding_ms=-1),
         "session.audio.input.turn_detection.prefix_padding_ms"),
        (lambda: ServerVAD(silence_duration_ms=2.5),  # type: ignore[arg-type]
         "session.audio.input.turn_detection.silence_duration_ms"),
        (lambda: ServerVAD(idle_timeout_ms=4999),
         "session.audio.input.turn_detection.idle_timeout_ms"),
        (lambda: ServerVAD(idle_timeout_ms=30001),
         "session.audio.input.turn_detection.idle_timeout_ms"),
        (lambda: ServerVAD(create_response="yes"),  # type: ignore[arg-type]
         "session.audio.input.turn_detection.create_response"),
        (lambda: SemanticVAD(eagerness="eager"), "session.audio.input.turn_detection.eagerness"),
        (lambda: SemanticVAD(interrupt_response=1),  # type: ignore[arg-type]
         "session.audio.input.turn_detection.interrupt_response"),
        (lambda: Transcription(language="EN"), "session.audio.input.transcription.language"),
        (lambda: Transcription(language="eng"), "session.audio.input.transcription.language"),
        (lambda: Transcription(model=""), "session.audio.input.transcription.model"),
        (lambda: Transcription(prompt=5),  # type: ignore[arg-type]
         "session.audio.input.transcription.prompt"),
        (lambda: Transcription(delay="never"), "session.audio.input.transcription.delay"),
        (lambda: Transcription(keywords="Paris"),
         "session.audio.input.transcription.keywords"),
        (lambda: Transcription(languages=["en", "ENG"]),
         "session.audio.input.transcription.languages[1]"),
        (lambda: Reasoning(effort="extreme"), "session.reasoning.effort"),
        (lambda: FunctionTool(name="get weather"), "session.tools[].name"),
        (lambda: FunctionTool(name="x" * 65), "session.tools[].name"),
        (lambda: FunctionTool(name="ok", description=5),  # type: ignore[arg-type]
         "session.tools[].description"),
        (lambda: FunctionTool(name="ok", parameters="{}"),  # type: ignore[arg-type]
         "session.tools[].parameters"),
    ],
)
def test_invalid_nested_values_raise_the_apis_error(build: Any, param: str) -> None:
    with pytest.raises(SessionConfigError) as info:
        build()
    assert info.value.param == param


def test_nested_extra_must_not_shadow_modelled_fields() -> None:
    for build in (lambda: Transcription(extra={"model": "x"}),
                  lambda: ServerVAD(extra={"threshold": 0.1}),
                  lambda: SemanticVAD(extra={"type": "server_vad"}),
                  lambda: FunctionTool(name="a", extra={"name": "b"}),
                  lambda: Reasoning(extra={"effort": "low"})):
        with pytest.raises(ConfigError, match="must not set"):
            build()


def test_from_dict_round_trips() -> None:
    assert SessionConfig.from_dict(FULL.to_dict()) == FULL
    sparse = SessionConfig(turn_detection=None, transcription=None)
    assert SessionConfig.from_dict(sparse.to_dict()) == sparse
    semantic = SessionConfig(turn_detection=SemanticVAD(eagerness="auto"))
    assert SessionConfig.from_dict(semantic.to_dict()) == semantic


SERVER_SESSION = {
    "type": "realtime", "object": "realtime.session", "id": "sess_1", "expires_at": 0,
    "model": "gpt-realtime-2.1", "output_modalities": ["audio"], "instructions": "Hi",
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
    assert config.model == "gpt-realtime-2.1"
    assert config.voice is Voice.MARIN
    assert config.transcription is None and config.noise_reduction is None
    assert config.turn_detection == ServerVAD(threshold=0.5, prefix_padding_ms=300,
                                              silence_duration_ms=200, create_response=True,
                                              interrupt_response=True)
    assert config.tools == ()
    assert config.tracing is None and config.prompt is None and config.include is None
    assert config.truncation == "auto" and config.extra == {}
    wire = config.to_dict()
    assert "id" not in wire and "object" not in wire and "expires_at" not in wire


FUTURE_SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime-3",
    "memory": {"enabled": True},
    "audio": {
        "mixer": {"ducking": True},
        "input": {"echo_cancel": True,
                  "format": {"type": "audio/pcm", "rate": 24000, "channels": 1},
                  "noise_reduction": {"type": "near_field", "gain": 2},
                  "transcription": {"model": "gpt-transcribe", "diarize": True},
                  "turn_detection": {"type": "semantic_vad", "patience_ms": 900}},
        "output": {"voice": "nova", "volume": 0.8},
    },
    "tools": [{"type": "function", "name": "a", "description": "", "strict": True,
               "parameters": {"type": "object", "properties": {}}},
              {"type": "web_search"}],
    "reasoning": {"effort": "low", "summary": "auto"},
}


def test_from_dict_keeps_unknown_fields_at_every_level_and_writes_them_back() -> None:
    config = SessionConfig.from_dict(FUTURE_SESSION)
    assert config.to_dict() == FUTURE_SESSION
    assert config.extra == {
        "memory": {"enabled": True},
        "audio": {"mixer": {"ducking": True},
                  "input": {"echo_cancel": True, "format": {"channels": 1},
                            "noise_reduction": {"gain": 2}},
                  "output": {"volume": 0.8}},
    }
    assert isinstance(config.transcription, Transcription)
    assert config.transcription.extra == {"diarize": True}
    assert isinstance(config.turn_detection, SemanticVAD)
    assert config.turn_detection.extra == {"patience_ms": 900}
    assert config.tools is not None and isinstance(config.tools[0], FunctionTool)
    assert config.tools[0].extra == {"strict": True}
    assert config.tools[1] == {"type": "web_search"}
    assert config.reasoning == Reasoning(effort="low", extra={"summary": "auto"})
    assert SessionConfig.from_dict(config.to_dict()) == config
    assert config.replace(instructions="x").to_dict() == {**FUTURE_SESSION, "instructions": "x"}


def test_from_dict_strict_refuses_what_the_api_would() -> None:
    with pytest.raises(SessionConfigError) as info:
        SessionConfig.from_dict(FUTURE_SESSION, strict=True)
    assert info.value.code == "unknown_parameter"


@pytest.mark.parametrize(
    ("beta", "ga"),
    [
        ({"modalities": ["audio"]}, "output_modalities"),
        ({"voice": "alloy"}, "audio.output.voice"),
        ({"turn_detection": None}, "audio.input.turn_detection"),
        ({"input_audio_transcription": {"model": "whisper-1"}}, "audio.input.transcription"),
        ({"input_audio_format": "pcm16"}, "audio.input.format"),
        ({"max_response_output_tokens": 10}, "max_output_tokens"),
        ({"temperature": 0.8}, "no such setting"),
    ],
)
def test_from_dict_refuses_beta_fields_naming_the_ga_place(beta: dict[str, Any], ga: str) -> None:
    for strict in (False, True):
        with pytest.raises(SessionConfigError) as info:
            SessionConfig.from_dict({"type": "realtime", **beta}, strict=strict)
        assert info.value.code == "unknown_parameter"
        assert (ga in info.value.message) is not strict


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"type": "transcription"}, "session.type"),
        ({"type": "realtime", "audio": "loud"}, "session.audio"),
        ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "vad"}}}},
         "session.audio.input.turn_detection.type"),
        ({"type": "realtime", "tools": {"a": 1}}, "session.tools"),
        ({"type": "realtime", "tools": [{"type": "mcp"}]}, "session.tools[0].server_label"),
        ({"type": "realtime", "audio": {"output": {"voice": 3}}}, "session.audio.output.voice"),
        ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/opus"}}}},
         "session.audio.input.format.type"),
        (["type", "realtime"], "session"),
    ],
)
def test_from_dict_refuses_invalid_values(data: Any, param: str) -> None:
    with pytest.raises(SessionConfigError) as info:
        SessionConfig.from_dict(data)
    assert info.value.param == param


def test_transcription_sessions_are_refused_with_ahint() -> None:
    with pytest.raises(SessionConfigError, match="realtime sessions only"):
        SessionConfig.from_dict({"type": "transcription"})


def test_merged_takes_what_the_other_sets() -> None:
    base = SessionConfig(model="gpt-realtime-2.1", voice="marin", turn_detection=ServerVAD(),
                         noise_reduction="near_field", noise_reduction_strength=0.5,
                         tracing="auto", extra={"memory": {"a": 1}})
    update = SessionConfig(instructions="New.", turn_detection=None, truncation="disabled",
                           reasoning=Reasoning(effort="low"), extra={"memory": {"b": 2}})
    merged = base.merged(update)
    assert merged == SessionConfig(model="gpt-realtime-2.1", voice="marin", instructions="New.",
                                   turn_detection=None, noise_reduction="near_field",
                                   noise_reduction_strength=0.5, tracing="auto",
                                   truncation="disabled", reasoning=Reasoning(effort="low"),
                                   extra={"memory": {"a": 1, "b": 2}})
    assert base.merged(SessionConfig()) == base
    off = base.merged(SessionConfig(noise_reduction=None, tracing=None))
    assert off.noise_reduction is None and off.noise_reduction_strength is None
    assert off.tracing is None


def test_replace_revalidates() -> None:
    config = FULL.replace(voice="ash", turn_detection=None)
    assert config.voice is Voice.ASH and config.turn_detection is None
    assert config.model == FULL.model
    with pytest.raises(SessionConfigError):
        FULL.replace(speed=9)


def test_function_tool_defaults_and_from_dict() -> None:
    tool = FunctionTool(name="ping")
    assert tool.to_dict() == {"type": "function", "name": "ping", "description": "",
                              "parameters": {"type": "object", "properties": {}}}
    assert FunctionTool.from_dict(WEATHER.to_dict()) == WEATHER
    assert FunctionTool.from_dict({"name": "ping"}) == tool
    with pytest.raises(SessionConfigError):
        FunctionTool.from_dict({"type": "mcp", "server_label": "x"})
