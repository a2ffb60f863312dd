"""The local Realtime-compatible server: HTTP and WebSocket routes on aiohttp.

Endpoints (under ``/v1``), as the real API has them (``docs/protocol.md``):

* ``POST /realtime/calls`` - raw ``application/sdp`` or multipart ``sdp`` + ``session``;
  answers 201 with an aiortc SDP answer and ``Location: /v1/realtime/calls/rtc_<hex>``.
* ``POST /realtime/calls/{id}/hangup`` - 200, or 404 for an unknown call.
* ``POST /realtime/client_secrets`` - mints ``ek_`` secrets (TTL 10-7200 s).
* ``GET /realtime?model=...`` - the same session over WebSocket; ``?call_id=rtc_...`` joins a
  live WebRTC call as a sideband.
* ``POST /audio/transcriptions`` - batch transcription (multipart ``file`` + ``model``), the
  local-VAD batch path; replies ``{"text": ...}`` or plain text.

Every error is the API's JSON envelope ``{"error": {"message", "type", "param", "code"}}``,
unknown routes and oversized bodies included. Use it in-process with :func:`serve`, or from
the shell with ``livetalk serve``. Inject failures with ``LocalServer(faults=Faults(...))``
(:mod:`livetalk.server.faults`) and act on a live call through ``server.calls[call_id]``
(a :class:`ServerCall`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiohttp import BodyPartReader, WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from livetalk._net import is_loopback_url
from livetalk._tasks import TaskSet
from livetalk.audio.clock import MediaClock
from livetalk.audio.resample import resample
from livetalk.errors import ConfigError, LivetalkError, LocalProtocolError, SessionConfigError
from livetalk.protocol.session import (
    DEFAULT_MODEL,
    PCM_RATE,
    default_session,
    merge_session,
    validate_session,
)
from livetalk.server.asr import (
    AsrChoice,
    Transcriber,
    TranscriptionHints,
    load_phrases,
    make_transcriber,
    transcript_pieces,
)
from livetalk.server.brain import Brain, make_brain
from livetalk.server.faults import FailingTranscriber, Faults, RtpLoss, sever_peer
from livetalk.server.session import ServerSession
from livetalk.server.tts import EspeakSynthesizer, Synthesizer
from livetalk.transport.ice import loopback_candidates
from livetalk.transport.impairment import ImpairedPath
from livetalk.transport.jitter import install_server_playout
from livetalk.transport.tracks import OutboundAudioTrack, RemoteAudioReader

__all__ = ["LocalServer", "ServerCall", "serve"]

log = logging.getLogger("livetalk.server")

MAX_BODY_BYTES = 1 << 20
#: The batch transcription endpoint takes files up to 25 MB, as the API does.
MAX_AUDIO_FILE_BYTES = 25 << 20
MAX_EVENT_BYTES = 256 * 1024
SECRET_TTL_DEFAULT = 600
TRANSCRIPTION_FORMATS = ("json", "text")


def _error(status: int, message: str, *, code: str | None, param: str | None = None,
           error_type: str = "invalid_request_error",
           headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


@dataclass
class _Secret:
    expires_at: float
    session: dict[str, Any]


@dataclass
class ServerCall:
    """One live WebRTC call of the server, as ``server.calls[call_id]`` exposes it.

    Besides its parts (the peer connection, the :class:`ServerSession`, the outbound track)
    it has the test hooks that inject faults into this call only: :meth:`send_raw`,
    :meth:`send_error`, :meth:`close_data_channel`, :meth:`fail_transcriptions`,
    :meth:`hang_up` and :meth:`kill`. With ``Faults(rtp_loss=...)`` its :attr:`loss`
    drops and counts RTP audio packets (``call.loss.statistics()``).
    """

    id: str
    pc: RTCPeerConnection
    session: ServerSession
    track: OutboundAudioTrack
    closer: Callable[[ServerCall], Awaitable[None]]
    reader: RemoteAudioReader | None = None
    channel: Any = None
    closed: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    sidebands: list[web.WebSocketResponse] = field(default_factory=list)
    loss: RtpLoss | None = None
    started: float = field(default_factory=time.monotonic)
    impaired: ImpairedPath | None = None

    def __repr__(self) -> str:
        return f"<ServerCall {self.id} {self.pc.connectionState}{' closed' if self.closed else ''}>"

    def send_raw(self, text: str | bytes) -> None:
        """Send ``text`` on the ``oai-events`` channel as is (malformed JSON, unknown types).

        Raises:
            LocalProtocolError: the channel is not open, or the message is larger than the
                client accepts (its ``a=max-message-size``).
        """
        if self.channel is None or self.channel.readyState != "open":
            raise LocalProtocolError(f"the data channel of {self.id} is not open")
        try:
            self.channel.send(text)
        except ValueError as exc:  # aiortc: over the peer's max-message-size
            raise LocalProtocolError(str(exc)) from exc

    def send_error(self, code: str, message: str, *,
                   error_type: str = "invalid_request_error") -> None:
        """Emit an ``error`` event to every listener of the call; the session stays open."""
        self.session.error(code, message, error_type=error_type)

    def close_data_channel(self) -> None:
        """Close the ``oai-events`` channel; the media keeps flowing both ways."""
        if self.channel is not None:
            self.channel.close()

    def fail_transcriptions(self, times: int = 1) -> None:
        """Make the next ``times`` transcriptions of this call fail, then recover."""
        self.session.transcriber = FailingTranscriber(self.session.transcriber, times)

    async def hang_up(self) -> None:
        """End the call the way ``/hangup`` does (DTLS and SCTP say goodbye)."""
        await self.closer(self)

    async def kill(self) -> None:
        """Vanish without a goodbye: the sockets close first, as when the process dies.

        The client only notices through its own liveness checks.
        """
        sever_peer(self.pc)
        await self.closer(self)


class LocalServer:
    """An offline imitation of OpenAI's Realtime API (WebRTC, WebSocket, REST).

    Args:
        host: address to bind; 127.0.0.1 by default (never exposed unless asked).
        port: TCP port; 0 picks a free one (read :attr:`base_url` after :meth:`start`).
        api_key: when set, the only standard key accepted; otherwise any ``sk-`` key is.
        brain: ``"echo"`` (default), a script file path, a callable, or a Brain.
        transcriber: the ears; by default the one ``asr`` names.
        asr: the default ears: ``"auto"`` (Whisper with the ``asr`` extra, else pocketsphinx,
            said once in the log), ``"whisper"`` or ``"pocketsphinx"``
            (:func:`~livetalk.server.asr.make_transcriber`).
        whisper_model: a CTranslate2 Whisper model directory; default the bundled tiny.en.
        phrases: phrase list (or a path to one) for the default transcriber: hot words for
            Whisper, the only sentences pocketsphinx recognises.
        synthesizer: the voice; default espeak-ng.
        realtime_factor: the media clock runs this many times faster than real time.
        max_call_s: session length limit (the API's is 3600 s); then an ``error`` event
            (``session_expired``) and the call closes.
        faults: failures to inject (:class:`~livetalk.server.faults.Faults`); none by default.
        max_event_bytes: client events larger than this get a ``message_too_large`` error.
        connect_timeout_s: close a call whose peer has not connected within this time.
        tls_cert, tls_key: a PEM certificate (chain) and its key: serve ``https://`` and
            ``wss://`` (the ``openai`` npm SDK always dials ``wss://``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        brain: Brain | str | Callable[..., Any] = "echo",
        transcriber: Transcriber | None = None,
        asr: AsrChoice = "auto",
        whisper_model: str | None = None,
        phrases: list[str] | str | None = None,
        synthesizer: Synthesizer | None = None,
        realtime_factor: float = 1.0,
        max_call_s: float = 3600.0,
        faults: Faults | None = None,
        max_event_bytes: int = MAX_EVENT_BYTES,
        connect_timeout_s: float = 30.0,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
    ) -> None:
        if realtime_factor <= 0:
            raise ValueError("realtime_factor must be > 0")
        if max_call_s <= 0 or connect_timeout_s <= 0 or max_event_bytes <= 0:
            raise ValueError("max_call_s, connect_timeout_s and max_event_bytes must be > 0")
        self.host = host
        self.port = port
        self._api_key = api_key
        self.brain = make_brain(brain)
        if isinstance(phrases, str):
            phrases = load_phrases(phrases)
        self.transcriber = transcriber or make_transcriber(asr, phrases=phrases,
                                                           whisper_model=whisper_model)
        self.synthesizer = synthesizer or EspeakSynthesizer()
        self.realtime_factor = realtime_factor
        self.max_call_s = max_call_s
        self.faults = faults or Faults()
        if self.faults.transcription_failed:
            self.transcriber = FailingTranscriber()
        self.max_event_bytes = max_event_bytes
        self.connect_timeout_s = connect_timeout_s
        self._ssl = _tls_context(tls_cert, tls_key)
        self.calls: dict[str, ServerCall] = {}
        self._calls_answered = 0
        self.ws_sessions: set[ServerSession] = set()
        self._secrets: dict[str, _Secret] = {}
        self._tasks = TaskSet(log, "the local server")
        self._runner: web.AppRunner | None = None
        self.app = self._make_app()

    def __repr__(self) -> str:
        where = self.base_url if self._runner else "stopped"
        faults = " faults" if self.faults.active else ""
        return f"<LocalServer {where} calls={len(self.calls)}{faults}>"

    # ---------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        """``http(s)://HOST:PORT/v1``, the value to pass as ``base_url`` to clients."""
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        """Bind and start serving."""
        # one line per request on "livetalk.server.access" when INFO is enabled for it
        self._runner = web.AppRunner(self.app, handle_signals=False,
                                     access_log=logging.getLogger(f"{log.name}.access"))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """Close every call and WebSocket session, then stop listening."""
        for call in list(self.calls.values()):
            await self._close_call(call)
        for session in list(self.ws_sessions):
            await session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._tasks.cancel_all()

    def expire_secrets(self) -> None:
        """Expire every ``ek_`` secret minted so far (a test hook: the next use gets 401)."""
        for secret in self._secrets.values():
            secret.expires_at = min(secret.expires_at, time.time())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- app
    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_cors, _envelope])
        app.router.add_post("/v1/realtime/calls", self._create_call)
        app.router.add_post("/v1/realtime/calls/{call_id}/hangup", self._hangup)
        app.router.add_post("/v1/realtime/client_secrets", self._client_secret)
        app.router.add_get("/v1/realtime", self._websocket)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        return app

    def _check_auth(self, request: web.Request, *, standard_only: bool = False
                    ) -> tuple[web.Response | None, _Secret | None]:
        """The HTTP endpoints: a refused credential is a 401 with the JSON envelope."""
        token = _bearer(request)
        if token is None:
            return _error(401, _NO_KEY_HTTP, code=None), None
        refusal, secret = self._authorize(token, standard_only=standard_only)
        if refusal is not None:
            return _error(401, refusal.message, code=refusal.code), None
        return None, secret

    def _authorize(self, token: str | None, *, standard_only: bool = False
                   ) -> tuple[_Refusal | None, _Secret | None]:
        """Check a credential: a standard key (``api_key``, or any ``sk-`` key) or a live
        ``ek_`` secret (unless ``standard_only``)."""
        if not token:
            return _Refusal(None, "Missing bearer or basic authentication in header", 3000), None
        incorrect = _Refusal("invalid_api_key", f"Incorrect API key provided: {_masked(token)}. "
                             "You can find your API key at "
                             "https://platform.openai.com/account/api-keys.", 3000)
        if token.startswith("ek_") and not standard_only:
            secret = self._secrets.get(token)
            if secret is None:
                return incorrect, None
            if secret.expires_at <= time.time():
                return _Refusal("invalid_api_key", "The client secret has expired.", 3000), None
            return None, secret
        valid = token == self._api_key if self._api_key else token.startswith("sk-")
        return (None if valid else incorrect), None

    # ---------------------------------------------------------------- /realtime/calls
    async def _read_offer(self, request: web.Request) -> tuple[str, dict[str, Any] | None]:
        if request.content_type != "multipart/form-data":
            body = await request.read()
            try:
                return body.decode("utf-8"), None
            except UnicodeDecodeError:
                return "", None  # not text, so not SDP: answered as invalid_offer
        try:
            form = await _read_form(request, MAX_BODY_BYTES)
        except ValueError:
            raise SessionConfigError("invalid_body", "The multipart body could not be parsed.",
                               None) from None
        if "sdp" not in form:
            raise SessionConfigError("missing_required_parameter",
                               "Missing required parameter: 'sdp'.", "sdp")
        session = None
        if "session" in form:
            try:
                session = json.loads(form["session"])
            except ValueError:
                raise SessionConfigError("invalid_json", "The 'session' part is not valid JSON.",
                                   "session") from None
            if not isinstance(session, dict):
                raise SessionConfigError("invalid_type",
                                         "The 'session' part must be a JSON object.", "session")
        return form["sdp"].decode("utf-8", "replace"), session

    async def _create_call(self, request: web.Request) -> web.Response:
        injected = self.faults.calls_response()
        if injected is not None:
            return injected
        denied, secret = self._check_auth(request)
        if denied:
            return denied
        if self.faults.answer_delay_s:
            await asyncio.sleep(self.faults.answer_delay_s)
            if request.transport is None or request.transport.is_closing():
                return _error(408, "The client went away before the answer was ready.",
                              code="client_closed_request")
        try:
            sdp, session_update = await self._read_offer(request)
            if session_update is not None:
                validate_session(session_update)
        except SessionConfigError as exc:
            return _error(400, exc.message, code=exc.code, param=exc.param)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "Request body too large.", code="request_too_large")
        if not sdp.lstrip().startswith("v=0") or "m=" not in sdp:
            return _invalid_offer()
        base = secret.session if secret else None
        model = request.query.get("model") or (session_update or {}).get("model") or (
            base or {}).get("model")
        initial = dict(base or {})
        if session_update:
            initial = merge_session(default_session(model or DEFAULT_MODEL), {**initial})
            initial = merge_session(initial, session_update)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        call_id = "rtc_" + secrets.token_hex(16)
        track = OutboundAudioTrack(clock=MediaClock(self.realtime_factor))
        session = ServerSession(
            transcriber=self.transcriber, synthesizer=self.synthesizer, brain=self.brain,
            output=track, model=model, session=initial or None,
            realtime_factor=self.realtime_factor,
        )
        call = ServerCall(id=call_id, pc=pc, session=session, track=track,
                          closer=self._close_call)
        self._wire_call(call)
        try:
            with loopback_candidates(is_loopback_url(f"http://{self.host}")):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                if not any(t.kind == "audio" for t in pc.getTransceivers()):
                    raise ValueError("the offer has no audio m-line")
                pc.addTrack(track)
                install_server_playout(pc, clock=track.clock, rate=PCM_RATE,
                                       speed=self.realtime_factor)
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError and friends on bad SDP
            log.info("rejecting offer: %s", exc)
            await pc.close()
            await session.close()
            return _invalid_offer()
        if self.faults.ice_unreachable:
            sever_peer(pc)
        self._calls_answered += 1
        call.loss = self.faults.rtp_loss_for(self._calls_answered)
        if call.loss is not None:
            call.loss.install(pc)
        call.impaired = self.faults.install_impairment(pc, self._calls_answered)
        self.calls[call_id] = call
        loop = asyncio.get_running_loop()
        call.timers = [
            loop.call_later(self.max_call_s, lambda: self._spawn(self._expire(call))),
            loop.call_later(self.connect_timeout_s,
                            lambda: self._spawn(self._connect_deadline(call))),
        ]
        return web.Response(
            status=201, text=self.faults.rewrite_answer(pc.localDescription.sdp),
            content_type="application/sdp", headers={"Location": f"/v1/realtime/calls/{call_id}"},
        )

    def _wire_call(self, call: ServerCall) -> None:
        pc, session = call.pc, call.session
        session.add_listener(_error_logger(call.id), greet=False)

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            if channel.label != "oai-events" or call.channel is not None:
                return
            call.channel = channel

            def send(event: dict[str, Any]) -> None:
                if channel.readyState == "open":
                    channel.send(json.dumps(event, separators=(",", ":")))

            @channel.on("message")
            def on_message(message: Any) -> None:
                _dispatch(session, message, self.max_event_bytes)

            @channel.on("close")
            def on_close() -> None:
                session.remove_listener(send)

            session.add_listener(send, greet=not self.faults.no_session_created)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio" and call.reader is None:
                call.reader = RemoteAudioReader(track, rate=PCM_RATE, on_audio=session.feed_audio)
                call.reader.start()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                log.info("%s connected (WebRTC, %s)", call.id, session.session.get("model"))
            if pc.connectionState in ("failed", "closed"):
                await self._close_call(call)

    async def _expire(self, call: ServerCall) -> None:
        call.session.error("session_expired", "Your session hit the maximum duration of "
                           f"{self.max_call_s:g} seconds.", error_type="invalid_request_error")
        await asyncio.sleep(0.05)  # let the error event leave before the goodbye
        await self._close_call(call)

    async def _connect_deadline(self, call: ServerCall) -> None:
        if call.pc.connectionState != "connected":
            log.info("closing %s: not connected within %g s", call.id, self.connect_timeout_s)
            await self._close_call(call)

    async def _close_call(self, call: ServerCall) -> None:
        if call.closed:
            return
        call.closed = True
        log.info("%s closed after %.1f s", call.id, time.monotonic() - call.started)
        self.calls.pop(call.id, None)
        for timer in call.timers:
            timer.cancel()
        await call.session.close()
        if call.reader is not None:
            await call.reader.stop()
        for ws in list(call.sidebands):
            await ws.close()
        await call.pc.close()

    async def _hangup(self, request: web.Request) -> web.Response:
        denied, _ = self._check_auth(request, standard_only=True)
        if denied:
            return denied
        call = self.calls.get(request.match_info["call_id"])
        if call is None:
            return _error(404, f"Call '{request.match_info['call_id']}' not found.",
                          code="call_not_found")
        await self._close_call(call)
        return web.Response(status=200)

    # ---------------------------------------------------------------- client secrets
    async def _client_secret(self, request: web.Request) -> web.Response:
        denied, _ = self._check_auth(request, standard_only=True)
        if denied:
            return denied
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return _error(400, "The body is not valid JSON.", code="invalid_json")
        if not isinstance(body, dict):
            return _error(400, "The body must be a JSON object.", code="invalid_type")
        expires = body.get("expires_after") or {}
        seconds = expires.get("seconds", SECRET_TTL_DEFAULT) if isinstance(expires, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 10 <= seconds <= 7200:
            return _error(400, f"Invalid value: {seconds!r}. 'expires_after.seconds' must be an "
                          "integer between 10 and 7200.", code="invalid_value",
                          param="expires_after.seconds")
        session_in = body.get("session") or {"type": "realtime"}
        try:
            validate_session(session_in)
        except SessionConfigError as exc:
            return _error(400, exc.message, code=exc.code, param=exc.param)
        effective = merge_session(default_session(session_in.get("model", DEFAULT_MODEL)),
                                  session_in)
        value = "ek_" + secrets.token_hex(16)
        expires_at = int(time.time()) + seconds
        stored_expiry = time.time() if self.faults.expired_secrets else expires_at
        self._secrets[value] = _Secret(expires_at=stored_expiry, session=session_in)
        return web.json_response({"value": value, "expires_at": expires_at, "session": effective})

    # ---------------------------------------------------------------- WebSocket
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/realtime?model=`` (a session) or ``?call_id=`` (a sideband).

        As the API does, the upgrade is accepted whatever the credentials, model or headers;
        a refusal is one ``error`` event followed by a close with code 3000 (authentication)
        or 4000 (request shape). Browsers, which cannot set headers, send the key as the
        subprotocol ``openai-insecure-api-key.<key>`` next to ``realtime`` (selected).
        Only an unknown ``call_id`` is refused in the handshake (404), as observed.
        """
        model = request.query.get("model")
        call_id = request.query.get("call_id")
        token = _bearer(request) or _subprotocol_key(request)
        call = None
        if call_id is not None:
            call = self.calls.get(call_id)
            if call is None or (token or "").startswith("ek_"):
                return _error(404, "No session found for the provided call_id",
                              code="call_id_not_found", param="")
        refusal, secret = self._authorize(token, standard_only=call_id is not None)
        if refusal is None:
            refusal = _shape_refusal(request, model, call_id, secret)
        # twice the event cap: a moderately oversized event gets an error event and the
        # session lives on; a grossly oversized frame closes the socket with 1009
        ws = web.WebSocketResponse(max_msg_size=2 * self.max_event_bytes, heartbeat=None,
                                   protocols=("realtime",))
        started = time.monotonic()
        await ws.prepare(request)
        if refusal is not None:
            error = {"type": "invalid_request_error", "code": refusal.code,
                     "message": refusal.message, "param": None, "event_id": None}
            event = {"type": "error", "event_id": "event_" + secrets.token_hex(10),
                     "error": error}
            await ws.send_str(json.dumps(event, separators=(",", ":")))
            reason = "invalid_request_error" + (f".{refusal.code}" if refusal.code else "")
            await ws.close(code=refusal.close_code, message=reason.encode())
            return ws
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def listener(event: dict[str, Any]) -> None:
            queue.put_nowait(event)

        async def writer() -> None:
            while (event := await queue.get()) is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(json.dumps(event, separators=(",", ":")))

        if call is not None:
            session = call.session
            call.sidebands.append(ws)
        else:
            initial = secret.session if secret else None
            session = ServerSession(
                transcriber=self.transcriber, synthesizer=self.synthesizer, brain=self.brain,
                output=None, model=model or (initial or {}).get("model"), session=initial,
                realtime_factor=self.realtime_factor, audio_deltas=True,
            )
            self.ws_sessions.add(session)
            name = f"ws_{secrets.token_hex(4)}"
            log.info("%s connected (WebSocket, %s)", name, session.session.get("model"))
            session.add_listener(_error_logger(name), greet=False)
        session.add_listener(listener)
        write_task = asyncio.ensure_future(writer())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    _dispatch(session, msg.data, self.max_event_bytes)
                elif msg.type == WSMsgType.BINARY:
                    session.error("invalid_event", "Binary frames are not supported; send JSON "
                                  "text frames.")
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            session.remove_listener(listener)
            queue.put_nowait(None)
            await asyncio.gather(write_task, return_exceptions=True)
            if call is not None:
                with contextlib.suppress(ValueError):
                    call.sidebands.remove(ws)
            else:
                self.ws_sessions.discard(session)
                await session.close()
                log.info("%s closed after %.1f s", name, time.monotonic() - started)
        return ws

    # ---------------------------------------------------------------- batch transcription
    async def _transcribe(self, request: web.Request) -> web.Response:
        denied, _ = self._check_auth(request, standard_only=True)
        if denied:
            return denied
        if request.content_type != "multipart/form-data":
            return _error(400, f"Invalid Content-Type header ({request.content_type}), expected "
                          "multipart/form-data.", code="invalid_content_type")
        try:
            form = await _read_form(request, MAX_AUDIO_FILE_BYTES)
        except ValueError:
            return _error(400, "The multipart body could not be parsed.", code="invalid_body")
        for name in ("file", "model"):
            if not form.get(name):
                return _error(400, f"Missing required parameter: '{name}'.",
                              code="missing_required_parameter", param=name)
        try:
            model = form["model"].decode("utf-8")
            response_format = form.get("response_format", b"json").decode("utf-8").strip()
        except UnicodeDecodeError:
            return _error(400, "Form fields must be UTF-8 text.", code="invalid_value")
        if response_format not in TRANSCRIPTION_FORMATS:
            return _error(400, f"Invalid value: '{response_format}'. Supported values are: "
                          "'json' and 'text'.", code="unsupported_value",
                          param="response_format")
        loop = asyncio.get_running_loop()
        try:
            pcm = await loop.run_in_executor(None, _decode_audio, form["file"])
        except (av.FFmpegError, ValueError, OSError, EOFError):
            return _error(400, "Audio file might be corrupted or unsupported", code="invalid_value",
                          param="file")
        if pcm.size == 0:
            return _error(400, "Audio file is empty or contains no audio stream.",
                          code="invalid_value", param="file")
        try:
            hints = TranscriptionHints(
                language=form.get("language", b"").decode("utf-8", "replace").strip() or None,
                prompt=form.get("prompt", b"").decode("utf-8", "replace").strip() or None)
            pieces = [p async for p in transcript_pieces(self.transcriber, pcm, PCM_RATE,
                                                         hints)]
            text = " ".join(pieces)
        except LivetalkError as exc:
            log.warning("batch transcription with %s failed: %s", model, exc)
            return _error(500, "The transcription failed.", code="transcription_failed",
                          error_type="server_error")
        if response_format == "text":
            return web.Response(text=text + "\n", content_type="text/plain")
        seconds = round(pcm.size / PCM_RATE, 3)
        return web.json_response({"text": text, "usage": {"type": "duration",
                                                         "seconds": seconds}})


async def _read_form(request: web.Request, limit: int) -> dict[str, bytes]:
    """Read every named part of a multipart body; 413 past ``limit`` bytes in total."""
    form: dict[str, bytes] = {}
    total = 0
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        chunks: list[bytes] = []
        while chunk := await part.read_chunk(1 << 16):
            total += len(chunk)
            if total > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=total)
            chunks.append(chunk)
        form[part.name] = b"".join(chunks)
    return form


def _decode_audio(data: bytes) -> np.ndarray:
    """Decode any audio PyAV can read into 24 kHz int16 mono (runs in an executor)."""
    pieces: list[np.ndarray] = []
    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.audio:
            return np.zeros(0, dtype=np.int16)
        stream = container.streams.audio[0]
        rate = stream.rate or stream.codec_context.sample_rate
        converter = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in container.decode(stream):
            for out in converter.resample(frame):
                pieces.append(out.to_ndarray()[0])
        for out in converter.resample(None):
            pieces.append(out.to_ndarray()[0])
    if not pieces:
        return np.zeros(0, dtype=np.int16)
    return resample(np.concatenate(pieces).astype(np.int16), rate, PCM_RATE)


_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location",
}


@web.middleware
async def _cors(request: web.Request,
                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> web.StreamResponse:
    """Let browsers call the server from any origin, as they call the API with ``ek_`` keys.

    Credentials travel in the ``Authorization`` header, never in cookies, so a wildcard
    origin exposes nothing a page could not already send.
    """
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204, headers={
            **_CORS_HEADERS,
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get(
                "Access-Control-Request-Headers", "authorization, content-type"),
            "Access-Control-Max-Age": "600",
        })
    response = await handler(request)
    if "Origin" in request.headers and not response.prepared:
        response.headers.update(_CORS_HEADERS)
    return response


@web.middleware
async def _envelope(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
    """Every error the app answers is the API's JSON envelope, even an unhandled one."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "Request body too large.", code="request_too_large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = (f"Invalid URL ({request.method} {request.path})"
                   if exc.status in (404, 405) else exc.reason)
        return _error(exc.status, message, code=None)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _error(500, "The server had an error while processing your request.",
                      code=None, error_type="server_error")


def _error_logger(name: str) -> Callable[[dict[str, Any]], None]:
    """A session listener logging each ``error`` event of call ``name`` as one line."""

    def listener(event: dict[str, Any]) -> None:
        if event.get("type") == "error":
            error = event.get("error") or {}
            log.info("%s error %s: %s", name, error.get("code"), error.get("message"))

    return listener


def _invalid_offer() -> web.Response:
    return _error(400, "Invalid SDP offer. Please try again with a WHIP-compliant offer.",
                  code="invalid_offer")


def _dispatch(session: ServerSession, message: Any, limit: int) -> None:
    """Hand one data-channel or WebSocket text message to the session (which parses it)."""
    if isinstance(message, bytes):
        session.error("invalid_event", "Binary messages are not supported; send JSON text.")
        return
    size = len(message.encode("utf-8"))
    if size > limit:
        session.error("message_too_large", f"The event is {size} bytes; the limit is "
                      f"{limit} bytes.")
        return
    session.handle_client_event(message)


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why a session is refused: the error event's code and message, the WebSocket close code."""

    code: str | None
    message: str
    close_code: int


_REALTIME_MODEL = re.compile(r"gpt-(realtime|4o-realtime|4o-mini-realtime|audio)[a-z0-9.\-]*")


def _shape_refusal(request: web.Request, model: str | None, call_id: str | None,
                   secret: _Secret | None) -> _Refusal | None:
    """A request the API refuses for its shape (close code 4000), or None."""
    if "realtime=v1" in request.headers.get("OpenAI-Beta", ""):
        return _Refusal("beta_api_shape_disabled", "The Realtime Beta API is no longer "
                        "supported. Remove the 'OpenAI-Beta: realtime=v1' header and use the GA "
                        "interface.", 4000)
    if call_id is not None:
        if model:
            return _Refusal("invalid_request", "Pass either 'model' or 'call_id', not both.",
                            4000)
        return None
    if not model and not (secret and secret.session.get("model")):
        return _Refusal("missing_model", "Missing required parameter: 'model'. You can pass it "
                        f"as a query parameter, e.g. ?model={DEFAULT_MODEL}.", 4000)
    if model and not _REALTIME_MODEL.fullmatch(model):
        return _Refusal("invalid_model", f"Model '{model}' is not supported for the Realtime "
                        "API.", 4000)
    return None


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _subprotocol_key(request: web.Request) -> str | None:
    """The key a browser sends as ``Sec-WebSocket-Protocol: openai-insecure-api-key.<key>``."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    for entry in (e.strip() for e in offered.split(",")):
        if entry.startswith(_KEY_SUBPROTOCOL):
            return entry[len(_KEY_SUBPROTOCOL):] or None
    return None


_KEY_SUBPROTOCOL = "openai-insecure-api-key."
_NO_KEY_HTTP = ("You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")


def _masked(token: str) -> str:
    """A key as the API quotes it: a few characters of each end, the rest starred."""
    return f"{token[:3]}{'*' * 8}{token[-4:]}" if len(token) > 12 else "****"


def _tls_context(cert: str | os.PathLike[str] | None,
                 key: str | os.PathLike[str] | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("TLS needs both a certificate and its key (tls_cert and tls_key)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {cert} and key {key}: {exc}") from exc
    return context


@contextlib.asynccontextmanager
async def serve(**kwargs: Any) -> AsyncIterator[LocalServer]:
    """Run a :class:`LocalServer` for the duration of an ``async with`` block.

    Example::

        async with livetalk.server.serve(port=0) as srv:
            async with livetalk.connect(base_url=srv.base_url, api_key="sk-local") as call:
                ...
    """
    server = LocalServer(**kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()

