"""A token relay for backends: mint ``ek_`` client secrets for browsers and devices.

A browser must never hold your standard API key. Your backend keeps it and mounts a relay
endpoint; the page calls that endpoint, gets a short-lived ``ek_`` client secret bound to the
session config you chose, and opens its WebRTC call with it (``docs/browser-relay.md``).
The relay:

1. answers 404 when it is switched off (``enabled=False``), as if the route did not exist;
2. asks your usage-limit callback ``allow(request_info)`` (sync or async) and answers
   **429** with the OpenAI error envelope when it says no;
3. mints a secret through :func:`~livetalk.transport.signaling.mint_client_secret` at the
   configured ``base_url`` (the real API or livetalk's local server);
4. answers 200 ``{"value": "ek_…", "expires_at": <unix s>, "model": "<model>"}`` with
   ``Cache-Control: no-store``.

A failure upstream answers 502 (the upstream status and code are logged, never its message,
which may quote part of your key). Neither the secret nor the API key is ever logged.

Two flavours share one :class:`TokenRelay`::

    relay = TokenRelay(session=SessionConfig(instructions="Be brief."), allow=my_quota_check)
    app.add_routes(relay_routes(relay, path="/session"))       # aiohttp
    app.add_subapp("/relay", make_relay_app(relay))             # aiohttp sub-application
    asgi_app = RelayASGI(relay)                                 # any ASGI server or framework

The relay accepts ``POST`` only (a secret is minted per request and must not be cached).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import httpx

from livetalk.errors import ConfigError, SignalingError
from livetalk.protocol.session import DEFAULT_MODEL, SessionConfig
from livetalk.transport.signaling import mint_client_secret, resolve_api_key, resolve_base_url

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "RelayASGI",
    "RelayReply",
    "RelayStatistics",
    "RequestInfo",
    "TokenRelay",
    "make_relay_app",
    "relay_routes",
]

log = logging.getLogger("livetalk.relay")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the relay knows about one request, handed to your callbacks.

    Attributes:
        method: the HTTP method, upper case.
        path: the request path.
        remote: the client's address (as the server saw it; mind proxies), or None.
        headers: request headers with lower-case names (cookies included, for your auth).
        query: the query parameters (last value wins).
    """

    method: str
    path: str
    remote: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # headers may carry cookies or bearer tokens: keep them out of reprs and logs
        return f"RequestInfo({self.method} {self.path} from {self.remote})"


@dataclass(frozen=True, slots=True)
class RelayReply:
    """A framework-neutral HTTP reply: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"RelayReply(status={self.status})"

    def encode(self) -> bytes:
        """The body as compact UTF-8 JSON."""
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class RelayStatistics:
    """Counters of a :class:`TokenRelay` since it was created (read them any time).

    Attributes:
        minted: secrets handed out.
        refused: requests the usage-limit callback turned down (429).
        disabled: requests answered 404 because the relay was switched off.
        failed: requests that failed upstream or in a callback (502 / 500).
    """

    minted: int = 0
    refused: int = 0
    disabled: int = 0
    failed: int = 0


Allow = Callable[[RequestInfo], bool | Awaitable[bool]]
SessionSource = (
    SessionConfig
    | Mapping[str, Any]
    | Callable[[RequestInfo], SessionConfig | Mapping[str, Any] | Awaitable[Any]]
)
SafetyId = Callable[[RequestInfo], str | None | Awaitable[str | None]]


def _envelope(status: int, message: str, *, code: str, error_type: str,
              headers: Mapping[str, str] | None = None) -> RelayReply:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return RelayReply(status, body, {"Cache-Control": "no-store", **(headers or {})})


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class TokenRelay:
    """Mints ``ek_`` client secrets on behalf of browsers; mount it with a flavour below.

    Args:
        api_key: your standard API key (default ``OPENAI_API_KEY``); never sent to clients.
        base_url: where to mint (default ``OPENAI_BASE_URL`` or the public API); point it at
            ``LocalServer.base_url`` to develop offline.
        session: the session every secret is bound to: a
            :class:`~livetalk.protocol.session.SessionConfig`, a GA session dict, or a
            callable ``(RequestInfo) -> config`` (sync or async) for per-user sessions.
        allow: your usage limit, ``(RequestInfo) -> bool`` (sync or async); False answers 429.
            None allows everything.
        enabled: False answers 404 to every request; flip :attr:`enabled` at run time.
        expires_after_s: lifetime of each secret, 10 to 7200 seconds (default 600). The
            expiry limits starting calls only; a call already running continues.
        safety_identifier: optional ``(RequestInfo) -> str | None`` giving a hashed end-user
            id, forwarded as ``OpenAI-Safety-Identifier``.
        http_client: an httpx client to reuse for minting (you close it); one per request
            otherwise.

    Raises:
        ConfigError: no API key, a base URL that is not http(s), or a lifetime out of range.

    Next: mount it with :func:`relay_routes`, :func:`make_relay_app` or :class:`RelayASGI`,
    or call :meth:`handle` from any other framework.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        session: SessionSource | None = None,
        allow: Allow | None = None,
        enabled: bool = True,
        expires_after_s: int = 600,
        safety_identifier: SafetyId | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not 10 <= expires_after_s <= 7200:
            raise ConfigError(
                f"expires_after_s must be between 10 and 7200, got {expires_after_s}")
        self._api_key = resolve_api_key(api_key)
        self._base_url = resolve_base_url(base_url)
        self._session = session
        self._allow = allow
        self.enabled = enabled
        self._expires_after_s = expires_after_s
        self._safety_identifier = safety_identifier
        self._http = http_client
        self._stats = RelayStatistics()

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<TokenRelay {state} minted={self._stats.minted}>"

    def statistics(self) -> RelayStatistics:
        """The counters now (minted, refused, disabled, failed)."""
        return self._stats

    def _count(self, outcome: Literal["minted", "refused", "disabled", "failed"]) -> None:
        """Add one to the counter named ``outcome``."""
        self._stats = replace(self._stats, **{outcome: getattr(self._stats, outcome) + 1})

    async def _session_for(self, info: RequestInfo) -> dict[str, Any]:
        source = self._session
        if callable(source) and not isinstance(source, SessionConfig):
            source = await _resolve(source(info))
        if source is None:
            return {"type": "realtime", "model": DEFAULT_MODEL}
        if isinstance(source, SessionConfig):
            config = source.to_dict()
        elif isinstance(source, Mapping):
            config = dict(source)
        else:
            raise TypeError(f"the session callback returned {type(source).__name__}")
        config.setdefault("type", "realtime")
        if config["type"] == "realtime":
            config.setdefault("model", DEFAULT_MODEL)
        return config

    async def handle(self, info: RequestInfo) -> RelayReply:
        """Run the relay for one request and return the reply to send.

        Returns:
            200 with ``{value, expires_at, model}``; 404 when disabled; 405 for a method other
            than POST; 429 when ``allow`` refuses; 500 when a callback raised; 502 when the
            upstream refused or could not be reached. Errors use the OpenAI JSON envelope.
        """
        if not self.enabled:
            self._count("disabled")
            return _envelope(404, "Not found.", code="not_found",
                             error_type="invalid_request_error")
        if info.method != "POST":
            return _envelope(405, f"Method {info.method} not allowed; use POST.",
                             code="method_not_allowed", error_type="invalid_request_error",
                             headers={"Allow": "POST"})
        try:
            allowed = True if self._allow is None else bool(await _resolve(self._allow(info)))
            if not allowed:
                self._count("refused")
                log.info("relay: usage limit refused %s", info)
                return _envelope(429, "Usage limit reached; try again later.",
                                 code="usage_limit_exceeded", error_type="rate_limit_error")
            session = await self._session_for(info)
            safety = (await _resolve(self._safety_identifier(info))
                      if self._safety_identifier is not None else None)
        except Exception as exc:  # a host callback failed: report it, never crash the server
            self._count("failed")
            log.error("relay: a callback failed for %s: %s", info, type(exc).__name__)
            return _envelope(500, "The relay failed to prepare the session.",
                             code="relay_error", error_type="server_error")
        try:
            secret = await mint_client_secret(
                api_key=self._api_key, base_url=self._base_url, session=session,
                expires_after_s=self._expires_after_s, http_client=self._http,
                safety_identifier=safety,
            )
        except SignalingError as exc:
            self._count("failed")
            status = getattr(exc, "status", None)
            code = getattr(exc, "code", None)
            # the upstream message can quote part of the key: log status and code only
            log.warning("relay: minting failed for %s: %s status=%s code=%s", info,
                        type(exc).__name__, status, code)
            where = f" (HTTP {status})" if status else ""
            return _envelope(502, f"The Realtime API did not mint a client secret{where}.",
                             code="upstream_error", error_type="api_error")
        model = secret.session.get("model") or session.get("model")
        self._count("minted")
        log.info("relay: minted a client secret for %s, model=%s, expires_at=%d", info, model,
                 secret.expires_at)
        body = {"value": secret.value, "expires_at": secret.expires_at, "model": model}
        return RelayReply(200, body, {"Cache-Control": "no-store"})


# ---------------------------------------------------------------- aiohttp flavour
def _aiohttp_handler(relay: TokenRelay) -> Callable[[web.Request], Awaitable[web.Response]]:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        info = RequestInfo(
            method=request.method, path=request.path, remote=request.remote,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query),
        )
        reply = await relay.handle(info)
        return web.Response(status=reply.status, body=reply.encode(),
                            content_type="application/json", headers=dict(reply.headers))

    return handler


def relay_routes(relay: TokenRelay, *, path: str = "/session") -> list[web.RouteDef]:
    """aiohttp route definitions serving ``relay`` at ``path``.

    Next: ``app.add_routes(relay_routes(relay))``; the page then POSTs to ``path``.
    Every method is routed to the relay, so a GET gets a clear 405 (or 404 when disabled).
    """
    from aiohttp import web

    return [web.route("*", path, _aiohttp_handler(relay))]


def make_relay_app(relay: TokenRelay, *, path: str = "/session") -> web.Application:
    """An aiohttp sub-application serving ``relay`` at ``path`` inside it.

    Next: ``app.add_subapp("/relay", make_relay_app(relay))`` serves ``POST /relay/session``.
    """
    from aiohttp import web

    app = web.Application()
    app.add_routes(relay_routes(relay, path=path))
    return app


# ---------------------------------------------------------------- ASGI flavour
Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

_MAX_BODY = 64 * 1024


class RelayASGI:
    """A plain ASGI application serving a :class:`TokenRelay` (no framework needed).

    Args:
        relay: the relay to serve.
        path: when set, only this path is served and others get 404; when None every path
            is (mount it at a route of your framework, e.g. Starlette's ``Mount``).

    It also answers the ``lifespan`` protocol, so it can run on its own under uvicorn or
    hypercorn. Next: mount it, or run ``uvicorn module:app``.
    """

    def __init__(self, relay: TokenRelay, *, path: str | None = None) -> None:
        self.relay = relay
        self.path = path

    def __repr__(self) -> str:
        return f"<RelayASGI path={self.path!r} {self.relay!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"RelayASGI serves HTTP only, not {scope['type']!r}")
        await self._drain(receive)
        path = scope.get("path", "/")
        if self.path is not None and path != self.path:
            reply = _envelope(404, "Not found.", code="not_found",
                              error_type="invalid_request_error")
        else:
            reply = await self.relay.handle(self._info(scope))
        body = reply.encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _info(scope: Scope) -> RequestInfo:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        query: dict[str, str] = {}
        raw_query = scope.get("query_string", b"").decode("latin-1")
        for key, value in httpx.QueryParams(raw_query).multi_items():
            query[key] = value
        client = scope.get("client")
        return RequestInfo(method=scope.get("method", "GET").upper(),
                           path=scope.get("path", "/"),
                           remote=client[0] if client else None,
                           headers=headers, query=query)

    @staticmethod
    async def _drain(receive: Receive) -> None:
        """Read (and discard) the request body, up to a small limit."""
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False) or size > _MAX_BODY:
                return

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
