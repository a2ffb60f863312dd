"""The token relay against the local server: aiohttp and ASGI flavours, limits, no leaks."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

import livetalk
from livetalk.errors import ConfigError
from livetalk.protocol.session import DEFAULT_MODEL, SessionConfig, Transcription
from livetalk.relay import (
    RelayASGI,
    RequestInfo,
    TokenRelay,
    make_relay_app,
    relay_routes,
)

pytestmark = pytest.mark.slow

KEY = "sk-test-relay-0123456789"


def _session() -> SessionConfig:
    return SessionConfig(instructions="Relay-bound instructions.",
                         transcription=Transcription(model="gpt-4o-mini-transcribe"))


@contextlib.asynccontextmanager
async def _aiohttp(app: web.Application) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` on a free loopback port; yield an httpx client pointed at it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        await runner.cleanup()


def _asgi(relay: TokenRelay, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=RelayASGI(relay, **kw)),
                             base_url="http://relay.test")


async def _assert_opens_call(server: Any, secret: str, validator: Any) -> dict[str, Any]:
    """Open a real WebRTC call with the minted secret; return its effective session."""
    async with livetalk.connect(base_url=server.base_url, api_key=secret,
                                event_log=validator) as call:
        assert call.call_id is not None and call.call_id in server.calls
        session = call.session
    validator.assert_valid()
    return session


async def test_aiohttp_relay_mints_a_secret_that_opens_a_call(server, validator) -> None:
    relay = TokenRelay(api_key=KEY, base_url=server.base_url, session=_session())
    app = web.Application()
    app.add_routes(relay_routes(relay, path="/session"))
    async with _aiohttp(app) as client:
        reply = await client.post("/session")
    assert reply.status_code == 200
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert set(body) == {"value", "expires_at", "model"}
    assert body["value"].startswith("ek_") and body["model"] == DEFAULT_MODEL
    assert body["expires_at"] > 0
    session = await _assert_opens_call(server, body["value"], validator)
    assert session["instructions"] == "Relay-bound instructions."  # bound to the secret
    assert session["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"
    assert relay.statistics().minted == 1


async def test_relay_switched_off_answers_404_until_enabled(server) -> None:
    relay = TokenRelay(api_key=KEY, base_url=server.base_url, enabled=False)
    app = web.Application()
    app.add_subapp("/relay", make_relay_app(relay))
    async with _aiohttp(app) as client:
        off = await client.post("/relay/session")
        relay.enabled = True
        on = await client.post("/relay/session")
    assert off.status_code == 404
    assert off.json()["error"]["code"] == "not_found"
    assert on.status_code == 200 and on.json()["value"].startswith("ek_")
    async with _asgi(TokenRelay(api_key=KEY, base_url=server.base_url, enabled=False)) as asgi:
        assert (await asgi.post("/anything")).status_code == 404
    stats = relay.statistics()
    assert (stats.disabled, stats.minted) == (1, 1)


async def test_usage_limit_refusal_is_429_and_sees_the_request(server) -> None:
    seen: list[RequestInfo] = []

    async def allow(info: RequestInfo) -> bool:  # async callbacks are awaited
        seen.append(info)
        return info.headers.get("x-user") == "alice"

    relay = TokenRelay(api_key=KEY, base_url=server.base_url, allow=allow)
    app = web.Application()
    app.add_routes(relay_routes(relay))
    async with _aiohttp(app) as client:
        refused = await client.post("/session?plan=free", headers={"X-User": "mallory"})
        allowed = await client.post("/session", headers={"X-User": "alice"})
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "usage_limit_exceeded" and error["type"] == "rate_limit_error"
    assert "value" not in refused.json()
    assert allowed.status_code == 200
    assert seen[0].method == "POST" and seen[0].path == "/session"
    assert seen[0].query == {"plan": "free"} and seen[0].remote == "127.0.0.1"
    assert "mallory" not in repr(seen[0])  # headers (cookies, tokens) stay out of reprs
    stats = relay.statistics()
    assert (stats.refused, stats.minted) == (1, 1)

    sync_relay = TokenRelay(api_key=KEY, base_url=server.base_url, allow=lambda info: False)
    async with _asgi(sync_relay) as asgi:
        assert (await asgi.post("/session")).status_code == 429


async def test_asgi_relay_mints_a_secret_that_opens_a_call(server, validator) -> None:
    async def per_user(info: RequestInfo) -> dict[str, Any]:
        return {"type": "realtime", "instructions": f"Serve {info.query['user']}."}

    relay = TokenRelay(api_key=KEY, base_url=server.base_url, session=per_user)
    async with _asgi(relay, path="/token") as client:
        wrong_path = await client.post("/session")
        wrong_method = await client.get("/token")
        reply = await client.post("/token?user=bob", content=b'{"ignored": true}')
    assert wrong_path.status_code == 404
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["value"].startswith("ek_") and body["model"] == DEFAULT_MODEL
    session = await _assert_opens_call(server, body["value"], validator)
    assert session["instructions"] == "Serve bob."


async def test_asgi_lifespan_is_answered() -> None:
    sent: list[dict[str, Any]] = []
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await RelayASGI(TokenRelay(api_key=KEY))({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete",
                                         "lifespan.shutdown.complete"]


async def test_no_secret_or_key_in_logs(make_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with make_server(port=0, api_key=KEY) as server:
        relay = TokenRelay(api_key=KEY, base_url=server.base_url, session=_session())
        async with _asgi(relay) as client:
            minted = (await client.post("/session")).json()
        wrong_key = "sk-wrong-key-should-never-be-logged"
        refused = TokenRelay(api_key=wrong_key, base_url=server.base_url)
        async with _asgi(refused) as client:
            upstream = await client.post("/session")
    assert minted["value"].startswith("ek_")
    assert upstream.status_code == 502
    assert upstream.json()["error"]["code"] == "upstream_error"
    assert "401" in upstream.json()["error"]["message"]
    assert "minted a client secret" in caplog.text  # the relay did log its work
    assert "status=401" in caplog.text
    for secret in (minted["value"], KEY, wrong_key):
        assert secret not in caplog.text
        assert secret not in repr(relay) and secret not in repr(refused)
    assert wrong_key not in upstream.text
    assert refused.statistics().failed == 1


async def test_unreachable_upstream_and_failing_callback(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    down = TokenRelay(api_key=KEY, base_url="http://127.0.0.1:9/v1")  # discard port: refused
    async with _asgi(down) as client:
        unreachable = await client.post("/session")
    assert unreachable.status_code == 502

    def broken(info: RequestInfo) -> bool:
        raise RuntimeError("quota database is down")

    failing = TokenRelay(api_key=KEY, base_url="http://127.0.0.1:9/v1", allow=broken)
    async with _asgi(failing) as client:
        crashed = await client.post("/session")
    assert crashed.status_code == 500
    assert crashed.json()["error"]["code"] == "relay_error"
    assert (down.statistics().failed, failing.statistics().failed) == (1, 1)
    assert KEY not in caplog.text


@pytest.mark.parametrize("kwargs", [{"expires_after_s": 5}, {"expires_after_s": 8000},
                                    {"base_url": "ftp://example.invalid"}])
def test_invalid_settings_fail_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        TokenRelay(api_key=KEY, **kwargs)


def test_missing_api_key_fails_at_construction(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError):
        TokenRelay()


async def test_mint_request_carries_session_lifetime_and_safety_id() -> None:
    captured: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={"value": "ek_fake", "expires_at": 1234,
                                         "session": {"model": "gpt-realtime-mini"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        relay = TokenRelay(
            api_key=KEY, base_url="https://api.example.test/v1", http_client=http,
            session={"type": "realtime", "model": "gpt-realtime-mini"}, expires_after_s=60,
            safety_identifier=lambda info: "user-" + info.headers["x-user"],
        )
        async with _asgi(relay) as client:
            reply = await client.post("/session", headers={"X-User": "42"})
    assert reply.json() == {"value": "ek_fake", "expires_at": 1234, "model": "gpt-realtime-mini"}
    (request,) = captured
    assert str(request.url) == "https://api.example.test/v1/realtime/client_secrets"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["openai-safety-identifier"] == "user-42"
    assert json.loads(request.content) == {
        "expires_after": {"anchor": "created_at", "seconds": 60},
        "session": {"type": "realtime", "model": "gpt-realtime-mini"},
    }
