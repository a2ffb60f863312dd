"""One Realtime session of the local server, independent of the transport.

Theory of operation
-------------------
A :class:`ServerSession` owns the state of one conversation: the effective session
config, the conversation items in order, the input audio buffer and at most one active
response. It is fed from three directions and emits server events (plain dicts in the GA
wire shape, each a deep copy, so later changes to the session's state never leak into an
event already handed to a listener) to every attached listener:

* client events, one JSON object at a time (:meth:`handle_client_event`), from the data
  channel, a WebSocket or a sideband. Each is handled synchronously: its direct replies
  (``session.updated``, ``conversation.item.added``, ``response.done`` of a cancel, an
  ``error`` echoing the client's ``event_id``...) are emitted before the call returns;
* input audio (:meth:`feed_audio`), 24 kHz int16 mono, from the inbound RTP track or from
  ``input_audio_buffer.append``. With ``turn_detection`` set, a
  :class:`~livetalk.audio.vad.TurnDetector` turns it into ``speech_started`` /
  ``speech_stopped`` in media time (so it works at any feeding speed); with it null the
  audio accumulates until ``input_audio_buffer.commit``;
* its own tasks: one ASR task per committed user item (in an executor), and the active
  response's task: the brain, then TTS, then audio queued on an :class:`AudioOutput` with
  transcript deltas paced by what has actually been played.

The event orders follow ``realtime-protocol.md`` section 11 (voice turn, push-to-talk, text
turn, function call, barge-in). Choices where the API leaves room, or where this server
differs from it:

* A response waits for the transcription of every committed user item before asking the
  brain (the brain reads transcripts, where the real model hears the audio), so a
  ``response.create`` sent right after a commit answers that turn. The transcription
  events themselves are emitted only when ``audio.input.transcription`` is configured.
* Over WebRTC (an ``output`` is given) the reply audio goes to the RTP track and the session
  emits ``output_audio_buffer.started`` (after ``content_part.added``) and ``stopped``; it
  never emits ``response.output_audio.delta``. Over WebSocket (``audio_deltas=True``, no
  output) it emits the audio as base64 PCM16 24 kHz ``response.output_audio.delta`` events
  and no ``output_audio_buffer.*`` event.
* Generation runs at playout speed: ``response.done`` is sent once the reply's audio has
  been played out, then ``output_audio_buffer.stopped``. A cut reply's item and transcript
  therefore hold exactly the words that were heard, and its item's audio length is the
  played length (what ``conversation.item.truncate`` checks against).
* Cancelling is synchronous: ``response.cancel``, a VAD barge-in (``speech_started`` while a
  reply is active and ``interrupt_response`` is true) and ``output_audio_buffer.clear``
  during a reply cancel the response task, emit the pending ``*.done`` events with status
  ``incomplete``, then ``response.done`` (cancelled, reason ``client_cancelled`` or
  ``turn_detected``) and, when audio was playing, ``output_audio_buffer.cleared``. A new
  ``response.create`` right after a cancel is accepted. ``output_audio_buffer.clear`` with
  nothing playing emits nothing. With ``interrupt_response`` false, a turn that ends while a
  reply is active gets its response after that reply ends.
* ``turn_detection.idle_timeout_ms`` (server_vad): once a completed reply has played out,
  that much input media time without speech emits ``input_audio_buffer.timeout_triggered``
  and commits the idle span as a user item of silence (then a response, if
  ``create_response``).
* There is one response slot: an out-of-band response (``conversation: "none"``) also blocks
  ``response.create``. ``response.input`` is not supported (the conversation is used), and
  ``conversation.item.retrieved`` carries no audio bytes.
* Usage is an estimate: about 4 characters per text token and 20 tokens per second of
  audio, over the instructions and the conversation before the response.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import logging
import math
import re
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from livetalk.audio.resample import Resampler
from livetalk.audio.vad import SpeechStarted, SpeechStopped, TurnDetector
from livetalk.protocol.session import SAY_EXACTLY_PREFIX
from livetalk.server.asr import Transcriber, TranscriptionHints, transcript_pieces
from livetalk.server.brain import (
    Brain,
    BrainChunk,
    BrainContext,
    BrainError,
    StreamingBrain,
    ToolCallReply,
    brain_stream,
    sentences,
)
from livetalk.server.config import SessionError, default_session, merge_session, validate_session
from livetalk.server.tts import Synthesizer, word_timings

__all__ = ["AudioOutput", "ServerSession", "SAY_EXACTLY_PREFIX"]

log = logging.getLogger("livetalk.server")

INPUT_RATE = 24000
#: ``response.instructions`` starting with this make the server speak the rest verbatim
#: (this is what ``Call.say()`` sends; the real model follows the same instruction).
_SAY_RE = re.compile(re.escape(SAY_EXACTLY_PREFIX) + r"\s*(.*)\Z", re.DOTALL)
_MAX_INPUT_BUFFER_S = 120
_MIN_COMMIT_MS = 100
_EAGERNESS_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700, "high": 400}
_POLL_S = 0.02
"""How often (in media seconds) a playing reply checks the output's position."""
_END_SLACK_MS = 5
"""Audio the resampler may still hold when a reply counts as played out."""
_RATE_LIMITS = [
    {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
    {"name": "tokens", "limit": 400000, "remaining": 399000, "reset_seconds": 0.15},
]

Listener = Callable[[dict[str, Any]], None]


class AudioOutput(Protocol):
    """Where a session's reply audio goes as media (the outbound RTP track)."""

    def enqueue(self, pcm: np.ndarray, rate: int) -> None:
        """Queue int16 mono samples at ``rate`` for playing."""
        ...

    def clear(self) -> float:
        """Drop the queued audio; return how many ms were dropped."""
        ...

    @property
    def played_ms(self) -> float:
        """Audio played so far (never goes back, not even on :meth:`clear`)."""
        ...

    @property
    def queued_ms(self) -> float:
        """Audio queued and not yet played."""
        ...


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(10)


def _approx_text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def _audio_tokens(ms: float) -> int:
    return math.ceil(ms / 50)  # about 20 tokens per second of audio (an estimate)


def _error_detail(code: str, message: str) -> dict[str, Any]:
    return {"type": "failed", "error": {"type": "server_error", "code": code, "message": message}}


@dataclass
class _Response:
    id: str
    options: dict[str, Any]
    output: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    item: dict[str, Any] | None = None
    audio_started: bool = False
    audio_base_ms: float = 0.0
    text_sent: str = ""
    audio_ms: float = 0.0
    done: bool = False


class ServerSession:
    """The state and behaviour of one session; see the module docstring.

    Attach listeners with :meth:`add_listener`, call :meth:`start` (``session.created``), then
    feed it with :meth:`handle_client_event` and :meth:`feed_audio`; :meth:`close` at the end.

    Args:
        transcriber: the "ears" (``pcm, rate -> text``).
        synthesizer: the "voice" (``text -> pcm, rate``).
        brain: decides what to answer.
        output: where reply audio goes as media (the RTP track); None over WebSocket.
        model: the model name reported in the session.
        session: an initial session (from the multipart form or a client secret),
            already validated.
        realtime_factor: how much faster than real time the media clock runs.
        audio_deltas: send reply audio as ``response.output_audio.delta`` (WebSocket).
    """

    def __init__(
        self,
        *,
        transcriber: Transcriber,
        synthesizer: Synthesizer,
        brain: Brain | StreamingBrain,
        output: AudioOutput | None,
        model: str | None = None,
        session: dict[str, Any] | None = None,
        realtime_factor: float = 1.0,
        audio_deltas: bool = False,
    ) -> None:
        self.session = default_session(model or (session or {}).get("model") or "gpt-realtime")
        if session:
            self.session = merge_session(self.session, session)
        self.transcriber = transcriber
        self.synthesizer = synthesizer
        self.brain = brain
        self.output = output
        self.realtime_factor = realtime_factor
        self.audio_deltas = audio_deltas
        self.conversation_id = _new_id("conv_")
        self.items: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.listeners: list[Listener] = []
        self.closed = False
        self._input: list[np.ndarray] = []
        self._input_samples = 0
        self._stream_samples = 0
        self._detector: TurnDetector | None = None
        self._pending_item_id: str | None = None
        self._idle_from_ms: int | None = None
        self._audio_ms: dict[str, float] = {}
        self._transcribing: dict[str, asyncio.Task[None]] = {}
        self._response: _Response | None = None
        self._last_response_id: str | None = None
        self._audio_playing_response: str | None = None
        self._last_input_tokens = (0, 0)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._configure_vad()

    # ---------------------------------------------------------------- listeners, emit
    def add_listener(self, listener: Listener) -> None:
        """Attach a sink of server events (a data channel, a WebSocket, a sideband)."""
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Detach a listener added with :meth:`add_listener` (no-op if absent)."""
        if listener in self.listeners:
            self.listeners.remove(listener)

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send one server event to every listener; returns the event.

        The fields are deep-copied, so the event is a snapshot of the session's state.
        """
        event = {"type": type_, "event_id": _new_id("event_"), **copy.deepcopy(fields)}
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the session
                log.exception("listener failed; detaching it")
                self.remove_listener(listener)
        return event

    def error(
        self, code: str, message: str, *, param: str | None = None, event_id: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        """Emit an ``error`` event; ``event_id`` is the client event it answers, if any."""
        self.emit("error", error={"type": error_type, "code": code, "message": message,
                                  "param": param, "event_id": event_id})

    def start(self) -> None:
        """Send ``session.created``; call once the first listener is attached."""
        self.emit("session.created", session=self.session)

    # ---------------------------------------------------------------- lifecycle
    async def close(self) -> None:
        """Cancel every running task of the session and detach the listeners."""
        self.closed = True
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.listeners.clear()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed", exc_info=task.exception())

    # ---------------------------------------------------------------- VAD config
    @property
    def turn_detection(self) -> dict[str, Any] | None:
        """The effective ``audio.input.turn_detection`` (None: manual commits)."""
        td: dict[str, Any] | None = self.session["audio"]["input"].get("turn_detection")
        return td

    def _configure_vad(self) -> None:
        self._pending_item_id = None
        td = self.turn_detection
        if td is None:
            self._detector = None
            return
        if td["type"] == "semantic_vad":
            silence = _EAGERNESS_SILENCE_MS.get(td.get("eagerness", "auto"), 700)
            threshold, padding = 0.5, 300
        else:
            silence = td.get("silence_duration_ms", 500)
            threshold, padding = td.get("threshold", 0.5), td.get("prefix_padding_ms", 300)
        self._detector = TurnDetector.from_threshold(
            INPUT_RATE, threshold, prefix_padding_ms=padding, silence_duration_ms=max(silence, 200)
        )

    # ---------------------------------------------------------------- input audio
    def feed_audio(self, pcm: np.ndarray) -> None:
        """Take 24 kHz int16 mono input audio (RTP or ``input_audio_buffer.append``)."""
        if self.closed or pcm.size == 0:
            return
        self._stream_samples += pcm.size
        if self._detector is None:
            self._input.append(pcm)
            self._input_samples += pcm.size
            while self._input_samples > _MAX_INPUT_BUFFER_S * INPUT_RATE and len(self._input) > 1:
                self._input_samples -= self._input.pop(0).size
            return
        for ev in self._detector.feed(pcm):
            if isinstance(ev, SpeechStarted):
                self._on_speech_started(ev)
            elif isinstance(ev, SpeechStopped):
                self._on_speech_stopped(ev)
        self._check_idle_timeout()

    def _stream_ms(self) -> int:
        return self._stream_samples * 1000 // INPUT_RATE

    def _on_speech_started(self, ev: SpeechStarted) -> None:
        self._idle_from_ms = None
        self._pending_item_id = _new_id("item_")
        self.emit("input_audio_buffer.speech_started", audio_start_ms=int(ev.start_ms),
                  item_id=self._pending_item_id)
        td = self.turn_detection or {}
        if td.get("interrupt_response", True):
            self._barge_in()

    def _on_speech_stopped(self, ev: SpeechStopped) -> None:
        item_id = self._pending_item_id or _new_id("item_")
        self._pending_item_id = None
        self.emit("input_audio_buffer.speech_stopped", audio_end_ms=int(ev.end_ms), item_id=item_id)
        td = self.turn_detection or {}
        self._commit_audio(item_id, ev.audio, create_response=td.get("create_response", True))

    def _check_idle_timeout(self) -> None:
        td = self.turn_detection
        if self._idle_from_ms is None or td is None or td.get("type") != "server_vad":
            return
        timeout = td.get("idle_timeout_ms")
        busy = self._detector is not None and self._detector.in_speech
        if not timeout or busy or self._response is not None:
            return
        start, now = self._idle_from_ms, self._stream_ms()
        if now - start < timeout:
            return
        self._idle_from_ms = None
        item_id = _new_id("item_")
        self.emit("input_audio_buffer.timeout_triggered", audio_start_ms=start, audio_end_ms=now,
                  item_id=item_id)
        silence = np.zeros((now - start) * INPUT_RATE // 1000, dtype=np.int16)
        self._commit_audio(item_id, silence, create_response=td.get("create_response", True))

    def _commit_audio(self, item_id: str, audio: np.ndarray, *, create_response: bool) -> None:
        previous = self.order[-1] if self.order else None
        self.emit("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        item = {
            "id": item_id, "object": "realtime.item", "type": "message", "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._audio_ms[item_id] = audio.size * 1000 / INPUT_RATE
        self._add_item(item, None)
        self.emit("conversation.item.done", item=item, previous_item_id=previous)
        transcription = self._spawn(self._transcribe(item, audio))
        self._transcribing[item_id] = transcription
        if create_response:
            self._spawn(self._respond_after_turn(transcription))

    async def _transcribe(self, item: dict[str, Any], audio: np.ndarray) -> None:
        """Fill in a committed user item's transcript (and emit the events if configured).

        Each piece the recogniser decodes becomes deltas (one per word) as soon as it is
        decoded; ``completed`` carries the whole transcript and the audio's duration.
        """
        item_id = item["id"]
        settings = self.session["audio"]["input"].get("transcription")
        configured = settings is not None
        hints = TranscriptionHints(language=(settings or {}).get("language") or None,
                                   prompt=(settings or {}).get("prompt") or None)
        pieces: list[str] = []
        try:
            async for piece in transcript_pieces(self.transcriber, audio, INPUT_RATE, hints):
                if configured:
                    for word in piece.split():
                        self.emit("conversation.item.input_audio_transcription.delta",
                                  item_id=item_id, content_index=0,
                                  delta=word if not pieces else " " + word)
                        pieces.append(word)
                else:
                    pieces.append(piece)
        except Exception as exc:  # the ears failed: the API reports a failed transcription
            log.warning("transcription failed: %s", exc)
            if configured:
                self.emit("conversation.item.input_audio_transcription.failed", item_id=item_id,
                          content_index=0, error={"type": "transcription_error",
                                                  "code": "transcription_failed",
                                                  "message": str(exc), "param": None})
            return
        finally:
            self._transcribing.pop(item_id, None)
        text = " ".join(pieces)
        item["content"][0]["transcript"] = text
        if configured:
            self.emit("conversation.item.input_audio_transcription.completed", item_id=item_id,
                      content_index=0, transcript=text,
                      usage={"type": "duration", "seconds": round(audio.size / INPUT_RATE, 3)})

    async def _respond_after_turn(self, transcription: asyncio.Task[None]) -> None:
        """The VAD's automatic response to a committed turn (``create_response``)."""
        await asyncio.wait({transcription})
        while (resp := self._response) is not None and not self.closed:
            if (self.turn_detection or {}).get("interrupt_response", True):
                self._cancel_response("turn_detected")
            else:  # no barge-in: answer once the active reply has ended
                assert resp.task is not None
                await asyncio.wait({resp.task})
        if not self.closed:
            self._start_response({})

    # ---------------------------------------------------------------- items
    def _add_item(self, item: dict[str, Any], previous: str | None) -> str | None:
        """Insert an item after ``previous`` (None: at the end; ``"root"``: first).

        Emits ``conversation.item.added``; returns the id of the item now before it.
        """
        item_id = item["id"]
        if previous == "root":
            self.order.insert(0, item_id)
        elif previous is None or previous not in self.order:
            self.order.append(item_id)
        else:
            self.order.insert(self.order.index(previous) + 1, item_id)
        self.items[item_id] = item
        before = self._previous_of(item_id)
        self.emit("conversation.item.added", item=item, previous_item_id=before)
        return before

    def _previous_of(self, item_id: str) -> str | None:
        idx = self.order.index(item_id) if item_id in self.order else -1
        return self.order[idx - 1] if idx > 0 else None

    def _history(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for item_id in self.order:
            item = self.items[item_id]
            if item.get("type") == "message":
                out.append((item.get("role", "user"), _item_text(item)))
        return out

    # ---------------------------------------------------------------- client events
    def handle_client_event(self, event: Any) -> None:
        """Act on one decoded client event (a dict); errors become ``error`` events."""
        if self.closed:
            return
        if not isinstance(event, dict):
            self.error("invalid_json", "The event must be a JSON object.")
            return
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        kind = event.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            supported = ", ".join(f"'{k}'" for k in self._handlers)
            self.error("invalid_value",
                       f"Invalid value: {kind!r}. Supported values are: {supported}.",
                       param="type", event_id=event_id)
            return
        try:
            handler(self, event, event_id)
        except SessionError as exc:
            self.error(exc.code, exc.message, param=exc.param, event_id=event_id)

    def _on_session_update(self, event: dict[str, Any], event_id: str | None) -> None:
        if "session" not in event:
            raise SessionError("missing_required_parameter",
                               "Missing required parameter: 'session'.", "session")
        update = validate_session(event["session"])
        voice = update.get("audio", {}).get("output", {}).get("voice")
        if (voice is not None and voice != self.session["audio"]["output"]["voice"]
                and self._response is not None and self._response.audio_started):
            raise SessionError("cannot_update_voice",
                               "Cannot update a session's voice after the model has "
                               "responded with audio.", "session.audio.output.voice")
        old_td = self.turn_detection
        self.session = merge_session(self.session, update)
        if self.turn_detection != old_td:
            self._configure_vad()
        self.emit("session.updated", session=self.session)

    def _on_append(self, event: dict[str, Any], event_id: str | None) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise SessionError("missing_required_parameter",
                               "Missing required parameter: 'audio'.", "audio")
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise SessionError("invalid_value", "Invalid 'audio': not valid base64.",
                               "audio") from None
        if len(raw) % 2:
            raw = raw[:-1]
        self.feed_audio(np.frombuffer(raw, dtype="<i2").astype(np.int16))

    def _on_commit(self, event: dict[str, Any], event_id: str | None) -> None:
        if self._detector is not None:
            stopped = self._detector.force_end()
            if stopped is None:
                raise _commit_empty(0.0)
            item_id = self._pending_item_id or _new_id("item_")
            self._pending_item_id = None
            self._commit_audio(item_id, stopped.audio, create_response=False)
            return
        ms = self._input_samples * 1000 / INPUT_RATE
        if ms < _MIN_COMMIT_MS:
            raise _commit_empty(ms)
        audio = np.concatenate(self._input)
        self._input, self._input_samples = [], 0
        self._commit_audio(_new_id("item_"), audio, create_response=False)

    def _on_input_clear(self, event: dict[str, Any], event_id: str | None) -> None:
        self._input, self._input_samples = [], 0
        self._pending_item_id = None
        if self._detector is not None:
            self._detector.reset()
        self.emit("input_audio_buffer.cleared")

    def _on_output_clear(self, event: dict[str, Any], event_id: str | None) -> None:
        if self.output is None:
            raise SessionError("invalid_value", "output_audio_buffer.clear is only supported "
                               "over WebRTC and SIP.", "type")
        resp = self._response
        if resp is not None and resp.audio_started:
            self._cancel_response("client_cancelled")  # the reply plays as it is generated
        elif self._audio_playing_response is not None:
            self._clear_output_audio()

    def _on_item_create(self, event: dict[str, Any], event_id: str | None) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise SessionError("missing_required_parameter", "Missing required parameter: 'item'.",
                               "item")
        kind = item.get("type")
        if kind not in ("message", "function_call", "function_call_output"):
            raise SessionError("invalid_value", f"Invalid value: {kind!r}. Supported values are: "
                               "'message', 'function_call', 'function_call_output'.", "item.type")
        if kind == "message" and item.get("role") not in ("user", "assistant", "system"):
            raise SessionError("invalid_value", f"Invalid value: {item.get('role')!r}. Supported "
                               "values are: 'user', 'assistant', 'system'.", "item.role")
        if kind == "function_call_output" and not isinstance(item.get("call_id"), str):
            raise SessionError("missing_required_parameter",
                               "Missing required parameter: 'item.call_id'.", "item.call_id")
        item = {"id": item.get("id") or _new_id("item_"), "object": "realtime.item",
                **{k: v for k, v in item.items() if k != "id"}, "status": "completed"}
        if item["id"] in self.items:
            raise SessionError("invalid_value", f"Item with id '{item['id']}' already exists.",
                               "item.id")
        previous = event.get("previous_item_id")
        if previous not in (None, "root") and previous not in self.items:
            raise SessionError("invalid_value", f"Previous item with id '{previous}' not found.",
                               "previous_item_id")
        before = self._add_item(item, previous)
        self.emit("conversation.item.done", item=item, previous_item_id=before)

    def _find_item(self, event: dict[str, Any]) -> dict[str, Any]:
        item_id = event.get("item_id")
        item = self.items.get(item_id) if isinstance(item_id, str) else None
        if item is None:
            raise SessionError("item_not_found", f"Item with id '{item_id}' not found.", "item_id")
        return item

    def _on_item_retrieve(self, event: dict[str, Any], event_id: str | None) -> None:
        self.emit("conversation.item.retrieved", item=self._find_item(event))

    def _on_item_truncate(self, event: dict[str, Any], event_id: str | None) -> None:
        item = self._find_item(event)
        end = event.get("audio_end_ms")
        if isinstance(end, bool) or not isinstance(end, int) or end < 0:
            raise SessionError("invalid_value", f"Invalid value: {end!r}. 'audio_end_ms' must be "
                               "a non-negative integer.", "audio_end_ms")
        if item.get("role") != "assistant" or item["id"] not in self._audio_ms:
            raise SessionError("invalid_value", "Only assistant messages with audio can be "
                               "truncated.", "item_id")
        total = self._audio_ms[item["id"]]
        if end > total:
            raise SessionError("invalid_value", f"Audio content of {int(total)}ms is shorter "
                               f"than {end}ms.", "audio_end_ms")
        part = item["content"][0] if item.get("content") else None
        if part is not None and total:
            words = (part.get("transcript") or "").split()
            part["transcript"] = " ".join(words[:int(len(words) * end // total)])
        self._audio_ms[item["id"]] = float(end)
        self.emit("conversation.item.truncated", item_id=item["id"],
                  content_index=event.get("content_index", 0), audio_end_ms=end)

    def _on_item_delete(self, event: dict[str, Any], event_id: str | None) -> None:
        item_id = self._find_item(event)["id"]
        del self.items[item_id]
        self.order.remove(item_id)
        self._audio_ms.pop(item_id, None)
        self.emit("conversation.item.deleted", item_id=item_id)

    def _on_response_create(self, event: dict[str, Any], event_id: str | None) -> None:
        if self._response is not None:
            raise SessionError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._response.id}. "
                "Wait until the response is finished before creating a new one.", None)
        options = event.get("response") or {}
        if not isinstance(options, dict):
            raise SessionError("invalid_type", "Invalid type for 'response': expected an object.",
                               "response")
        mods = options.get("output_modalities")
        if mods is not None and mods not in (["audio"], ["text"]):
            raise SessionError("invalid_value", f"Invalid value: {mods!r}. Supported values are: "
                               "['audio'] and ['text'].", "response.output_modalities")
        self._start_response(options)

    def _on_response_cancel(self, event: dict[str, Any], event_id: str | None) -> None:
        wanted = event.get("response_id")
        if self._response is None or (wanted and wanted != self._response.id):
            raise SessionError("response_cancel_not_active",
                               "Cancellation failed: no active response found.", None)
        self._cancel_response("client_cancelled")

    _handlers: dict[str, Callable[[ServerSession, dict[str, Any], str | None], None]] = {
        "session.update": _on_session_update,
        "input_audio_buffer.append": _on_append,
        "input_audio_buffer.commit": _on_commit,
        "input_audio_buffer.clear": _on_input_clear,
        "output_audio_buffer.clear": _on_output_clear,
        "conversation.item.create": _on_item_create,
        "conversation.item.retrieve": _on_item_retrieve,
        "conversation.item.truncate": _on_item_truncate,
        "conversation.item.delete": _on_item_delete,
        "response.create": _on_response_create,
        "response.cancel": _on_response_cancel,
    }

    # ---------------------------------------------------------------- responses
    @property
    def response_active(self) -> bool:
        """A response is running (``response.created`` sent, ``response.done`` not yet)."""
        return self._response is not None

    def _start_response(self, options: dict[str, Any]) -> None:
        self._idle_from_ms = None
        resp = _Response(id=_new_id("resp_"), options=options)
        self._response = resp
        self._last_response_id = resp.id
        resp.task = self._spawn(self._run_response(resp))

    def _response_object(self, resp: _Response, status: str, details: dict[str, Any] | None,
                         usage: dict[str, Any] | None) -> dict[str, Any]:
        out = self.session["audio"]["output"]
        return {
            "object": "realtime.response", "id": resp.id, "status": status,
            "status_details": details, "output": resp.output,
            "conversation_id": None if self._out_of_band(resp) else self.conversation_id,
            "output_modalities": [self._part_type(resp)],
            "max_output_tokens": resp.options.get("max_output_tokens",
                                                  self.session["max_output_tokens"]),
            "audio": {"output": {"format": out["format"],
                                 "voice": resp.options.get("audio", {}).get("output", {}).get(
                                     "voice", out["voice"])}},
            "usage": usage, "metadata": resp.options.get("metadata"),
        }

    @staticmethod
    def _out_of_band(resp: _Response) -> bool:
        return resp.options.get("conversation") == "none"

    def _part_type(self, resp: _Response) -> str:
        mods = resp.options.get("output_modalities") or self.session["output_modalities"]
        return "text" if "text" in mods else "audio"

    def _tools(self, resp: _Response) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = resp.options.get("tools", self.session.get("tools") or [])
        choice = resp.options.get("tool_choice", self.session.get("tool_choice", "auto"))
        return [] if choice == "none" else tools

    def _brain_context(self, resp: _Response) -> BrainContext:
        transcript = ""
        tool_outputs: list[dict[str, Any]] = []
        for item_id in reversed(self.order):
            item = self.items[item_id]
            if item.get("type") == "function_call_output":
                tool_outputs.insert(0, item)
            elif item.get("type") == "message" and item.get("role") == "user":
                transcript = _item_text(item)
                break
        instructions = resp.options.get("instructions") or self.session.get("instructions", "")
        choice = resp.options.get("tool_choice", self.session.get("tool_choice", "auto"))
        items = [copy.deepcopy(self.items[i]) for i in self.order]
        return BrainContext(transcript=transcript, history=self._history(),
                            instructions=instructions, tools=self._tools(resp),
                            tool_outputs=tool_outputs, items=items, tool_choice=choice)

    async def _decide(self, resp: _Response) -> AsyncGenerator[BrainChunk, None]:
        """The answer, streamed: text deltas, then any function calls."""
        say = _SAY_RE.match(resp.options.get("instructions") or "")
        if say:
            for i, word in enumerate(say.group(1).split()):
                yield word if i == 0 else " " + word
            return
        pending = set(self._transcribing.values())
        if pending:  # wait (without cancelling them) for every committed turn's transcript
            await asyncio.wait(pending)
        async with contextlib.aclosing(brain_stream(self.brain, self._brain_context(resp))) as it:
            async for chunk in it:
                yield chunk

    async def _respond(self, resp: _Response, chunks: AsyncIterator[BrainChunk]) -> None:
        """Stream the brain's answer into the response: its text (spoken sentence by sentence
        in an audio response, as soon as each is complete), then its function calls."""
        calls: list[ToolCallReply] = []
        allowed = bool(self._tools(resp))
        first: str | None = None
        async for chunk in chunks:  # wait for the first text, or a call that stands alone
            if isinstance(chunk, ToolCallReply):
                if allowed:
                    calls.append(chunk)
            elif chunk:
                first = chunk
                break
            if calls:
                break
        if first is not None or not calls:
            async def texts() -> AsyncIterator[str]:
                if first is not None:
                    yield first
                async for chunk in chunks:
                    if isinstance(chunk, ToolCallReply):
                        if allowed:
                            calls.append(chunk)
                    elif chunk:
                        yield chunk

            if self._part_type(resp) == "text":
                await self._text_reply(resp, texts())
            else:
                await self._audio_reply(resp, sentences(texts()))
        else:
            async for chunk in chunks:  # more calls may follow; text after a call is dropped
                if isinstance(chunk, ToolCallReply) and allowed:
                    calls.append(chunk)
        for call in calls:
            self._function_call(resp, call)

    async def _run_response(self, resp: _Response) -> None:
        self.emit("response.created", response=self._response_object(resp, "in_progress", None,
                                                                      None))
        self.emit("rate_limits.updated", rate_limits=_RATE_LIMITS)
        chunks = self._decide(resp)
        try:
            await self._respond(resp, chunks)
        except BrainError as exc:
            self.error("brain_error", str(exc), error_type="server_error")
            self._fail_response(resp, _error_detail("brain_error", str(exc)))
            return
        except Exception as exc:  # the voice or a third-party brain failed
            log.exception("response %s failed", resp.id)
            self._fail_response(resp, _error_detail("server_error", f"{type(exc).__name__}: {exc}"))
            return
        finally:
            await chunks.aclose()  # a streaming brain closes its connection
        self._finish_response(resp, "completed", None)
        await self._wait_played_out(resp)
        self._idle_from_ms = self._stream_ms()

    def _fail_response(self, resp: _Response, details: dict[str, Any]) -> None:
        if resp.item is not None and resp.item["status"] == "in_progress":
            self._close_message(resp, "incomplete")
        self._finish_response(resp, "failed", details)
        if resp.audio_started and self._audio_playing_response == resp.id:
            self._clear_output_audio()

    def _open_message(self, resp: _Response) -> dict[str, Any]:
        item = {"id": _new_id("item_"), "object": "realtime.item", "type": "message",
                "role": "assistant", "status": "in_progress", "content": []}
        resp.item = item
        resp.output.append(item)
        self.emit("response.output_item.added", response_id=resp.id, output_index=0, item=item)
        if not self._out_of_band(resp):
            self._add_item(item, None)
        part = ({"type": "audio", "transcript": ""} if self._part_type(resp) == "audio"
                else {"type": "text", "text": ""})
        self.emit("response.content_part.added", **self._ids(resp), part=part)
        return item

    def _ids(self, resp: _Response) -> dict[str, Any]:
        assert resp.item is not None
        return {"response_id": resp.id, "item_id": resp.item["id"], "output_index": 0,
                "content_index": 0}

    async def _text_reply(self, resp: _Response, deltas: AsyncIterator[str]) -> None:
        self._open_message(resp)
        async for delta in deltas:
            self.emit("response.output_text.delta", **self._ids(resp), delta=delta)
            resp.text_sent += delta
        self._close_message(resp, "completed")

    def _transcript_delta(self, resp: _Response, word: str) -> None:
        delta = word if not resp.text_sent else " " + word
        self.emit("response.output_audio_transcript.delta", **self._ids(resp), delta=delta)
        resp.text_sent += delta

    async def _audio_reply(self, resp: _Response, texts: AsyncIterator[str]) -> None:
        """Speak each sentence as soon as it comes; transcript deltas follow the playout."""
        item = self._open_message(resp)
        loop = asyncio.get_running_loop()
        output = self.output
        words: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()

        async def speak() -> None:  # synthesize each sentence and queue its audio at once
            try:
                async for text in texts:
                    pcm, rate = await loop.run_in_executor(None, self.synthesizer.synthesize,
                                                           text)
                    offset = resp.audio_ms
                    if output is None:
                        if self.audio_deltas:  # the item's audio is what the deltas carried
                            resp.audio_ms += self._emit_audio_deltas(resp, pcm, rate)
                        else:
                            resp.audio_ms += pcm.size * 1000 / rate
                    else:
                        if not resp.audio_started:
                            self.emit("output_audio_buffer.started", response_id=resp.id)
                            resp.audio_started = True
                            self._audio_playing_response = resp.id
                            resp.audio_base_ms = output.played_ms + output.queued_ms
                        output.enqueue(pcm, rate)
                        resp.audio_ms += pcm.size * 1000 / rate
                    self._audio_ms[item["id"]] = resp.audio_ms
                    for word, at_ms in word_timings(text, pcm.size, rate):
                        words.put_nowait((word, offset + at_ms))
            finally:
                words.put_nowait(None)

        speaker = asyncio.ensure_future(speak())
        try:
            while (entry := await words.get()) is not None:
                if output is not None:
                    await self._until_played(resp, entry[1])
                self._transcript_delta(resp, entry[0])
            await speaker  # its failure (the brain's, the voice's) is the response's
            if output is not None:
                await self._until_played(resp, resp.audio_ms - _END_SLACK_MS)
        finally:
            if not speaker.done():
                speaker.cancel()
                await asyncio.gather(speaker, return_exceptions=True)
        self._close_message(resp, "completed")

    def _played_ms(self, resp: _Response) -> float:
        if self.output is None or not resp.audio_started:
            return resp.audio_ms
        return min(resp.audio_ms, max(0.0, self.output.played_ms - resp.audio_base_ms))

    async def _until_played(self, resp: _Response, ms: float) -> None:
        output = self.output
        assert output is not None
        while output.played_ms - resp.audio_base_ms < ms and output.queued_ms > 0:
            await asyncio.sleep(_POLL_S / self.realtime_factor)

    def _emit_audio_deltas(self, resp: _Response, pcm: np.ndarray, rate: int) -> float:
        """Send the reply audio as base64 PCM16 24 kHz deltas; returns its length in ms."""
        resampler = Resampler(rate, INPUT_RATE)
        audio = np.concatenate([resampler.process(pcm), resampler.flush()])
        step = INPUT_RATE // 5  # 200 ms per delta
        for i in range(0, audio.size, step):
            chunk = audio[i:i + step].astype("<i2").tobytes()
            self.emit("response.output_audio.delta", **self._ids(resp),
                      delta=base64.b64encode(chunk).decode("ascii"))
        resp.audio_started = True
        return audio.size * 1000 / INPUT_RATE

    def _close_message(self, resp: _Response, status: str) -> None:
        """Emit the ``*.done`` events of the reply's message (also for a cut reply)."""
        item = resp.item
        assert item is not None
        ids = self._ids(resp)
        text = resp.text_sent
        if self._part_type(resp) == "audio":
            self.emit("response.output_audio.done", **ids)
            self.emit("response.output_audio_transcript.done", **ids, transcript=text)
            part = {"type": "audio", "transcript": text}
            content = {"type": "output_audio", "transcript": text}
        else:
            self.emit("response.output_text.done", **ids, text=text)
            part = {"type": "text", "text": text}
            content = {"type": "output_text", "text": text}
        self.emit("response.content_part.done", **ids, part=part)
        item["content"] = [content]
        item["status"] = status
        self.emit("response.output_item.done", response_id=resp.id, output_index=0, item=item)
        if not self._out_of_band(resp):
            self.emit("conversation.item.done", item=item,
                      previous_item_id=self._previous_of(item["id"]))

    def _function_call(self, resp: _Response, reply: ToolCallReply) -> None:
        call_id = _new_id("call_")
        item = {"id": _new_id("item_"), "object": "realtime.item", "type": "function_call",
                "status": "in_progress", "name": reply.name, "call_id": call_id, "arguments": ""}
        index = len(resp.output)  # after the spoken message, if the brain said something first
        resp.output.append(item)
        self.emit("response.output_item.added", response_id=resp.id, output_index=index,
                  item=item)
        if not self._out_of_band(resp):
            self._add_item(item, None)
        ids = {"response_id": resp.id, "item_id": item["id"], "output_index": index,
               "call_id": call_id}
        args = reply.arguments
        step = max(1, len(args) // 3)
        for i in range(0, len(args), step):
            self.emit("response.function_call_arguments.delta", **ids, delta=args[i:i + step])
        self.emit("response.function_call_arguments.done", **ids, name=reply.name, arguments=args)
        item.update(arguments=args, status="completed")
        self.emit("response.output_item.done", response_id=resp.id, output_index=index,
                  item=item)
        if not self._out_of_band(resp):
            self.emit("conversation.item.done", item=item,
                      previous_item_id=self._previous_of(item["id"]))

    def _usage(self, resp: _Response) -> dict[str, Any]:
        own = {item["id"] for item in resp.output}
        instructions = resp.options.get("instructions") or self.session.get("instructions", "")
        text_in, audio_in = _approx_text_tokens(instructions), 0
        for item_id in self.order:
            if item_id in own:
                continue
            if item_id in self._audio_ms:
                audio_in += _audio_tokens(self._audio_ms[item_id])
            else:
                item = self.items[item_id]
                text_in += _approx_text_tokens(
                    _item_text(item) or str(item.get("output") or item.get("arguments") or ""))
        prev_text, prev_audio = self._last_input_tokens
        self._last_input_tokens = (text_in, audio_in)
        cached_text = min(prev_text, text_in) // 64 * 64
        cached_audio = min(prev_audio, audio_in) // 64 * 64
        text_out = _approx_text_tokens(resp.text_sent)
        audio_out = _audio_tokens(resp.audio_ms) if resp.audio_started else 0
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0,
                "cached_tokens": cached_text + cached_audio,
                "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached_audio,
                                          "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def _finish_response(self, resp: _Response, status: str,
                         details: dict[str, Any] | None) -> None:
        if resp.done:
            return
        resp.done = True
        if self._response is resp:
            self._response = None
        self.emit("response.done", response=self._response_object(resp, status, details,
                                                                   self._usage(resp)))

    async def _wait_played_out(self, resp: _Response) -> None:
        output = self.output
        if output is None or not resp.audio_started:
            return
        while output.queued_ms > 0 and self._audio_playing_response == resp.id:
            await asyncio.sleep(_POLL_S / self.realtime_factor)
        if self._audio_playing_response == resp.id:
            self._audio_playing_response = None
            self.emit("output_audio_buffer.stopped", response_id=resp.id)

    def _cancel_response(self, reason: str) -> None:
        """Cut the active response now: its ``*.done`` events, ``response.done``, ``cleared``."""
        resp = self._response
        if resp is None:
            return
        if resp.task is not None and resp.task is not asyncio.current_task():
            resp.task.cancel()
        if resp.item is not None and resp.item["status"] == "in_progress":
            if resp.item["id"] in self._audio_ms:
                self._audio_ms[resp.item["id"]] = self._played_ms(resp)
            self._close_message(resp, "incomplete")
        self._finish_response(resp, "cancelled", {"type": "cancelled", "reason": reason})
        if resp.audio_started and self._audio_playing_response == resp.id:
            self._clear_output_audio()

    def _barge_in(self) -> None:
        if self._response is not None:
            self._cancel_response("turn_detected")
        elif self._audio_playing_response is not None:
            self._clear_output_audio()

    def _clear_output_audio(self) -> None:
        response_id = self._audio_playing_response
        self._audio_playing_response = None
        if self.output is not None:
            self.output.clear()
        if response_id is not None:
            self.emit("output_audio_buffer.cleared", response_id=response_id)


def _commit_empty(ms: float) -> SessionError:
    return SessionError(
        "input_audio_buffer_commit_empty",
        "Error committing input audio buffer: buffer too small. Expected at least "
        f"{_MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.", None)


def _item_text(item: dict[str, Any]) -> str:
    parts = []
    for part in item.get("content") or []:
        text = part.get("text") or part.get("transcript")
        if text:
            parts.append(text)
    return " ".join(parts)
