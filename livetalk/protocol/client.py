"""The client side of one Realtime session, sans I/O: every piece of client protocol state.

Theory of operation (in the manner of websockets' protocol objects and h11's connections).
A :class:`ClientSession` is fed what arrives (:meth:`~ClientSession.receive`, one server event
at a time, and :meth:`~ClientSession.tick` at :meth:`~ClientSession.next_deadline`) and asked
to do things (:meth:`~ClientSession.send`, :meth:`~ClientSession.update_session`,
:meth:`~ClientSession.request_response`, :meth:`~ClientSession.interrupt`,
:meth:`~ClientSession.commit`...). It never does I/O: it answers with *outputs* (the parsed
event itself, then transcript deltas, turns, finished responses, function calls, and the fate
of the requests it was given) and queues the typed client events to send, which the caller
drains with :meth:`~ClientSession.data_to_send` after every call. The asyncio layer
(:class:`livetalk.call.Call`) only pumps: transport in, session, outputs to feeds, events out.

What it owns:

* the effective session (``session.created``/``session.updated``) and whether it is ready;
* the :class:`~livetalk.protocol.conversation.Conversation` (items, order, turns, speech in
  progress, reply playout, usage);
* requests and their answers: ``session.update`` is answered by ``session.updated`` (in order)
  or an ``error`` echoing its ``event_id``;
* the response slot and the reply queue. The API runs one response at a time and refuses a
  ``response.create`` while one is active (``conversation_already_has_active_response``), so
  :meth:`~ClientSession.request_response` queues: a request is sent when no response is active
  or in flight, tagged ``metadata.livetalk_reply`` so that its ``response.created`` can be
  recognised; one refused because the server started a response of its own at the same moment
  goes back to the head of the queue. A reply ends (:class:`ReplyDone`) when its assistant turn
  is released (after its audio stopped playing), or fails (:class:`ReplyFailed`);
* holds: work the host still owes the conversation (a routed user turn whose answer is being
  computed), so that :attr:`~ClientSession.quiet` means nothing at all is pending.

An ``error`` event that arrives before ``session.created`` is a refusal of the whole session
(:class:`Rejected`); the caller fails its connect with it.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from livetalk.errors import CallClosedError, LivetalkError, ResponseFailedError
from livetalk.protocol import wire
from livetalk.protocol.conversation import (
    DEFAULT_TRANSCRIPT_TIMEOUT_S,
    AudioLookup,
    Conversation,
    Playout,
    ResponseFinished,
    Role,
    Turn,
    TurnStatus,
    Update,
)
from livetalk.protocol.events import (
    ClientEvent,
    ConversationItemCreate,
    ConversationItemTruncate,
    ErrorEvent,
    InputAudioBufferCommit,
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    OutputAudioBufferClear,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ServerEvent,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    Usage,
)

__all__ = [
    "REPLY_METADATA_KEY",
    "ClientSession",
    "Output",
    "Rejected",
    "ReplyDone",
    "ReplyFailed",
    "RequestDone",
    "RequestFailed",
]

REPLY_METADATA_KEY: Final = "livetalk_reply"
"""The ``response.metadata`` key that tags a response with the reply that asked for it."""

_ACTIVE_RESPONSE: Final = "conversation_already_has_active_response"


@dataclass(frozen=True, slots=True)
class RequestDone:
    """A request was answered: ``session.update`` by ``session.updated`` (``event``)."""

    request_id: str
    event: ServerEvent


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """The server answered a request with an ``error`` echoing its ``event_id`` (a
    :class:`~livetalk.errors.ServerError`), or the session closed first."""

    request_id: str
    error: LivetalkError


@dataclass(frozen=True, slots=True)
class ReplyDone:
    """A requested response ended and its audio stopped playing.

    Attributes:
        reply_id: the id :meth:`ClientSession.request_response` returned.
        turn: the assistant turn it produced (completed, or cancelled with the text heard),
            or None when the response produced no message (only function calls nobody
            answered, for example).
    """

    reply_id: str
    turn: Turn | None


@dataclass(frozen=True, slots=True)
class ReplyFailed:
    """A requested response failed, was refused, or the session ended before it finished."""

    reply_id: str
    error: LivetalkError


@dataclass(frozen=True, slots=True)
class Rejected:
    """An ``error`` before ``session.created``: the server refused the session itself."""

    error: ErrorEvent


Output = ServerEvent | Update | RequestDone | RequestFailed | ReplyDone | ReplyFailed | Rejected
"""What :meth:`ClientSession.receive` and :meth:`ClientSession.tick` return."""


@dataclass(slots=True)
class _Reply:
    id: str
    options: dict[str, Any]
    event_id: str | None = None  # the response.create sent for it (None: still queued)
    response_id: str | None = None
    tools_pending: int = 0  # function calls of its response that the host is answering


class ClientSession:
    """The client's view of one Realtime session; see the module docstring.

    Args:
        playout: who plays the model's audio: :attr:`Playout.SERVER` over WebRTC (and on a
            sideband of a WebRTC call), :attr:`Playout.CLIENT` over WebSocket.
        clock: monotonic seconds, for turn times and timeouts.
        speed: the media clock's speed (audio fed faster than real time plays faster).
        transcript_timeout_s: how long a user turn waits for its transcription.
        audio_lookup: ``(start_ms, end_ms) -> audio`` to attach sent audio to user turns.
        first_index: the index of the first turn (a reconnected call continues the count).
    """

    def __init__(
        self,
        *,
        playout: Playout = Playout.SERVER,
        clock: Callable[[], float] = time.monotonic,
        speed: float = 1.0,
        transcript_timeout_s: float = DEFAULT_TRANSCRIPT_TIMEOUT_S,
        audio_lookup: AudioLookup | None = None,
        first_index: int = 0,
    ) -> None:
        self.conversation = Conversation(
            clock, playout=playout, speed=speed, transcript_timeout_s=transcript_timeout_s,
            audio_lookup=audio_lookup, first_index=first_index)
        self._clock = clock
        self.session: dict[str, Any] = {}
        """The full effective session, from the latest ``session.created``/``.updated``."""
        self.ready = False
        """``session.created`` has arrived."""
        self.closed = False
        self.errors: list[ErrorEvent] = []
        """Every ``error`` event received, in order."""
        self._outbox: list[ClientEvent] = []
        self._updates: deque[str] = deque()  # session.update event ids awaiting session.updated
        self._queue: deque[_Reply] = deque()  # replies not sent yet
        self._inflight: _Reply | None = None  # response.create sent, response.created not seen
        self._by_response: dict[str, _Reply] = {}
        self._holds: set[str] = set()
        self._local_spans: deque[tuple[float, float]] = deque()
        self._auto_response_due = False  # a turn was committed with create_response on
        self._reply_count = 0

    # ---------------------------------------------------------------- state

    @property
    def call_id(self) -> str | None:
        """The call's id, stamped on every turn (set it once the transport knows it)."""
        return self.conversation.call_id

    @call_id.setter
    def call_id(self, value: str | None) -> None:
        self.conversation.call_id = value

    @property
    def playout(self) -> Playout:
        return self.conversation.playout

    @property
    def usage(self) -> Usage:
        """Token usage summed over every finished response of this session."""
        return self.conversation.usage_total

    @property
    def response_active(self) -> bool:
        """A response is being generated (``response.created`` seen, ``response.done`` not)."""
        return self.conversation.response_active

    @property
    def assistant_speaking(self) -> bool:
        """Reply audio is playing (see :meth:`Conversation.assistant_speaking`)."""
        return self.conversation.assistant_speaking()

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        """The effective ``audio.input.turn_detection`` (None: manual turns)."""
        audio = self.session.get("audio")
        audio_in = audio.get("input") if isinstance(audio, dict) else None
        td = audio_in.get("turn_detection") if isinstance(audio_in, dict) else None
        return td if isinstance(td, dict) else None

    def audio_format(self, direction: str) -> str:
        """The effective ``audio.<direction>.format.type`` (``input`` or ``output``)."""
        audio = self.session.get("audio")
        part = audio.get(direction) if isinstance(audio, dict) else None
        fmt = part.get("format") if isinstance(part, dict) else None
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        return kind if isinstance(kind, str) else "audio/pcm"

    def pending(self) -> list[str]:
        """What keeps the session from being quiet, in words (empty when quiet)."""
        reasons = []
        if self.conversation.speech_pending:
            reasons.append("the user is speaking")
        if self.conversation.turns_pending:
            reasons.append("a turn is not finished (transcript, reply or its audio)")
        if self._holds:
            reasons.append(f"{len(self._holds)} answer(s) being prepared by the host")
        if self._queue or self._inflight is not None:
            reasons.append(f"{len(self._queue) + (self._inflight is not None)} queued reply(ies)")
        if self.response_active:
            reasons.append("a response is being generated")
        elif self._auto_response_due:
            reasons.append("the server is about to answer a turn")
        if self.assistant_speaking:
            reasons.append("reply audio is playing")
        return reasons

    @property
    def quiet(self) -> bool:
        """Nothing is pending: no speech, unfinished turn, hold, reply, response or audio."""
        return not self.pending()

    # ---------------------------------------------------------------- incoming

    def receive(self, data: str | bytes | Mapping[str, Any]) -> list[Output]:
        """Take one server event (its text, or the dict :func:`wire.load` made of it).

        Returns the outputs in order: the typed event first, then what it caused.

        Raises:
            EventParseError: the frame is not a valid event (nothing changed).
        """
        event = wire.parse_server_event(data)
        outputs: list[Output] = [event]
        match event:
            case SessionCreated() | SessionUpdated():
                self.session = dict(event.session)
                self.ready = True
                if isinstance(event, SessionUpdated) and self._updates:
                    outputs.append(RequestDone(self._updates.popleft(), event))
            case ErrorEvent():
                self.errors.append(event)
                outputs.extend(self._on_error(event))
            case ResponseCreated():
                self._bind(event)
                self._auto_response_due = False
            case InputAudioBufferSpeechStarted():
                self._barge_in_client_playout()
            case InputAudioBufferCommitted():
                if self._local_spans:
                    start, end = self._local_spans.popleft()
                    self.conversation.note_speech(event.item_id, start, end)
                td = self.turn_detection
                if td is not None and td.get("create_response", True):
                    self._auto_response_due = True
        self._route(self.conversation.feed(event), outputs)
        self._pump_replies()
        return outputs

    def tick(self, now: float | None = None) -> list[Output]:
        """Let time pass (transcript timeouts, client playout ends); call at the deadline."""
        outputs: list[Output] = []
        self._route(self.conversation.tick(now), outputs)
        self._pump_replies()
        return outputs

    def next_deadline(self) -> float | None:
        """The clock time at which :meth:`tick` must be called next, or None."""
        return self.conversation.next_deadline()

    def close(self, error: LivetalkError | None = None, *, fail_replies: bool = True
              ) -> list[Output]:
        """End the session: release every held turn; fail every open request and reply.

        Args:
            error: why (the replies fail with it; default a CallClosedError).
            fail_replies: False when the replies move to a new session
                (:meth:`unfinished_replies`, :meth:`adopt_replies`).
        """
        outputs: list[Output] = []
        if self.closed:
            return outputs
        self._route(self.conversation.flush(), outputs)
        self.closed = True
        failure = error or CallClosedError("the call ended before the answer")
        for request_id in self._updates:
            outputs.append(RequestFailed(request_id, failure))
        self._updates.clear()
        for reply in self._open_replies() if fail_replies else []:
            outputs.append(ReplyFailed(reply.id, failure))
        self._queue.clear()
        self._inflight = None
        self._by_response.clear()
        self._outbox.clear()
        return outputs

    def _on_error(self, event: ErrorEvent) -> list[Output]:
        if not self.ready:
            return [Rejected(event)]
        event_id = event.client_event_id
        if event_id is None:
            return []
        if event_id in self._updates:
            self._updates.remove(event_id)
            return [RequestFailed(event_id, event.to_exception())]
        reply = self._inflight
        if reply is not None and reply.event_id == event_id:
            self._inflight = None
        else:  # bound to a response already (an untagged one that was not ours after all)
            reply = next((r for r in self._by_response.values() if r.event_id == event_id), None)
            if reply is None:
                return []
            self._by_response.pop(reply.response_id or "", None)
            reply.response_id = None
        if event.code == _ACTIVE_RESPONSE:  # the server started one of its own: wait
            reply.event_id = None
            self._queue.appendleft(reply)
            return []
        return [ReplyFailed(reply.id, event.to_exception())]

    def _bind(self, event: ResponseCreated) -> None:
        response_id = event.response_id
        if response_id is None:
            return
        metadata = event.response.get("metadata")
        tag = metadata.get(REPLY_METADATA_KEY) if isinstance(metadata, dict) else None
        reply = self._inflight
        if reply is None:
            return
        # Ours when tagged so; untagged (a server that does not echo metadata), ours unless
        # the server owes a committed turn its own automatic response right now.
        if tag == reply.id or (tag is None and not self._auto_response_due):
            reply.response_id = response_id
            self._by_response[response_id] = reply
            self._inflight = None

    def _route(self, updates: Sequence[Update], outputs: list[Output]) -> None:
        for update in updates:
            outputs.append(update)
            if isinstance(update, Turn) and update.role is Role.ASSISTANT:
                reply = self._by_response.get(update.response_id or "")
                # a failed reply's error comes with its ResponseFinished, right after
                if (reply is not None and reply.tools_pending == 0
                        and update.status is not TurnStatus.FAILED):
                    del self._by_response[update.response_id or ""]
                    outputs.append(ReplyDone(reply.id, update))
            elif isinstance(update, ResponseFinished):
                reply = self._by_response.get(update.response_id)
                if reply is None:
                    continue
                if update.status == "failed":
                    del self._by_response[update.response_id]
                    outputs.append(ReplyFailed(reply.id, _failure(update)))
                elif reply.tools_pending == 0 and not self.conversation.has_message(
                        update.response_id):
                    del self._by_response[update.response_id]
                    outputs.append(ReplyDone(reply.id, None))

    def _barge_in_client_playout(self) -> None:
        """WebSocket: the server heard the user while our reply plays: cut it where it is."""
        td = self.turn_detection
        if self.playout is not Playout.CLIENT or td is None or not td.get(
                "interrupt_response", True):
            return
        self._cut_client_playout(None)

    # ---------------------------------------------------------------- outgoing

    def data_to_send(self) -> list[ClientEvent]:
        """The client events queued since the last call, in order (each has its event_id)."""
        out, self._outbox = self._outbox, []
        return out

    def send(self, event: ClientEvent) -> str:
        """Queue one client event; returns its ``event_id`` (a fresh one if it had none).

        Raises:
            CallClosedError: the session is closed.
        """
        if self.closed:
            raise CallClosedError("the call is closed")
        if event.event_id is None:
            event = dataclasses.replace(event, event_id=wire.new_event_id())
        self._outbox.append(event)
        assert event.event_id is not None
        return event.event_id

    def update_session(self, session: Mapping[str, Any]) -> str:
        """Queue a ``session.update``; its id comes back in :class:`RequestDone` or
        :class:`RequestFailed`."""
        body = dict(session)
        body.setdefault("type", "realtime")
        event_id = self.send(SessionUpdate(session=body))
        self._updates.append(event_id)
        return event_id

    def request_response(self, options: Mapping[str, Any] | None = None) -> str:
        """Ask for a response (``response.create`` with ``options``), in turn.

        It is sent at once when no response is active or in flight, otherwise when the
        current one is done. Returns the reply id that :class:`ReplyDone` or
        :class:`ReplyFailed` carry.
        """
        if self.closed:
            raise CallClosedError("the call is closed")
        self._reply_count += 1
        reply = _Reply(f"reply_{self._reply_count}", dict(options or {}))
        self._queue.append(reply)
        self._pump_replies()
        return reply.id

    def adopt_replies(self, replies: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue replies that an earlier session of the call never finished (a reconnect)."""
        for reply_id, options in replies:
            self._queue.append(_Reply(reply_id, dict(options)))
        self._pump_replies()

    def unfinished_replies(self) -> list[tuple[str, dict[str, Any]]]:
        """``(reply_id, options)`` of every reply not finished, for :meth:`adopt_replies`."""
        return [(r.id, r.options) for r in self._open_replies()]

    def _open_replies(self) -> list[_Reply]:
        inflight = [self._inflight] if self._inflight is not None else []
        return [*self._by_response.values(), *inflight, *self._queue]

    def _pump_replies(self) -> None:
        if self.closed or not self.ready or self._inflight is not None:
            return
        if not self._queue or self.response_active:
            return
        reply = self._queue.popleft()
        options = dict(reply.options)
        metadata = dict(options.get("metadata") or {})
        metadata[REPLY_METADATA_KEY] = reply.id
        options["metadata"] = metadata
        reply.event_id = self.send(ResponseCreate(response=options))
        self._inflight = reply

    def expect_tool_outputs(self, response_id: str) -> None:
        """The host is answering a function call of ``response_id`` (see
        :meth:`send_tool_outputs`): its reply stays open for the follow-up response."""
        reply = self._by_response.get(response_id)
        if reply is not None:
            reply.tools_pending += 1

    def send_tool_outputs(self, response_id: str, outputs: list[tuple[str, str]]) -> str | None:
        """Send ``function_call_output`` items for ``(call_id, output)`` pairs and ask for the
        follow-up response; the reply of ``response_id`` (if any) continues with it.

        Returns the reply id of the follow-up response.
        """
        for call_id, output in outputs:
            self.send(ConversationItemCreate.function_call_output(call_id, output))
        reply = self._by_response.pop(response_id, None)
        if reply is None:
            return self.request_response()
        reply.tools_pending = 0
        reply.response_id = None
        reply.event_id = None
        reply.options = {}
        self._queue.append(reply)
        self._pump_replies()
        return reply.id

    def interrupt(self, played_ms: float | None = None) -> None:
        """Cut the assistant off.

        Server playout (WebRTC): ``response.cancel`` if a response is active, then
        ``output_audio_buffer.clear`` (the server truncates what was not played).
        Client playout (WebSocket): ``response.cancel`` if active, then
        ``conversation.item.truncate`` at the played position (``played_ms``, or the time since
        the reply's first audio, capped at the audio received; integer ms).
        """
        if self.response_active:
            self.send(ResponseCancel())
        if self.playout is Playout.SERVER:
            self.send(OutputAudioBufferClear())
        elif self.playout is Playout.CLIENT:
            self._cut_client_playout(played_ms)

    def _cut_client_playout(self, played_ms: float | None) -> None:
        playing = self.conversation.playing_item()
        if playing is None:
            return
        item_id, estimate = playing
        received = self.conversation.received_audio_ms(item_id)
        played = max(0, min(int(estimate if played_ms is None else played_ms), int(received)))
        self.conversation.cut(item_id, played)
        self.send(ConversationItemTruncate(item_id=item_id, content_index=0,
                                           audio_end_ms=played))

    def commit(self, span: tuple[float, float] | None = None) -> str:
        """Queue ``input_audio_buffer.commit`` (push-to-talk, or a turn found by local VAD).

        Args:
            span: the committed speech's ``(start_ms, end_ms)`` in the input stream, when
                known, so the user turn carries it (and its audio).
        """
        if span is not None:
            self._local_spans.append(span)
        return self.send(InputAudioBufferCommit())

    def replay(self, history: list[Turn]) -> None:
        """Re-create the text of ``history`` as conversation items (a reconnected call's new
        session); they are not released as turns again."""
        for turn in history:
            if not turn.text:
                continue
            item_id = f"item_replay_{turn.index}_{wire.new_event_id('')[:8]}"
            self.conversation.mute(item_id)
            kind = "output_text" if turn.role == Role.ASSISTANT else "input_text"
            self.send(ConversationItemCreate(item={
                "id": item_id, "type": "message", "role": str(turn.role),
                "content": [{"type": kind, "text": turn.text}]}))

    def hold(self, key: str) -> None:
        """The host owes the conversation something (e.g. a routed turn's answer)."""
        self._holds.add(key)

    def release(self, key: str) -> None:
        """What :meth:`hold` announced is done (or given up)."""
        self._holds.discard(key)


def _failure(finished: ResponseFinished) -> ResponseFailedError:
    details = finished.status_details or {}
    error = details.get("error") if isinstance(details.get("error"), dict) else {}
    assert isinstance(error, dict)
    message = error.get("message") if isinstance(error.get("message"), str) else None
    code = error.get("code") if isinstance(error.get("code"), str) else None
    return ResponseFailedError(message or f"response {finished.response_id} failed",
                               code=code, error_type=error.get("type"))

