"""Conversation state: turns assembled from server events, released in conversation order.

Theory of operation. :class:`Conversation` is fed every server event (and, with
:meth:`Conversation.tick`, the passing of time) and answers with :data:`Update` objects. It
keeps the conversation's items keyed by id, ordered by the ``previous_item_id`` that
``input_audio_buffer.committed`` and ``conversation.item.added`` carry (``"root"`` puts an item
first; an item whose predecessor is unknown goes last).

An item becomes a *turn* when it is a user or assistant message, and the turn is *ready* when:

* user audio: its input transcription completed (the transcript is the text) or failed
  (status ``failed``); without transcription in the session, at ``conversation.item.done``.
  A transcription that never ends is given up after ``transcript_timeout_s`` (status
  ``incomplete``), so one lost event never holds the turns behind it;
* user text: when the item is added as ``completed`` or at ``conversation.item.done``;
* assistant: when the item and its response are done (``response.done`` decides whether the
  reply was ``cancelled``, ``failed`` or ``incomplete``) *and its audio stopped playing*:

  - :attr:`Playout.SERVER` (WebRTC): the server streams the audio in real time, usually long
    after generation ended, and says when it ends: ``output_audio_buffer.stopped`` (played
    out) or ``.cleared`` (cut by a barge-in or ``output_audio_buffer.clear``; the server then
    truncates the item itself and sends no second ``response.done``);
  - :attr:`Playout.CLIENT` (WebSocket): the client plays the audio deltas as they arrive, so
    the reply ends when its audio has had time to play (clock time since its first delta) or
    when the client cuts it (:meth:`Conversation.cut`, after a barge-in);
  - :attr:`Playout.NONE`: at ``response.done`` (no playout model).

  A reply cut while playing is ``cancelled``: its ``audio_ms`` is what played, its ``text``
  what the user most likely heard, and ``generated_text`` everything the model generated.
  The heard text is estimated from the played time: proportionally to the audio length when
  it is known (WebSocket: the audio bytes received), otherwise by the speaking rate measured
  on this conversation's replies that played out (characters per second of playout),
  starting from :data:`DEFAULT_CHARS_PER_S`; the estimate is cut at a word boundary.

A ready turn is released only when no earlier turn is still pending: the user's transcript
often arrives after the assistant has replied, and the reply waits for it. Transcript deltas,
finished responses and function calls are released at once. :meth:`Conversation.flush`
releases everything still held when the call ends. Released turns are numbered in order
(:attr:`Turn.index`), continuing from ``first_index`` (a reconnected call continues the count).
"""

from __future__ import annotations

import dataclasses
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
    OutputAudioBufferCleared,
    OutputAudioBufferStarted,
    OutputAudioBufferStopped,
    ResponseContentPartAdded,
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
    "DEFAULT_CHARS_PER_S",
    "DEFAULT_TRANSCRIPT_TIMEOUT_S",
    "Conversation",
    "FunctionCallDone",
    "Playout",
    "ResponseFinished",
    "Role",
    "TranscriptDelta",
    "Turn",
    "TurnStatus",
    "Update",
    "Usage",
]

DEFAULT_TRANSCRIPT_TIMEOUT_S: Final = 15.0
"""How long a committed user turn waits for its transcription before it is released as
``incomplete`` (the API's transcription usually ends within a second or two of the commit)."""

DEFAULT_CHARS_PER_S: Final = 14.0
"""Speaking rate assumed for the heard-text estimate until the conversation has measured its
own (about 150 words a minute)."""

_SPEECH_COMMIT_GRACE_S: Final = 5.0
"""A ``speech_stopped`` that no commit follows within this long stops counting as pending."""

_AUDIO_START_GRACE_S: Final = 5.0
"""Server playout: a reply with audio whose ``output_audio_buffer.started`` has not come this
long after its ``response.done``, while no other reply plays, is taken as never played."""


class Role(StrEnum):
    """Who spoke a turn."""

    USER = "user"
    ASSISTANT = "assistant"


class TurnStatus(StrEnum):
    """How a turn ended."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"  # the reply was interrupted (barge-in, response.cancel, clear)
    FAILED = "failed"  # the reply failed, or the user's transcription failed
    INCOMPLETE = "incomplete"  # cut short (token limit, content filter, transcript timeout,
    # or the call ended first)


class Playout(StrEnum):
    """Who plays the assistant's audio, and so when an assistant turn has ended."""

    SERVER = "server"  # WebRTC/SIP: output_audio_buffer.started/.stopped/.cleared
    CLIENT = "client"  # WebSocket: the client plays the deltas as they arrive
    NONE = "none"  # no playout: a reply ends at response.done


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
        text: the transcript or text. A user audio turn has text only when the session
            transcribes its input (``audio.input.transcription``). For a reply cut while
            playing: what the user most likely heard (see ``generated_text``).
        status: see :class:`TurnStatus`.
        completed_at: clock time when the turn became final.
        index: the turn's place in the conversation (0, 1, 2...), stable across reconnects.
        call_id: the call the turn happened in (None over WebSocket).
        response_id: the response that produced an assistant turn.
        previous_item_id: the item before it in the conversation.
        started_at: clock time of speech start (user) or of the item's first event.
        usage: an assistant turn's response usage.
        audio_ms: speech length (user, from VAD) or the audio that played (assistant, when
            known).
        audio_start_ms, audio_end_ms: a user turn's speech span in the input stream, from the
            server's (or local) turn detection; None for other turns.
        generated_text: an assistant turn's whole text as generated (equal to ``text`` unless
            the reply was cut while playing); None for user turns.
        audio: a user turn's speech as sent, int16 mono 24 kHz numpy array, when the call
            kept the audio it sent (None otherwise; never compared).
    """

    role: Role
    item_id: str
    text: str
    status: TurnStatus
    completed_at: float
    index: int = 0
    call_id: str | None = None
    response_id: str | None = None
    previous_item_id: str | None = None
    started_at: float | None = None
    usage: Usage | None = None
    audio_ms: float | None = None
    audio_start_ms: float | None = None
    audio_end_ms: float | None = None
    generated_text: str | None = None
    audio: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ResponseFinished:
    """A response ended (``response.done``), whatever the outcome.

    Attributes:
        response_id: the response.
        status: ``completed``, ``cancelled``, ``failed`` or ``incomplete``.
        status_details: ``{type, reason, error?}`` for a response that did not complete.
        usage: its token usage.
        metadata: the response's ``metadata`` as the client set it in ``response.create``.
    """

    response_id: str
    status: str
    status_details: dict[str, Any] | None
    usage: Usage | None
    metadata: dict[str, Any] | None = None


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

AudioLookup = Callable[[float, float], Any]
"""``(start_ms, end_ms) -> audio``: the sent audio of a span of the input stream."""


class _Kind(Enum):
    USER_AUDIO = "user audio"
    USER_TEXT = "user text"
    ASSISTANT = "assistant"
    OTHER = "other"  # system messages, function calls and outputs, MCP items: not turns


_BYTES_PER_MS: Final = {"audio/pcm": 48, "audio/pcmu": 8, "audio/pcma": 8}
_TEXT_KEYS: Final = ("transcript", "text")


@dataclass(slots=True)
class _Speech:
    started_at: float
    start_ms: float | None = None
    end_ms: float | None = None
    stopped_at: float | None = None


@dataclass(slots=True)
class _Item:
    id: str
    kind: _Kind
    created_at: float
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
    transcript_deadline: float | None = None
    speech: _Speech | None = None
    audio_bytes: int = 0
    audio_ms: float | None = None
    first_audio_at: float | None = None  # client playout: when its first audio delta came
    played_ms: float | None = None  # set when the reply was cut while playing
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


@dataclass(slots=True)
class _Response:
    status: str | None = None  # set at response.done
    done_at: float | None = None
    has_audio: bool = False  # an audio content part: server playout will start it
    usage: Usage | None = None
    audio_started_at: float | None = None  # output_audio_buffer.started (server playout)
    audio_ended_at: float | None = None  # .stopped or .cleared
    cleared: bool = False


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


def heard_text(text: str, played_ms: float, *, total_ms: float | None,
               chars_per_s: float = DEFAULT_CHARS_PER_S) -> str:
    """Estimate the part of a reply's ``text`` that was heard in ``played_ms`` of audio.

    With the audio's ``total_ms`` known, the share of characters is the share of the audio
    played; otherwise ``chars_per_s`` of speech are assumed. The result ends at a word boundary
    (the word being spoken when the audio stopped counts as heard).
    """
    if not text or played_ms <= 0:
        return ""
    if total_ms is not None and total_ms > 0:
        chars = len(text) * min(1.0, played_ms / total_ms)
    else:
        chars = chars_per_s * played_ms / 1000
    if chars >= len(text):
        return text
    cut = text.find(" ", max(0, int(chars)))
    return text if cut < 0 else text[:cut].rstrip()


class Conversation:
    """Sans-I/O conversation state fed with server events.

    Args:
        clock: the time source for ``started_at`` / ``completed_at`` and the timeouts
            (monotonic seconds).
        playout: who plays the reply audio (:class:`Playout`); decides when a reply ends.
        speed: how fast the media clock runs against ``clock`` (audio fed at 4x real time
            plays 4x faster: used for the client's playout estimate).
        transcript_timeout_s: how long a user turn waits for its transcription.
        audio_lookup: ``(start_ms, end_ms) -> audio`` attaching the sent audio to user turns.
        first_index: the :attr:`Turn.index` of the first turn released.

    Call :meth:`feed` with every server event in arrival order and route the returned updates;
    call :meth:`tick` at :meth:`next_deadline`; call :meth:`flush` once at the end of the call.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        playout: Playout = Playout.NONE,
        speed: float = 1.0,
        transcript_timeout_s: float = DEFAULT_TRANSCRIPT_TIMEOUT_S,
        audio_lookup: AudioLookup | None = None,
        first_index: int = 0,
    ) -> None:
        self._clock = clock
        self.playout = playout
        self._speed = speed
        self._transcript_timeout_s = transcript_timeout_s
        self._audio_lookup = audio_lookup
        self._next_index = first_index
        self.call_id: str | None = None
        """Stamped on every turn released (set it once the call id is known)."""
        self._items: dict[str, _Item] = {}
        self._order: list[str] = []
        self._transcription_enabled = False
        self._output_format = "audio/pcm"
        self._speech: dict[str, _Speech] = {}
        self._responses: dict[str, _Response] = {}
        self._active: dict[str, None] = {}  # response ids, oldest first
        self._usage_total = Usage()
        self._last_assistant_item_id: str | None = None
        self._muted: set[str] = set()
        self._speech_chars = 0.0  # measured speaking rate: characters over seconds played
        self._speech_seconds = 0.0
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

    @property
    def next_index(self) -> int:
        """The index the next released turn gets."""
        return self._next_index

    @property
    def speech_pending(self) -> bool:
        """The user is speaking, or stopped and the turn is not committed yet."""
        return bool(self._speech)

    @property
    def turns_pending(self) -> bool:
        """Some user or assistant message has not been released as a turn yet."""
        return any(item.kind is not _Kind.OTHER and not item.emitted
                   for item in self._items.values())

    @property
    def chars_per_s(self) -> float:
        """The speaking rate used for heard-text estimates (measured once replies played)."""
        if self._speech_seconds >= 1.0:
            return self._speech_chars / self._speech_seconds
        return DEFAULT_CHARS_PER_S

    def assistant_speaking(self, now: float | None = None) -> bool:
        """Reply audio is playing: between ``output_audio_buffer.started`` and its end
        (server playout), or within a reply's audio length since its first delta (client)."""
        if self.playout is Playout.SERVER:
            return any(r.audio_started_at is not None and r.audio_ended_at is None
                       for r in self._responses.values())
        if self.playout is Playout.CLIENT:
            return self.playing_item(now) is not None
        return False

    def playing_item(self, now: float | None = None) -> tuple[str, float] | None:
        """Client playout: ``(item_id, played_ms)`` of the reply whose audio is playing."""
        if self.playout is not Playout.CLIENT:
            return None
        now = self._clock() if now is None else now
        for item_id in reversed(self._order):
            item = self._items[item_id]
            if item.kind is not _Kind.ASSISTANT or item.first_audio_at is None:
                continue
            if item.played_ms is not None or item.audio_ms is None:
                return None
            played = (now - item.first_audio_at) * self._speed * 1000
            return (item_id, played) if played < item.audio_ms else None
        return None

    def assistant_text(self, item_id: str) -> str:
        """The transcript or text of an assistant item received so far ("" if unknown)."""
        item = self._items.get(item_id)
        return item.text() if item is not None and item.kind is _Kind.ASSISTANT else ""

    def has_message(self, response_id: str) -> bool:
        """Whether the response produced an assistant message (a turn to come)."""
        return any(item.kind is _Kind.ASSISTANT and item.response_id == response_id
                   for item in self._items.values())

    def mute(self, item_id: str) -> None:
        """Never release the item ``item_id`` as a turn (history replayed after a reconnect)."""
        self._muted.add(item_id)

    def note_speech(self, item_id: str, start_ms: float, end_ms: float) -> None:
        """Record the speech span of a turn about to be committed (local turn detection)."""
        now = self._clock()
        self._speech[item_id] = _Speech(now, start_ms, end_ms, now)

    def received_audio_ms(self, item_id: str) -> float:
        """Milliseconds of an assistant item's audio received as deltas (0 if none)."""
        item = self._items.get(item_id)
        return (item.audio_ms or 0.0) if item is not None else 0.0

    # --- feeding --------------------------------------------------------------------------

    def feed(self, event: ServerEvent) -> list[Update]:
        """Apply one server event and return the updates it releases, in order."""
        updates: list[Update] = []
        now = self._clock()
        match event:
            case SessionCreated() | SessionUpdated():
                self._on_session(event.session)
            case InputAudioBufferSpeechStarted():
                self._speech[event.item_id] = _Speech(now, float(event.audio_start_ms))
            case InputAudioBufferSpeechStopped():
                speech = self._speech.setdefault(event.item_id, _Speech(now))
                speech.end_ms = float(event.audio_end_ms)
                speech.stopped_at = now
            case InputAudioBufferTimeoutTriggered():
                self._speech[event.item_id] = _Speech(
                    now, float(event.audio_start_ms), float(event.audio_end_ms), now)
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
                    self._responses.setdefault(event.response_id, _Response())
            case ResponseContentPartAdded():
                if event.part.get("type") == "audio":
                    self._responses.setdefault(event.response_id, _Response()).has_audio = True
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
                if item.first_audio_at is None:
                    item.first_audio_at = now
                item.audio_bytes += len(event.delta) * 3 // 4 - event.delta[-2:].count("=")
                item.audio_ms = item.audio_bytes / _BYTES_PER_MS.get(self._output_format, 48)
            case OutputAudioBufferStarted():
                resp = self._responses.setdefault(event.response_id, _Response())
                resp.audio_started_at = now
            case OutputAudioBufferStopped() | OutputAudioBufferCleared():
                self._on_audio_end(event.response_id, now,
                                   cleared=isinstance(event, OutputAudioBufferCleared))
            case ConversationItemTruncated():
                truncated = self._items.get(event.item_id)
                if truncated is not None:
                    truncated.played_ms = float(event.audio_end_ms)
                    self._try_ready(truncated, now)
            case ResponseFunctionCallArgumentsDone():
                updates.append(
                    FunctionCallDone(
                        event.call_id, event.name, event.arguments, event.item_id,
                        event.response_id,
                    )
                )
            case ResponseDone():
                finished = self._on_response_done(event, now)
                updates.extend(self._release())
                if finished is not None:
                    updates.append(finished)
                return updates
        updates.extend(self._release())
        return updates

    def cut(self, item_id: str, played_ms: float) -> None:
        """Client playout: the reply ``item_id`` stopped playing after ``played_ms``.

        Call it when a barge-in or :meth:`~livetalk.call.Call.interrupt` cuts local playback;
        the turn is then ``cancelled`` with the text heard. Updates come from the next feed
        or :meth:`tick`.
        """
        item = self._items.get(item_id)
        if item is not None and item.played_ms is None:
            total = item.audio_ms
            item.played_ms = max(0.0, played_ms if total is None else min(played_ms, total))
            self._try_ready(item, self._clock())

    def next_deadline(self) -> float | None:
        """The earliest clock time at which :meth:`tick` has something to do, or None."""
        deadlines: list[float] = []
        for item in self._items.values():
            if item.turn is not None:
                continue
            if item.transcript_deadline is not None:
                deadlines.append(item.transcript_deadline)
            end = self._client_playout_end(item)
            if end is not None:
                deadlines.append(end)
            resp = self._responses.get(item.response_id or "")
            if (self.playout is Playout.SERVER and resp is not None and resp.has_audio
                    and resp.done_at is not None and resp.audio_started_at is None):
                deadlines.append(resp.done_at + _AUDIO_START_GRACE_S)
        deadlines.extend(s.stopped_at + _SPEECH_COMMIT_GRACE_S
                         for s in self._speech.values() if s.stopped_at is not None)
        return min(deadlines, default=None)

    def tick(self, now: float | None = None) -> list[Update]:
        """Apply the passing of time: transcript timeouts, speech that was never committed,
        client playout that ended. Returns the turns this releases."""
        now = self._clock() if now is None else now
        for key, speech in list(self._speech.items()):
            if speech.stopped_at is not None and now >= speech.stopped_at + _SPEECH_COMMIT_GRACE_S:
                del self._speech[key]
        for item in list(self._items.values()):
            if item.turn is not None:
                continue
            if item.transcript_deadline is not None and now >= item.transcript_deadline:
                self._ready(item, TurnStatus.INCOMPLETE)
            else:
                self._try_ready(item, now)
        released: list[Update] = []
        released.extend(self._release())
        return released

    def flush(self) -> list[Turn]:
        """Release every turn still held or pending, in conversation order (call at the end).

        Pending user turns (and replies whose response never finished) get status
        ``incomplete`` with the text received so far; replies still playing end as they are.
        """
        now = self._clock()
        for item_id in self._order:
            item = self._items[item_id]
            if item.kind is not _Kind.OTHER and item.turn is None:
                self._try_ready(item, now, force=True)
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
            now = self._clock()
            item = _Item(item_id, kind, now, started_at=now, emitted=item_id in self._muted)
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
            item.speech = speech
            item.started_at = speech.started_at
            if speech.start_ms is not None and speech.end_ms is not None:
                item.audio_ms = speech.end_ms - speech.start_ms

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
            self._attach_speech(item)
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
            if done:
                if self._transcription_enabled or item.awaiting_transcript:
                    if item.transcript_deadline is None:
                        item.transcript_deadline = self._clock() + self._transcript_timeout_s
                else:
                    self._ready(item, TurnStatus.COMPLETED)
        elif item.kind is _Kind.USER_TEXT or (
            item.kind is _Kind.ASSISTANT and item.response_id is None
        ):
            if done or status == "completed":
                self._ready(item, _item_status(item.status))
        elif item.kind is _Kind.ASSISTANT and done:
            self._try_ready(item, self._clock())

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
            self._try_ready(item, self._clock())

    def _on_response_done(self, event: ResponseDone, now: float) -> ResponseFinished | None:
        response_id = event.response_id
        if response_id is None:
            return None
        self._active.pop(response_id, None)
        resp = self._responses.setdefault(response_id, _Response())
        resp.status = event.status or TurnStatus.COMPLETED.value
        resp.done_at = now
        resp.usage = event.usage
        if resp.usage is not None:
            self._usage_total = self._usage_total + resp.usage
        for data in event.output:  # the final state of its items, some maybe never seen
            self._on_output_item(data, response_id, done=True)
        for item in self._items.values():
            if item.kind is _Kind.ASSISTANT and item.response_id == response_id:
                item.done = True
                self._try_ready(item, now)
        metadata = event.response.get("metadata")
        return ResponseFinished(response_id, resp.status, event.status_details, resp.usage,
                                metadata if isinstance(metadata, dict) else None)

    def _on_audio_end(self, response_id: str, now: float, *, cleared: bool) -> None:
        resp = self._responses.setdefault(response_id, _Response())
        if resp.audio_ended_at is not None:
            return
        resp.audio_ended_at = now
        resp.cleared = cleared
        for item in self._items.values():
            if item.kind is _Kind.ASSISTANT and item.response_id == response_id:
                self._try_ready(item, now)

    def _client_playout_end(self, item: _Item) -> float | None:
        if (self.playout is not Playout.CLIENT or item.kind is not _Kind.ASSISTANT
                or item.first_audio_at is None or item.audio_ms is None
                or item.played_ms is not None):
            return None
        return item.first_audio_at + item.audio_ms / 1000 / self._speed

    def _playout_over(self, item: _Item, resp: _Response, now: float) -> bool:
        if self.playout is Playout.SERVER:
            if resp.audio_ended_at is not None:
                return True
            if resp.audio_started_at is not None:
                return False
            # not started: a reply queued behind another one starts when that one ends
            return not resp.has_audio or (
                not self.assistant_speaking() and resp.done_at is not None
                and now >= resp.done_at + _AUDIO_START_GRACE_S)
        if self.playout is Playout.CLIENT:
            end = self._client_playout_end(item)
            return end is None or now >= end
        return True

    def _try_ready(self, item: _Item, now: float, *, force: bool = False) -> None:
        """Make an assistant message (or, with ``force``, any message) a turn if it ended."""
        if item.turn is not None:
            return
        if item.kind is not _Kind.ASSISTANT:
            if force:
                self._ready(item, TurnStatus.INCOMPLETE)
            return
        if item.response_id is None:
            if force:
                self._ready(item, _item_status(item.status))
            return
        resp = self._responses.get(item.response_id)
        finished = resp is not None and resp.status is not None
        if resp is None or not finished or not item.done or not self._playout_over(
                item, resp, now):
            if force:
                self._ready_reply(item, resp, now, cut_by_end=True)
            return
        self._ready_reply(item, resp, now, cut_by_end=False)

    def _ready_reply(self, item: _Item, resp: _Response | None, now: float, *,
                     cut_by_end: bool) -> None:
        generated = item.text()
        status = _reply_status(item, resp.status if resp is not None else None)
        played = item.played_ms
        total = None if self.playout is Playout.SERVER else item.audio_ms
        if self.playout is Playout.SERVER and resp is not None and (
                resp.audio_started_at is not None):
            end = resp.audio_ended_at if resp.audio_ended_at is not None else now
            playout_ms = (end - resp.audio_started_at) * self._speed * 1000
            if resp.cleared or cut_by_end:
                played = playout_ms if played is None else played
            elif status is TurnStatus.COMPLETED and generated:
                self._speech_chars += len(generated)
                self._speech_seconds += playout_ms / 1000
                item.audio_ms = playout_ms
        elif self.playout is Playout.CLIENT and cut_by_end and item.first_audio_at is not None:
            elapsed = (now - item.first_audio_at) * self._speed * 1000
            played = elapsed if played is None else played
        text = generated
        if played is not None and (total is None or played < total):
            text = heard_text(generated, played, total_ms=total, chars_per_s=self.chars_per_s)
            item.audio_ms = played if total is None else min(played, total)
            if status is TurnStatus.COMPLETED:  # cut while playing: by the user, or the end
                status = TurnStatus.INCOMPLETE if cut_by_end else TurnStatus.CANCELLED
        self._ready(item, status, text=text, generated=generated)

    def _on_deleted(self, item_id: str) -> None:
        if self._items.pop(item_id, None) is not None:
            self._order.remove(item_id)
            self._changed = True

    def _ready(self, item: _Item, status: TurnStatus, *, text: str | None = None,
               generated: str | None = None) -> None:
        if item.turn is not None:
            return
        self._changed = True
        assistant = item.kind is _Kind.ASSISTANT
        usage = None
        if item.response_id is not None and item.response_id in self._responses:
            usage = self._responses[item.response_id].usage
        speech = item.speech
        span = (speech.start_ms, speech.end_ms) if speech is not None else (None, None)
        audio = None
        if (self._audio_lookup is not None and span[0] is not None and span[1] is not None):
            audio = self._audio_lookup(span[0], span[1])
        full = item.text()
        item.turn = Turn(
            role=Role.ASSISTANT if assistant else Role.USER,
            item_id=item.id,
            text=full if text is None else text,
            status=status,
            completed_at=self._clock(),
            response_id=item.response_id,
            previous_item_id=item.previous_item_id,
            started_at=item.started_at,
            usage=usage,
            audio_ms=item.audio_ms,
            audio_start_ms=span[0],
            audio_end_ms=span[1],
            generated_text=(full if generated is None else generated) if assistant else None,
            audio=audio,
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
            turn = dataclasses.replace(item.turn, index=self._next_index, call_id=self.call_id)
            item.turn = turn
            self._next_index += 1
            self.turns.append(turn)
            out.append(turn)
        return out


def _item_status(status: str | None) -> TurnStatus:
    return TurnStatus.INCOMPLETE if status == "incomplete" else TurnStatus.COMPLETED


def _reply_status(item: _Item, response_status: str | None) -> TurnStatus:
    """An assistant turn's status: the response's outcome wins over the item's status."""
    if response_status in (TurnStatus.CANCELLED, TurnStatus.FAILED, TurnStatus.INCOMPLETE):
        return TurnStatus(response_status)
    if response_status is None or not item.done:
        return TurnStatus.INCOMPLETE
    return _item_status(item.status)
