"""Property tests: no input makes the parsers raise anything but RemoteProtocolError, and no
sequence of well-typed server events makes the Conversation raise."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from livetalk.errors import RemoteProtocolError
from livetalk.protocol.conversation import Conversation
from livetalk.protocol.events import CLIENT_EVENTS, SERVER_EVENTS, ServerEvent
from livetalk.protocol.wire import (
    BETA_ALIASES,
    parse_client_event,
    parse_server_event,
    serialize,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

IDS = st.sampled_from(["item_1", "item_2", "item_3", "resp_1", "resp_2", "root", "call_1"])
WORDS = st.sampled_from(["message", "user", "assistant", "function_call", "input_audio",
                         "input_text", "output_audio", "completed", "cancelled", "incomplete",
                         "in_progress", "audio/pcmu"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | IDS
    | WORDS
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(["id", "type", "role", "status"]),
                      inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = sorted(
    {name for cls in [*SERVER_EVENTS.values(), *CLIENT_EVENTS.values()]
     for name in cls.__dataclass_fields__}
    | {"event_id", "item", "response", "session", "part"}
)
ALL_TYPES = sorted({*SERVER_EVENTS, *CLIENT_EVENTS, *BETA_ALIASES})


@st.composite
def event_like(draw: st.DrawFn) -> dict[str, Any]:
    """A dict shaped like an event: a known (or random) type and plausible field names."""
    obj: dict[str, Any] = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), JSON, max_size=8))
    obj["type"] = draw(st.sampled_from(ALL_TYPES) | st.text(max_size=10))
    return obj


@st.composite
def valid_server_event(draw: st.DrawFn) -> ServerEvent:
    """A server event whose top-level fields have the right types but arbitrary contents."""
    cls = draw(st.sampled_from(sorted(SERVER_EVENTS.values(), key=lambda c: c.type)))
    obj: dict[str, Any] = {"type": cls.type}
    for spec in dataclasses.fields(cls):
        if spec.name == "extra":
            continue
        kind = str(spec.type)
        if kind.startswith("str"):
            value: Any = draw(IDS | st.text(max_size=8))
        elif kind.startswith("int"):
            value = draw(st.integers(min_value=0, max_value=10**6))
        elif kind.startswith("float"):
            value = draw(st.floats(min_value=0, max_value=100))
        elif kind.startswith("list"):
            value = draw(st.lists(st.dictionaries(st.text(max_size=6), JSON, max_size=3),
                                  max_size=2))
        else:  # dict[str, Any]: the nested objects, with plausible keys
            value = draw(st.dictionaries(
                st.sampled_from(["id", "type", "role", "status", "content", "output", "usage",
                                 "audio", "transcript", "text", "status_details"]),
                JSON, max_size=6))
        obj[spec.name] = value
    return parse_server_event(obj)


def _parse_or_protocol_error(parse: Any, data: Any) -> Any:
    try:
        return parse(data)
    except RemoteProtocolError:
        return None


@FUZZ
@given(st.text())
def test_any_text_parses_or_raises_remote_protocol_error(text: str) -> None:
    _parse_or_protocol_error(parse_server_event, text)
    _parse_or_protocol_error(parse_client_event, text)


@FUZZ
@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_remote_protocol_error(data: bytes) -> None:
    _parse_or_protocol_error(parse_server_event, data)
    _parse_or_protocol_error(parse_client_event, data)


@FUZZ
@given(JSON)
def test_any_json_value_parses_or_raises_remote_protocol_error(value: Any) -> None:
    text = json.dumps(value)
    _parse_or_protocol_error(parse_server_event, text)
    _parse_or_protocol_error(parse_client_event, text)


@FUZZ
@given(event_like())
def test_event_like_objects_parse_or_raise_and_round_trip(obj: dict[str, Any]) -> None:
    for parse in (parse_server_event, parse_client_event):
        event = _parse_or_protocol_error(parse, json.dumps(obj))
        if event is not None:
            assert parse(serialize(event)) == event
            assert parse(event.to_dict()) == event


def test_deeply_nested_json_is_a_protocol_error_not_a_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert _parse_or_protocol_error(parse_server_event, deep) is None


@FUZZ
@given(st.lists(valid_server_event(), max_size=25))
def test_conversation_never_raises_on_well_typed_events(events: list[ServerEvent]) -> None:
    conv = Conversation(clock=lambda: 0.0)
    for event in events:
        conv.feed(event)
    conv.flush()
    assert len({t.item_id for t in conv.turns}) == len(conv.turns)  # each turn released once
