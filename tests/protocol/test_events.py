"""Typed events and the wire format, checked against the official openai SDK types."""

from __future__ import annotations

import json
import re
import typing
from typing import Annotated, Any

import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import Field, TypeAdapter

from livetalk.errors import LocalProtocolError, RemoteProtocolError, ServerError
from livetalk.protocol import events as ev
from livetalk.protocol.wire import (
    BETA_ALIASES,
    EventParseError,
    new_event_id,
    parse_client_event,
    parse_server_event,
    serialize,
)

SDK_SERVER = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])
SDK_CLIENT = TypeAdapter(Annotated[RealtimeClientEvent, Field(discriminator="type")])

_IDS = {"response_id": "resp_C9zP", "item_id": "item_A1", "output_index": 0, "content_index": 0}
_USAGE = {
    "total_tokens": 412,
    "input_tokens": 301,
    "output_tokens": 111,
    "input_token_details": {
        "text_tokens": 120,
        "audio_tokens": 181,
        "image_tokens": 0,
        "cached_tokens": 64,
        "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 25, "audio_tokens": 86},
}
_SESSION = {
    "type": "realtime",
    "object": "realtime.session",
    "id": "sess_C9zOQ",
    "model": "gpt-realtime",
    "output_modalities": ["audio"],
    "instructions": "You are a helpful assistant.",
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": None,
    "truncation": "auto",
    "prompt": None,
    "expires_at": 0,
    "include": None,
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "noise_reduction": None,
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 200,
                "idle_timeout_ms": None,
                "create_response": True,
                "interrupt_response": True,
            },
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1},
    },
}
_ASSISTANT_ITEM = {
    "id": "item_A1",
    "object": "realtime.item",
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_audio", "transcript": "Hi there!"}],
}
_USER_ITEM = {
    "id": "item_U1",
    "object": "realtime.item",
    "type": "message",
    "status": "completed",
    "role": "user",
    "content": [{"type": "input_audio", "transcript": None}],
}
_RESPONSE = {
    "object": "realtime.response",
    "id": "resp_C9zP",
    "status": "completed",
    "status_details": None,
    "output": [_ASSISTANT_ITEM],
    "conversation_id": "conv_C9zO",
    "output_modalities": ["audio"],
    "max_output_tokens": "inf",
    "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
    "usage": _USAGE,
    "metadata": None,
}

SERVER_EXAMPLES: list[dict[str, Any]] = [
    {"type": "error", "event_id": "event_890", "error": {
        "type": "invalid_request_error", "code": "invalid_value",
        "message": "Invalid value: 'x'.", "param": "type", "event_id": "event_567"}},
    {"type": "session.created", "event_id": "event_1", "session": _SESSION},
    {"type": "session.updated", "event_id": "event_2", "session": _SESSION},
    {"type": "conversation.created", "event_id": "event_3",
     "conversation": {"id": "conv_C9zO", "object": "realtime.conversation"}},
    {"type": "conversation.item.created", "event_id": "event_4", "previous_item_id": "item_U0",
     "item": _USER_ITEM},
    {"type": "conversation.item.added", "event_id": "event_5", "previous_item_id": "item_U0",
     "item": _USER_ITEM},
    {"type": "conversation.item.done", "event_id": "event_6", "previous_item_id": "item_U0",
     "item": _USER_ITEM},
    {"type": "conversation.item.retrieved", "event_id": "event_7",
     "item": {**_USER_ITEM, "content": [{"type": "input_audio", "audio": "AAAA",
                                         "transcript": "hello"}]}},
    {"type": "conversation.item.truncated", "event_id": "event_8", "item_id": "item_A1",
     "content_index": 0, "audio_end_ms": 1500},
    {"type": "conversation.item.deleted", "event_id": "event_9", "item_id": "item_A1"},
    {"type": "conversation.item.input_audio_transcription.delta", "event_id": "event_10",
     "item_id": "item_U1", "content_index": 0, "delta": "Hel"},
    {"type": "conversation.item.input_audio_transcription.completed", "event_id": "event_11",
     "item_id": "item_U1", "content_index": 0, "transcript": "Hello, how are you?",
     "usage": {"type": "tokens", "total_tokens": 22, "input_tokens": 13, "output_tokens": 9,
               "input_token_details": {"text_tokens": 0, "audio_tokens": 13}}},
    {"type": "conversation.item.input_audio_transcription.failed", "event_id": "event_12",
     "item_id": "item_U1", "content_index": 0, "error": {
         "type": "transcription_error", "code": "audio_unintelligible",
         "message": "The audio could not be transcribed.", "param": None}},
    {"type": "conversation.item.input_audio_transcription.segment", "event_id": "event_13",
     "item_id": "item_U1", "content_index": 0, "id": "seg_0001", "text": "hello",
     "speaker": "A", "start": 0.0, "end": 0.6},
    {"type": "input_audio_buffer.speech_started", "event_id": "event_14",
     "audio_start_ms": 1000, "item_id": "item_U1"},
    {"type": "input_audio_buffer.speech_stopped", "event_id": "event_15",
     "audio_end_ms": 2000, "item_id": "item_U1"},
    {"type": "input_audio_buffer.committed", "event_id": "event_16",
     "previous_item_id": "item_A0", "item_id": "item_U1"},
    {"type": "input_audio_buffer.cleared", "event_id": "event_17"},
    {"type": "input_audio_buffer.timeout_triggered", "event_id": "event_18",
     "audio_start_ms": 13216, "audio_end_ms": 19232, "item_id": "item_U2"},
    {"type": "input_audio_buffer.dtmf_event_received", "event": "5", "received_at": 1761000000},
    {"type": "output_audio_buffer.started", "event_id": "event_19", "response_id": "resp_C9zP"},
    {"type": "output_audio_buffer.stopped", "event_id": "event_20", "response_id": "resp_C9zP"},
    {"type": "output_audio_buffer.cleared", "event_id": "event_21", "response_id": "resp_C9zP"},
    {"type": "response.created", "event_id": "event_22", "response": {
        **_RESPONSE, "status": "in_progress", "output": [], "usage": None}},
    {"type": "response.done", "event_id": "event_23", "response": _RESPONSE},
    {"type": "response.output_item.added", "event_id": "event_24", "response_id": "resp_C9zP",
     "output_index": 0, "item": {**_ASSISTANT_ITEM, "status": "in_progress", "content": []}},
    {"type": "response.output_item.done", "event_id": "event_25", "response_id": "resp_C9zP",
     "output_index": 0, "item": _ASSISTANT_ITEM},
    {"type": "response.content_part.added", "event_id": "event_26", **_IDS,
     "part": {"type": "audio", "transcript": ""}},
    {"type": "response.content_part.done", "event_id": "event_27", **_IDS,
     "part": {"type": "audio", "transcript": "Hi there!"}},
    {"type": "response.output_text.delta", "event_id": "event_28", **_IDS, "delta": "Hi"},
    {"type": "response.output_text.done", "event_id": "event_29", **_IDS, "text": "Hi there!"},
    {"type": "response.output_audio.delta", "event_id": "event_30", **_IDS, "delta": "AAAAAA=="},
    {"type": "response.output_audio.done", "event_id": "event_31", **_IDS},
    {"type": "response.output_audio_transcript.delta", "event_id": "event_32", **_IDS,
     "delta": "Hi"},
    {"type": "response.output_audio_transcript.done", "event_id": "event_33", **_IDS,
     "transcript": "Hi there!"},
    {"type": "response.function_call_arguments.delta", "event_id": "event_34",
     "response_id": "resp_C9zP", "item_id": "item_F1", "output_index": 0,
     "call_id": "call_Xy", "delta": "{\"city\":"},
    {"type": "response.function_call_arguments.done", "event_id": "event_35",
     "response_id": "resp_C9zP", "item_id": "item_F1", "output_index": 0,
     "call_id": "call_Xy", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
    {"type": "rate_limits.updated", "event_id": "event_36", "rate_limits": [
        {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 60},
        {"name": "tokens", "limit": 50000, "remaining": 49950, "reset_seconds": 60.5}]},
    {"type": "mcp_list_tools.in_progress", "event_id": "event_37", "item_id": "mcp_list_1"},
    {"type": "mcp_list_tools.completed", "event_id": "event_38", "item_id": "mcp_list_1"},
    {"type": "mcp_list_tools.failed", "event_id": "event_39", "item_id": "mcp_list_1"},
    {"type": "response.mcp_call_arguments.delta", "event_id": "event_40",
     "response_id": "resp_C9zP", "item_id": "mcp_call_1", "output_index": 0,
     "delta": "{\"q\":", "obfuscation": "x1"},
    {"type": "response.mcp_call_arguments.done", "event_id": "event_41",
     "response_id": "resp_C9zP", "item_id": "mcp_call_1", "output_index": 0,
     "arguments": "{\"q\":\"docs\"}"},
    {"type": "response.mcp_call.in_progress", "event_id": "event_42", "item_id": "mcp_call_1",
     "output_index": 0},
    {"type": "response.mcp_call.completed", "event_id": "event_43", "item_id": "mcp_call_1",
     "output_index": 0},
    {"type": "response.mcp_call.failed", "event_id": "event_44", "item_id": "mcp_call_1",
     "output_index": 0},
]

CLIENT_EXAMPLES: list[ev.ClientEvent] = [
    ev.SessionUpdate(event_id="event_c1", session={
        "type": "realtime", "instructions": "Be brief.",
        "audio": {"output": {"voice": "marin"}}}),
    ev.InputAudioBufferAppend(audio="AAAAAAAA"),
    ev.InputAudioBufferCommit(),
    ev.InputAudioBufferClear(event_id="event_c2"),
    ev.OutputAudioBufferClear(),
    ev.ConversationItemCreate.user_text("What's the weather?", previous_item_id="root"),
    ev.ConversationItemRetrieve(item_id="item_A1"),
    ev.ConversationItemTruncate(item_id="item_A1", content_index=0, audio_end_ms=1500),
    ev.ConversationItemDelete(item_id="item_A1"),
    ev.ResponseCreate(response={"output_modalities": ["text"], "instructions": "Answer."}),
    ev.ResponseCancel(response_id="resp_C9zP"),
]


def _camel(wire_name: str) -> str:
    return "".join(w.capitalize() for w in re.split(r"[._]", wire_name))


def _sdk_types(adapter_union: Any) -> set[str]:
    members = typing.get_args(typing.get_args(adapter_union)[0])
    return {typing.get_args(m.model_fields["type"].annotation)[0] for m in members}


def test_registries_match_the_sdk_unions() -> None:
    assert len(ev.SERVER_EVENTS) == 46
    assert len(ev.CLIENT_EVENTS) == 11
    assert set(ev.SERVER_EVENTS) == _sdk_types(RealtimeServerEvent)
    assert set(ev.CLIENT_EVENTS) == _sdk_types(RealtimeClientEvent)


def test_examples_cover_every_event() -> None:
    assert {d["type"] for d in SERVER_EXAMPLES} == set(ev.SERVER_EVENTS)
    assert {e.type for e in CLIENT_EXAMPLES} == set(ev.CLIENT_EVENTS)


@pytest.mark.parametrize("cls", [*ev.SERVER_EVENTS.values(), *ev.CLIENT_EVENTS.values()])
def test_class_names_follow_the_wire_names(cls: type[ev.Event]) -> None:
    expected = "ErrorEvent" if cls.type == "error" else _camel(cls.type)
    assert cls.__name__ == expected
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__dict__" not in dir(cls)  # slotted


@pytest.mark.parametrize("data", SERVER_EXAMPLES, ids=lambda d: d["type"])
def test_server_example_validates_and_round_trips(data: dict[str, Any]) -> None:
    SDK_SERVER.validate_python(data)
    event = parse_server_event(json.dumps(data))
    assert type(event) is ev.SERVER_EVENTS[data["type"]]
    assert event.to_dict() == data
    SDK_SERVER.validate_python(event.to_dict())
    assert parse_server_event(serialize(event)) == event
    assert parse_server_event(data) == event  # dicts are accepted as well as text


@pytest.mark.parametrize("event", CLIENT_EXAMPLES, ids=lambda e: e.type)
def test_client_example_validates_and_round_trips(event: ev.ClientEvent) -> None:
    wire = event.to_dict()
    SDK_CLIENT.validate_python(wire, strict=True)
    assert None not in wire.values()
    assert parse_client_event(serialize(event)) == event
    assert json.loads(serialize(event)) == wire


def test_client_to_dict_drops_unset_optionals() -> None:
    assert ev.ResponseCancel().to_dict() == {"type": "response.cancel"}
    assert ev.ResponseCreate().to_dict() == {"type": "response.create"}
    assert ev.InputAudioBufferCommit(event_id="e1").to_dict() == {
        "type": "input_audio_buffer.commit", "event_id": "e1"}


def test_function_call_output_helper_validates() -> None:
    event = ev.ConversationItemCreate.function_call_output("call_Xy", '{"temp": 21}')
    SDK_CLIENT.validate_python(event.to_dict(), strict=True)
    assert event.item == {"type": "function_call_output", "call_id": "call_Xy",
                          "output": '{"temp": 21}'}


def test_serialize_is_compact_json() -> None:
    text = serialize(ev.ConversationItemDelete(item_id="item_1", event_id="e"))
    assert text == '{"type":"conversation.item.delete","event_id":"e","item_id":"item_1"}'


def test_serialize_rejects_values_json_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError):
        serialize(ev.ResponseCreate(response={"metadata": b"bytes"}))
    with pytest.raises(LocalProtocolError):
        serialize(ev.ResponseCreate(response={"temperature": float("nan")}))


def test_new_event_id_is_random_hex() -> None:
    first, second = new_event_id(), new_event_id("evt_")
    assert re.fullmatch(r"event_[0-9a-f]{24}", first)
    assert re.fullmatch(r"evt_[0-9a-f]{24}", second)
    assert first != new_event_id()


def test_unknown_extra_fields_are_kept_but_not_compared() -> None:
    data = {"type": "response.output_text.delta", "event_id": "e", **_IDS, "delta": "x",
            "obfuscation": "abc", "future": {"a": 1}}
    event = parse_server_event(data)
    assert event.extra == {"obfuscation": "abc", "future": {"a": 1}}
    assert event.to_dict() == data
    assert event == parse_server_event({**data, "future": 2})


def test_unknown_server_event_is_kept_whole() -> None:
    data = {"type": "response.brand_new.delta", "event_id": "event_9", "stuff": [1, 2]}
    event = parse_server_event(json.dumps(data).encode())
    assert isinstance(event, ev.UnknownEvent)
    assert isinstance(event, ev.ServerEvent)
    assert event.type == "response.brand_new.delta"
    assert event.event_id == "event_9"
    assert event.to_dict() == data


@pytest.mark.parametrize(("beta", "ga"), sorted(BETA_ALIASES.items()))
def test_beta_names_parse_as_ga_events(beta: str, ga: str) -> None:
    data = next(d for d in SERVER_EXAMPLES if d["type"] == ga)
    event = parse_server_event({**data, "type": beta})
    assert type(event) is ev.SERVER_EVENTS[ga]
    assert event.to_dict() == data


def test_beta_conversation_item_created_is_its_own_class() -> None:
    data = next(d for d in SERVER_EXAMPLES if d["type"] == "conversation.item.created")
    event = parse_server_event(data)
    assert isinstance(event, ev.ConversationItemCreated)
    assert event.item_id == "item_U1" and event.role == "user"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        ("NaN", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"session.created"', "JSON object"),
        ("{}", "no 'type'"),
        ('{"type": 5}', "non-string 'type'"),
        ('{"type": "input_audio_buffer.speech_started", "audio_start_ms": 5}', "'item_id'"),
        ('{"type": "response.output_text.delta", "item_id": "i", "output_index": 0,'
         ' "content_index": 0, "delta": "x"}', "'response_id'"),
        ('{"type": "response.done", "event_id": "e"}', "'response'"),
        ('{"type": "conversation.item.added", "item": "nope"}', "'item'"),
        ('{"type": "session.created", "event_id": 7, "session": {}}', "'event_id'"),
    ],
)
def test_garbage_server_input_raises_remote_protocol_error(raw: str | bytes, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=re.escape(fragment)):
        parse_server_event(raw)


@pytest.mark.parametrize(
    ("raw", "field", "default"),
    [
        ('{"type": "input_audio_buffer.speech_started", "item_id": "i"}', "audio_start_ms", 0),
        ('{"type": "input_audio_buffer.speech_started", "item_id": "i", "audio_start_ms": null}',
         "audio_start_ms", 0),
        ('{"type": "response.output_text.delta", "response_id": "r", "item_id": "i",'
         ' "output_index": 0, "content_index": 0, "delta": 5}', "delta", ""),
        ('{"type": "conversation.item.truncated", "item_id": "i", "content_index": 0,'
         ' "audio_end_ms": 1.5}', "audio_end_ms", 0),
        ('{"type": "conversation.item.input_audio_transcription.completed", "item_id": "i",'
         ' "content_index": 0, "transcript": "hi"}', "usage", {}),
        ('{"type": "rate_limits.updated", "rate_limits": [1]}', "rate_limits", []),
    ],
)
def test_server_events_missing_non_essential_fields_get_defaults(
        raw: str, field: str, default: object) -> None:
    """Only type and ids are mandatory when a client reads the server (issue 11 item 4)."""
    event = parse_server_event(raw)
    assert getattr(event, field) == default


def test_client_events_stay_strict() -> None:
    with pytest.raises(EventParseError, match="'audio_end_ms'"):
        parse_client_event('{"type": "conversation.item.truncate", "item_id": "i",'
                           ' "content_index": 0, "audio_end_ms": 1.5}')


def test_parse_error_names_the_param_and_event_id() -> None:
    with pytest.raises(EventParseError) as info:
        parse_client_event('{"type": "conversation.item.delete", "event_id": "c_1"}')
    assert info.value.param == "item_id"
    assert info.value.event_id == "c_1"
    assert isinstance(info.value.__cause__, ev.InvalidEventError)


def test_unknown_client_event_is_an_error_naming_type() -> None:
    with pytest.raises(EventParseError, match="unknown client event type") as info:
        parse_client_event({"type": "transcription_session.update", "event_id": "c_2"})
    assert (info.value.param, info.value.event_id) == ("type", "c_2")


def test_constructing_an_invalid_event_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="audio_end_ms"):
        ev.ConversationItemTruncate(item_id="i", content_index=0, audio_end_ms=1.5)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="must be >= 0"):
        ev.ConversationItemTruncate(item_id="i", content_index=0, audio_end_ms=-1)
    with pytest.raises(LocalProtocolError, match="is required"):
        ev.ConversationItemDelete(item_id=None)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="clash"):
        ev.ResponseCancel(extra={"type": "x"})


def test_error_event_properties_and_exception() -> None:
    event = parse_server_event(SERVER_EXAMPLES[0])
    assert isinstance(event, ev.ErrorEvent)
    assert (event.code, event.param, event.error_type) == (
        "invalid_value", "type", "invalid_request_error")
    assert event.client_event_id == "event_567"
    exc = event.to_exception()
    assert isinstance(exc, ServerError)
    assert (exc.code, exc.event_id, exc.message) == ("invalid_value", "event_567",
                                                     "Invalid value: 'x'.")


def test_error_event_properties_tolerate_a_sparse_error() -> None:
    event = parse_server_event({"type": "error", "error": {"code": 3}})
    assert isinstance(event, ev.ErrorEvent)
    assert (event.code, event.message, event.param) == (None, "", None)


def test_response_done_properties() -> None:
    event = parse_server_event(next(d for d in SERVER_EXAMPLES if d["type"] == "response.done"))
    assert isinstance(event, ev.ResponseDone)
    assert event.response_id == "resp_C9zP"
    assert event.status == "completed"
    assert event.status_details is None
    assert event.output == [_ASSISTANT_ITEM]
    assert event.usage == ev.Usage(
        input_tokens=301, output_tokens=111, total_tokens=412, input_text_tokens=120,
        input_audio_tokens=181, cached_tokens=64, cached_text_tokens=64,
        output_text_tokens=25, output_audio_tokens=86)


def test_response_properties_tolerate_odd_shapes() -> None:
    event = ev.ResponseCreated(response={"id": 3, "output": "x", "usage": None,
                                         "status_details": []})
    assert (event.response_id, event.output, event.usage, event.status_details) == (
        None, [], None, None)


def test_usage_round_trips_and_adds() -> None:
    usage = ev.Usage.from_dict(_USAGE)
    assert usage.to_dict() == _USAGE
    total = usage + usage
    assert total.total_tokens == 824 and total.cached_text_tokens == 128
    assert ev.Usage.from_dict({"input_tokens": "7", "input_token_details": None}) == ev.Usage()
    assert usage.__add__(3) is NotImplemented  # type: ignore[operator]


def test_item_event_properties() -> None:
    event = parse_server_event(
        next(d for d in SERVER_EXAMPLES if d["type"] == "response.output_item.done"))
    assert isinstance(event, ev.ResponseOutputItemDone)
    assert (event.item_id, event.item_type, event.role, event.status) == (
        "item_A1", "message", "assistant", "completed")
