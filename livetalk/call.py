"""The user-facing call object: :class:`Call`, a pump around the sans-I/O client session.

A :class:`Call` joins the layers: a transport (WebRTC by default) that carries events and
audio, the :class:`~livetalk.protocol.client.ClientSession` that owns every piece of protocol
state, and the audio helpers that feed and record PCM. It only pumps: each event the transport
delivers goes through the event taps into the session, the session's outputs go to the feeds
and handles below, and the events it queues go to the transport. Open one with
:func:`livetalk.connect`::

    async with livetalk.connect(session=SessionConfig(instructions="Be brief.")) as call:
        await call.stream(livetalk.FileSource("question.wav"))
        async for turn in call.turns():
            print(turn.role, turn.text)

Iterators (:meth:`Call.events`, :meth:`Call.transcript_deltas`, :meth:`Call.turns`,
:meth:`Call.audio_chunks`...) can be read by several consumers at once; each sees every item.
They end normally when the call is closed, and raise :class:`~livetalk.errors.CallClosedError`
after the last item when the call fails; nothing received before a failure is lost.
Cancelling a task that awaits any coroutine of the call is safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

import httpx
import numpy as np

from livetalk._feed import Feed
from livetalk._tasks import AsyncClosing, TaskSet
from livetalk.audio.format import API_RATE
from livetalk.audio.history import AudioHistory
from livetalk.audio.sinks import Sink, WavSink
from livetalk.audio.sources import FileSource, SilenceSource, Source
from livetalk.audio.vad import SpeechStarted
from livetalk.errors import (
    CallClosedError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    EventParseError,
    LivetalkError,
    LocalProtocolError,
    RequestTimeout,
    ServerError,
    Timeout,
)
from livetalk.eventlog import EventTap
from livetalk.localvad import CommitTurn, LocalTurnDetection
from livetalk.protocol import events as ev, wire
from livetalk.protocol.client import (
    ClientSession,
    Output,
    Rejected,
    ReplyDone,
    ReplyFailed,
    RequestDone,
    RequestFailed,
)
from livetalk.protocol.conversation import (
    FunctionCallDone,
    ResponseFinished,
    Role,
    TranscriptDelta,
    Turn,
)
from livetalk.protocol.events import Usage
from livetalk.protocol.session import SAY_EXACTLY_PREFIX, SessionConfig, Transcription
from livetalk.reconnect import CallNotice, Reconnect, Reconnector
from livetalk.routing import Reply, RouteHandler, Router, StalePolicy
from livetalk.tools import ToolHandler, ToolRunner
from livetalk.transport.base import Transport
from livetalk.transport.jitterbuffer import ReceiveStatistics
from livetalk.transport.signaling import refusal_error
from livetalk.turnlog import TurnSink

__all__ = ["Call"]

log = logging.getLogger("livetalk")

_TRAILING_SILENCE_MARGIN_MS = 400
"""Silence :meth:`Call.finish` sends beyond what the turn detector waits for."""


class Call(AsyncClosing):
    """A live Realtime session. Open it with :func:`livetalk.connect`; see the module docstring.

    Args:
        transport: the transport, not yet connected.
        open_transport: opens a replacement transport (with a fresh key) for reconnects and
            recycles; None when the transport was given by the caller.
        config: the session config to replay after a reconnect.
        http_client, owns_http: the httpx client of signaling, closed with the call if owned.
        taps: called with every event on the wire (after :attr:`global_taps`).
        clock: monotonic seconds, for turn times and timeouts.
        speed: the media clock's speed.
        tool_handlers: ``{function name: handler}`` (see :meth:`register_tool`).
        keep_user_audio_s: how much sent audio to keep for ``Turn.audio`` (0: none).
        local_vad: client-side turn detection, or None for the session's own.
        respond_locally: with ``local_vad``, ask for a response after each committed turn.
        reconnect: the opt-in reconnect policy.
        route: the host's handler for user turns (see :mod:`livetalk.routing`).
        route_stale: what to do with an answer whose user spoke again meanwhile.
        transcript_timeout_s: how long a user turn waits for its transcription.
        turn_log: a sink that stores every turn released.
        cleanups: called once the call is closed (e.g. closing an event log file).
    """

    #: Taps added to every call of the process, before the call's own: e.g. a test suite
    #: validating every event on the wire. Each is called as ``tap(direction, event)``.
    global_taps: ClassVar[list[EventTap]] = []

    def __init__(
        self,
        transport: Transport,
        *,
        open_transport: Callable[[], Awaitable[Transport]] | None = None,
        config: SessionConfig | None = None,
        http_client: httpx.AsyncClient | None = None,
        owns_http: bool = False,
        taps: Sequence[EventTap] = (),
        clock: Callable[[], float] = time.monotonic,
        speed: float = 1.0,
        tool_handlers: Mapping[str, ToolHandler] | None = None,
        keep_user_audio_s: float = 60.0,
        local_vad: LocalTurnDetection | None = None,
        respond_locally: bool = True,
        reconnect: Reconnect | None = None,
        route: RouteHandler | None = None,
        route_stale: StalePolicy = "speak",
        transcript_timeout_s: float = 15.0,
        turn_log: TurnSink | None = None,
        cleanups: Sequence[Callable[[], None]] = (),
    ) -> None:
        self._transport = transport
        self._open_transport = open_transport
        self._config = config
        self._http = http_client
        self._owns_http = owns_http
        self._taps = [*Call.global_taps, *taps]
        self._clock = clock
        self._speed = speed
        self._transcript_timeout_s = transcript_timeout_s
        self._sent = AudioHistory(API_RATE, keep_user_audio_s) if keep_user_audio_s > 0 else None
        self._session = self._new_session(transport, first_index=0)
        self._tasks = TaskSet(log, "the call")
        self._tools = ToolRunner(dict(tool_handlers or {}), self._tasks.spawn, self._flush)
        self._local = local_vad
        self._respond_locally = respond_locally
        self._turn_log = turn_log
        self._cleanups = list(cleanups)
        self._events: Feed[ev.ServerEvent] = Feed(maxlen=20_000)
        self._deltas: Feed[TranscriptDelta] = Feed()
        self._turns: Feed[Turn] = Feed()
        self._audio: Feed[np.ndarray] = Feed(replay=False, maxlen=500)  # ~10 s
        self._responses: Feed[ResponseFinished] = Feed()
        self._function_calls: Feed[FunctionCallDone] = Feed()
        self._notices: Feed[CallNotice] = Feed()
        self._replies: dict[str, Reply] = {}
        self._requests: dict[str, asyncio.Future[ev.ServerEvent]] = {}
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._joining: tuple[ClientSession, Transport] | None = None
        self._quiet = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._sink_tasks: list[tuple[asyncio.Task[None], Sink]] = []
        self._closed = False
        self._close_error: BaseException | None = None
        self._usage_before = Usage()  # usage of the sessions replaced by reconnects
        self.connect_ms: float | None = None
        """Milliseconds :func:`livetalk.connect` took (set once connected)."""
        self.errors: list[ServerError] = []
        """Every ``error`` event of the call, as exceptions, in order."""
        self._router = None if route is None else Router(
            route, say=self.say, hold=self._session_hold, release=self._session_release,
            notify=self._route_notice, newest_user_index=self._newest_user_index,
            stale=route_stale)
        self._reconnector = None if reconnect is None or open_transport is None else Reconnector(
            reconnect, reopen=self._reopen, notify=self._notices.publish, fail=self._shutdown,
            is_closed=lambda: self._closed, spawn=self._tasks.spawn)
        self._attach(transport)

    def _new_session(self, transport: Transport, *, first_index: int) -> ClientSession:
        return ClientSession(
            playout=transport.playout, clock=self._clock, speed=self._speed,
            transcript_timeout_s=self._transcript_timeout_s,
            audio_lookup=self._sent.slice_ms if self._sent is not None else None,
            first_index=first_index)

    def _attach(self, transport: Transport) -> None:
        transport.add_audio_consumer(self._audio.publish)
        if self._sent is not None or self._local is not None:
            transport.on_sent_audio = self._on_sent_audio

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Call {self.call_id or '?'} {self._transport.kind} {state}>"

    # ---------------------------------------------------------------- opening
    async def start(self, *, timeout: float, send_config: bool) -> None:
        """Connect the transport and wait for ``session.created`` (and, with ``send_config``,
        for the ``session.updated`` answering the config). :func:`livetalk.connect` calls it.

        Raises:
            AuthenticationError, BadRequestError: the server refused the session (an ``error``
                before ``session.created``; over WebSocket, a refusal inside the socket).
            ConnectTimeout: no ``session.created`` within ``timeout``.
            ConnectError, SignalingError, APIStatusError: the transport could not connect.
        """
        await self._connect_transport(self._transport, self._session, timeout)
        if self._reconnector is not None:
            self._reconnector.schedule_recycle()
        if send_config and self._config is not None:
            await self.update_session(self._config, timeout=timeout)
        routing = self._routing_update()
        if routing is not None:
            await self.update_session(routing, timeout=timeout)

    def _routing_update(self) -> dict[str, Any] | None:
        """A routed call's ``session.update``: the effective turn detection with
        ``create_response: false`` (the host answers), and transcription on if there is none
        (the host's agent reads the text). None when nothing needs changing."""
        if self._router is None:
            return None
        audio_in: dict[str, Any] = {}
        td = self._session.turn_detection
        if td is not None and td.get("create_response", True):
            audio_in["turn_detection"] = {**td, "create_response": False}
        audio = self._session.session.get("audio") or {}
        if (audio.get("input") or {}).get("transcription") is None:
            audio_in["transcription"] = Transcription().to_dict()
        return {"type": "realtime", "audio": {"input": audio_in}} if audio_in else None

    async def _connect_transport(self, transport: Transport, session: ClientSession,
                                 timeout: float) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready = ready
        self._joining = (session, transport)
        try:
            await transport.connect(lambda data: self._on_event(session, data),
                                    lambda error: self._on_transport_closed(transport, error))
            session.call_id = transport.call_id
            if not transport.carries_audio and not session.ready:
                # A sideband joins a session that exists already: an empty update is
                # answered with session.updated carrying the full effective session.
                session.update_session({})
                self._send_queued(session, transport)
            try:
                await asyncio.wait_for(asyncio.shield(ready), timeout)
            except TimeoutError:
                raise ConnectTimeout(
                    f"connected, but no session.created arrived within {timeout:g} s") from None
        finally:
            self._joining = None

    # ---------------------------------------------------------------- the pump
    def _on_event(self, session: ClientSession, data: dict[str, Any]) -> None:
        for tap in self._taps:
            tap("in", data)
        if session.closed:
            return  # a replaced transport's last words
        if session is self._session:
            transport = self._transport
        elif self._joining is not None and self._joining[0] is session:
            transport = self._joining[1]  # a reconnect's new call, not swapped in yet
        else:
            return
        try:
            outputs = session.receive(data)
        except EventParseError as exc:
            log.warning("ignoring a malformed server event: %s", exc)
            return
        self._dispatch(outputs, session, transport)
        if session is self._session:
            self._flush()

    def _dispatch(self, outputs: list[Output], session: ClientSession,
                  transport: Transport) -> None:
        for out in outputs:
            if isinstance(out, ev.ServerEvent):
                self._events.publish(out)
                if isinstance(out, ev.SessionCreated | ev.SessionUpdated):
                    transport.set_audio_formats(session.audio_format("input"),
                                                session.audio_format("output"))
                    if not self._ready.done():
                        self._ready.set_result(None)
                elif isinstance(out, ev.ErrorEvent):
                    self.errors.append(out.to_exception())
                    log.warning("server error event: %s", out.to_exception())
            elif isinstance(out, TranscriptDelta):
                self._deltas.publish(out)
            elif isinstance(out, Turn):
                self._publish_turn(out)
            elif isinstance(out, ResponseFinished):
                self._responses.publish(out)
                self._tools.on_response_done(session, out.response_id)
            elif isinstance(out, FunctionCallDone):
                self._function_calls.publish(out)
                self._tools.on_function_call(session, out)
            elif isinstance(out, RequestDone | RequestFailed):
                future = self._requests.pop(out.request_id, None)
                if future is not None and not future.done():
                    if isinstance(out, RequestDone):
                        future.set_result(out.event)
                    else:
                        future.set_exception(out.error)
            elif isinstance(out, ReplyDone):
                reply = self._replies.pop(out.reply_id, None)
                if reply is not None:
                    reply._resolve(out.turn)
            elif isinstance(out, ReplyFailed):
                reply = self._replies.pop(out.reply_id, None)
                if reply is not None:
                    log.warning("reply %s failed: %s", out.reply_id, out.error)
                    reply._fail(out.error)
            elif isinstance(out, Rejected) and not self._ready.done():
                self._ready.set_exception(refusal_error(out.error.error))

    def _publish_turn(self, turn: Turn) -> None:
        self._turns.publish(turn)
        if self._turn_log is not None:
            self._turn_log.append(turn)
        if self._router is not None:
            self._router.on_turn(turn)

    def _flush(self) -> None:
        """Send what the session queued; re-arm its timer; update the quiet state."""
        session = self._session
        self._send_queued(session, self._transport)
        deadline = None if self._closed else session.next_deadline()
        if deadline != self._timer_deadline:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_deadline = deadline
            if deadline is not None:
                delay = max(0.0, deadline - self._clock())
                self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        if session.quiet and (self._local is None or not self._local.in_turn):
            self._quiet.set()
        else:
            self._quiet.clear()

    def _send_queued(self, session: ClientSession, transport: Transport) -> None:
        for event in session.data_to_send():
            data = event.to_dict()
            for tap in self._taps:
                tap("out", data)
            try:
                transport.send(wire.dumps(data))
            except LivetalkError as exc:  # the transport is gone: the close path reports it
                log.info("could not send %s: %s", event.type, exc)

    def _on_timer(self) -> None:
        self._timer, self._timer_deadline = None, None
        if not self._closed:
            self._dispatch(self._session.tick(), self._session, self._transport)
            self._flush()

    def _on_transport_closed(self, transport: Transport, error: BaseException | None) -> None:
        if self._closed:
            return
        if self._joining is not None and self._joining[1] is transport:
            if not self._ready.done():  # (after a refusal its error event already failed it)
                self._ready.set_exception(_connect_failure(error))
            return
        if transport is not self._transport:
            return
        if error is not None and self._reconnector is not None:
            self._reconnector.on_drop(error)
            return
        failure = None
        if error is not None:
            last = f"; last server error: {self.errors[-1]}" if self.errors else ""
            failure = CallClosedError(f"the call ended abnormally: {error}{last}")
        self._tasks.spawn(self._shutdown(failure))

    # ---------------------------------------------------------------- reconnect
    async def _reopen(self, recycle: bool) -> str | None:
        """Open a replacement call and swap it in (see :mod:`livetalk.reconnect`)."""
        assert self._open_transport is not None
        old, old_session = self._transport, self._session
        if not recycle:
            await old.close(hangup_call=False)
        transport = await self._open_transport()
        session = self._new_session(transport, first_index=old_session.conversation.next_index)
        try:
            await self._connect_transport(transport, session, transport.connect_timeout)
        except BaseException:
            await transport.close(hangup_call=False)
            raise
        history = self._turns.items()
        replies = old_session.unfinished_replies()
        self._dispatch(old_session.close(fail_replies=False), old_session, old)
        self._usage_before = self._usage_before + old_session.usage
        self._transport, self._session = transport, session
        self._attach(transport)
        if self._config is not None:
            session.update_session(self._config.to_dict())
        routing = self._routing_update()
        if routing is not None:
            session.update_session(routing)
        session.replay(history)
        session.adopt_replies(replies)
        self._flush()
        if recycle:
            await old.close()
        return transport.call_id

    # ---------------------------------------------------------------- properties
    @property
    def call_id(self) -> str | None:
        """The ``rtc_...`` id of the call (None over WebSocket)."""
        return self._transport.call_id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failure(self) -> BaseException | None:
        """Why the call ended abnormally (a CallClosedError), or None."""
        return self._close_error

    @property
    def protocol(self) -> ClientSession:
        """The sans-I/O client session: every piece of protocol state (read it, do not feed
        it; a reconnect replaces it)."""
        return self._session

    @property
    def session(self) -> dict[str, Any]:
        """The full effective session, from the latest ``session.created``/``session.updated``."""
        return self._session.session

    @property
    def usage(self) -> Usage:
        """Token usage summed over every finished response (across reconnects)."""
        return self._usage_before + self._session.usage

    @property
    def response_active(self) -> bool:
        """A response is being generated (``response.created`` seen, ``response.done`` not)."""
        return self._session.response_active

    @property
    def assistant_speaking(self) -> bool:
        """Reply audio is playing (WebRTC: between ``output_audio_buffer.started`` and its end;
        WebSocket: within the reply's audio length since its first delta)."""
        return self._session.assistant_speaking

    @property
    def outbound_track(self) -> Any:
        """The :class:`~livetalk.transport.tracks.OutboundAudioTrack` carrying your audio
        (WebRTC), or None over WebSocket."""
        return self._transport.outbound_track

    def receive_statistics(self) -> ReceiveStatistics | None:
        """The receive jitter buffer's figures (WebRTC; None over WebSocket or with aiortc's
        fixed buffer): target and current delay, underruns, concealed ms, late drops."""
        return self._transport.receive_statistics()

    @property
    def transport_kind(self) -> str:
        """``"webrtc"`` or ``"websocket"`` (after an ``"auto"`` connect: the one in use)."""
        return self._transport.kind

    @property
    def turns_so_far(self) -> list[Turn]:
        """The turns completed so far (a snapshot)."""
        return self._turns.items()

    # ---------------------------------------------------------------- requests
    def send(self, event: ev.ClientEvent | Mapping[str, Any]) -> str:
        """Send one client event (typed, or a wire dict checked as one); returns its
        ``event_id``. An ``error`` answering it is logged and kept in :attr:`errors`.

        Raises:
            CallClosedError: the call is closed.
            LocalProtocolError: the dict is not a valid client event (nothing was sent).
        """
        self._check_open()
        if not isinstance(event, ev.ClientEvent):
            try:
                event = wire.parse_client_event(dict(event))
            except EventParseError as exc:
                raise LocalProtocolError(f"not a valid client event: {exc}") from exc
        event_id = self._session.send(event)
        self._flush()
        return event_id

    async def update_session(
        self, config: SessionConfig | Mapping[str, Any], *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send ``session.update`` and wait for ``session.updated``.

        Returns:
            The full effective session.

        Raises:
            ServerError: the server rejected the update (the session is unchanged).
            RequestTimeout: no answer within ``timeout`` seconds.
            CallClosedError: the call closed first.
        """
        self._check_open()
        body = config.to_dict() if isinstance(config, SessionConfig) else dict(config)
        request_id = self._session.update_session(body)
        future: asyncio.Future[ev.ServerEvent] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = future
        self._flush()
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestTimeout(f"no session.updated within {timeout:g} s") from None
        finally:
            self._requests.pop(request_id, None)
        return self._session.session

    def create_response(self, **response: Any) -> Reply:
        """Ask for a response (``response.create`` with these options, e.g.
        ``instructions=...``), in turn: it waits while another response runs.

        Returns:
            The :class:`~livetalk.routing.Reply`; ``await`` it for the assistant turn.

        Raises:
            CallClosedError: the call is closed.
        """
        self._check_open()
        reply = Reply(self._session.request_response(response))
        self._replies[reply.id] = reply
        self._flush()
        return reply

    def say(self, text: str, *, conversation: str | None = None) -> Reply:
        """Have the model speak exactly ``text``: the way to voice your own agent's answer.

        The request waits its turn (it is never refused for an active response), and
        ``await reply`` gives the assistant turn once its audio stopped playing (completed,
        or cancelled with the words heard when the user barges in).

        Args:
            text: what to say, verbatim.
            conversation: ``"none"`` to keep the answer out of the conversation.

        Raises:
            ConfigError: ``text`` is empty.
            CallClosedError: the call is closed.
        """
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("say() needs non-empty text")
        options: dict[str, Any] = {"instructions": f"{SAY_EXACTLY_PREFIX} {text}"}
        if conversation is not None:
            options["conversation"] = conversation
        return self.create_response(**options)

    def add_text(self, text: str, *, role: str = "user") -> str:
        """Append a text message to the conversation (``conversation.item.create``)."""
        kind = "output_text" if role == "assistant" else "input_text"
        return self.send(ev.ConversationItemCreate(item={
            "type": "message", "role": role, "content": [{"type": kind, "text": text}]}))

    def interrupt(self, *, played_ms: float | None = None) -> None:
        """Cut the assistant off.

        Over WebRTC: ``response.cancel`` if a response is active, then
        ``output_audio_buffer.clear``; the server truncates the unplayed audio. Over
        WebSocket: ``response.cancel`` if active, then ``conversation.item.truncate`` at the
        played position (``played_ms`` if your player knows it; by default the time since
        the reply's first audio, capped at the audio received). Either way the reply's turn
        ends ``cancelled`` with the words heard.
        """
        self._check_open()
        self._session.interrupt(played_ms)
        self._flush()

    def commit(self, *, respond: bool = False) -> None:
        """Push-to-talk: commit the audio sent since the last commit as a user turn.

        Use it with ``turn_detection=None``; ``respond=True`` also asks for a reply.
        """
        self._check_open()
        self._session.commit()
        if respond:
            self._session.request_response()
        self._flush()

    def register_tool(self, name: str, handler: ToolHandler) -> None:
        """Answer the model's calls of function ``name`` with ``handler``.

        The handler gets the call's JSON arguments as keyword arguments, may be sync or
        async, and returns the output (a string, or a JSON-serialisable value). livetalk
        sends the outputs of a response's calls as ``function_call_output`` items followed by
        one ``response.create`` once that response is done. A handler that raises is reported
        to the model as an error output; the call goes on. Declare the tool itself in the
        session (``SessionConfig(tools=[FunctionTool(...)])``).
        """
        self._tools.register(name, handler)

    def _check_open(self) -> None:
        if self._closed:
            raise CallClosedError("the call is closed")

    # ---------------------------------------------------------------- audio
    def send_audio(self, pcm: np.ndarray, rate: int = API_RATE) -> None:
        """Queue int16 mono PCM at ``rate`` for sending (non-blocking)."""
        self._transport.send_audio(pcm, rate)

    async def stream(self, source: Source | str | os.PathLike[str]) -> None:
        """Send every chunk of an audio source, paced in real time (or at the clock's speed).

        ``source`` is any :class:`~livetalk.audio.sources.Source`, or the path of an audio
        file (decoded with ``FileSource`` straight to the rate the transport sends, its
        ``input_rate``: resampled once, or not at all when the file already has that rate,
        e.g. a 48 kHz file over WebRTC). Returns when the source is exhausted and its audio
        has been sent. Cancelling stops the stream and drops what is queued. To end a call
        cleanly after the input ends, use :meth:`finish`.
        """
        if isinstance(source, str | os.PathLike):
            source = FileSource(source, rate=self._transport.input_rate)
        try:
            await self._transport.play(source)
        except asyncio.CancelledError:
            self._transport.clear_outbound()
            raise

    async def finish(self, *, timeout: float | None = 60.0) -> None:
        """End the call cleanly once the input is over: no guessing of silence lengths.

        Sends the trailing silence the turn detector needs to end the last turn (the
        session's ``silence_duration_ms``, or local VAD's window, plus a margin), waits until
        nothing is pending (:meth:`wait_until_quiet`: the last turn's transcript, the routed
        answer, the reply and its audio), then closes the call.

        Raises:
            Timeout: still not quiet after ``timeout`` seconds (the call is closed anyway).
        """
        try:
            if not self._closed and self._transport.carries_audio:
                await self.stream(SilenceSource(self._trailing_silence_ms() / 1000,
                                                rate=API_RATE))
            await self.wait_until_quiet(timeout=timeout)
        finally:
            await self.close()

    def _trailing_silence_ms(self) -> float:
        if self._local is not None:
            from livetalk.localvad import COMMIT_DELAY_MS

            return self._local.settings.silence_ms + COMMIT_DELAY_MS + _TRAILING_SILENCE_MARGIN_MS
        td = self._session.turn_detection
        if td is None:
            return _TRAILING_SILENCE_MARGIN_MS
        if td.get("type") == "semantic_vad":
            return 2000.0 + _TRAILING_SILENCE_MARGIN_MS
        silence = td.get("silence_duration_ms")
        return float(silence if isinstance(silence, int | float) else 500) + (
            _TRAILING_SILENCE_MARGIN_MS)

    def _on_sent_audio(self, pcm: np.ndarray) -> None:
        if self._sent is not None:
            self._sent.write(pcm)
        if self._local is None or self._closed:
            return
        session = self._session
        was_in_turn = self._local.in_turn
        events = self._local.feed(pcm)
        if not events and was_in_turn == self._local.in_turn:
            return
        for event in events:
            if isinstance(event, SpeechStarted):
                log.debug("local VAD: speech started at %d ms", event.start_ms)
                speaking = session.response_active or session.assistant_speaking
                if self._local.settings.barge_in and speaking:
                    session.interrupt()
            elif isinstance(event, CommitTurn):
                log.debug("local VAD: committing %.0f-%.0f ms", event.start_ms, event.end_ms)
                session.commit((event.start_ms, event.end_ms))
                if self._respond_locally:
                    session.request_response()
        self._flush()

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

    def notices(self) -> AsyncIterator[CallNotice]:
        """Things that happened to the call itself: reconnects, recycles, route errors."""
        return aiter(self._notices)

    def record_to(self, sink: Sink | str | os.PathLike[str]) -> Sink:
        """Write the model audio to ``sink`` until the call closes, then close the sink.

        ``sink`` is any :class:`~livetalk.audio.sinks.Sink` (``WavSink``, ``BufferSink``...)
        or the path of a file to create (a ``WavSink``: ``.wav``, ``.ogg``, ``.mp3``...).

        Returns:
            The sink written to.
        """
        target: Sink = WavSink(sink) if isinstance(sink, str | os.PathLike) else sink

        async def pump() -> None:
            async for chunk in self._audio:
                await target.write(chunk)

        self._sink_tasks.append((asyncio.ensure_future(pump()), target))
        return target

    async def wait_for_turns(self, count: int, *, role: str | None = None,
                             timeout: float | None = None) -> list[Turn]:
        """Wait until ``count`` turns (of ``role`` if given) have completed; returns them.

        Raises:
            Timeout: fewer turns within ``timeout`` seconds.
            CallClosedError: the call closed first.
        """

        async def wait() -> list[Turn]:
            got: list[Turn] = []
            async for turn in self._turns:
                if role is None or turn.role == role:
                    got.append(turn)
                    if len(got) >= count:
                        return got
            raise CallClosedError(f"the call closed after {len(got)} of {count} turns")

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise Timeout(f"fewer than {count} turns within {timeout:g} s") from None

    async def wait_until_quiet(self, *, timeout: float | None = 60.0) -> None:
        """Wait until nothing is pending: no user speech in progress, no user turn awaiting
        its transcript or its routed answer, no queued or active response, no reply audio
        playing. Event-driven; returns at once when the call is closed.

        Raises:
            Timeout: still busy after ``timeout`` seconds (the message says with what).
        """
        if self._closed:
            return
        self._flush()
        closed = asyncio.ensure_future(self._turns.wait_closed())
        quiet = asyncio.ensure_future(self._quiet.wait())
        try:
            done, _ = await asyncio.wait({closed, quiet}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            quiet.cancel()
        if not done:
            reasons = "; ".join(self._session.pending()) or "local turn detection"
            raise Timeout(f"the call was not quiet within {timeout:g} s: {reasons}")

    # ---------------------------------------------------------------- close
    async def close(self) -> None:
        """Hang up, stop the tracks and end every iterator normally. Idempotent."""
        await self._shutdown(None)

    async def _shutdown(self, error: LivetalkError | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_error = error
        if self._timer is not None:
            self._timer.cancel()
        if self._reconnector is not None:
            self._reconnector.cancel()
        if self._router is not None:
            await self._router.close()
        if not self._ready.done():
            self._ready.set_exception(error or CallClosedError("the call was closed"))
            self._ready.exception()
        await self._transport.close(hangup_call=error is None)
        self._dispatch(self._session.close(error), self._session, self._transport)
        for feed in (self._events, self._deltas, self._turns, self._responses,
                     self._function_calls, self._audio, self._notices):
            feed.close(error)
        for task, sink in self._sink_tasks:
            try:
                await task
            except (asyncio.CancelledError, LivetalkError):
                pass
            try:
                await sink.close()
            except LivetalkError:
                pass
        for future in self._requests.values():
            if not future.done():
                future.set_exception(error or CallClosedError("the call was closed"))
                future.exception()
        for cleanup in self._cleanups:
            cleanup()
        await self._tasks.cancel_all()
        self._quiet.set()
        if self._owns_http and self._http is not None:
            await self._http.aclose()

    # ---------------------------------------------------------------- routing helpers
    def _session_hold(self, key: str) -> None:
        self._session.hold(key)
        self._quiet.clear()

    def _session_release(self, key: str) -> None:
        self._session.release(key)
        if not self._closed:
            self._flush()

    def _route_notice(self, kind: str, turn: Turn, error: str | None) -> None:
        self._notices.publish(CallNotice(kind, call_id=turn.call_id, error=error,
                                         item_id=turn.item_id))

    def _newest_user_index(self) -> int:
        users = [t.index for t in self._turns.items() if t.role is Role.USER]
        return max(users, default=-1)


def _connect_failure(error: BaseException | None) -> BaseException:
    if isinstance(error, LivetalkError):
        return error
    return ConnectError(f"the connection closed while connecting: {error or 'no reason given'}")
