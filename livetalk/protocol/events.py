"""Typed Realtime API events (GA names), as frozen slotted dataclasses.

Theory of operation: every JSON event on the wire has a ``type``; each event class carries that
wire name as the class variable ``type`` and has one field per wire field, named exactly as on
the wire. Nested objects (``item``, ``response``, ``session``, ``part``, ``error``, ``usage``)
stay plain dicts; the properties on the classes read the parts a client needs from them without
ever raising on an unexpected shape.

Construction validates the types of the top-level fields and raises :class:`InvalidEventError`
(a :class:`~livetalk.errors.LocalProtocolError`) on a mismatch; :mod:`livetalk.protocol.wire`
turns that into :class:`~livetalk.errors.RemoteProtocolError` when the bad value came from the
peer.
Fields the classes do not declare are kept in ``extra`` (ignored by ``==``) and written back by
``to_dict()``, so nothing received is lost. The registries :data:`SERVER_EVENTS` and
:data:`CLIENT_EVENTS` map wire names to classes; the wire names themselves appear only once,
on the classes.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Final, Self

from livetalk.errors import InvalidEventError, ServerError

__all__ = [
    "CLIENT_EVENTS",
    "SERVER_EVENTS",
    "ClientEvent",
    "ConversationCreated",
    "ConversationItemAdded",
    "ConversationItemCreate",
    "ConversationItemCreated",
    "ConversationItemDelete",
    "ConversationItemDeleted",
    "ConversationItemDone",
    "ConversationItemInputAudioTranscriptionCompleted",
    "ConversationItemInputAudioTranscriptionDelta",
    "ConversationItemInputAudioTranscriptionFailed",
    "ConversationItemInputAudioTranscriptionSegment",
    "ConversationItemRetrieve",
    "ConversationItemRetrieved",
    "ConversationItemTruncate",
    "ConversationItemTruncated",
    "ErrorEvent",
    "Event",
    "InputAudioBufferAppend",
    "InputAudioBufferClear",
    "InputAudioBufferCleared",
    "InputAudioBufferCommit",
    "InputAudioBufferCommitted",
    "InputAudioBufferDtmfEventReceived",
    "InputAudioBufferSpeechStarted",
    "InputAudioBufferSpeechStopped",
    "InputAudioBufferTimeoutTriggered",
    "InvalidEventError",
    "McpListToolsCompleted",
    "McpListToolsFailed",
    "McpListToolsInProgress",
    "OutputAudioBufferClear",
    "OutputAudioBufferCleared",
    "OutputAudioBufferStarted",
    "OutputAudioBufferStopped",
    "RateLimitsUpdated",
    "ResponseCancel",
    "ResponseContentPartAdded",
    "ResponseContentPartDone",
    "ResponseCreate",
    "ResponseCreated",
    "ResponseDone",
    "ResponseFunctionCallArgumentsDelta",
    "ResponseFunctionCallArgumentsDone",
    "ResponseMcpCallArgumentsDelta",
    "ResponseMcpCallArgumentsDone",
    "ResponseMcpCallCompleted",
    "ResponseMcpCallFailed",
    "ResponseMcpCallInProgress",
    "ResponseOutputAudioDelta",
    "ResponseOutputAudioDone",
    "ResponseOutputAudioTranscriptDelta",
    "ResponseOutputAudioTranscriptDone",
    "ResponseOutputItemAdded",
    "ResponseOutputItemDone",
    "ResponseOutputTextDelta",
    "ResponseOutputTextDone",
    "ServerEvent",
    "SessionCreated",
    "SessionUpdate",
    "SessionUpdated",
    "UnknownEvent",
    "Usage",
]



# --- field validation ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    """How one declared field of an event class is checked."""

    name: str
    required: bool
    accepted: tuple[type, ...]
    nullable: bool
    item_type: type | None  # for list fields: the type every element must have

    def problem(self, value: Any) -> str | None:
        """Describe why ``value`` does not fit this field, or return None if it does."""
        if value is None:
            return None if self.nullable else "is required"
        if isinstance(value, bool) and bool not in self.accepted:
            return f"must be {_describe(self.accepted)}, got a boolean"
        if not isinstance(value, self.accepted):
            return f"must be {_describe(self.accepted)}, got {type(value).__name__}"
        if self.item_type is not None and not all(
            isinstance(v, self.item_type) for v in typing.cast(list[Any], value)
        ):
            return f"must be a list whose items are each {_describe((self.item_type,))}"
        return None

    @property
    def essential(self) -> bool:
        """Whether a lenient parse still needs this field: the ids and the objects holding them.

        Everything else a client can do without (defaulted when missing or mistyped), as the
        official agents SDKs do, so one event lacking e.g. ``usage`` never stalls a call.
        """
        return self.name == "id" or self.name.endswith("_id") or self.name in _CONTAINERS

    def default(self) -> Any:
        """The value a lenient parse uses for a missing or mistyped non-essential field."""
        if not self.required:
            return None
        kind = self.accepted[0]
        return kind()  # "", 0, {}, [], False


_CONTAINERS: Final = frozenset({"item", "response"})


_TYPE_NAMES: Final = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
                      dict: "an object", list: "a list"}


def _describe(accepted: tuple[type, ...]) -> str:
    if accepted == (int, float):
        return "a number"
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in accepted)


def _spec_for(name: str, annotation: Any, required: bool) -> _FieldSpec:
    nullable = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(members) != len(typing.get_args(annotation))
        (annotation,) = members
    origin = typing.get_origin(annotation) or annotation
    item_type: type | None = None
    if origin is list:
        (element,) = typing.get_args(annotation)
        item_type = typing.get_origin(element) or element
    accepted = (int, float) if origin is float else (origin,)
    return _FieldSpec(name, required, accepted, nullable, item_type)


_SPECS: Final[dict[type, tuple[_FieldSpec, ...]]] = {}


def _field_specs(cls: type) -> tuple[_FieldSpec, ...]:
    specs = _SPECS.get(cls)
    if specs is not None:
        return specs
    hints = typing.get_type_hints(cls)
    specs = _SPECS[cls] = tuple(
        _spec_for(
            f.name,
            hints[f.name],
            required=f.default is MISSING and f.default_factory is MISSING,
        )
        for f in fields(cls)
        if f.name != "extra"
    )
    return specs


# --- base classes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event.

    Attributes:
        type: the wire name (a class variable).
        event_id: the event's id; optional on client events, set by the server on its events.
        extra: fields the class does not declare, kept as received and written back by
            ``to_dict()``; ignored by ``==``.
    """

    type: ClassVar[str]

    event_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = {"type"}
        for spec in _field_specs(type(self)):
            names.add(spec.name)
            problem = spec.problem(getattr(self, spec.name))
            if problem is not None:
                raise InvalidEventError(
                    f"{self.type} event: field {spec.name!r} {problem}", param=spec.name
                )
        clash = names.intersection(self.extra)
        if clash:
            raise InvalidEventError(
                f"{self.type} event: extra fields {sorted(clash)} clash with declared fields"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, lenient: bool = False) -> Self:
        """Build the event from a wire dict, ignoring its ``type`` (the caller picked ``cls``).

        Declared fields are taken by name (``null`` reads as absent); every other key goes to
        ``extra``.

        Args:
            data: the wire dict (shared, not copied).
            lenient: a client reading the server's events: only the ids and the objects that
                carry them (``item``, ``response``) are required; any other field that is
                missing or mistyped gets its default ("", 0, {}, [] or None).

        Raises:
            InvalidEventError: a required field is missing or a field has the wrong type
                (with ``lenient``: only an essential one).
        """
        specs = _field_specs(cls)
        declared = {spec.name: spec for spec in specs}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in declared:
                if value is not None:
                    kwargs[key] = value
            elif key != "type":
                extra[key] = value
        if lenient:
            for spec in specs:
                if spec.essential:
                    continue
                value = kwargs.get(spec.name)
                if (value is None and spec.required) or (
                    value is not None and spec.problem(value) is not None
                ):
                    kwargs[spec.name] = spec.default()
        missing = [n for n, spec in declared.items() if spec.required and kwargs.get(n) is None]
        if missing:
            raise InvalidEventError(
                f"{cls.type} event: missing required field {missing[0]!r}", param=missing[0],
                reason="missing",
            )
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """Return the wire dict: ``type`` first, then every field that is not None, then extras.

        Nested dicts are shared with the event, not copied.
        """
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            if f.name != "extra":
                value = getattr(self, f.name)
                if value is not None:
                    out[f.name] = value
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerEvent(Event):
    """Base of the events the server sends."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientEvent(Event):
    """Base of the events the client sends."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(ServerEvent):
    """A server event whose ``type`` this version does not know; nothing of it is lost.

    Attributes:
        type: the wire name as received.
        data: the whole event as received (``type`` included).
    """

    type: str  # type: ignore[misc]  # the one event whose wire name varies per instance
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, lenient: bool = False) -> Self:
        """Wrap a wire dict whose ``type`` is a string no event class claims."""
        event_id = data.get("event_id")
        type_: Any = data.get("type")  # checked by the constructor
        return cls(
            type=type_,
            data=dict(data),
            event_id=event_id if isinstance(event_id, str) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the event as received."""
        return {**self.data, "type": self.type}


# --- helpers for the convenience properties ---------------------------------------------------


def _get_str(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def _get_int(obj: Any, key: str) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of a response (``response.done``), or a sum of them (``a + b``).

    Attributes:
        input_tokens, output_tokens, total_tokens: the totals.
        input_text_tokens, input_audio_tokens, input_image_tokens: the input by modality.
        cached_tokens: input tokens served from the cache, and their split by modality in
            cached_text_tokens, cached_audio_tokens and cached_image_tokens.
        output_text_tokens, output_audio_tokens: the output by modality.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    cached_tokens: int = 0
    cached_text_tokens: int = 0
    cached_audio_tokens: int = 0
    cached_image_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        """Read a wire ``usage`` object; missing or malformed counts read as 0."""
        details = data.get("input_token_details")
        cached = details.get("cached_tokens_details") if isinstance(details, dict) else None
        out_details = data.get("output_token_details")
        return cls(
            input_tokens=_get_int(data, "input_tokens"),
            output_tokens=_get_int(data, "output_tokens"),
            total_tokens=_get_int(data, "total_tokens"),
            input_text_tokens=_get_int(details, "text_tokens"),
            input_audio_tokens=_get_int(details, "audio_tokens"),
            input_image_tokens=_get_int(details, "image_tokens"),
            cached_tokens=_get_int(details, "cached_tokens"),
            cached_text_tokens=_get_int(cached, "text_tokens"),
            cached_audio_tokens=_get_int(cached, "audio_tokens"),
            cached_image_tokens=_get_int(cached, "image_tokens"),
            output_text_tokens=_get_int(out_details, "text_tokens"),
            output_audio_tokens=_get_int(out_details, "audio_tokens"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the wire ``usage`` object."""
        return {
            "total_tokens": self.total_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "input_token_details": {
                "text_tokens": self.input_text_tokens,
                "audio_tokens": self.input_audio_tokens,
                "image_tokens": self.input_image_tokens,
                "cached_tokens": self.cached_tokens,
                "cached_tokens_details": {
                    "text_tokens": self.cached_text_tokens,
                    "audio_tokens": self.cached_audio_tokens,
                    "image_tokens": self.cached_image_tokens,
                },
            },
            "output_token_details": {
                "text_tokens": self.output_text_tokens,
                "audio_tokens": self.output_audio_tokens,
            },
        }

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


# --- server events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(ServerEvent):
    """``error``: the server rejected a client event or failed; the session usually stays open."""

    type: ClassVar[str] = "error"
    error: dict[str, Any]

    @property
    def code(self) -> str | None:
        """``error.code``, e.g. ``"invalid_value"``, or None."""
        return _get_str(self.error, "code")

    @property
    def message(self) -> str:
        """``error.message`` (empty if the server sent none)."""
        return _get_str(self.error, "message") or ""

    @property
    def error_type(self) -> str | None:
        """``error.type``, e.g. ``"invalid_request_error"``."""
        return _get_str(self.error, "type")

    @property
    def param(self) -> str | None:
        """``error.param``: the offending parameter, e.g. ``"session.type"``."""
        return _get_str(self.error, "param")

    @property
    def client_event_id(self) -> str | None:
        """``error.event_id``: the id of the client event that caused the error."""
        return _get_str(self.error, "event_id")

    def to_exception(self) -> ServerError:
        """Return the error as a :class:`~livetalk.errors.ServerError` to raise."""
        return ServerError(
            self.message,
            code=self.code,
            error_type=self.error_type,
            param=self.param,
            event_id=self.client_event_id,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCreated(ServerEvent):
    """``session.created``: the first event of a session, with the full effective session."""

    type: ClassVar[str] = "session.created"
    session: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUpdated(ServerEvent):
    """``session.updated``: the reply to ``session.update``, with the full effective session."""

    type: ClassVar[str] = "session.updated"
    session: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationCreated(ServerEvent):
    """``conversation.created``: the default conversation exists (may never be sent)."""

    type: ClassVar[str] = "conversation.created"
    conversation: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class _ItemEvent(ServerEvent):
    """An event carrying a whole conversation ``item``."""

    item: dict[str, Any]

    @property
    def item_id(self) -> str | None:
        """``item.id``."""
        return _get_str(self.item, "id")

    @property
    def item_type(self) -> str | None:
        """``item.type``: ``message``, ``function_call``, ``function_call_output``, ..."""
        return _get_str(self.item, "type")

    @property
    def role(self) -> str | None:
        """``item.role`` for messages (``user``, ``assistant``, ``system``), else None."""
        return _get_str(self.item, "role")

    @property
    def status(self) -> str | None:
        """``item.status``: ``in_progress``, ``completed`` or ``incomplete``."""
        return _get_str(self.item, "status")


@dataclass(frozen=True, slots=True, kw_only=True)
class _ConversationItemEvent(_ItemEvent):
    previous_item_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemCreated(_ConversationItemEvent):
    """``conversation.item.created``: beta-era name still in the GA union; like ``added``."""

    type: ClassVar[str] = "conversation.item.created"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemAdded(_ConversationItemEvent):
    """``conversation.item.added``: an item entered the conversation (maybe still in progress)."""

    type: ClassVar[str] = "conversation.item.added"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemDone(_ConversationItemEvent):
    """``conversation.item.done``: the item is final (audio bytes left out)."""

    type: ClassVar[str] = "conversation.item.done"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemRetrieved(_ItemEvent):
    """``conversation.item.retrieved``: the reply to ``conversation.item.retrieve``."""

    type: ClassVar[str] = "conversation.item.retrieved"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemTruncated(ServerEvent):
    """``conversation.item.truncated``: an assistant audio item was cut at ``audio_end_ms``."""

    type: ClassVar[str] = "conversation.item.truncated"
    item_id: str
    content_index: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemDeleted(ServerEvent):
    """``conversation.item.deleted``: the item left the conversation."""

    type: ClassVar[str] = "conversation.item.deleted"
    item_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemInputAudioTranscriptionDelta(ServerEvent):
    """``conversation.item.input_audio_transcription.delta``: part of the user's transcript."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.delta"
    item_id: str
    content_index: int | None = None
    delta: str | None = None
    logprobs: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemInputAudioTranscriptionCompleted(ServerEvent):
    """``conversation.item.input_audio_transcription.completed``: the user's full transcript."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.completed"
    item_id: str
    content_index: int
    transcript: str
    usage: dict[str, Any]
    logprobs: list[dict[str, Any]] | None = None
    languages: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemInputAudioTranscriptionFailed(ServerEvent):
    """``conversation.item.input_audio_transcription.failed``: no transcript for this item."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.failed"
    item_id: str
    content_index: int
    error: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemInputAudioTranscriptionSegment(ServerEvent):
    """``conversation.item.input_audio_transcription.segment``: a diarized segment."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.segment"
    item_id: str
    content_index: int
    id: str
    text: str
    speaker: str
    start: float
    end: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferSpeechStarted(ServerEvent):
    """``input_audio_buffer.speech_started``: VAD heard speech; ``item_id`` is the future item."""

    type: ClassVar[str] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferSpeechStopped(ServerEvent):
    """``input_audio_buffer.speech_stopped``: VAD heard the end of speech."""

    type: ClassVar[str] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferCommitted(ServerEvent):
    """``input_audio_buffer.committed``: the buffered audio became user item ``item_id``."""

    type: ClassVar[str] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferCleared(ServerEvent):
    """``input_audio_buffer.cleared``: the reply to ``input_audio_buffer.clear``."""

    type: ClassVar[str] = "input_audio_buffer.cleared"


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferTimeoutTriggered(ServerEvent):
    """``input_audio_buffer.timeout_triggered``: server VAD's ``idle_timeout_ms`` fired."""

    type: ClassVar[str] = "input_audio_buffer.timeout_triggered"
    audio_start_ms: int
    audio_end_ms: int
    item_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferDtmfEventReceived(ServerEvent):
    """``input_audio_buffer.dtmf_event_received``: a keypad tone (SIP only; no event_id)."""

    type: ClassVar[str] = "input_audio_buffer.dtmf_event_received"
    event: str
    received_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _OutputAudioBufferEvent(ServerEvent):
    response_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAudioBufferStarted(_OutputAudioBufferEvent):
    """``output_audio_buffer.started``: the response's audio started to play (WebRTC/SIP)."""

    type: ClassVar[str] = "output_audio_buffer.started"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAudioBufferStopped(_OutputAudioBufferEvent):
    """``output_audio_buffer.stopped``: the response's audio fully played out (WebRTC/SIP)."""

    type: ClassVar[str] = "output_audio_buffer.stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAudioBufferCleared(_OutputAudioBufferEvent):
    """``output_audio_buffer.cleared``: the response's audio was cut (barge-in or clear)."""

    type: ClassVar[str] = "output_audio_buffer.cleared"


@dataclass(frozen=True, slots=True, kw_only=True)
class _ResponseEvent(ServerEvent):
    """An event carrying a whole ``response`` object."""

    response: dict[str, Any]

    @property
    def response_id(self) -> str | None:
        """``response.id``."""
        return _get_str(self.response, "id")

    @property
    def status(self) -> str | None:
        """``response.status``: ``in_progress``, ``completed``, ``cancelled``, ``failed``, ..."""
        return _get_str(self.response, "status")

    @property
    def status_details(self) -> dict[str, Any] | None:
        """``response.status_details`` (``type``, ``reason``, ``error``), or None."""
        details = self.response.get("status_details")
        return details if isinstance(details, dict) else None

    @property
    def usage(self) -> Usage | None:
        """``response.usage`` as :class:`Usage`, or None before the response is done."""
        usage = self.response.get("usage")
        return Usage.from_dict(usage) if isinstance(usage, dict) else None

    @property
    def output(self) -> list[dict[str, Any]]:
        """``response.output``: the items the response produced (no audio bytes)."""
        output = self.response.get("output")
        return [i for i in output if isinstance(i, dict)] if isinstance(output, list) else []


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCreated(_ResponseEvent):
    """``response.created``: a response started (status ``in_progress``)."""

    type: ClassVar[str] = "response.created"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseDone(_ResponseEvent):
    """``response.done``: a response ended, whatever the outcome; carries ``usage``."""

    type: ClassVar[str] = "response.done"


@dataclass(frozen=True, slots=True, kw_only=True)
class _OutputItemEvent(_ItemEvent):
    response_id: str
    output_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputItemAdded(_OutputItemEvent):
    """``response.output_item.added``: the response started an item."""

    type: ClassVar[str] = "response.output_item.added"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputItemDone(_OutputItemEvent):
    """``response.output_item.done``: the response finished an item."""

    type: ClassVar[str] = "response.output_item.done"


@dataclass(frozen=True, slots=True, kw_only=True)
class _ContentEvent(ServerEvent):
    response_id: str
    item_id: str
    output_index: int
    content_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseContentPartAdded(_ContentEvent):
    """``response.content_part.added``: ``part.type`` is ``"audio"`` or ``"text"``."""

    type: ClassVar[str] = "response.content_part.added"
    part: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseContentPartDone(_ContentEvent):
    """``response.content_part.done``: the content part is final."""

    type: ClassVar[str] = "response.content_part.done"
    part: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputTextDelta(_ContentEvent):
    """``response.output_text.delta`` (beta: ``response.text.delta``)."""

    type: ClassVar[str] = "response.output_text.delta"
    delta: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputTextDone(_ContentEvent):
    """``response.output_text.done`` (beta: ``response.text.done``): the full text."""

    type: ClassVar[str] = "response.output_text.done"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioDelta(_ContentEvent):
    """``response.output_audio.delta``: base64 audio (WebSocket only; WebRTC uses RTP)."""

    type: ClassVar[str] = "response.output_audio.delta"
    delta: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioDone(_ContentEvent):
    """``response.output_audio.done``: the model finished generating this audio part."""

    type: ClassVar[str] = "response.output_audio.done"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioTranscriptDelta(_ContentEvent):
    """``response.output_audio_transcript.delta``: part of what the model is saying."""

    type: ClassVar[str] = "response.output_audio_transcript.delta"
    delta: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioTranscriptDone(_ContentEvent):
    """``response.output_audio_transcript.done``: the full transcript of the audio part."""

    type: ClassVar[str] = "response.output_audio_transcript.done"
    transcript: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFunctionCallArgumentsDelta(ServerEvent):
    """``response.function_call_arguments.delta``: part of a function call's JSON arguments."""

    type: ClassVar[str] = "response.function_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFunctionCallArgumentsDone(ServerEvent):
    """``response.function_call_arguments.done``: the model wants ``name(arguments)`` run."""

    type: ClassVar[str] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitsUpdated(ServerEvent):
    """``rate_limits.updated``: ``rate_limits`` is a list of ``{name, limit, remaining, ...}``."""

    type: ClassVar[str] = "rate_limits.updated"
    rate_limits: list[dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class _McpItemEvent(ServerEvent):
    item_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class McpListToolsInProgress(_McpItemEvent):
    """``mcp_list_tools.in_progress``."""

    type: ClassVar[str] = "mcp_list_tools.in_progress"


@dataclass(frozen=True, slots=True, kw_only=True)
class McpListToolsCompleted(_McpItemEvent):
    """``mcp_list_tools.completed``."""

    type: ClassVar[str] = "mcp_list_tools.completed"


@dataclass(frozen=True, slots=True, kw_only=True)
class McpListToolsFailed(_McpItemEvent):
    """``mcp_list_tools.failed``."""

    type: ClassVar[str] = "mcp_list_tools.failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallArgumentsDelta(ServerEvent):
    """``response.mcp_call_arguments.delta``."""

    type: ClassVar[str] = "response.mcp_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int
    delta: str
    obfuscation: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallArgumentsDone(ServerEvent):
    """``response.mcp_call_arguments.done``."""

    type: ClassVar[str] = "response.mcp_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _McpCallEvent(_McpItemEvent):
    output_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallInProgress(_McpCallEvent):
    """``response.mcp_call.in_progress``."""

    type: ClassVar[str] = "response.mcp_call.in_progress"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallCompleted(_McpCallEvent):
    """``response.mcp_call.completed``."""

    type: ClassVar[str] = "response.mcp_call.completed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallFailed(_McpCallEvent):
    """``response.mcp_call.failed``."""

    type: ClassVar[str] = "response.mcp_call.failed"


# --- client events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUpdate(ClientEvent):
    """``session.update``: change the session; ``session`` needs ``type`` (see SessionConfig)."""

    type: ClassVar[str] = "session.update"
    session: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferAppend(ClientEvent):
    """``input_audio_buffer.append``: base64 audio in the session's input format."""

    type: ClassVar[str] = "input_audio_buffer.append"
    audio: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferCommit(ClientEvent):
    """``input_audio_buffer.commit``: turn the buffered audio into a user item (push-to-talk)."""

    type: ClassVar[str] = "input_audio_buffer.commit"


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferClear(ClientEvent):
    """``input_audio_buffer.clear``: drop the buffered input audio."""

    type: ClassVar[str] = "input_audio_buffer.clear"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAudioBufferClear(ClientEvent):
    """``output_audio_buffer.clear``: cut the audio playing out (WebRTC/SIP; after a cancel)."""

    type: ClassVar[str] = "output_audio_buffer.clear"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemCreate(ClientEvent):
    """``conversation.item.create``: add ``item`` after ``previous_item_id`` (or at the end)."""

    type: ClassVar[str] = "conversation.item.create"
    item: dict[str, Any]
    previous_item_id: str | None = None

    @classmethod
    def user_text(cls, text: str, *, previous_item_id: str | None = None) -> ConversationItemCreate:
        """Build the event adding a user text message; send ``response.create`` next."""
        item = {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": text}]}
        return cls(item=item, previous_item_id=previous_item_id)

    @classmethod
    def function_call_output(cls, call_id: str, output: str) -> ConversationItemCreate:
        """Build the event answering function call ``call_id``; send ``response.create`` next."""
        return cls(item={"type": "function_call_output", "call_id": call_id, "output": output})


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemRetrieve(ClientEvent):
    """``conversation.item.retrieve``: ask for the server's copy of an item, audio included."""

    type: ClassVar[str] = "conversation.item.retrieve"
    item_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemTruncate(ClientEvent):
    """``conversation.item.truncate``: cut assistant audio at ``audio_end_ms`` (WebSocket)."""

    type: ClassVar[str] = "conversation.item.truncate"
    item_id: str
    content_index: int
    audio_end_ms: int

    def __post_init__(self) -> None:
        Event.__post_init__(self)
        if self.content_index < 0 or self.audio_end_ms < 0:
            param = "content_index" if self.content_index < 0 else "audio_end_ms"
            raise InvalidEventError(
                f"conversation.item.truncate event: field {param!r} must be >= 0", param=param
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemDelete(ClientEvent):
    """``conversation.item.delete``: remove an item from the conversation."""

    type: ClassVar[str] = "conversation.item.delete"
    item_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCreate(ClientEvent):
    """``response.create``: start a response; ``response`` overrides settings for this one."""

    type: ClassVar[str] = "response.create"
    response: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCancel(ClientEvent):
    """``response.cancel``: stop the active (or the given) response."""

    type: ClassVar[str] = "response.cancel"
    response_id: str | None = None


SERVER_EVENTS: Final[dict[str, type[ServerEvent]]] = {
    cls.type: cls
    for cls in (
        ErrorEvent,
        SessionCreated,
        SessionUpdated,
        ConversationCreated,
        ConversationItemCreated,
        ConversationItemAdded,
        ConversationItemDone,
        ConversationItemRetrieved,
        ConversationItemTruncated,
        ConversationItemDeleted,
        ConversationItemInputAudioTranscriptionDelta,
        ConversationItemInputAudioTranscriptionCompleted,
        ConversationItemInputAudioTranscriptionFailed,
        ConversationItemInputAudioTranscriptionSegment,
        InputAudioBufferSpeechStarted,
        InputAudioBufferSpeechStopped,
        InputAudioBufferCommitted,
        InputAudioBufferCleared,
        InputAudioBufferTimeoutTriggered,
        InputAudioBufferDtmfEventReceived,
        OutputAudioBufferStarted,
        OutputAudioBufferStopped,
        OutputAudioBufferCleared,
        ResponseCreated,
        ResponseDone,
        ResponseOutputItemAdded,
        ResponseOutputItemDone,
        ResponseContentPartAdded,
        ResponseContentPartDone,
        ResponseOutputTextDelta,
        ResponseOutputTextDone,
        ResponseOutputAudioDelta,
        ResponseOutputAudioDone,
        ResponseOutputAudioTranscriptDelta,
        ResponseOutputAudioTranscriptDone,
        ResponseFunctionCallArgumentsDelta,
        ResponseFunctionCallArgumentsDone,
        RateLimitsUpdated,
        McpListToolsInProgress,
        McpListToolsCompleted,
        McpListToolsFailed,
        ResponseMcpCallArgumentsDelta,
        ResponseMcpCallArgumentsDone,
        ResponseMcpCallInProgress,
        ResponseMcpCallCompleted,
        ResponseMcpCallFailed,
    )
}
"""Wire name -> class, for the 46 server events of the GA ``RealtimeServerEvent`` union."""

CLIENT_EVENTS: Final[dict[str, type[ClientEvent]]] = {
    cls.type: cls
    for cls in (
        SessionUpdate,
        InputAudioBufferAppend,
        InputAudioBufferCommit,
        InputAudioBufferClear,
        OutputAudioBufferClear,
        ConversationItemCreate,
        ConversationItemRetrieve,
        ConversationItemTruncate,
        ConversationItemDelete,
        ResponseCreate,
        ResponseCancel,
    )
}
"""Wire name -> class, for the 11 client events of the GA ``RealtimeClientEvent`` union."""
