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
* its own tasks: one ASR task per committed user item (in an executor; with server VAD it
  starts ``_EARLY_LEAD_MS`` before the silence that ends the turn has run out, once the
  turn's end is settled, and is dropped if the user speaks again; only with a recogniser
  that decodes statelessly), and the active
  response's task: the brain, then TTS, then audio queued on an :class:`AudioOutput` with
  transcript deltas paced by what has actually been played.

The event orders follow the real API (``docs/protocol.md``, ``docs/fidelity.md``): voice turn,
push-to-talk, text turn, function call, barge-in. Where the API leaves room, or where this
server differs from it:

* A response waits for the transcription of every committed user item before asking the
  brain (the brain reads transcripts, where the real model hears the audio), so a
  ``response.create`` sent right after a commit answers that turn. The transcription
  events themselves are emitted only when ``audio.input.transcription`` is configured.
* Generation runs ahead of playout, as on the API: the reply is synthesized, its transcript
  deltas are sent as fast as they are produced, and ``response.done`` comes when generation
  ends (then ``rate_limits.updated``), while the audio is still playing. Over WebRTC (an
  ``output`` is given) the audio goes to the RTP track and the session never emits
  ``response.output_audio.delta``; :class:`_Playout` follows the track and emits
  ``output_audio_buffer.started`` when a reply's audio starts playing and ``.stopped`` when it
  has played out. Over WebSocket (``audio_deltas=True``) the audio goes out as
  ``response.output_audio.delta`` events in the session's output format, interleaved with the
  transcript deltas, and no ``output_audio_buffer.*`` event is sent.
* Barge-in and clearing: a VAD ``speech_started`` (with ``interrupt_response``) or a client
  ``output_audio_buffer.clear``, while a response is being generated, cancels it: its pending
  ``*.done`` events with status ``incomplete``, ``response.done`` (cancelled, reason
  ``turn_detected`` or ``client_cancelled``), then ``output_audio_buffer.cleared``. After
  generation ended, while the audio still plays, only ``output_audio_buffer.cleared`` is sent
  (no second ``response.done``) and the item is truncated server-side to what was played: its
  audio length becomes the played length and its transcript is removed, as the API does with
  unheard audio. ``response.cancel`` with nothing being generated is
  ``response_cancel_not_active``. With ``interrupt_response`` false, a turn that ends while a
  reply is generated gets its response after that reply ends.
* ``turn_detection.idle_timeout_ms`` (server_vad): once a reply has played out, that much
  input media time without speech emits ``input_audio_buffer.timeout_triggered`` and commits
  the idle span as a user item of silence (then a response, if ``create_response``).
* There is one response slot: an out-of-band response (``conversation: "none"``) also blocks
  ``response.create``. ``response.input`` is not supported (the conversation is used), and
  ``conversation.item.retrieved`` carries no audio bytes.
* Usage is an estimate: about 4 characters per text token and 20 tokens per second of
  audio, over the instructions and the conversation before the response.

Events are built and read with the protocol core's codec (:mod:`livetalk.protocol.wire`):
client events are parsed strictly into typed events (a bad one is answered with the API's
error code), and every emitted event is constructed as its typed class before it is sent, so
the server cannot emit a malformed event.
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
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from livetalk._tasks import TaskSet
from livetalk.audio.codec import EventAudioCodec
from livetalk.audio.resample import Resampler
from livetalk.audio.vad import SpeechStarted, SpeechStopped, TurnDetector
from livetalk.errors import EventParseError, SessionConfigError
from livetalk.protocol import events as ev, wire
from livetalk.protocol.events import SERVER_EVENTS
from livetalk.protocol.session import (
    DEFAULT_MODEL,
    PCM_RATE,
    SAY_EXACTLY_PREFIX,
    default_session,
    merge_session,
    validate_session,
)
from livetalk.server.asr import (
    Transcriber,
    TranscriptionHints,
    decodes_statelessly,
    transcript_pieces,
)
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
from livetalk.server.tts import Synthesizer, word_timings

__all__ = ["AudioOutput", "ServerSession", "SAY_EXACTLY_PREFIX"]

log = logging.getLogger("livetalk.server")

#: ``response.instructions`` starting with this make the server speak the rest verbatim
#: (this is what ``Call.say()`` sends; the real model follows the same instruction).
_SAY_RE = re.compile(re.escape(SAY_EXACTLY_PREFIX) + r"\s*(.*)\Z", re.DOTALL)
_MAX_INPUT_BUFFER_S = 120
_MIN_COMMIT_MS = 100
_EAGERNESS_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700, "high": 400}
_EARLY_LEAD_MS = 300
"""With server VAD, a turn's recognition starts this long (media time) before its silence
ends it, so that the transcript is ready sooner after the commit; wasted if the user speaks
again within the silence."""
_POLL_S = 0.02
"""How often (in media seconds) the playout watcher checks the output's position."""
_END_SLACK_MS = 5
"""Audio the resampler may still hold when a reply counts as played out."""
_TOKENS_PER_MINUTE = 400_000
"""The limit reported by ``rate_limits.updated`` (real traffic shows only a ``tokens`` entry)."""
_WS_AUDIO_CHUNK_MS = 200
"""The most audio one ``response.output_audio.delta`` carries over WebSocket."""
_CLIENT_EVENT_ERRORS: Final = {
    "json": "invalid_json", "unknown_type": "invalid_value",
    "missing": "missing_required_parameter", "type": "invalid_type",
}

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
class _EarlyTurn:
    """A turn being recognised before it is committed (see :data:`_EARLY_LEAD_MS`)."""

    end: SpeechStopped
    hints: TranscriptionHints
    task: asyncio.Task[list[str] | Exception]


@dataclass
class _Response:
    id: str
    options: dict[str, Any]
    output: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    item: dict[str, Any] | None = None
    audio_started: bool = False  # audio queued on the output (WebRTC) or sent (WebSocket)
    text_sent: str = ""
    audio_ms: float = 0.0
    done: bool = False


@dataclass
class _Segment:
    """One reply's audio on the output's timeline (WebRTC playout)."""

    response_id: str
    item_id: str
    start_ms: float  # the output's played position at which it starts playing
    length_ms: float
    started: bool = False
    generating: bool = True  # more of the reply's audio may come (sentence by sentence)


class _Playout:
    """Follows the reply audio playing on an :class:`AudioOutput` and reports it.

    Replies are queued back to back; a watcher task polls the output's played position (in
    media time) and calls ``on_started`` / ``on_stopped`` at the segments' boundaries.
    """

    def __init__(self, output: AudioOutput, *, realtime_factor: float,
                 on_started: Callable[[_Segment], None],
                 on_stopped: Callable[[_Segment], None],
                 spawn: Callable[[Any], asyncio.Task[Any]]) -> None:
        self._output = output
        self._factor = realtime_factor
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._spawn = spawn
        self.segments: deque[_Segment] = deque()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def playing(self) -> _Segment | None:
        """The segment playing now (started, not stopped), or None."""
        head = self.segments[0] if self.segments else None
        return head if head is not None and head.started else None

    def play(self, response_id: str, item_id: str, pcm: np.ndarray, rate: int) -> _Segment:
        """Queue (more of) a reply's audio; starts it at once when nothing else plays.

        A reply spoken sentence by sentence is one segment: it stays open until
        :meth:`generated`, so a slow sentence plays silence rather than a stop and a start.
        """
        last = self.segments[-1] if self.segments else None
        if last is not None and last.response_id == response_id and last.generating:
            segment = last
            segment.length_ms += pcm.size * 1000 / rate
        else:
            position = self._output.played_ms + self._output.queued_ms
            segment = _Segment(response_id, item_id, position, pcm.size * 1000 / rate)
            self.segments.append(segment)
        self._output.enqueue(pcm, rate)
        if not self.segments[0].started:  # nothing else playing: it plays from now on
            self.segments[0].started = True
            self._on_started(self.segments[0])
        if self._watcher is None or self._watcher.done():
            self._watcher = self._spawn(self._watch())
        return segment

    def generated(self, response_id: str) -> None:
        """The reply's audio is complete: its segment stops once it has played out."""
        for segment in self.segments:
            if segment.response_id == response_id:
                segment.generating = False

    def played_ms(self, segment: _Segment) -> float:
        """How much of ``segment`` has played."""
        played = self._output.played_ms - segment.start_ms
        return max(0.0, min(segment.length_ms, played))

    def clear(self) -> list[_Segment]:
        """Drop every queued segment; returns them (the first may have been playing)."""
        cut = list(self.segments)
        self.segments.clear()
        self._output.clear()
        return cut

    def _check(self) -> None:
        played = self._output.played_ms
        while self.segments:
            head = self.segments[0]
            if not head.started:
                head.started = True
                self._on_started(head)
            end = head.start_ms + head.length_ms - _END_SLACK_MS
            if head.generating or (played < end and self._output.queued_ms > 0):
                return
            self.segments.popleft()
            self._on_stopped(head)

    async def _watch(self) -> None:
        while self.segments:  # stops when none is left; play() starts it again
            await asyncio.sleep(_POLL_S / self._factor)
            self._check()


class ServerSession:
    """The state and behaviour of one session; see the module docstring.

    Attach listeners with :meth:`add_listener` (each gets its own ``session.created``), then
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
        self.session = default_session(model or (session or {}).get("model") or DEFAULT_MODEL)
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
        self._early: _EarlyTurn | None = None
        self._response: _Response | None = None
        self._last_response_id: str | None = None
        self._last_input_tokens = (0, 0)
        self._tokens_left = _TOKENS_PER_MINUTE
        self._tasks = TaskSet(log, "a server session")
        self._playout = None if output is None else _Playout(
            output, realtime_factor=realtime_factor, on_started=self._audio_started,
            on_stopped=self._audio_stopped, spawn=self._tasks.spawn)
        self._configure_vad()

    # ---------------------------------------------------------------- listeners, emit
    def add_listener(self, listener: Listener, *, greet: bool = True) -> None:
        """Attach a sink of server events (a data channel, a WebSocket, a sideband).

        With ``greet`` the listener first gets a ``session.created`` of its own, as every
        connection to the API does, before any other event.
        """
        if greet:
            self._deliver(listener, self._build("session.created", session=self.session))
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Detach a listener added with :meth:`add_listener` (no-op if absent)."""
        if listener in self.listeners:
            self.listeners.remove(listener)

    def _build(self, type_: str, **fields: Any) -> dict[str, Any]:
        """One server event as the codec builds it: typed (so validated), then its wire dict.

        The fields are deep-copied, so the event is a snapshot of the session's state; fields
        the event class does not declare (``obfuscation``) travel as extras.
        """
        data = {"type": type_, "event_id": _new_id("event_"), **copy.deepcopy(fields)}
        SERVER_EVENTS[type_].from_dict(data)  # the codec's check: raises on a malformed event
        return data  # as built: explicit nulls stay, as the API sends them

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send one server event to every listener; returns the event's wire dict."""
        event = self._build(type_, **fields)
        for listener in list(self.listeners):
            self._deliver(listener, event)
        return event

    def _deliver(self, listener: Listener, event: dict[str, Any]) -> None:
        try:
            listener(event)
        except Exception:  # a broken listener must not break the session
            log.exception("listener failed; detaching it")
            self.remove_listener(listener)

    def error(
        self, code: str | None, message: str, *, param: str | None = None,
        event_id: str | None = None, error_type: str = "invalid_request_error",
    ) -> None:
        """Emit an ``error`` event; ``event_id`` is the client event it answers (else null)."""
        self.emit("error", error={"type": error_type, "code": code, "message": message,
                                  "param": param, "event_id": event_id})

    # ---------------------------------------------------------------- lifecycle
    async def close(self) -> None:
        """Cancel every running task of the session and detach the listeners."""
        self.closed = True
        await self._tasks.cancel_all()
        self.listeners.clear()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)

    # ---------------------------------------------------------------- VAD config
    @property
    def turn_detection(self) -> dict[str, Any] | None:
        """The effective ``audio.input.turn_detection`` (None: manual commits)."""
        td: dict[str, Any] | None = self.session["audio"]["input"].get("turn_detection")
        return td

    def _configure_vad(self) -> None:
        self._pending_item_id = None
        self._drop_early()
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
            PCM_RATE, threshold, prefix_padding_ms=padding, silence_duration_ms=max(silence, 200)
        )

    def _codec(self, direction: str) -> EventAudioCodec:
        fmt = self.session["audio"][direction].get("format") or {}
        return EventAudioCodec(fmt.get("type", "audio/pcm"))

    # ---------------------------------------------------------------- input audio
    def feed_audio(self, pcm: np.ndarray) -> None:
        """Take 24 kHz int16 mono input audio (RTP or ``input_audio_buffer.append``)."""
        if self.closed or pcm.size == 0:
            return
        self._stream_samples += pcm.size
        if self._detector is None:
            self._input.append(pcm)
            self._input_samples += pcm.size
            while self._input_samples > _MAX_INPUT_BUFFER_S * PCM_RATE and len(self._input) > 1:
                self._input_samples -= self._input.pop(0).size
            return
        for vad_event in self._detector.feed(pcm):
            if isinstance(vad_event, SpeechStarted):
                self._on_speech_started(vad_event)
            elif isinstance(vad_event, SpeechStopped):
                self._on_speech_stopped(vad_event)
        self._recognise_early(self._detector)
        self._check_idle_timeout()

    def _recognise_early(self, detector: TurnDetector) -> None:
        """Start recognising the turn in progress once its end is settled and its silence is
        within ``_EARLY_LEAD_MS`` of ending it (the commit then reuses the work)."""
        if not decodes_statelessly(self.transcriber):
            return
        if not detector.end_settled:
            self._drop_early()  # the user spoke again: that end was not the turn's
            return
        if detector.silent_ms < detector.silence_duration_ms - _EARLY_LEAD_MS:
            return
        end = detector.peek_end()
        assert end is not None
        if self._early is not None and self._early.end.end_ms == end.end_ms:
            return  # already under way for this very end
        self._drop_early()
        hints = self._hints()
        task = self._spawn(self._recognise(end.audio, hints))
        self._early = _EarlyTurn(end, hints, task)

    def _drop_early(self) -> None:
        if self._early is not None:
            self._early.task.cancel()
            self._early = None

    def _take_early(self, stopped: SpeechStopped) -> asyncio.Task[list[str] | Exception] | None:
        """The early recognition of exactly this turn, if one is under way."""
        early, self._early = self._early, None
        if early is None:
            return None
        same = (early.end.end_ms == stopped.end_ms and early.end.audio.size == stopped.audio.size
                and early.hints == self._hints())
        if same and not early.task.cancelled():
            return early.task
        early.task.cancel()
        return None

    def _hints(self) -> TranscriptionHints:
        settings = self.session["audio"]["input"].get("transcription") or {}
        return TranscriptionHints(language=settings.get("language") or None,
                                  prompt=settings.get("prompt") or None)

    async def _recognise(self, audio: np.ndarray,
                         hints: TranscriptionHints) -> list[str] | Exception:
        """Recognise a turn before its commit: its pieces, or the recogniser's error (which
        the commit's transcription reports, as if it had run then)."""
        try:
            return [piece async for piece in transcript_pieces(self.transcriber, audio,
                                                               PCM_RATE, hints)]
        except Exception as exc:
            return exc

    def _stream_ms(self) -> int:
        return self._stream_samples * 1000 // PCM_RATE

    def _on_speech_started(self, started: SpeechStarted) -> None:
        self._idle_from_ms = None
        self._pending_item_id = _new_id("item_")
        self.emit("input_audio_buffer.speech_started", audio_start_ms=int(started.start_ms),
                  item_id=self._pending_item_id)
        td = self.turn_detection or {}
        if td.get("interrupt_response", True):
            self._cut("turn_detected")

    def _on_speech_stopped(self, stopped: SpeechStopped) -> None:
        item_id = self._pending_item_id or _new_id("item_")
        self._pending_item_id = None
        self.emit("input_audio_buffer.speech_stopped", audio_end_ms=int(stopped.end_ms),
                  item_id=item_id)
        td = self.turn_detection or {}
        self._commit_audio(item_id, stopped.audio, early=self._take_early(stopped),
                           create_response=td.get("create_response", True))

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
        silence = np.zeros((now - start) * PCM_RATE // 1000, dtype=np.int16)
        self._commit_audio(item_id, silence, create_response=td.get("create_response", True))

    def _commit_audio(self, item_id: str, audio: np.ndarray, *, create_response: bool,
                      early: asyncio.Task[list[str] | Exception] | None = None) -> None:
        previous = self.order[-1] if self.order else None
        self.emit("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        item = {
            "id": item_id, "object": "realtime.item", "type": "message", "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._audio_ms[item_id] = audio.size * 1000 / PCM_RATE
        self._add_item(item, None)
        self.emit("conversation.item.done", item=item, previous_item_id=previous)
        transcription = self._spawn(self._transcribe(item, audio, early))
        self._transcribing[item_id] = transcription
        if create_response:
            self._spawn(self._respond_after_turn(transcription))

    async def _transcribe(self, item: dict[str, Any], audio: np.ndarray,
                          early: asyncio.Task[list[str] | Exception] | None = None) -> None:
        """Fill in a committed user item's transcript (and emit the events if configured).

        Each piece the recogniser decodes becomes deltas (one per word) as soon as it is
        decoded (at once for what ``early`` recognition already has); ``completed`` carries
        the whole transcript and the audio's duration.
        """
        item_id = item["id"]
        configured = self.session["audio"]["input"].get("transcription") is not None
        pieces: list[str] = []

        async def decoded() -> AsyncIterator[str]:
            if early is not None:
                result = await early
                if isinstance(result, Exception):
                    raise result
                for piece in result:
                    yield piece
                return
            async for piece in transcript_pieces(self.transcriber, audio, PCM_RATE,
                                                 self._hints()):
                yield piece

        try:
            async for piece in decoded():
                if configured:
                    for word in piece.split():
                        self.emit("conversation.item.input_audio_transcription.delta",
                                  item_id=item_id, content_index=0,
                                  delta=word if not pieces else " " + word,
                                  obfuscation=_obfuscation())
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
                      usage={"type": "duration", "seconds": round(audio.size / PCM_RATE, 3)})

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
    def handle_client_event(self, data: Any) -> None:
        """Act on one client event (its JSON text or decoded object); a bad one is answered
        with an ``error`` event carrying the API's code, and the session stays open."""
        if self.closed:
            return
        try:
            event = wire.parse_client_event(data)
        except EventParseError as exc:
            self._refuse(exc)
            return
        if event.extra:
            name = sorted(event.extra)[0]
            self.error("unknown_parameter", f"Unknown parameter: '{name}'.", param=name,
                       event_id=event.event_id)
            return
        handler = self._handlers[type(event)]
        try:
            handler(self, event)
        except SessionConfigError as exc:
            self.error(exc.code, exc.message, param=exc.param, event_id=event.event_id)

    def _refuse(self, exc: EventParseError) -> None:
        code = _CLIENT_EVENT_ERRORS.get(exc.reason, "invalid_value")
        if exc.reason == "unknown_type":
            supported = ", ".join(f"'{t}'" for t in sorted(ev.CLIENT_EVENTS))
            message = f"Invalid value: {exc}. Supported values are: {supported}."
        elif exc.reason == "missing":
            message = f"Missing required parameter: '{exc.param}'."
        elif exc.reason == "type":
            message = f"Invalid type for '{exc.param}': {exc}."
        else:
            message = "The event is not valid JSON."
        self.error(code, message, param=exc.param, event_id=exc.event_id)

    def _on_session_update(self, event: ev.SessionUpdate) -> None:
        update = validate_session(event.session)
        voice = update.get("audio", {}).get("output", {}).get("voice")
        if (voice is not None and voice != self.session["audio"]["output"]["voice"]
                and self._response is not None and self._response.audio_started):
            raise SessionConfigError("cannot_update_voice",
                                     "Cannot update a session's voice after the model has "
                                     "responded with audio.", "session.audio.output.voice")
        old_td = self.turn_detection
        self.session = merge_session(self.session, update)
        if self.turn_detection != old_td:
            self._configure_vad()
        self.emit("session.updated", session=self.session)

    def _on_append(self, event: ev.InputAudioBufferAppend) -> None:
        try:
            raw = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise SessionConfigError("invalid_value", "Invalid 'audio': not valid base64.",
                                     "audio") from None
        codec = self._codec("input")
        pcm = codec.decode(raw)
        if codec.rate != PCM_RATE:
            pcm = Resampler(codec.rate, PCM_RATE).process(pcm)
        self.feed_audio(pcm)

    def _on_commit(self, event: ev.InputAudioBufferCommit) -> None:
        if self._detector is not None:
            self._drop_early()
            stopped = self._detector.force_end()
            if stopped is None:
                raise _commit_empty(0.0)
            item_id = self._pending_item_id or _new_id("item_")
            self._pending_item_id = None
            self._commit_audio(item_id, stopped.audio, create_response=False)
            return
        ms = self._input_samples * 1000 / PCM_RATE
        if ms < _MIN_COMMIT_MS:
            raise _commit_empty(ms)
        audio = np.concatenate(self._input)
        self._input, self._input_samples = [], 0
        self._commit_audio(_new_id("item_"), audio, create_response=False)

    def _on_input_clear(self, event: ev.InputAudioBufferClear) -> None:
        self._input, self._input_samples = [], 0
        self._pending_item_id = None
        if self._detector is not None:
            self._detector.reset()
        self._drop_early()
        self.emit("input_audio_buffer.cleared")

    def _on_output_clear(self, event: ev.OutputAudioBufferClear) -> None:
        if self.output is None:
            raise SessionConfigError("invalid_value", "output_audio_buffer.clear is only "
                                     "supported over WebRTC and SIP.", "type")
        self._cut("client_cancelled")

    def _on_item_create(self, event: ev.ConversationItemCreate) -> None:
        item = event.item
        kind = item.get("type")
        if kind not in ("message", "function_call", "function_call_output"):
            raise SessionConfigError(
                "invalid_value", f"Invalid value: {kind!r}. Supported values are: 'message', "
                "'function_call', 'function_call_output'.", "item.type")
        if kind == "message" and item.get("role") not in ("user", "assistant", "system"):
            raise SessionConfigError(
                "invalid_value", f"Invalid value: {item.get('role')!r}. Supported values are: "
                "'user', 'assistant', 'system'.", "item.role")
        if kind == "function_call_output" and not isinstance(item.get("call_id"), str):
            raise SessionConfigError("missing_required_parameter",
                                     "Missing required parameter: 'item.call_id'.",
                                     "item.call_id")
        item = {"id": item.get("id") or _new_id("item_"), "object": "realtime.item",
                **{k: v for k, v in item.items() if k != "id"}, "status": "completed"}
        if item["id"] in self.items:
            raise SessionConfigError("invalid_value",
                                     f"Item with id '{item['id']}' already exists.", "item.id")
        previous = event.previous_item_id
        if previous not in (None, "root") and previous not in self.items:
            raise SessionConfigError("invalid_value",
                                     f"Previous item with id '{previous}' not found.",
                                     "previous_item_id")
        before = self._add_item(item, previous)
        self.emit("conversation.item.done", item=item, previous_item_id=before)

    def _find_item(self, item_id: str, action: str) -> dict[str, Any]:
        """The item ``item_id``, or the API's refusal for ``action`` (``retrieve``,
        ``truncate`` or ``delete``): code ``item_<action>_invalid_item_id``, no ``param``."""
        item = self.items.get(item_id)
        if item is None:
            verb = {"retrieve": "retrieving", "truncate": "truncating", "delete": "deleting"}
            raise SessionConfigError(
                f"item_{action}_invalid_item_id",
                f"Error {verb[action]} item: the item with id '{item_id}' does not exist.", None)
        return item

    def _on_item_retrieve(self, event: ev.ConversationItemRetrieve) -> None:
        self.emit("conversation.item.retrieved", item=self._find_item(event.item_id, "retrieve"))

    def _on_item_truncate(self, event: ev.ConversationItemTruncate) -> None:
        item = self._find_item(event.item_id, "truncate")
        end = event.audio_end_ms
        if item.get("role") != "assistant" or item["id"] not in self._audio_ms:
            raise SessionConfigError("unsupported_content_type",
                                     "Only model output audio messages can be truncated", None)
        total = self._audio_ms[item["id"]]
        # The API's audio comes in whole frames, so a client that clamps to the length it
        # received (rounded up, as the agents SDK does) is never refused there; this server's
        # lengths have fractions of a millisecond, hence the ceil.
        if end > math.ceil(total):
            self.error(None, f"Audio content of {int(total)}ms is already shorter than "
                       f"{end}ms", event_id=event.event_id)
            return
        self._truncate(item, min(float(end), total))
        self.emit("conversation.item.truncated", item_id=item["id"],
                  content_index=event.content_index, audio_end_ms=end)

    def _truncate(self, item: dict[str, Any], played_ms: float) -> None:
        """Cut an assistant item's audio at ``played_ms``; its transcript goes, as on the API
        (no text in the context that the user did not hear)."""
        self._audio_ms[item["id"]] = played_ms
        for part in item.get("content") or []:
            if part.get("type") == "output_audio":
                part["transcript"] = None

    def _on_item_delete(self, event: ev.ConversationItemDelete) -> None:
        item_id = self._find_item(event.item_id, "delete")["id"]
        del self.items[item_id]
        self.order.remove(item_id)
        self._audio_ms.pop(item_id, None)
        self.emit("conversation.item.deleted", item_id=item_id)

    def _on_response_create(self, event: ev.ResponseCreate) -> None:
        if self._response is not None:
            raise SessionConfigError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: "
                f"{self._response.id}. Wait until the response is finished before creating a "
                "new one.", None)
        options = event.response or {}
        mods = options.get("output_modalities")
        if mods is not None and mods not in (["audio"], ["text"]):
            raise SessionConfigError(
                "invalid_value", f"Invalid value: {mods!r}. Supported values are: ['audio'] "
                "and ['text'].", "response.output_modalities")
        self._start_response(options)

    def _on_response_cancel(self, event: ev.ResponseCancel) -> None:
        wanted = event.response_id
        if self._response is None or (wanted and wanted != self._response.id):
            raise SessionConfigError("response_cancel_not_active",
                                     "Cancellation failed: no active response found.", None)
        self._cancel_response("client_cancelled")

    _handlers: dict[type[ev.ClientEvent], Callable[[ServerSession, Any], None]] = {
        ev.SessionUpdate: _on_session_update,
        ev.InputAudioBufferAppend: _on_append,
        ev.InputAudioBufferCommit: _on_commit,
        ev.InputAudioBufferClear: _on_input_clear,
        ev.OutputAudioBufferClear: _on_output_clear,
        ev.ConversationItemCreate: _on_item_create,
        ev.ConversationItemRetrieve: _on_item_retrieve,
        ev.ConversationItemTruncate: _on_item_truncate,
        ev.ConversationItemDelete: _on_item_delete,
        ev.ResponseCreate: _on_response_create,
        ev.ResponseCancel: _on_response_cancel,
    }

    # ---------------------------------------------------------------- responses
    @property
    def response_active(self) -> bool:
        """A response is being generated (``response.created`` sent, ``response.done`` not)."""
        return self._response is not None

    @property
    def audio_playing(self) -> bool:
        """Reply audio is playing on the output (WebRTC)."""
        return self._playout is not None and bool(self._playout.segments)

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
        if not self.audio_playing:
            self._idle_from_ms = self._stream_ms()

    def _fail_response(self, resp: _Response, details: dict[str, Any]) -> None:
        if resp.item is not None and resp.item["status"] == "in_progress":
            self._close_message(resp, "incomplete")
        self._finish_response(resp, "failed", details)
        self._clear_output(resp.id)

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
            self.emit("response.output_text.delta", **self._ids(resp), delta=delta,
                      obfuscation=_obfuscation())
            resp.text_sent += delta
        self._close_message(resp, "completed")

    def _transcript_delta(self, resp: _Response, word: str) -> None:
        delta = word if not resp.text_sent else " " + word
        self.emit("response.output_audio_transcript.delta", **self._ids(resp), delta=delta,
                  obfuscation=_obfuscation())
        resp.text_sent += delta

    async def _audio_reply(self, resp: _Response, texts: AsyncIterator[str]) -> None:
        """Speak each sentence as soon as the brain completes it: its audio is queued (WebRTC)
        or sent (WebSocket) and its transcript deltas go out at once, ahead of the playout
        as in real traffic. The reply is one playout segment until its last sentence."""
        item = self._open_message(resp)
        loop = asyncio.get_running_loop()
        async for text in texts:  # one sentence at a time, as the brain completes it
            pcm, rate = await loop.run_in_executor(None, self.synthesizer.synthesize, text)
            spoken_ms = pcm.size * 1000 / rate
            timings = word_timings(text, pcm.size, rate)
            if self._playout is not None:  # WebRTC: the audio plays out from now on
                resp.audio_started = True
                self._playout.play(resp.id, item["id"], pcm, rate)
                for word, _ in timings:
                    self._transcript_delta(resp, word)
            else:  # WebSocket: transcript and audio deltas interleaved, as generated
                if self.audio_deltas:
                    resp.audio_started = True
                sent_ms = self._emit_interleaved(resp, pcm, rate, timings)
                if self.audio_deltas:  # the item's audio is what the client received
                    spoken_ms = sent_ms
            resp.audio_ms += spoken_ms
            self._audio_ms[item["id"]] = resp.audio_ms
        if self._playout is not None:
            self._playout.generated(resp.id)
        self._close_message(resp, "completed")

    def _emit_interleaved(self, resp: _Response, pcm: np.ndarray, rate: int,
                          timings: list[tuple[str, float]]) -> float:
        """Each word's transcript delta, then the audio up to the next word's start; returns
        the ms of audio sent (at the output format's rate)."""
        codec = self._codec("output")
        resampler = Resampler(rate, codec.rate)
        step = codec.rate * _WS_AUDIO_CHUNK_MS // 1000
        starts = [int(at_ms * rate / 1000) for _, at_ms in timings[1:]] + [pcm.size]
        sent = 0
        samples_out = 0
        for (word, _), end in zip(timings, starts, strict=True):
            self._transcript_delta(resp, word)
            if not self.audio_deltas:
                continue
            chunk = resampler.process(pcm[sent:end])
            if end == pcm.size:
                chunk = np.concatenate([chunk, resampler.flush()])
            sent = end
            samples_out += chunk.size
            for i in range(0, chunk.size, step):
                data = codec.encode(chunk[i:i + step])
                self.emit("response.output_audio.delta", **self._ids(resp),
                          delta=base64.b64encode(data).decode("ascii"))
        return samples_out * 1000 / codec.rate

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
        self._item_done(resp, item)

    def _item_done(self, resp: _Response, item: dict[str, Any]) -> None:
        """The item is final: ``conversation.item.done`` then ``response.output_item.done``
        (the order of real traffic)."""
        if not self._out_of_band(resp):
            self.emit("conversation.item.done", item=item,
                      previous_item_id=self._previous_of(item["id"]))
        self.emit("response.output_item.done", response_id=resp.id,
                  output_index=resp.output.index(item), item=item)

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
        self._item_done(resp, item)

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
        """``response.done``, then ``rate_limits.updated`` (the order of real traffic)."""
        if resp.done:
            return
        resp.done = True
        if self._response is resp:
            self._response = None
        usage = self._usage(resp)
        self.emit("response.done", response=self._response_object(resp, status, details, usage))
        self._tokens_left = max(0, self._tokens_left - usage["total_tokens"])
        self.emit("rate_limits.updated", rate_limits=[
            {"name": "tokens", "limit": _TOKENS_PER_MINUTE, "remaining": self._tokens_left,
             "reset_seconds": round(60.0 * (1 - self._tokens_left / _TOKENS_PER_MINUTE), 3)}])

    def _audio_started(self, segment: _Segment) -> None:
        self.emit("output_audio_buffer.started", response_id=segment.response_id)

    def _audio_stopped(self, segment: _Segment) -> None:
        self.emit("output_audio_buffer.stopped", response_id=segment.response_id)
        if not self.audio_playing and self._response is None:
            self._idle_from_ms = self._stream_ms()

    def _cancel_response(self, reason: str) -> None:
        """Cut the response being generated: its ``*.done`` events, ``response.done``, then
        ``output_audio_buffer.cleared`` if its audio had started."""
        resp = self._response
        if resp is None:
            return
        if resp.task is not None and resp.task is not asyncio.current_task():
            resp.task.cancel()
        if resp.item is not None and resp.item["status"] == "in_progress":
            self._close_message(resp, "incomplete")
        self._finish_response(resp, "cancelled", {"type": "cancelled", "reason": reason})
        self._clear_output(resp.id)

    def _cut(self, reason: str) -> None:
        """A barge-in or ``output_audio_buffer.clear``: stop generating, stop playing."""
        if self._response is not None:
            self._cancel_response(reason)
        else:
            self._clear_output(None)

    def _clear_output(self, response_id: str | None) -> None:
        """Drop the reply audio queued on the output: ``cleared`` for the one playing, and
        every cut item truncated server-side to what was played."""
        if self._playout is None or not self._playout.segments:
            return
        if response_id is not None and not any(
                s.response_id == response_id for s in self._playout.segments):
            return
        playing = self._playout.playing
        played = {s.item_id: self._playout.played_ms(s) for s in self._playout.segments}
        self._playout.clear()
        for item_id, ms in played.items():
            item = self.items.get(item_id)
            if item is not None and self._audio_ms.get(item_id, 0) > ms:
                self._truncate(item, ms)
        if playing is not None:
            self.emit("output_audio_buffer.cleared", response_id=playing.response_id)


def _obfuscation() -> str:
    """The ``obfuscation`` padding real deltas carry (random, of varying length)."""
    return secrets.token_urlsafe(secrets.randbelow(12) + 4)


def _commit_empty(ms: float) -> SessionConfigError:
    return SessionConfigError(
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
