"""JSON on the wire: the one codec of both roles (h11's rule: it does not know which side
it is on; the caller says which direction it reads).

:func:`load` turns a text frame into a dict (once per frame: the transports call it, taps and
the typed parse share its result); :func:`parse_server_event` / :func:`parse_client_event`
turn a dict (or text) into a typed event; :func:`serialize` / :func:`dumps` turn events or
dicts back into compact text frames.

Parsing is total: anything that is not a well-formed event raises :class:`EventParseError`
(a :class:`~livetalk.errors.RemoteProtocolError`) and nothing else. Server events are read
leniently (only ``type``, the ids and the objects carrying them are required; other fields
that are missing or mistyped get defaults), so one odd event never stalls a client; client
events are read strictly, because a server must answer a bad one with an ``error``. A
well-formed server event of a type this version does not know becomes an
:class:`~livetalk.protocol.events.UnknownEvent`, so a new server event never breaks a call.
Beta-era names (:data:`BETA_ALIASES`) are read as their GA events.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar

from livetalk.errors import EventParseError, LocalProtocolError
from livetalk.protocol.events import (
    CLIENT_EVENTS,
    SERVER_EVENTS,
    ClientEvent,
    Event,
    InvalidEventError,
    ServerEvent,
    UnknownEvent,
)

__all__ = [
    "BETA_ALIASES",
    "EventParseError",
    "dumps",
    "load",
    "new_event_id",
    "parse_client_event",
    "parse_server_event",
    "serialize",
]

BETA_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "response.text.delta": "response.output_text.delta",
        "response.text.done": "response.output_text.done",
        "response.audio.delta": "response.output_audio.delta",
        "response.audio.done": "response.output_audio.done",
        "response.audio_transcript.delta": "response.output_audio_transcript.delta",
        "response.audio_transcript.done": "response.output_audio_transcript.done",
    }
)
"""Beta-era server event names -> their GA names (``conversation.item.created`` is GA too)."""

_E = TypeVar("_E", bound=Event)



def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load(data: str | bytes | bytearray | Mapping[str, Any]) -> dict[str, Any]:
    """Decode one text frame into a JSON object (a dict is returned as it is, not copied).

    Raises:
        EventParseError: the frame is not JSON, or not a JSON object.
    """
    if isinstance(data, dict):
        return data
    if isinstance(data, Mapping):
        obj: Any = dict(data)
    else:
        try:
            obj = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, TypeError, RecursionError) as exc:
            raise EventParseError(f"event is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EventParseError(f"event must be a JSON object, got {type(obj).__name__}")
    return obj


def _type_of(obj: dict[str, Any]) -> tuple[str, str | None]:
    event_id = obj.get("event_id")
    event_id = event_id if isinstance(event_id, str) else None
    type_ = obj.get("type")
    if not isinstance(type_, str):
        problem = "has no 'type'" if type_ is None else "has a non-string 'type'"
        raise EventParseError(f"event {problem}", param="type", event_id=event_id,
                              reason="missing" if type_ is None else "type")
    return type_, event_id


def _build(cls: type[_E], obj: dict[str, Any], event_id: str | None, lenient: bool) -> _E:
    try:
        return cls.from_dict(obj, lenient=lenient)
    except InvalidEventError as exc:
        raise EventParseError(str(exc), param=exc.param, event_id=event_id,
                              reason=exc.reason) from exc


def parse_server_event(data: str | bytes | bytearray | Mapping[str, Any]) -> ServerEvent:
    """Parse one frame from the server into a typed event.

    Args:
        data: the JSON text of a data-channel or WebSocket message, or an already decoded dict.

    Returns:
        The event of the frame's type (beta names give the GA class), or
        :class:`~livetalk.protocol.events.UnknownEvent` for a type this version does not know.

    Raises:
        EventParseError: invalid JSON, not an object, no string ``type``, or a known type
            without one of its ids (other missing or mistyped fields get defaults).
    """
    obj = load(data)
    type_, event_id = _type_of(obj)
    cls = SERVER_EVENTS.get(BETA_ALIASES.get(type_, type_))
    if cls is None:
        return UnknownEvent.from_dict(obj)
    return _build(cls, obj, event_id, lenient=True)


def parse_client_event(data: str | bytes | bytearray | Mapping[str, Any]) -> ClientEvent:
    """Parse one frame from a client into a typed event (what the local server receives).

    Raises:
        EventParseError: as :func:`parse_server_event`, and also for an unknown ``type``
            (``param`` is ``"type"``): a server must answer it with an ``invalid_value`` error.
    """
    obj = load(data)
    type_, event_id = _type_of(obj)
    cls = CLIENT_EVENTS.get(type_)
    if cls is None:
        raise EventParseError(
            f"unknown client event type {type_!r}; supported: {', '.join(sorted(CLIENT_EVENTS))}",
            param="type",
            event_id=event_id,
            reason="unknown_type",
        )
    return _build(cls, obj, event_id, lenient=False)


def serialize(event: Event) -> str:
    """Return the compact JSON text of an event, ready to send as one text frame.

    Raises:
        LocalProtocolError: the event holds something JSON cannot carry (bytes, NaN, ...).
    """
    return dumps(event.to_dict())


def dumps(data: Mapping[str, Any]) -> str:
    """Return the compact JSON text of a wire dict (the frame :func:`serialize` would send).

    Raises:
        LocalProtocolError: the dict holds something JSON cannot carry (bytes, NaN, ...).
    """
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(
            f"{data.get('type', 'an')} event cannot be serialized: {exc}"
        ) from exc


def new_event_id(prefix: str = "event_") -> str:
    """Return a fresh random id such as ``event_3f2a...`` (24 hex digits after the prefix)."""
    return prefix + secrets.token_hex(12)
