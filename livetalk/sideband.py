"""Attach a backend to a live WebRTC call: the sideband WebSocket.

A browser (or device, or SIP trunk) holds the media of a call it opened with an ``ek_``
client secret; your backend knows the call's ``rtc_...`` id and joins the same session over
``wss://.../v1/realtime?call_id=...`` with its standard key. The backend then sees every
server event of the call (transcripts, turns, function calls) and can send client events
(``session.update``, ``response.create``, tool outputs) without the secret logic ever
reaching the browser. No audio travels over the sideband. Typical use::

    async with livetalk.sideband.attach(call_id, tool_handlers={"get_weather": weather}) as call:
        await call.update_session({"instructions": "You are the front desk of ..."})
        async for turn in call.turns():
            log_turn(turn)

The object returned is a :class:`~livetalk.call.Call`, exactly as from
:func:`livetalk.connect`; closing it detaches the backend and leaves the call running (the
call ends when its owner hangs up, and the sideband's iterators then end normally). A
sideband can route the user's turns to the backend's agent too (``route=``): its answers are
spoken by the call's media peer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from livetalk.call import Call
from livetalk.connecting import Connecting, connect
from livetalk.errors import ConfigError
from livetalk.eventlog import EventTap
from livetalk.protocol.session import SessionConfig
from livetalk.routing import RouteHandler, StalePolicy
from livetalk.tools import ToolHandler
from livetalk.transport.signaling import resolve_api_key, resolve_base_url
from livetalk.transport.websocket import WebSocketTransport

__all__ = ["attach"]


def attach(
    call_id: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    tool_handlers: Mapping[str, ToolHandler] | None = None,
    session: SessionConfig | dict[str, Any] | None = None,
    connect_timeout: float = 15.0,
    event_log: str | Path | IO[str] | EventTap | None = None,
    route: RouteHandler | None = None,
    route_stale: StalePolicy = "speak",
) -> Connecting:
    """Join the live call ``call_id`` as a sideband (a backend's view of a WebRTC call).

    Args:
        call_id: the ``rtc_...`` id of the call (the ``Location`` of ``POST /realtime/calls``,
            or ``Call.call_id`` on the side that opened it).
        api_key: a **standard** key (default ``OPENAI_API_KEY``); ``ek_`` secrets are
            refused by the server.
        base_url: default ``OPENAI_BASE_URL`` or ``https://api.openai.com/v1``.
        tool_handlers: ``{function name: handler}`` this backend answers, as for
            :meth:`~livetalk.call.Call.register_tool` (the handler gets the arguments as
            keyword arguments; its result goes back as a ``function_call_output`` followed
            by ``response.create``). Calls of other functions are left to the call's owner.
        session: a session update sent once attached (``session.update``), e.g. the
            instructions and tools that only the backend may know.
        connect_timeout: seconds to open the WebSocket and receive the session.
        event_log: a path or file for JSON lines of every event, or a callable
            ``(direction, event_dict)``, as for :func:`livetalk.connect`.
        route, route_stale: route the user's turns to your agent, as for
            :func:`livetalk.connect`.

    Returns:
        An awaitable that is also an async context manager yielding a
        :class:`~livetalk.call.Call` (``await`` it, or ``async with``). Read its
        :meth:`~livetalk.call.Call.turns`, :meth:`~livetalk.call.Call.events`..., send with
        :meth:`~livetalk.call.Call.update_session`, :meth:`~livetalk.call.Call.say`,
        :meth:`~livetalk.call.Call.create_response`; ``stream``/``send_audio`` raise
        :class:`~livetalk.errors.ConfigError` (the owner of the call holds the media).

    Raises (when awaited):
        AuthenticationError: the key was refused (for example an ``ek_`` secret).
        NotFoundError: no live call has this id.
        SignalingError, ConnectTimeout: the server could not be reached in time.
        ConfigError: an empty ``call_id``, or no API key.
    """

    async def factory() -> Call:
        if not isinstance(call_id, str) or not call_id:
            raise ConfigError(f"attach() needs the call's rtc_... id, got {call_id!r}")
        url = resolve_base_url(base_url)
        key = resolve_api_key(api_key)
        transport = WebSocketTransport(base_url=url, api_key=key, call_id=call_id,
                                       connect_timeout=connect_timeout)
        return await connect(api_key=key, base_url=url, session=session,
                             connect_timeout=connect_timeout, event_log=event_log,
                             transport=transport, tool_handlers=dict(tool_handlers or {}),
                             keep_user_audio_s=0, route=route, route_stale=route_stale)

    return Connecting(factory)
