"""Example backend: a browser talks to the Realtime API, the backend keeps the key and listens.

The pattern (see ``docs/browser-relay.md``):

1. the page (``index.html``) POSTs to ``/session``; the :class:`~livetalk.relay.TokenRelay`
   checks the usage limit and mints an ``ek_`` client secret bound to the session config;
2. the page opens its own WebRTC call with that secret (``POST {base}/realtime/calls``);
3. the page POSTs the call id from the ``Location`` header to ``/calls``; the backend joins
   the call over the sideband WebSocket (``GET {base}/realtime?call_id=...``, standard key)
   and logs every turn, where it could also answer tool calls or update the session.

Run it against livetalk's local server (no API key needed)::

    livetalk serve --port 8765 --phrases livetalk/data/demo_phrases.txt
    python examples/browser/server.py --base-url http://127.0.0.1:8765/v1 --api-key sk-local

then open http://127.0.0.1:8080/ and press Start. Against the real API, drop ``--base-url``
and export ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from livetalk.errors import LivetalkError
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from livetalk.relay import Allow, TokenRelay, relay_routes
from livetalk.sideband import attach
from livetalk.transport.signaling import resolve_api_key, resolve_base_url

log = logging.getLogger("livetalk.example.browser")

HERE = Path(__file__).resolve().parent


def default_session() -> SessionConfig:
    """The session bound to every secret: transcribed input, server VAD, spoken replies."""
    return SessionConfig(
        instructions="You are a friendly, concise voice assistant.",
        transcription=Transcription(),
        # let each reply finish even when the user starts the next sentence early
        turn_detection=ServerVAD(silence_duration_ms=500, interrupt_response=False),
    )


class Backend:
    """The example's state: the relay, the sideband followers and what they heard.

    Args:
        api_key: the standard key (default ``OPENAI_API_KEY``); it never leaves this process.
        base_url: the Realtime API or a local server (default ``OPENAI_BASE_URL`` or the API).
        session: the session bound to minted secrets (default :func:`default_session`).
        allow: the relay's usage-limit callback (see :class:`~livetalk.relay.TokenRelay`).

    Next: :meth:`make_app`, then serve it with ``web.run_app`` or an ``AppRunner``.
    """

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None,
                 session: SessionConfig | None = None, allow: Allow | None = None) -> None:
        self.base_url = resolve_base_url(base_url)
        self._api_key = resolve_api_key(api_key)
        self.relay = TokenRelay(api_key=self._api_key, base_url=self.base_url,
                                session=session or default_session(), allow=allow)
        #: turns heard over the sideband, by call id: ``{"role", "text"}`` in arrival order
        self.turns: dict[str, list[dict[str, str]]] = {}
        #: progress entries POSTed by pages opened with ``?report=1``
        self.reports: list[dict[str, Any]] = []
        self._followers: dict[str, asyncio.Task[None]] = {}

    def make_app(self) -> web.Application:
        """The aiohttp application: the page, its config, the relay, call ids and reports."""
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/config", self._config)
        app.add_routes(relay_routes(self.relay, path="/session"))
        app.router.add_post("/calls", self._calls)
        app.router.add_post("/report", self._report)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(HERE / "index.html")

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response({"base_url": self.base_url})

    async def _report(self, request: web.Request) -> web.Response:
        entry = await request.json()
        self.reports.append(entry)
        if entry.get("kind") != "event":  # every server event is reported; keep the log short
            log.info("page: %s", json.dumps(entry))
        return web.json_response({"ok": True})

    async def _calls(self, request: web.Request) -> web.Response:
        body = await request.json()
        call_id = body.get("call_id") if isinstance(body, dict) else None
        if not isinstance(call_id, str) or not call_id.startswith("rtc_"):
            return web.json_response({"error": {"message": "call_id must be an rtc_ id",
                                                "type": "invalid_request_error",
                                                "param": "call_id", "code": "invalid_value"}},
                                     status=400)
        if call_id not in self._followers:
            self.turns[call_id] = []
            self._followers[call_id] = asyncio.ensure_future(self.follow(call_id))
        return web.json_response({"call_id": call_id, "following": True})

    async def follow(self, call_id: str) -> None:
        """Join ``call_id`` over the sideband and log its turns until the call ends."""
        try:
            async with attach(call_id, api_key=self._api_key, base_url=self.base_url) as call:
                log.info("sideband: following %s", call_id)
                async for turn in call.turns():
                    self.turns[call_id].append({"role": str(turn.role), "text": turn.text})
                    log.info("sideband %s: %s: %s", call_id, turn.role, turn.text)
        except LivetalkError as exc:
            log.warning("sideband: lost %s: %s", call_id, exc)
        log.info("sideband: %s ended", call_id)

    async def _cleanup(self, app: web.Application) -> None:
        for task in self._followers.values():
            task.cancel()
        for task in self._followers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task


def main() -> None:
    """Command line: ``python examples/browser/server.py [--port 8080] [--base-url URL]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"),
                        help="the Realtime API base URL (default: the public API)")
    parser.add_argument("--api-key", default=None,
                        help="standard API key (default: OPENAI_API_KEY)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    backend = Backend(api_key=args.api_key, base_url=args.base_url)
    web.run_app(backend.make_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
