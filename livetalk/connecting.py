"""Opening calls: :func:`connect` checks every argument, builds the transport and the
:class:`~livetalk.call.Call`, and waits until the session is ready.

Nothing billable starts before the arguments are checked: a bad speed, VAD mode, session
field or route handler raises :class:`~livetalk.errors.ConfigError` before any request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from livetalk.audio.clock import MediaClock
from livetalk.call import Call
from livetalk.errors import ConfigError, ConnectError, ConnectTimeout
from livetalk.eventlog import EventLog, EventTap
from livetalk.localvad import COMMIT_DELAY_MS, LocalTurnDetection, LocalVAD
from livetalk.protocol.conversation import DEFAULT_TRANSCRIPT_TIMEOUT_S
from livetalk.protocol.session import (
    DEFAULT_MODEL,
    UNSET,
    SemanticVAD,
    ServerVAD,
    SessionConfig,
)
from livetalk.reconnect import Reconnect
from livetalk.routing import RouteHandler, StalePolicy
from livetalk.tools import ToolHandler
from livetalk.transport.base import Transport
from livetalk.transport.jitterbuffer import JitterBufferSettings
from livetalk.transport.signaling import (
    KeyProvider,
    check_key_source,
    current_key,
    is_ephemeral,
    resolve_base_url,
)
from livetalk.transport.webrtc import WebRTCTransport
from livetalk.turnlog import TurnSink

__all__ = ["Connecting", "connect"]

log = logging.getLogger("livetalk")

_TRANSPORTS = ("webrtc", "websocket", "auto")


class Connecting:
    """What :func:`connect` returns: ``await`` it, or use it as ``async with``."""

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
    api_key: str | KeyProvider | None = None,
    base_url: str | None = None,
    session: SessionConfig | Mapping[str, Any] | None = None,
    http_client: httpx.AsyncClient | None = None,
    ice_servers: list[Any] | None = None,
    connect_timeout: float = 15.0,
    speed: float = 1.0,
    event_log: str | Path | IO[str] | EventTap | None = None,
    send_session_in_offer: bool | None = None,
    transport: str | Transport = "webrtc",
    tool_handlers: Mapping[str, ToolHandler] | None = None,
    vad: str | LocalVAD = "server",
    keep_user_audio_s: float = 60.0,
    reconnect: Reconnect | None = None,
    media_timeout: float | None = 5.0,
    low_latency: bool = False,
    route: RouteHandler | None = None,
    route_stale: StalePolicy = "speak",
    transcript_timeout: float = DEFAULT_TRANSCRIPT_TIMEOUT_S,
    turn_log: TurnSink | None = None,
) -> Connecting:
    """Open a live call to the Realtime API (or livetalk's local server), WebRTC by default.

    Args:
        model: the model (default :data:`~livetalk.protocol.session.DEFAULT_MODEL`, or the one
            bound to an ``ek_`` secret).
        api_key: a standard key, an ``ek_`` client secret, or an async function returning one
            (called for every call a reconnect or recycle opens, so it can mint a fresh
            secret); default ``OPENAI_API_KEY``.
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
            turn is committed (and answered unless ``LocalVAD(respond=False)`` or ``route``).
        keep_user_audio_s: how much sent audio to keep so user turns carry their audio
            (``Turn.audio``); 0 disables it.
        reconnect: opt-in automatic reconnect and proactive recycle (:class:`Reconnect`).
        media_timeout: WebRTC: seconds without server audio after which the call counts as
            lost (None: rely on ICE consent checks, about 30 s).
        low_latency: WebRTC: cap the adaptive receive jitter buffer's delay at one frame
            (20 ms) whatever the measured jitter: late packets are concealed and dropped
            instead of waited for (see ``docs/audio.md``). The default adapts to the jitter.
        route: the host's agent: ``route(turn)`` is called for each completed user turn and
            a returned string is spoken (see :mod:`livetalk.routing`); sets
            ``create_response: false`` in the turn detection for you (merged into yours, or
            into the session's effective one), and turns input transcription on (the default
            :class:`Transcription`) when the session has none.
        route_stale: ``"speak"`` (default) or ``"drop"``: what happens to an answer whose
            user spoke again before it was ready.
        transcript_timeout: seconds a user turn waits for its transcription before it is
            released as ``incomplete``.
        turn_log: stores every turn once, in order (:class:`~livetalk.turnlog.TurnLog`).

    Returns:
        An awaitable that is also an async context manager yielding a :class:`Call`.

    Raises (when awaited):
        ConfigError: a bad argument (before anything is sent); MissingAPIKeyError: no key.
        AuthenticationError, BadRequestError, APIStatusError: the server refused.
        ConnectError, ConnectTimeout, SignalingError: the call could not be set up.
    """

    async def factory() -> Call:
        url = resolve_base_url(base_url)
        key_source = check_key_source(api_key)
        if speed <= 0:
            raise ConfigError(f"speed must be > 0, got {speed}")
        if transcript_timeout <= 0:
            raise ConfigError(f"transcript_timeout must be > 0, got {transcript_timeout}")
        if isinstance(transport, str) and transport not in _TRANSPORTS:
            raise ConfigError(f"transport must be 'webrtc', 'websocket', 'auto' or a Transport, "
                              f"got {transport!r}")
        config = _session_config(session, model)
        local_vad = _local_vad(vad)
        if local_vad is not None:
            config = (config or SessionConfig()).replace(turn_detection=None)
        if route is not None:
            config = _for_routing(config or SessionConfig())
        first_key = await current_key(key_source)
        in_offer = (send_session_in_offer if send_session_in_offer is not None
                    else not is_ephemeral(first_key))
        offer_session = None
        if in_offer:
            offer_session = (config or SessionConfig()).to_dict()
            offer_session.setdefault("model", DEFAULT_MODEL)
        taps: list[EventTap] = []
        cleanups: list[Callable[[], None]] = []
        if callable(event_log):
            taps.append(event_log)
        elif event_log is not None:
            log_file = EventLog(event_log)
            taps.append(log_file)
            cleanups.append(log_file.close)
        owns = http_client is None
        client = http_client or httpx.AsyncClient()
        clock = MediaClock(speed)
        keys = [first_key]

        async def make(kind: str) -> Transport:
            key = keys.pop() if keys else await current_key(key_source)
            if kind == "webrtc":
                return WebRTCTransport(
                    base_url=url, api_key=key, session=offer_session, http_client=client,
                    ice_servers=ice_servers, clock=clock, connect_timeout=connect_timeout,
                    media_timeout=media_timeout,
                    jitter_buffer=JitterBufferSettings.low_latency() if low_latency else None,
                )
            from livetalk.transport.websocket import WebSocketTransport

            return WebSocketTransport(
                base_url=url, api_key=key, model=(config.model if config else None),
                clock=clock, connect_timeout=connect_timeout,
            )

        async def open_call(chosen: Transport) -> Call:
            reopen = None
            if isinstance(transport, str):  # built-in transports can be recreated
                kind = chosen.kind

                async def reopen() -> Transport:
                    return await make(kind)

            local = None
            if local_vad is not None:
                local = LocalTurnDetection(
                    local_vad, commit_delay_ms=COMMIT_DELAY_MS if chosen.kind == "webrtc" else 0)
            call = Call(
                chosen, open_transport=reopen, config=config, http_client=client,
                owns_http=owns, taps=taps, clock=time.monotonic, speed=speed,
                tool_handlers=tool_handlers, keep_user_audio_s=keep_user_audio_s,
                local_vad=local, respond_locally=bool(local_vad and local_vad.respond
                                                      and route is None),
                reconnect=reconnect, route=route, route_stale=route_stale,
                transcript_timeout_s=transcript_timeout, turn_log=turn_log,
                cleanups=cleanups)
            # the session travels in the offer only over WebRTC; otherwise as session.update
            in_band = not (in_offer and chosen.kind == "webrtc")
            try:
                await call.start(timeout=connect_timeout, send_config=in_band)
            except BaseException:
                await call.close()
                raise
            return call

        t0 = time.monotonic()
        try:
            if transport == "auto":
                try:
                    call = await open_call(await make("webrtc"))
                except (ConnectError, ConnectTimeout) as exc:
                    # (the failed call closed our httpx client: the WebSocket needs none)
                    log.warning("WebRTC failed (%s); falling back to WebSocket", exc)
                    call = await open_call(await make("websocket"))
            elif isinstance(transport, str):
                call = await open_call(await make(transport))
            else:
                call = await open_call(transport)
        except BaseException:
            if owns:
                await client.aclose()
            for cleanup in cleanups:
                cleanup()
            raise
        call.connect_ms = (time.monotonic() - t0) * 1000
        return call

    return Connecting(factory)


def _session_config(session: SessionConfig | Mapping[str, Any] | None,
                    model: str | None) -> SessionConfig | None:
    config = SessionConfig.from_dict(session) if isinstance(session, Mapping) else session
    if config is not None and not isinstance(config, SessionConfig):
        raise ConfigError(f"session must be a SessionConfig or a dict, got {type(config).__name__}")
    if model is not None:
        config = (config or SessionConfig()).replace(model=model)
    return config


def _local_vad(vad: str | LocalVAD) -> LocalVAD | None:
    if isinstance(vad, LocalVAD):
        return vad
    if vad == "local":
        return LocalVAD()
    if vad == "server":
        return None
    raise ConfigError(f"vad must be 'server', 'local' or a LocalVAD, got {vad!r}")


def _for_routing(config: SessionConfig) -> SessionConfig:
    """The caller's own turn detection with ``create_response: false`` merged in (the host
    answers, not the model). Left unset, the call merges it into the session's effective
    turn detection once connected (:meth:`Call.start`), and turns transcription on there if
    the session has none."""
    td = config.turn_detection
    if td is None or td is UNSET:
        return config
    assert isinstance(td, ServerVAD | SemanticVAD)
    return config.replace(turn_detection=td.__class__(
        **{**_fields(td), "create_response": False}))


def _fields(vad: ServerVAD | SemanticVAD) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(vad, f.name) for f in dataclasses.fields(vad)}
