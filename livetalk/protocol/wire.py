"""JSON on the wire: parse text frames into typed events and serialize events back.

Parsing is total: anything that is not a well-formed event raises :class:`EventParseError`
(a :class:`~livetalk.errors.RemoteProtocolError`) and nothing else; a well-formed server event
of a type this version does not know becomes an :class:`~livetalk.protocol.events.UnknownEvent`,
so a new server event never breaks a call. Beta-era names (:data:`BETA_ALIASES`) are read as
their GA events.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar

from livetalk.errors import LocalProtocolError, RemoteProtocolError
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


class EventParseError(RemoteProtocolError):
    """A frame that is not a valid event.

    Attributes:
        param: the offending field (``"type"`` for a missing or unknown type), or None when the
            frame is not a JSON object at all.
        event_id: the frame's ``event_id`` when it could be read (a server answering a bad
            client event echoes it in ``error.event_id``), else None.
    """

    def __init__(
        self, message: str, *, param: str | None = None, event_id: str | None = None
    ) -> None:
        self.param = param
        self.event_id = event_id
        super().__init__(message)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load(data: str | bytes | bytearray | Mapping[str, Any]) -> dict[str, Any]:
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
        raise EventParseError(f"event {problem}", param="type", event_id=event_id)
    return type_, event_id


def _build(cls: type[_E], obj: dict[str, Any], event_id: str | None) -> _E:
    try:
        return cls.from_dict(obj)
    except InvalidEventError as exc:
        raise EventParseError(str(exc), param=exc.param, event_id=event_id) from exc


def parse_server_event(data: str | bytes | bytearray | Mapping[str, Any]) -> ServerEvent:
    """Parse one frame from the server into a typed event.

    Args:
        data: the JSON text of a data-channel or WebSocket message, or an already decoded dict.

    Returns:
        The event of the frame's type (beta names give the GA class), or
        :class:`~livetalk.protocol.events.UnknownEvent` for a type this version does not know.

    Raises:
        EventParseError: invalid JSON, not an object, no string ``type``, or a known type with
            a missing or mistyped field.
    """
    obj = _load(data)
    type_, event_id = _type_of(obj)
    cls = SERVER_EVENTS.get(BETA_ALIASES.get(type_, type_))
    if cls is None:
        return UnknownEvent.from_dict(obj)
    return _build(cls, obj, event_id)


def parse_client_event(data: str | bytes | bytearray | Mapping[str, Any]) -> ClientEvent:
    """Parse one frame from a client into a typed event (what the local server receives).

    Raises:
        EventParseError: as :func:`parse_server_event`, and also for an unknown ``type``
            (``param`` is ``"type"``): a server must answer it with an ``invalid_value`` error.
    """
    obj = _load(data)
    type_, event_id = _type_of(obj)
    cls = CLIENT_EVENTS.get(type_)
    if cls is None:
        raise EventParseError(
            f"unknown client event type {type_!r}; supported: {', '.join(sorted(CLIENT_EVENTS))}",
            param="type",
            event_id=event_id,
        )
    return _build(cls, obj, event_id)


def serialize(event: Event) -> str:
    """Return the compact JSON text of an event, ready to send as one text frame.

    Raises:
        LocalProtocolError: the event holds something JSON cannot carry (bytes, NaN, ...).
    """
    try:
        return json.dumps(
            event.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"{event.type} event cannot be serialized: {exc}") from exc


def new_event_id(prefix: str = "event_") -> str:
    """Return a fresh random id such as ``event_3f2a...`` (24 hex digits after the prefix)."""
    return prefix + secrets.token_hex(12)
