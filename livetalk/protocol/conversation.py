"""Conversation state: turns assembled from server events, released in conversation order.

Theory of operation. :class:`Conversation` is fed every server event and answers with
:data:`Update` objects. It keeps the conversation's items keyed by id, ordered by the
``previous_item_id`` that ``input_audio_buffer.committed`` and ``conversation.item.added``
carry (``"root"`` puts an item first; an item whose predecessor is unknown goes last).

An item becomes a *turn* when it is a user or assistant message, and the turn is *ready* when:

* user audio: its input transcription completed (the transcript is the text) or failed
  (status ``failed``); without transcription in the session, at ``conversation.item.done``;
* user text: when the item is added as ``completed`` or at ``conversation.item.done``;
* assistant: when the item is done (``conversation.item.done`` or
  ``response.output_item.done``) *and* its response is done, since ``response.done`` decides
  whether the reply was ``cancelled``, ``failed`` or ``incomplete``. A response ending also
  finishes every unfinished item of it, with the text received so far.

A ready turn is released only when no earlier turn is still pending: the user's transcript
often arrives after the assistant has replied, and the reply waits for it. Transcript deltas,
finished responses and function calls are released at once. :meth:`Conversation.flush`
releases everything still held when the call ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Final

from livetalk.protocol.events import (
    ConversationItemAdded,
    ConversationItemCreated,
    ConversationItemDeleted,
    ConversationItemDone,
    ConversationItemInputAudioTranscriptionCompleted,
    ConversationItemInputAudioTranscriptionDelta,
    ConversationItemInputAudioTranscriptionFailed,
    ConversationItemTruncated,
    InputAudioBufferCleared,
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputAudioBufferTimeoutTriggered,
    ResponseContentPartDone,
    ResponseCreated,
    ResponseDone,
    ResponseFunctionCallArgumentsDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioTranscriptDelta,
    ResponseOutputAudioTranscriptDone,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
    Usage,
)

__all__ = [
    "Conversation",
    "FunctionCallDone",
    "ResponseFinished",
    "Role",
    "TranscriptDelta",
    "Turn",
    "TurnStatus",
    "Update",
    "Usage",
]


class Role(StrEnum):
    """Who spoke a turn."""

    USER = "user"
    ASSISTANT = "assistant"


class TurnStatus(StrEnum):
    """How a turn ended."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"  # the reply was interrupted (barge-in or response.cancel)
    FAILED = "failed"  # the reply failed, or the user's transcription failed
    INCOMPLETE = "incomplete"  # cut short (token limit, content filter) or the call ended


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """A piece of live transcript, released as soon as it arrives (not ordered).

    Attributes:
        role: ``user`` (input transcription) or ``assistant`` (audio transcript or text).
        item_id: the item the text belongs to.
        delta: the new text.
        response_id: the assistant's response, None for the user.
    """

    role: Role
    item_id: str
    delta: str
    response_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """A finished user or assistant message, released in conversation order.

    Attributes:
        role: ``user`` or ``assistant``.
        item_id: the conversation item.
        text: the transcript or text (what was received so far for a cancelled reply).
        status: see :class:`TurnStatus`.
        completed_at: clock time when the turn became final.
        response_id: the response that produced an assistant turn.
        previous_item_id: the item before it in the conversation.
        started_at: clock time of speech start (user) or of the item's first event.
        usage: an assistant turn's response usage.
        audio_ms: speech length (user, from VAD) or audio length (assistant, when known).
        audio: a user turn's speech as sent, int16 mono 24 kHz numpy array, attached by the
            call when it kept the audio it sent (None otherwise; never compared).
    """

    role: Role
    item_id: str
    text: str
    status: TurnStatus
    completed_at: float
    response_id: str | None = None
    previous_item_id: str | None = None
    started_at: float | None = None
    usage: Usage | None = None
    audio_ms: float | None = None
    audio: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ResponseFinished:
    """A response ended (``response.done``), whatever the outcome.

    Attributes:
        response_id: the response.
        status: ``completed``, ``cancelled``, ``failed`` or ``incomplete``.
        status_details: ``{type, reason, error?}`` for a response that did not complete.
        usage: its token usage.
    """

    response_id: str
    status: str
    status_details: dict[str, Any] | None
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class FunctionCallDone:
    """The model asks for a function call; answer it with its ``call_id``.

    Send ``ConversationItemCreate.function_call_output(call_id, output)`` and then
    ``ResponseCreate()`` to let the model continue.
    """

    call_id: str
    name: str
    arguments: str
    item_id: str
    response_id: str


Update = TranscriptDelta | Turn | ResponseFinished | FunctionCallDone
"""What :meth:`Conversation.feed` returns."""


class _Kind(Enum):
    USER_AUDIO = "user audio"
    USER_TEXT = "user text"
    ASSISTANT = "assistant"
    OTHER = "other"  # system messages, function calls and outputs, MCP items: not turns


_BYTES_PER_MS: Final = {"audio/pcm": 48, "audio/pcmu": 8, "audio/pcma": 8}
_TEXT_KEYS: Final = ("transcript", "text")


@dataclass(slots=True)
class _Item:
    id: str
    kind: _Kind
    previous_item_id: str | None = None
    anchored: bool = False  # placed by a previous_item_id, not just appended
    response_id: str | None = None
    started_at: float | None = None
    deltas: dict[int, list[str]] = field(default_factory=dict)
    done_text: dict[int, str] = field(default_factory=dict)
    content_text: dict[int, str] = field(default_factory=dict)
    status: str | None = None
    done: bool = False
    awaiting_transcript: bool = False
    audio_bytes: int = 0
    audio_ms: float | None = None
    turn: Turn | None = None  # set when ready
    emitted: bool = False

    def text(self) -> str:
        indexes = sorted({*self.deltas, *self.done_text, *self.content_text})
        return "".join(self._part(i) for i in indexes)

    def _part(self, index: int) -> str:
        if index in self.done_text:
            return self.done_text[index]
        if index in self.content_text:
            return self.content_text[index]
        return "".join(self.deltas.get(index, ()))


def _kind_of(item: dict[str, Any]) -> _Kind:
    if item.get("type") != "message":
        return _Kind.OTHER
    role = item.get("role")
    if role == "assistant":
        return _Kind.ASSISTANT
    if role != "user":
        return _Kind.OTHER
    content = item.get("content")
    parts = content if isinstance(content, list) else []
    if any(isinstance(p, dict) and p.get("type") == "input_audio" for p in parts):
        return _Kind.USER_AUDIO
    return _Kind.USER_TEXT


def _content_text(item: dict[str, Any]) -> dict[int, str]:
    """Text per content index of an item: transcripts of audio parts, text of text parts."""
    content = item.get("content")
    out: dict[int, str] = {}
    for index, part in enumerate(content if isinstance(content, list) else []):
        if isinstance(part, dict):
            for key in _TEXT_KEYS:
                if isinstance(part.get(key), str):
                    out[index] = part[key]
                    break
    return out


class Conversation:
    """Sans-I/O conversation state fed with server events.

    Args:
        clock: the time source for ``started_at`` / ``completed_at`` (monotonic seconds).

    Call :meth:`feed` with every server event in arrival order and route the returned updates;
    call :meth:`flush` once at the end of the call.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[str, _Item] = {}
        self._order: list[str] = []
        self._transcription_enabled = False
        self._output_format = "audio/pcm"
        self._speech: dict[str, tuple[float, int | None, int | None]] = {}
        self._active: dict[str, None] = {}  # response ids, oldest first
        self._finished: dict[str, tuple[str, Usage | None]] = {}  # response id -> status, usage
        self._usage_total = Usage()
        self._last_assistant_item_id: str | None = None
        self._changed = False  # a turn became ready or the order changed since the last release
        self.turns: list[Turn] = []
        """Every turn released so far, in release order."""

    # --- public state ---------------------------------------------------------------------

    @property
    def usage_total(self) -> Usage:
        """The sum of the usage of every finished response."""
        return self._usage_total

    @property
    def response_active(self) -> bool:
        """True between a ``response.created`` and its ``response.done``."""
        return bool(self._active)

    @property
    def active_response_id(self) -> str | None:
        """The most recent response still running, or None."""
        return next(reversed(self._active), None)

    @property
    def last_assistant_item_id(self) -> str | None:
        """The most recent assistant message item (the one to cut on a barge-in)."""
        return self._last_assistant_item_id

    def assistant_text(self, item_id: str) -> str:
        """The transcript or text of an assistant item received so far ("" if unknown)."""
        item = self._items.get(item_id)
        return item.text() if item is not None and item.kind is _Kind.ASSISTANT else ""

    # --- feeding --------------------------------------------------------------------------

    def feed(self, event: ServerEvent) -> list[Update]:
        """Apply one server event and return the updates it releases, in order."""
        updates: list[Update] = []
        match event:
            case SessionCreated() | SessionUpdated():
                self._on_session(event.session)
            case InputAudioBufferSpeechStarted():
                self._speech[event.item_id] = (self._clock(), event.audio_start_ms, None)
            case InputAudioBufferSpeechStopped():
                started_at, start_ms, _ = self._speech.get(event.item_id, (None, None, None))
                self._speech[event.item_id] = (
                    self._clock() if started_at is None else started_at,
                    start_ms,
                    event.audio_end_ms,
                )
            case InputAudioBufferTimeoutTriggered():
                self._speech[event.item_id] = (
                    self._clock(), event.audio_start_ms, event.audio_end_ms
                )
            case InputAudioBufferCleared():
                self._speech.clear()
            case InputAudioBufferCommitted():
                item = self._item(event.item_id, _Kind.USER_AUDIO)
                self._place(item, event.previous_item_id)
            case ConversationItemAdded() | ConversationItemCreated():
                self._on_item(event.item, event.previous_item_id, done=False)
            case ConversationItemDone():
                self._on_item(event.item, event.previous_item_id, done=True)
            case ConversationItemDeleted():
                self._on_deleted(event.item_id)
            case ConversationItemInputAudioTranscriptionDelta():
                item = self._item(event.item_id, _Kind.USER_AUDIO)
                item.awaiting_transcript = True
                if event.delta:
                    item.deltas.setdefault(event.content_index or 0, []).append(event.delta)
                    updates.append(TranscriptDelta(Role.USER, event.item_id, event.delta))
            case ConversationItemInputAudioTranscriptionCompleted():
                item = self._item(event.item_id, _Kind.USER_AUDIO)
                item.done_text[event.content_index] = event.transcript
                self._ready(item, TurnStatus.COMPLETED)
            case ConversationItemInputAudioTranscriptionFailed():
                item = self._item(event.item_id, _Kind.USER_AUDIO)
                item.deltas.clear()
                self._ready(item, TurnStatus.FAILED)
            case ResponseCreated():
                if event.response_id is not None:
                    self._active[event.response_id] = None
            case ResponseOutputItemAdded():
                self._on_output_item(event.item, event.response_id, done=False)
            case ResponseOutputItemDone():
                self._on_output_item(event.item, event.response_id, done=True)
            case ResponseOutputAudioTranscriptDelta() | ResponseOutputTextDelta():
                item = self._assistant(event.item_id, event.response_id)
                item.deltas.setdefault(event.content_index, []).append(event.delta)
                updates.append(
                    TranscriptDelta(Role.ASSISTANT, event.item_id, event.delta, event.response_id)
                )
            case ResponseOutputAudioTranscriptDone():
                item = self._assistant(event.item_id, event.response_id)
                item.done_text[event.content_index] = event.transcript
            case ResponseOutputTextDone():
                item = self._assistant(event.item_id, event.response_id)
                item.done_text[event.content_index] = event.text
            case ResponseContentPartDone():
                item = self._assistant(event.item_id, event.response_id)
                for key in _TEXT_KEYS:
                    if isinstance(event.part.get(key), str):
                        item.done_text[event.content_index] = event.part[key]
                        break
            case ResponseOutputAudioDelta():
                item = self._assistant(event.item_id, event.response_id)
                item.audio_bytes += len(event.delta) * 3 // 4 - event.delta[-2:].count("=")
                item.audio_ms = item.audio_bytes / _BYTES_PER_MS.get(self._output_format, 48)
            case ConversationItemTruncated():
                if event.item_id in self._items:
                    self._items[event.item_id].audio_ms = float(event.audio_end_ms)
            case ResponseFunctionCallArgumentsDone():
                updates.append(
                    FunctionCallDone(
                        event.call_id, event.name, event.arguments, event.item_id,
                        event.response_id,
                    )
                )
            case ResponseDone():
                finished = self._on_response_done(event)
                updates.extend(self._release())
                if finished is not None:
                    updates.append(finished)
                return updates
        updates.extend(self._release())
        return updates

    def flush(self) -> list[Turn]:
        """Release every turn still held or pending, in conversation order (call at the end).

        Pending user turns (and replies whose response never finished) get status
        ``incomplete`` with the text received so far.
        """
        for item_id in self._order:
            item = self._items[item_id]
            if item.kind is not _Kind.OTHER and item.turn is None:
                self._ready(item, TurnStatus.INCOMPLETE)
        return self._release()

    # --- internals --------------------------------------------------------------------------

    def _on_session(self, session: dict[str, Any]) -> None:
        audio = session.get("audio")
        audio_in = audio.get("input") if isinstance(audio, dict) else None
        audio_out = audio.get("output") if isinstance(audio, dict) else None
        if isinstance(audio_in, dict):
            self._transcription_enabled = isinstance(audio_in.get("transcription"), dict)
        fmt = audio_out.get("format") if isinstance(audio_out, dict) else None
        if isinstance(fmt, dict) and isinstance(fmt.get("type"), str):
            self._output_format = fmt["type"]

    def _item(self, item_id: str, kind: _Kind) -> _Item:
        """The item with this id, created (appended at the end) if new."""
        item = self._items.get(item_id)
        if item is None:
            item = _Item(item_id, kind, started_at=self._clock())
            self._items[item_id] = item
            self._order.append(item_id)
            if kind is _Kind.USER_AUDIO:
                self._attach_speech(item)
            elif kind is _Kind.ASSISTANT:
                self._last_assistant_item_id = item_id
        return item

    def _attach_speech(self, item: _Item) -> None:
        speech = self._speech.pop(item.id, None)
        if speech is not None:
            item.started_at, start_ms, end_ms = speech
            if start_ms is not None and end_ms is not None:
                item.audio_ms = float(end_ms - start_ms)

    def _assistant(self, item_id: str, response_id: str | None) -> _Item:
        item = self._item(item_id, _Kind.ASSISTANT)
        if response_id is not None:
            item.response_id = response_id
        return item

    def _place(self, item: _Item, previous_item_id: str | None) -> None:
        """Put an item after ``previous_item_id`` (once; later statements do not move it)."""
        if previous_item_id is None or item.anchored:
            return
        item.previous_item_id = previous_item_id
        item.anchored = True
        self._changed = True
        self._order.remove(item.id)
        if previous_item_id == "root":
            self._order.insert(0, item.id)
        elif previous_item_id in self._items and previous_item_id != item.id:
            self._order.insert(self._order.index(previous_item_id) + 1, item.id)
        else:
            self._order.append(item.id)

    def _on_item(self, data: dict[str, Any], previous_item_id: str | None, done: bool) -> None:
        item_id = data.get("id")
        if not isinstance(item_id, str):
            return
        kind = _kind_of(data)
        item = self._item(item_id, kind)
        if item.kind is _Kind.USER_TEXT and kind is _Kind.USER_AUDIO:
            item.kind = kind
        self._place(item, previous_item_id)
        status = data.get("status")
        if isinstance(status, str):
            item.status = status
        item.done = item.done or done
        if done or status == "completed":
            item.content_text.update(_content_text(data))
        if item.turn is not None:
            return
        if item.kind is _Kind.USER_AUDIO:
            if done and not (self._transcription_enabled or item.awaiting_transcript):
                self._ready(item, TurnStatus.COMPLETED)
        elif item.kind is _Kind.USER_TEXT or (
            item.kind is _Kind.ASSISTANT and item.response_id is None
        ):
            if done or status == "completed":
                self._ready(item, _item_status(item.status))
        elif item.kind is _Kind.ASSISTANT and done:
            self._maybe_ready_reply(item)

    def _on_output_item(self, data: dict[str, Any], response_id: str, done: bool) -> None:
        item_id = data.get("id")
        if not isinstance(item_id, str) or _kind_of(data) is not _Kind.ASSISTANT:
            return
        item = self._assistant(item_id, response_id)
        status = data.get("status")
        if isinstance(status, str):
            item.status = status
        if done:
            item.done = True
            item.content_text.update(_content_text(data))
            self._maybe_ready_reply(item)

    def _maybe_ready_reply(self, item: _Item) -> None:
        if item.turn is None and item.response_id in self._finished:
            self._ready(item, _reply_status(item, self._finished[item.response_id][0]))

    def _on_response_done(self, event: ResponseDone) -> ResponseFinished | None:
        response_id = event.response_id
        if response_id is None:
            return None
        self._active.pop(response_id, None)
        status = event.status or TurnStatus.COMPLETED.value
        usage = event.usage
        if usage is not None:
            self._usage_total = self._usage_total + usage
        self._finished[response_id] = (status, usage)
        for data in event.output:  # the final state of its items, some maybe never seen
            self._on_output_item(data, response_id, done=True)
        for item in self._items.values():
            if item.kind is _Kind.ASSISTANT and item.response_id == response_id:
                self._ready(item, _reply_status(item, status))
        return ResponseFinished(response_id, status, event.status_details, usage)

    def _on_deleted(self, item_id: str) -> None:
        if self._items.pop(item_id, None) is not None:
            self._order.remove(item_id)
            self._changed = True

    def _ready(self, item: _Item, status: TurnStatus) -> None:
        if item.turn is not None:
            return
        self._changed = True
        usage = None
        if item.response_id is not None and item.response_id in self._finished:
            usage = self._finished[item.response_id][1]
        item.turn = Turn(
            role=Role.USER if item.kind is not _Kind.ASSISTANT else Role.ASSISTANT,
            item_id=item.id,
            text=item.text(),
            status=status,
            completed_at=self._clock(),
            response_id=item.response_id,
            previous_item_id=item.previous_item_id,
            started_at=item.started_at,
            usage=usage,
            audio_ms=item.audio_ms,
        )

    def _release(self) -> list[Turn]:
        out: list[Turn] = []
        if not self._changed:
            return out
        self._changed = False
        for item_id in self._order:
            item = self._items[item_id]
            if item.kind is _Kind.OTHER or item.emitted:
                continue
            if item.turn is None:
                break
            item.emitted = True
            self.turns.append(item.turn)
            out.append(item.turn)
        return out


def _item_status(status: str | None) -> TurnStatus:
    return TurnStatus.INCOMPLETE if status == "incomplete" else TurnStatus.COMPLETED


def _reply_status(item: _Item, response_status: str) -> TurnStatus:
    """An assistant turn's status: the response's outcome wins over the item's status."""
    if response_status in (TurnStatus.CANCELLED, TurnStatus.FAILED, TurnStatus.INCOMPLETE):
        return TurnStatus(response_status)
    if not item.done:
        return TurnStatus.INCOMPLETE
    return _item_status(item.status)
