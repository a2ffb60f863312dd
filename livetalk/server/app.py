"""The local Realtime-compatible server: HTTP and WebSocket routes on aiohttp.

Endpoints (under ``/v1``), as the real API has them (``realtime-protocol.md`` sections 2-7):

* ``POST /realtime/calls`` - raw ``application/sdp`` or multipart ``sdp`` + ``session``;
  answers 201 with an aiortc SDP answer and ``Location: /v1/realtime/calls/rtc_<hex>``.
* ``POST /realtime/calls/{id}/hangup`` - 200, or 404 for an unknown call.
* ``POST /realtime/client_secrets`` - mints ``ek_`` secrets (TTL 10-7200 s).
* ``GET /realtime?model=...`` - the same session over WebSocket; ``?call_id=rtc_...`` joins a
  live WebRTC call as a sideband.
* ``POST /audio/transcriptions`` - batch transcription (the local-VAD batch path).

Use it in-process with :func:`serve`, or from the shell with ``livetalk serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from livetalk.audio.clock import MediaClock
from livetalk.server.asr import PocketSphinxTranscriber, Transcriber, load_phrases
from livetalk.server.brain import Brain, make_brain
from livetalk.server.config import SessionError, default_session, merge_session, validate_session
from livetalk.server.session import ServerSession
from livetalk.server.tts import EspeakSynthesizer, Synthesizer
from livetalk.transport.ice import is_loopback_url, loopback_candidates
from livetalk.transport.tracks import OutboundAudioTrack, RemoteAudioReader

__all__ = ["LocalServer", "serve"]

log = logging.getLogger("livetalk.server")

MAX_BODY_BYTES = 1 << 20
MAX_EVENT_BYTES = 256 * 1024
SECRET_TTL_DEFAULT = 600


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
class _Call:
    id: str
    pc: RTCPeerConnection
    session: ServerSession
    track: OutboundAudioTrack
    reader: RemoteAudioReader | None = None
    channel: Any = None
    closed: bool = False
    expiry: asyncio.TimerHandle | None = None
    sidebands: list[web.WebSocketResponse] = field(default_factory=list)


class LocalServer:
    """An offline imitation of OpenAI's Realtime API (WebRTC, WebSocket, REST).

    Args:
        host: address to bind; 127.0.0.1 by default (never exposed unless asked).
        port: TCP port; 0 picks a free one (read :attr:`base_url` after :meth:`start`).
        api_key: when set, the only standard key accepted; otherwise any ``sk-`` key is.
        brain: ``"echo"`` (default), a script file path, a callable, or a Brain.
        transcriber: the ears; default pocketsphinx constrained to ``phrases`` if given.
        phrases: phrase list (or a path to one) for the default transcriber.
        synthesizer: the voice; default espeak-ng.
        realtime_factor: the media clock runs this many times faster than real time.
        max_call_s: session length limit (the API's is 3600 s).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        brain: Brain | str | Callable[..., Any] = "echo",
        transcriber: Transcriber | None = None,
        phrases: list[str] | str | None = None,
        synthesizer: Synthesizer | None = None,
        realtime_factor: float = 1.0,
        max_call_s: float = 3600.0,
    ) -> None:
        if realtime_factor <= 0:
            raise ValueError("realtime_factor must be > 0")
        self.host = host
        self.port = port
        self._api_key = api_key
        self.brain = make_brain(brain)
        if isinstance(phrases, str):
            phrases = load_phrases(phrases)
        self.transcriber = transcriber or PocketSphinxTranscriber(phrases=phrases)
        self.synthesizer = synthesizer or EspeakSynthesizer()
        self.realtime_factor = realtime_factor
        self.max_call_s = max_call_s
        self.calls: dict[str, _Call] = {}
        self.ws_sessions: set[ServerSession] = set()
        self._secrets: dict[str, _Secret] = {}
        self._runner: web.AppRunner | None = None
        self.app = self._make_app()

    def __repr__(self) -> str:
        return f"<LocalServer {self.base_url if self._runner else 'stopped'} calls={len(self.calls)}>"

    # ---------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``, the value to pass as ``base_url`` to clients."""
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        """Bind and start serving."""
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close every call and WebSocket session, then stop listening."""
        for call in list(self.calls.values()):
            await self._close_call(call)
        for session in list(self.ws_sessions):
            await session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- app
    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/realtime/calls", self._create_call)
        app.router.add_post("/v1/realtime/calls/{call_id}/hangup", self._hangup)
        app.router.add_post("/v1/realtime/client_secrets", self._client_secret)
        app.router.add_get("/v1/realtime", self._websocket)
        return app

    def _check_auth(self, request: web.Request, *, standard_only: bool = False
                    ) -> tuple[web.Response | None, _Secret | None]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _error(401, "You didn't provide an API key. Provide it in the Authorization "
                          "header as 'Bearer YOUR_KEY'.", code="missing_api_key"), None
        if token.startswith("ek_") and not standard_only:
            secret = self._secrets.get(token)
            if secret is None:
                return _error(401, "Incorrect API key provided.", code="invalid_api_key"), None
            if secret.expires_at <= time.time():
                return _error(401, "The client secret has expired.", code="invalid_api_key"), None
            return None, secret
        valid = token == self._api_key if self._api_key else token.startswith("sk-")
        if not valid:
            return _error(401, "Incorrect API key provided.", code="invalid_api_key"), None
        return None, None

    # ---------------------------------------------------------------- /realtime/calls
    async def _read_offer(self, request: web.Request) -> tuple[str, dict[str, Any] | None]:
        ctype = request.content_type
        if ctype == "multipart/form-data":
            sdp, session = None, None
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                data = await part.read(decode=True)
                if part.name == "sdp":
                    sdp = data.decode("utf-8", "replace")
                elif part.name == "session":
                    try:
                        session = json.loads(data)
                    except ValueError:
                        raise SessionError("invalid_json", "The 'session' part is not valid JSON.",
                                           "session") from None
            if sdp is None:
                raise SessionError("missing_required_parameter",
                                   "Missing required parameter: 'sdp'.", "sdp")
            return sdp, session
        body = await request.text()
        return body, None

    async def _create_call(self, request: web.Request) -> web.Response:
        denied, secret = self._check_auth(request)
        if denied:
            return denied
        try:
            sdp, session_update = await self._read_offer(request)
            if session_update is not None:
                validate_session(session_update)
        except SessionError as exc:
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
            initial = merge_session(default_session(model or "gpt-realtime"), {**initial})
            initial = merge_session(initial, session_update)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        call_id = "rtc_" + secrets.token_hex(16)
        track = OutboundAudioTrack(clock=MediaClock(self.realtime_factor))
        session = ServerSession(
            transcriber=self.transcriber, synthesizer=self.synthesizer, brain=self.brain,
            output=track, model=model, session=initial or None,
            realtime_factor=self.realtime_factor,
        )
        call = _Call(id=call_id, pc=pc, session=session, track=track)
        self._wire_call(call)
        try:
            with loopback_candidates(is_loopback_url(f"http://{self.host}")):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                if not any(t.kind == "audio" for t in pc.getTransceivers()):
                    raise ValueError("the offer has no audio m-line")
                pc.addTrack(track)
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError and friends on bad SDP
            log.info("rejecting offer: %s", exc)
            await pc.close()
            await session.close()
            return _invalid_offer()
        self.calls[call_id] = call
        call.expiry = asyncio.get_running_loop().call_later(
            self.max_call_s, lambda: asyncio.ensure_future(self._expire(call)))
        return web.Response(
            status=201, text=pc.localDescription.sdp, content_type="application/sdp",
            headers={"Location": f"/v1/realtime/calls/{call_id}"},
        )

    def _wire_call(self, call: _Call) -> None:
        pc, session = call.pc, call.session

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
                _dispatch(session, message)

            @channel.on("close")
            def on_close() -> None:
                session.remove_listener(send)

            session.add_listener(send)
            session.start()

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio" and call.reader is None:
                call.reader = RemoteAudioReader(track, rate=24000, on_audio=session.feed_audio)
                call.reader.start()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._close_call(call)

    async def _expire(self, call: _Call) -> None:
        call.session.error("session_expired", "Your session hit the maximum duration of "
                           f"{int(self.max_call_s)} seconds.", error_type="invalid_request_error")
        await asyncio.sleep(0.05)
        await self._close_call(call)

    async def _close_call(self, call: _Call) -> None:
        if call.closed:
            return
        call.closed = True
        self.calls.pop(call.id, None)
        if call.expiry is not None:
            call.expiry.cancel()
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
        except SessionError as exc:
            return _error(400, exc.message, code=exc.code, param=exc.param)
        effective = merge_session(default_session(session_in.get("model", "gpt-realtime")),
                                  session_in)
        value = "ek_" + secrets.token_hex(16)
        expires_at = int(time.time()) + seconds
        self._secrets[value] = _Secret(expires_at=expires_at, session=session_in)
        return web.json_response({"value": value, "expires_at": expires_at, "session": effective})

    # ---------------------------------------------------------------- WebSocket
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        denied, secret = self._check_auth(request, standard_only="call_id" in request.query)
        if denied:
            return denied
        model = request.query.get("model")
        call_id = request.query.get("call_id")
        if model and call_id:
            return _error(400, "Pass either 'model' or 'call_id', not both.",
                          code="invalid_request", param="call_id")
        call = None
        if call_id is not None:
            call = self.calls.get(call_id)
            if call is None:
                return _error(404, "No session found for the provided call_id",
                              code="call_id_not_found", param="")
        ws = web.WebSocketResponse(max_msg_size=MAX_EVENT_BYTES, heartbeat=None)
        await ws.prepare(request)
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
            session.add_listener(listener)
        else:
            initial = secret.session if secret else None
            session = ServerSession(
                transcriber=self.transcriber, synthesizer=self.synthesizer, brain=self.brain,
                output=None, model=model or (initial or {}).get("model"), session=initial,
                realtime_factor=self.realtime_factor, audio_deltas=True,
            )
            self.ws_sessions.add(session)
            session.add_listener(listener)
            session.start()
        write_task = asyncio.ensure_future(writer())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    _dispatch(session, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    session.error("invalid_json", "Binary frames are not supported; send JSON "
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
        return ws


def _invalid_offer() -> web.Response:
    return _error(400, "Invalid SDP offer. Please try again with a WHIP-compliant offer.",
                  code="invalid_offer")


def _dispatch(session: ServerSession, message: Any) -> None:
    """Decode one data-channel or WebSocket message and hand it to the session."""
    if isinstance(message, bytes):
        session.error("invalid_json", "Binary messages are not supported; send JSON text.")
        return
    if len(message) > MAX_EVENT_BYTES:
        session.error("message_too_large", f"The event is {len(message)} bytes; the limit is "
                      f"{MAX_EVENT_BYTES} bytes.")
        return
    try:
        event = json.loads(message)
    except ValueError:
        session.error("invalid_json", "The event is not valid JSON.")
        return
    session.handle_client_event(event)


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

