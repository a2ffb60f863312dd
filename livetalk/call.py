"""The user-facing call object: :func:`connect` and :class:`Call`.

A :class:`Call` joins the three layers: a transport (WebRTC by default) that carries events
and audio, the sans-I/O protocol core that parses events and assembles turns, and the audio
helpers that feed and record PCM. Use it as an async context manager::

    async with livetalk.connect(session=SessionConfig(instructions="Be brief.")) as call:
        await call.stream(livetalk.audio.FileSource("question.wav"))
        async for turn in call.turns():
            print(turn.role, turn.text)

or ``call = await livetalk.connect(...)`` followed by ``await call.close()``.

Iterators (:meth:`Call.events`, :meth:`Call.transcript_deltas`, :meth:`Call.turns`,
:meth:`Call.audio_chunks`) can be read by several consumers at once; each sees every item.
They end normally when the call is closed, and raise :class:`~livetalk.errors.CallClosedError`
after the last item when the call fails; nothing received before a failure is lost.
Cancelling a task that awaits any coroutine of the call is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, ClassVar

import httpx
import numpy as np

from livetalk._feed import Feed
from livetalk.audio.clock import MediaClock
from livetalk.audio.history import AudioHistory
from livetalk.audio.vad import SpeechStarted, SpeechStopped
from livetalk.errors import (
    CallClosedError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    LivetalkError,
    RemoteProtocolError,
    ServerErrorEvent,
)
from livetalk.localvad import LocalVAD
from livetalk.protocol import events as ev, wire
from livetalk.protocol.conversation import (
    Conversation,
    FunctionCallDone,
    ResponseFinished,
    TranscriptDelta,
    Turn,
)
from livetalk.protocol.events import Usage
from livetalk.protocol.session import SAY_EXACTLY_PREFIX, SessionConfig
from livetalk.transport.base import Transport
from livetalk.transport.playout import PlayoutSettings, ReceiveStatistics
from livetalk.transport.signaling import resolve_api_key, resolve_base_url
from livetalk.transport.webrtc import WebRTCTransport

__all__ = ["Call", "connect"]

log = logging.getLogger("livetalk")


EventTap = Callable[[str, dict[str, Any]], None]
_COMMIT_DELAY_SAMPLES = 24000 * 250 // 1000  # 250 ms of media after a local turn ends
ToolHandler = Callable[..., Any]
"""A function-call handler: called with the parsed JSON arguments as keyword arguments
(sync or async); its return value (a string, or anything JSON-serialisable) is sent back."""


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Opt-in automatic reconnection (``connect(reconnect=Reconnect())``).

    When a call drops abnormally, livetalk opens a new call with backoff, replays the
    session config (instructions, tools...) and the conversation so far as text items, and
    publishes :class:`CallNotice` items on :meth:`Call.notices`. With ``recycle_after_s``
    it also replaces the call proactively (make before break) before the API's 60-minute
    session limit. An in-progress :meth:`Call.stream` ends at the drop; stream again (a
    microphone source simply continues).

    Attributes:
        max_attempts: attempts per drop before the call fails with CallClosedError.
        initial_backoff_s: delay before the first attempt; doubles on each failure.
        max_backoff_s: the longest delay.
        recycle_after_s: replace the call after this long (None: never). The API ends
            sessions at 3600 s; 3300 leaves room.
    """

    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    recycle_after_s: float | None = 3300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"Reconnect.max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ConfigError("Reconnect backoff must satisfy 0 <= initial <= max")
        if self.recycle_after_s is not None and self.recycle_after_s <= 0:
            raise ConfigError("Reconnect.recycle_after_s must be > 0 or None")


@dataclass(frozen=True, slots=True)
class CallNotice:
    """Something that happened to the call itself (not a protocol event).

    Attributes:
        kind: ``"reconnecting"`` (after a drop; ``error`` says why), ``"reconnected"``,
            ``"recycled"`` (proactive replacement before the session limit).
        attempt: the attempt number for reconnecting/reconnected, else 0.
        call_id: the new call's id once reconnected or recycled.
        error: the cause of the drop, as text.
    """

    kind: str
    attempt: int = 0
    call_id: str | None = None
    error: str | None = None


class EventLog:
    """Writes every event crossing the wire as ``{"dir", "t_ms", "event"}`` JSON lines."""

    def __init__(self, target: str | Path | IO[str]) -> None:
        self._owned = isinstance(target, str | Path)
        self._file: IO[str] = (
            open(target, "w", encoding="utf-8") if isinstance(target, str | Path) else target
        )
        self._t0 = time.monotonic()

    def __call__(self, direction: str, event: dict[str, Any]) -> None:
        t_ms = round((time.monotonic() - self._t0) * 1000, 1)
        self._file.write(json.dumps({"dir": direction, "t_ms": t_ms, "event": event}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._owned:
            self._file.close()


class Call:
    """A live Realtime session. Create it with :func:`connect`; see the module docstring."""

    #: Taps added to every call of the process, before the call's own: e.g. a test suite
    #: validating every event on the wire. Each is called as ``tap(direction, event)``.
    global_taps: ClassVar[list[EventTap]] = []

    def __init__(
        self,
        transport: Transport,
        *,
        config: SessionConfig | None,
        http_client: httpx.AsyncClient,
        owns_http: bool,
        taps: list[EventTap],
        clock: Callable[[], float] = time.monotonic,
        tool_handlers: dict[str, ToolHandler] | None = None,
        keep_user_audio_s: float = 60.0,
        local_vad: LocalVAD | None = None,
        reconnect: Reconnect | None = None,
        transport_factory: Callable[[], Transport] | None = None,
    ) -> None:
        self._transport = transport
        self._config = config
        self._http = http_client
        self._owns_http = owns_http
        self._taps = [*Call.global_taps, *taps]
        self._clock = clock
        self.conversation = Conversation(clock=clock)
        #: The full effective session, from the latest ``session.created``/``session.updated``.
        self.session: dict[str, Any] = {}
        self.connect_ms: float | None = None
        self._events: Feed[ev.ServerEvent] = Feed(maxlen=20_000)
        self._deltas: Feed[TranscriptDelta] = Feed()
        self._turns: Feed[Turn] = Feed()
        self._audio: Feed[np.ndarray] = Feed(replay=False, maxlen=500)  # ~10 s
        self._responses: Feed[ResponseFinished] = Feed()
        self._function_calls: Feed[FunctionCallDone] = Feed()
        self._pending: dict[str, asyncio.Future[ev.ServerEvent]] = {}
        self._session_created: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed = False
        self._close_error: BaseException | None = None
        self._sink_tasks: list[tuple[asyncio.Task[None], Any]] = []
        self._cleanups: list[Callable[[], None]] = []
        self._audio_stopped = asyncio.Event()
        self._audio_stopped.set()
        self.errors: list[ServerErrorEvent] = []
        self._tool_handlers: dict[str, ToolHandler] = dict(tool_handlers or {})
        self._response_idle = asyncio.Event()
        self._response_idle.set()
        self._background: set[asyncio.Task[Any]] = set()  # tool runs, commits, reconnects
        # user audio as sent, for user-turn audio and local VAD
        self._sent = AudioHistory(24000, keep_user_audio_s) if keep_user_audio_s > 0 else None
        self._speech_start_ms: dict[str, float] = {}
        self._turn_audio: dict[str, np.ndarray] = {}
        self._local_vad = local_vad
        self._detector = local_vad.detector(24000) if local_vad is not None else None
        self._local_turns: list[np.ndarray] = []  # detected locally, awaiting their item id
        self._commit_countdown = 0  # samples to send before committing a local turn
        self._attach(transport)
        self._reconnect = reconnect
        self._transport_factory = transport_factory
        self._notices: Feed[CallNotice] = Feed()
        self._usage_before = Usage()  # usage of the sessions replaced by reconnects
        self._replayed_ids: set[str] = set()
        self._recycle_timer: asyncio.TimerHandle | None = None

    def _attach(self, transport: Transport) -> None:
        """Route a transport's audio into the call's feeds and taps."""
        transport.add_audio_consumer(self._audio.publish)
        if self._sent is not None or self._detector is not None:
            transport.on_sent_audio = self._on_sent_audio

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Call {self.call_id or '?'} {self._transport.kind} {state}>"

    # ---------------------------------------------------------------- properties
    @property
    def call_id(self) -> str | None:
        """The ``rtc_...`` id from the ``Location`` header (None over WebSocket)."""
        return self._transport.call_id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failure(self) -> BaseException | None:
        """Why the call ended abnormally (a CallClosedError), or None."""
        return self._close_error

    @property
    def usage(self) -> Usage:
        """Token usage summed over every finished response (across reconnects)."""
        return self._usage_before + self.conversation.usage_total

    @property
    def response_active(self) -> bool:
        """A response is being generated (``response.created`` seen, ``response.done`` not)."""
        return self.conversation.response_active

    @property
    def assistant_speaking(self) -> bool:
        """The server is playing reply audio (between ``output_audio_buffer.started`` and
        ``stopped``/``cleared``)."""
        return not self._audio_stopped.is_set()

    @property
    def outbound_track(self) -> Any:
        """The :class:`~livetalk.transport.tracks.OutboundAudioTrack` carrying your audio
        (WebRTC), or None over WebSocket."""
        return getattr(self._transport, "track", None)

    def receive_statistics(self) -> ReceiveStatistics | None:
        """The receive jitter buffer's figures (WebRTC; None over WebSocket or with aiortc's
        fixed buffer): target and current delay, underruns, concealed ms, late drops."""
        stats = getattr(self._transport, "receive_statistics", None)
        return stats() if stats is not None else None

    @property
    def transport_kind(self) -> str:
        """``"webrtc"`` or ``"websocket"`` (after an ``"auto"`` connect: the one in use)."""
        return self._transport.kind

    # ---------------------------------------------------------------- start
    async def _start(self, *, send_update: bool, timeout: float) -> None:
        await self._transport.connect(self._on_message, self._on_transport_closed)
        try:
            await asyncio.wait_for(asyncio.shield(self._session_created), timeout)
        except TimeoutError:
            raise ConnectTimeout(
                f"connected, but no session.created arrived within {timeout:g} s"
            ) from None
        if send_update and self._config is not None:
            await self.update_session(self._config, timeout=timeout)

    # ---------------------------------------------------------------- incoming
    def _on_message(self, text: str) -> None:
        try:
            raw = json.loads(text)
        except ValueError:
            log.warning("ignoring a data-channel message that is not JSON (%d bytes)", len(text))
            return
        for tap in self._taps:
            tap("in", raw)
        try:
            event = wire.parse_server_event(raw)
        except RemoteProtocolError as exc:
            log.warning("ignoring a malformed server event: %s", exc)
            return
        self._handle(event)

    def _handle(self, event: ev.ServerEvent) -> None:
        if isinstance(event, ev.SessionCreated | ev.SessionUpdated):
            self.session = dict(event.session)
            if not self._session_created.done():
                self._session_created.set_result(None)
        elif isinstance(event, ev.ErrorEvent):
            exc = event.to_exception()
            self.errors.append(exc)
            log.info("server error event: %s", exc)
            fut = self._pending.pop(event.client_event_id or "", None)
            if fut is not None and not fut.done():
                fut.set_result(event)
        elif isinstance(event, ev.ResponseCreated):
            self._response_idle.clear()
        elif isinstance(event, ev.InputAudioBufferSpeechStarted):
            self._speech_start_ms[event.item_id] = event.audio_start_ms
        elif isinstance(event, ev.InputAudioBufferSpeechStopped):
            start = self._speech_start_ms.pop(event.item_id, None)
            if start is not None and self._sent is not None:
                self._turn_audio[event.item_id] = self._sent.slice_ms(start, event.audio_end_ms)
        elif isinstance(event, ev.InputAudioBufferCommitted) and self._local_turns:
            self._turn_audio[event.item_id] = self._local_turns.pop(0)
        elif isinstance(event, ev.OutputAudioBufferStarted):
            self._audio_stopped.clear()
        elif isinstance(event, ev.OutputAudioBufferStopped | ev.OutputAudioBufferCleared):
            self._audio_stopped.set()
        if isinstance(event, ev.SessionUpdated):
            for key in [k for k, f in self._pending.items() if k.startswith("session.update:")]:
                fut = self._pending.pop(key)
                if not fut.done():
                    fut.set_result(event)
        for update in self.conversation.feed(event):
            if isinstance(update, TranscriptDelta):
                self._deltas.publish(update)
            elif isinstance(update, Turn):
                if update.item_id in self._replayed_ids:
                    continue  # history replayed after a reconnect was already published
                audio = self._turn_audio.pop(update.item_id, None)
                self._turns.publish(update if audio is None else replace(update, audio=audio))
            elif isinstance(update, ResponseFinished):
                self._responses.publish(update)
                if not self.conversation.response_active:
                    self._response_idle.set()
            elif isinstance(update, FunctionCallDone):
                self._function_calls.publish(update)
                if update.name in self._tool_handlers:
                    self._spawn(self._run_tool(update))
        self._events.publish(event)

    def _on_transport_closed(self, error: BaseException | None) -> None:
        if self._closed:
            return
        if error is not None and self._reconnect is not None and self._transport_factory:
            self._spawn(self._reconnect_loop(error))
            return
        failure = None
        if error is not None:
            last = f"; last server error: {self.errors[-1]}" if self.errors else ""
            failure = CallClosedError(f"the call ended abnormally: {error}{last}")
        self._spawn(self._shutdown(failure))

    # ---------------------------------------------------------------- reconnect
    def notices(self) -> AsyncIterator[CallNotice]:
        """Reconnects and recycles of the call (see :class:`Reconnect`)."""
        return aiter(self._notices)

    def _schedule_recycle(self) -> None:
        policy = self._reconnect
        if policy is None or policy.recycle_after_s is None or self._transport_factory is None:
            return
        loop = asyncio.get_running_loop()
        self._recycle_timer = loop.call_later(
            policy.recycle_after_s, lambda: self._spawn(self._recycle()))

    async def _open_replacement(self, timeout: float) -> Transport:
        """Connect a new transport and bring its session to where this one was."""
        assert self._transport_factory is not None
        transport = self._transport_factory()
        self._session_created = asyncio.get_running_loop().create_future()
        try:
            await transport.connect(self._on_message, self._on_transport_closed)
            await asyncio.wait_for(asyncio.shield(self._session_created), timeout)
        except BaseException:
            await transport.close(hangup_call=False)
            raise
        return transport

    def _replay(self, history: list[Turn]) -> None:
        """Send the config and the conversation so far (as text) to the new session."""
        if self._config is not None:
            self.send({"type": "session.update", "session": self._config.to_dict()})
        for n, turn in enumerate(history):
            if not turn.text:
                continue
            item_id = f"item_replay{len(self._replayed_ids)}_{n}"
            self._replayed_ids.add(item_id)
            kind = "output_text" if turn.role == "assistant" else "input_text"
            self.send({"type": "conversation.item.create", "item": {
                "id": item_id, "type": "message", "role": str(turn.role),
                "content": [{"type": kind, "text": turn.text}]}})

    def _swap(self, transport: Transport) -> None:
        self._usage_before = self._usage_before + self.conversation.usage_total
        history = self._turns.items()
        self.conversation = Conversation(clock=self._clock)
        self._transport = transport
        self._attach(transport)
        self._response_idle.set()
        self._audio_stopped.set()
        self._replay(history)
        self._schedule_recycle()

    async def _reconnect_loop(self, error: BaseException) -> None:
        policy = self._reconnect
        assert policy is not None
        old = self._transport
        await old.close(hangup_call=False)
        delay = policy.initial_backoff_s
        last: BaseException = error
        for attempt in range(1, policy.max_attempts + 1):
            self._notices.publish(CallNotice("reconnecting", attempt, error=str(last)))
            await asyncio.sleep(delay)
            if self._closed:
                return
            try:
                transport = await self._open_replacement(old_timeout(old))
            except LivetalkError as exc:
                last = exc
                delay = min(delay * 2 or 0.1, policy.max_backoff_s)
                continue
            self._swap(transport)
            self._notices.publish(CallNotice("reconnected", attempt, call_id=transport.call_id))
            return
        await self._shutdown(CallClosedError(
            f"the call dropped ({error}) and {policy.max_attempts} reconnect attempts failed; "
            f"last error: {last}"))

    async def _recycle(self) -> None:
        if self._closed:
            return
        old = self._transport
        try:
            transport = await self._open_replacement(old_timeout(old))
        except LivetalkError as exc:
            log.warning("proactive recycle failed (%s); keeping the current call", exc)
            self._schedule_recycle()
            return
        self._swap(transport)
        await old.close()
        self._notices.publish(CallNotice("recycled", call_id=transport.call_id))

    # ---------------------------------------------------------------- outgoing
    def send(self, event: ev.ClientEvent | dict[str, Any]) -> str:
        """Send one client event (typed or a wire dict); returns its ``event_id``."""
        if self._closed:
            raise CallClosedError("the call is closed")
        data = event.to_dict() if isinstance(event, ev.ClientEvent) else dict(event)
        if not isinstance(data.get("type"), str):
            raise ConfigError("a client event needs a string 'type'")
        data.setdefault("event_id", wire.new_event_id())
        for tap in self._taps:
            tap("out", data)
        self._transport.send(json.dumps(data, separators=(",", ":")))
        return str(data["event_id"])

    async def update_session(
        self, config: SessionConfig | dict[str, Any], *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send ``session.update`` and wait for ``session.updated``.

        Returns the full effective session. Raises
        :class:`~livetalk.errors.ServerErrorEvent` when the server rejects the update.
        """
        session = config.to_dict() if isinstance(config, SessionConfig) else dict(config)
        session.setdefault("type", "realtime")
        event_id = wire.new_event_id()
        fut: asyncio.Future[ev.ServerEvent] = asyncio.get_running_loop().create_future()
        self._pending[event_id] = fut
        self._pending["session.update:" + event_id] = fut
        try:
            self.send({"type": "session.update", "event_id": event_id, "session": session})
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CallClosedError(f"no session.updated within {timeout:g} s") from None
        finally:
            self._pending.pop(event_id, None)
            self._pending.pop("session.update:" + event_id, None)
        if isinstance(reply, ev.ErrorEvent):
            raise reply.to_exception()
        return self.session

    def send_audio(self, pcm: np.ndarray, rate: int = 24000) -> None:
        """Queue int16 mono PCM at ``rate`` for sending (non-blocking)."""
        self._transport.send_audio(pcm, rate)

    async def stream(self, source: Any) -> None:
        """Send every chunk of an audio source, paced in real time (or at the clock's speed).

        Returns when the source is exhausted and its audio has been sent. Cancelling stops
        the stream and drops what is queued.
        """
        try:
            await self._transport.play(source)
        except asyncio.CancelledError:
            self._transport.clear_outbound()
            raise

    def create_response(self, **response: Any) -> str:
        """Send ``response.create`` (options as in the API, e.g. ``instructions=...``)."""
        event: dict[str, Any] = {"type": "response.create"}
        if response:
            event["response"] = response
        return self.send(event)

    def say(self, text: str, *, conversation: str | None = None) -> str:
        """Have the model speak exactly ``text`` (a ``response.create`` with instructions).

        Use it to voice an answer your own agent produced for a user turn.
        """
        if not text.strip():
            raise ConfigError("say() needs non-empty text")
        options: dict[str, Any] = {"instructions": f"{SAY_EXACTLY_PREFIX} {text}"}
        if conversation is not None:
            options["conversation"] = conversation
        return self.create_response(**options)

    def add_text(self, text: str, *, role: str = "user") -> str:
        """Append a text message to the conversation (``conversation.item.create``)."""
        kind = "output_text" if role == "assistant" else "input_text"
        return self.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": role, "content": [{"type": kind, "text": text}]}})

    def interrupt(self) -> None:
        """Cut the assistant off.

        Over WebRTC: ``response.cancel`` if a response is active, then
        ``output_audio_buffer.clear``; the server truncates the unplayed audio. Over
        WebSocket: ``response.cancel`` if active, then ``conversation.item.truncate`` at the
        played position (integer ms, clamped to the audio received, never before the first
        audio).
        """
        if self.conversation.response_active:
            self.send({"type": "response.cancel"})
        if self._transport.media_audio or getattr(self._transport, "sideband", False):
            # a sideband's call has media too: it is held by the browser or device
            self.send({"type": "output_audio_buffer.clear"})
            return
        truncation = getattr(self._transport, "truncation", None)
        event = truncation() if truncation is not None else None
        if event is not None:
            self.send(event)

    # ---------------------------------------------------------------- sent audio, local VAD
    def _on_sent_audio(self, pcm: np.ndarray) -> None:
        if self._sent is not None:
            self._sent.write(pcm)
        if self._detector is None or self._closed:
            return
        if self._commit_countdown > 0:
            self._commit_countdown -= pcm.size
            if self._commit_countdown <= 0:
                self._commit_local_turn()
        for vad_event in self._detector.feed(pcm):
            if isinstance(vad_event, SpeechStarted):
                log.debug("local VAD: speech started at %d ms", vad_event.start_ms)
                assert self._local_vad is not None
                if self._local_vad.barge_in and (self.response_active or self.assistant_speaking):
                    self.interrupt()
            elif isinstance(vad_event, SpeechStopped):
                log.debug("local VAD: speech stopped at %d ms", vad_event.end_ms)
                self._local_turns.append(vad_event.audio)
                if self._commit_countdown > 0:  # a turn already waiting: commit it now
                    self._commit_local_turn()
                if self._transport.media_audio:
                    # commit once a little more media has gone out: the server decodes RTP
                    # behind the data channel (jitter buffer); the turn's last frames must be in
                    self._commit_countdown = _COMMIT_DELAY_SAMPLES
                else:  # WebSocket: audio and events share one ordered stream
                    self._commit_local_turn()

    def _commit_local_turn(self) -> None:
        self._commit_countdown = 0
        self.send({"type": "input_audio_buffer.commit"})
        assert self._local_vad is not None
        if self._local_vad.respond:
            self._spawn(self._respond_when_idle())

    async def _respond_when_idle(self) -> None:
        await self._response_idle.wait()
        if not self._closed:
            self.send({"type": "response.create"})

    def commit(self, *, respond: bool = False) -> None:
        """Push-to-talk: commit the audio sent since the last commit as a user turn.

        Use it with ``turn_detection=None``; ``respond=True`` also asks for a reply.
        """
        self.send({"type": "input_audio_buffer.commit"})
        if respond:
            self.send({"type": "response.create"})

    # ---------------------------------------------------------------- tools
    def register_tool(self, name: str, handler: ToolHandler) -> None:
        """Answer the model's calls of function ``name`` with ``handler``.

        The handler gets the call's JSON arguments as keyword arguments, may be sync or
        async, and returns the output (a string, or a JSON-serialisable value). livetalk
        sends it as a ``function_call_output`` item followed by ``response.create`` once the
        calling response is done. A handler that raises is reported to the model as an
        error output; the call goes on. Declare the tool itself in the session
        (``SessionConfig(tools=[FunctionTool(...)])``).
        """
        self._tool_handlers[name] = handler

    async def _run_tool(self, call: FunctionCallDone) -> None:
        output = await run_tool_handler(self._tool_handlers[call.name], call.arguments)
        await self._response_idle.wait()
        if self._closed:
            return
        self.send({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call.call_id, "output": output}})
        self.send({"type": "response.create"})

    # ---------------------------------------------------------------- iterators
    def events(self) -> AsyncIterator[ev.ServerEvent]:
        """Every typed server event (``UnknownEvent`` for types livetalk does not know)."""
        return aiter(self._events)

    def transcript_deltas(self) -> AsyncIterator[TranscriptDelta]:
        """Transcript deltas of both roles as they arrive."""
        return aiter(self._deltas)

    def turns(self) -> AsyncIterator[Turn]:
        """Completed turns, in conversation order."""
        return aiter(self._turns)

    def responses(self) -> AsyncIterator[ResponseFinished]:
        """One item per ``response.done`` (status and usage)."""
        return aiter(self._responses)

    def function_calls(self) -> AsyncIterator[FunctionCallDone]:
        """Function calls the model made (``response.function_call_arguments.done``)."""
        return aiter(self._function_calls)

    def audio_chunks(self) -> AsyncIterator[np.ndarray]:
        """Model audio as int16 mono 24 kHz chunks, from the moment you start reading."""
        return aiter(self._audio)

    def record_to(self, sink: Any) -> None:
        """Write the model audio to a sink (``WavSink``, ``BufferSink``...) until close."""

        async def pump() -> None:
            async for chunk in self._audio:
                await sink.write(chunk)

        self._sink_tasks.append((asyncio.ensure_future(pump()), sink))

    @property
    def turns_so_far(self) -> list[Turn]:
        """The turns completed so far (a snapshot)."""
        return self._turns.items()

    async def wait_for_turns(self, count: int, *, role: str | None = None,
                             timeout: float | None = None) -> list[Turn]:
        """Wait until ``count`` turns (of ``role`` if given) have completed; returns them."""

        async def wait() -> list[Turn]:
            got: list[Turn] = []
            async for turn in self._turns:
                if role is None or turn.role == role:
                    got.append(turn)
                    if len(got) >= count:
                        return got
            raise CallClosedError(f"the call closed after {len(got)} of {count} turns")

        return await asyncio.wait_for(wait(), timeout)

    async def wait_until_quiet(self, *, timeout: float = 30.0) -> bool:
        """Wait until no response is active and no reply audio is playing. False on timeout."""
        deadline = time.monotonic() + timeout
        while self.response_active or self.assistant_speaking:
            if self._closed or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    # ---------------------------------------------------------------- close
    async def close(self) -> None:
        """Hang up, stop the tracks and end every iterator normally. Idempotent."""
        await self._shutdown(None)

    async def _shutdown(self, error: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_error = error
        await self._transport.close(hangup_call=error is None)
        for turn in self.conversation.flush():
            self._turns.publish(turn)
        if self._recycle_timer is not None:
            self._recycle_timer.cancel()
        for feed in (self._events, self._deltas, self._turns, self._responses,
                     self._function_calls, self._audio, self._notices):
            feed.close(error)
        for task, sink in self._sink_tasks:
            with contextlib.suppress(asyncio.CancelledError, LivetalkError):
                await task
            with contextlib.suppress(LivetalkError):
                await sink.close()
        for cleanup in self._cleanups:
            cleanup()
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        pending = [t for t in self._background
                   if t is not asyncio.current_task() and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Call:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def run_tool_handler(handler: ToolHandler, arguments: str) -> str:
    """Run a tool handler on the model's JSON ``arguments``; return the output string.

    Bad arguments and exceptions raised by the handler become an ``{"error": ...}`` output
    for the model instead of failing the call.
    """
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(parsed, dict):
            raise TypeError("the arguments are not a JSON object")
        result = handler(**parsed)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # reported to the model, never fatal to the call
        log.warning("tool handler %r failed: %s", getattr(handler, "__name__", handler), exc)
        return json.dumps({"error": f"{type(exc).__name__}: {exc}"})
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result)
    except (TypeError, ValueError):
        return json.dumps({"result": str(result)})


def old_timeout(transport: Transport) -> float:
    """The connect timeout a replacement for ``transport`` gets."""
    return float(getattr(transport, "connect_timeout", 15.0))


class _Connecting:
    """What :func:`connect` returns: await it, or use it as ``async with``."""

    def __init__(self, factory: Callable[[], Awaitable[Call]]) -> None:
        self._factory = factory
        self._call: Call | None = None

    def __await__(self) -> Generator[Any, None, Call]:
        return self._factory().__await__()

    async def __aenter__(self) -> Call:
        self._call = await self._factory()
        return self._call

    async def __aexit__(self, *exc: object) -> None:
        if self._call is not None:
            await self._call.close()


def connect(
    *,
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    session: SessionConfig | dict[str, Any] | None = None,
    http_client: httpx.AsyncClient | None = None,
    ice_servers: list[Any] | None = None,
    connect_timeout: float = 15.0,
    speed: float = 1.0,
    event_log: str | Path | IO[str] | EventTap | None = None,
    send_session_in_offer: bool | None = None,
    transport: str | Transport = "webrtc",
    tool_handlers: dict[str, ToolHandler] | None = None,
    vad: str | LocalVAD = "server",
    keep_user_audio_s: float = 60.0,
    reconnect: Reconnect | None = None,
    media_timeout: float | None = 5.0,
    low_latency: bool = False,
) -> _Connecting:
    """Open a live call to the Realtime API (or livetalk's local server) over WebRTC.

    Args:
        model: the model (default ``gpt-realtime``, or the one bound to an ``ek_`` secret).
        api_key: a standard key or an ``ek_`` client secret; default ``OPENAI_API_KEY``.
        base_url: default ``OPENAI_BASE_URL`` or ``https://api.openai.com/v1``.
        session: the session config (:class:`~livetalk.protocol.session.SessionConfig` or a
            GA dict). With a standard key it travels in the multipart offer; with an ``ek_``
            secret it is sent as a ``session.update`` once connected.
        http_client: an httpx client for signaling (TLS verification stays on).
        ice_servers: STUN/TURN servers (``aiortc.RTCIceServer``); none by default.
        connect_timeout: seconds for the whole connect (signaling, ICE, DTLS, channel,
            ``session.created``/``session.updated``).
        speed: outbound media clock speed (>1 feeds files faster than real time; only useful
            against the local server started with a matching ``realtime_factor``).
        event_log: a path or file for JSON lines of every event, or a callable
            ``(direction, event_dict)``.
        send_session_in_offer: force (or forbid) the multipart form.
        transport: ``"webrtc"`` (default), ``"websocket"`` (``GET /realtime?model=``,
            base64 audio in JSON events), ``"auto"`` (WebRTC, falling back to WebSocket when
            the WebRTC call cannot connect within ``connect_timeout``), or a ready
            :class:`~livetalk.transport.base.Transport` instance.
        tool_handlers: ``{function name: handler}``; see :meth:`Call.register_tool`.
        vad: ``"server"`` (the session's turn detection, default) or ``"local"`` / a
            :class:`~livetalk.localvad.LocalVAD`: livetalk detects turns on the audio it
            sends with webrtcvad, the session runs with ``turn_detection: null``, and each
            turn is committed (and answered unless ``LocalVAD(respond=False)``).
        keep_user_audio_s: how much sent audio to keep so user turns carry their audio
            (``Turn.audio``); 0 disables it.
        reconnect: opt-in automatic reconnect and proactive recycle (:class:`Reconnect`).
        media_timeout: WebRTC: seconds without server audio after which the call counts as
            lost (None: rely on ICE consent checks, about 30 s).
        low_latency: WebRTC: cap the adaptive receive jitter buffer's delay at one frame
            (20 ms) whatever the measured jitter: late packets are concealed and dropped
            instead of waited for (see ``docs/audio.md``). The default adapts to the jitter.

    Returns:
        An awaitable that is also an async context manager yielding a :class:`Call`.
    """

    async def factory() -> Call:
        url = resolve_base_url(base_url)
        key = resolve_api_key(api_key)
        if speed <= 0:
            raise ConfigError(f"speed must be > 0, got {speed}")
        config: SessionConfig | None
        if isinstance(session, dict):
            config = SessionConfig.from_dict(session)
        else:
            config = session
        if model is not None:
            config = (config or SessionConfig()).replace(model=model)
        local_vad: LocalVAD | None
        if isinstance(vad, LocalVAD):
            local_vad = vad
        elif vad == "local":
            local_vad = LocalVAD()
        elif vad == "server":
            local_vad = None
        else:
            raise ConfigError(f"vad must be 'server', 'local' or a LocalVAD, got {vad!r}")
        if local_vad is not None:
            config = (config or SessionConfig()).replace(turn_detection=None)
        in_offer = (
            send_session_in_offer if send_session_in_offer is not None
            else not key.startswith("ek_")
        )
        offer_session = None
        if in_offer:
            offer_session = (config or SessionConfig()).to_dict()
            offer_session.setdefault("model", "gpt-realtime")
        taps: list[EventTap] = []
        log_file: EventLog | None = None
        if callable(event_log):
            taps.append(event_log)
        elif event_log is not None:
            log_file = EventLog(event_log)
            taps.append(log_file)
        owns = http_client is None
        client = http_client or httpx.AsyncClient()
        clock = MediaClock(speed)

        def make(kind: str) -> Transport:
            if kind == "webrtc":
                return WebRTCTransport(
                    base_url=url, api_key=key, session=offer_session, http_client=client,
                    ice_servers=ice_servers, clock=clock, connect_timeout=connect_timeout,
                    media_timeout=media_timeout,
                    playout=PlayoutSettings.low_latency() if low_latency else None,
                )
            if kind == "websocket":
                from livetalk.transport.websocket import WebSocketTransport

                return WebSocketTransport(
                    base_url=url, api_key=key, model=(config.model if config else None),
                    clock=clock, connect_timeout=connect_timeout,
                )
            raise ConfigError(
                f"transport must be 'webrtc', 'websocket', 'auto' or a Transport, got {kind!r}"
            )

        async def open_call(chosen: Transport) -> Call:
            # built-in transports can be recreated for a reconnect; a user's instance cannot
            factory = (lambda: make(chosen.kind)) if isinstance(transport, str) else None
            call = Call(chosen, config=config, http_client=client, owns_http=False, taps=taps,
                        tool_handlers=tool_handlers, keep_user_audio_s=keep_user_audio_s,
                        local_vad=local_vad, reconnect=reconnect, transport_factory=factory)
            # the session travels in the offer only over WebRTC; otherwise as session.update
            in_band = not (in_offer and chosen.kind == "webrtc")
            try:
                await call._start(send_update=in_band and config is not None,
                                  timeout=connect_timeout)
            except BaseException:
                await call._shutdown(None)
                raise
            return call

        t0 = time.monotonic()
        try:
            if isinstance(transport, str) and transport == "auto":
                try:
                    call = await open_call(make("webrtc"))
                except (ConnectError, ConnectTimeout) as exc:
                    log.warning("WebRTC failed (%s); falling back to WebSocket", exc)
                    call = await open_call(make("websocket"))
            else:
                call = await open_call(make(transport) if isinstance(transport, str)
                                       else transport)
        except BaseException:
            if owns:
                await client.aclose()
            if log_file is not None:
                log_file.close()
            raise
        call._owns_http = owns
        call._schedule_recycle()
        call.connect_ms = (time.monotonic() - t0) * 1000
        if log_file is not None:
            call._cleanups.append(log_file.close)
        return call

    return _Connecting(factory)

