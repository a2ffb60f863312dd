"""The local server's HTTP and WebSocket surface, by hand and through the official openai SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCConfiguration, RTCPeerConnection

from livetalk.server import LocalServer
from livetalk.transport.ice import loopback_candidates

pytestmark = pytest.mark.slow

KEY = "sk-test-http"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def _offer() -> tuple[RTCPeerConnection, str]:
    """A real aiortc offer, shaped like livetalk's and the browsers' (audio + oai-events)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("oai-events")
    pc.addTransceiver("audio", direction="sendrecv")
    with loopback_candidates():
        await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def _form(**parts: str) -> FormData:
    """A multipart form with string parts and no per-part Content-Type, like FormData in JS."""
    return FormData(parts, default_to_multipart=True)


def _assert_envelope(body: Any, code: str | None, error_type: str = "invalid_request_error"
                     ) -> dict[str, Any]:
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    return error


# ---------------------------------------------------------------------- routes and envelopes
async def test_unknown_route_and_method_get_json_envelopes(client: Any) -> None:
    r = await client.get("/v1/nope", headers=AUTH)
    assert r.status == 404
    assert _assert_envelope(await r.json(), None)["message"] == "Invalid URL (GET /v1/nope)"
    r = await client.get("/v1/realtime/calls", headers=AUTH)
    assert r.status == 405
    _assert_envelope(await r.json(), None)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic sk-x", "sk-x"])
async def test_requests_without_a_bearer_get_401(client: Any, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = await client.post("/v1/realtime/calls", data="v=0", headers=headers)
    assert r.status == 401
    assert "didn't provide an API key" in _assert_envelope(await r.json(), None)["message"]


async def test_only_the_configured_key_is_accepted(transcriber: Any, synthesizer: Any) -> None:
    srv = LocalServer(api_key="sk-the-one", transcriber=transcriber, synthesizer=synthesizer)
    async with TestClient(TestServer(srv.app)) as tc:
        r = await tc.post("/v1/realtime/client_secrets", json={},
                          headers={"Authorization": "Bearer sk-another"})
        assert r.status == 401
        _assert_envelope(await r.json(), "invalid_api_key")
        r = await tc.post("/v1/realtime/client_secrets", json={},
                          headers={"Authorization": "Bearer sk-the-one"})
        assert r.status == 200
    await srv.stop()


@pytest.mark.parametrize(("path", "kwargs"), [
    ("/v1/realtime/calls", {"data": b"v=0\r\n" + b"a" * (2 << 20),
                            "headers": {"Content-Type": "application/sdp"}}),
    ("/v1/realtime/client_secrets", {"data": b"{" + b" " * (2 << 20) + b"}",
                                     "headers": {"Content-Type": "application/json"}}),
])
async def test_bodies_over_one_megabyte_get_413(client: Any, path: str,
                                                kwargs: dict[str, Any]) -> None:
    r = await client.post(path, data=kwargs["data"], headers={**AUTH, **kwargs["headers"]})
    assert r.status == 413
    _assert_envelope(await r.json(), "request_too_large")


async def test_multipart_offer_over_one_megabyte_gets_413(server: Any) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{server.base_url}/realtime/calls", headers=AUTH,
                            files={"sdp": (None, b"v=0\r\n" + b"a" * (2 << 20))})
    assert r.status_code == 413
    _assert_envelope(r.json(), "request_too_large")


# ---------------------------------------------------------------------- /realtime/calls
async def test_raw_and_multipart_offers_are_answered(client: Any) -> None:
    srv: LocalServer = client.local_server
    for form in ("raw", "multipart"):
        pc, offer = await _offer()
        try:
            if form == "raw":
                r = await client.post("/v1/realtime/calls", data=offer,
                                      headers={**AUTH, "Content-Type": "application/sdp"})
            else:
                fd = _form(sdp=offer, session=json.dumps({"type": "realtime",
                                                          "instructions": "Be brief."}))
                r = await client.post("/v1/realtime/calls", data=fd, headers=AUTH)
            assert r.status == 201, await r.text()
            assert r.content_type == "application/sdp"
            answer = await r.text()
            assert answer.startswith("v=0") and "m=audio" in answer and "m=application" in answer
            call_id = r.headers["Location"].rsplit("/", 1)[1]
            assert call_id.startswith("rtc_") and call_id in srv.calls
            if form == "multipart":
                assert srv.calls[call_id].session.session["instructions"] == "Be brief."
        finally:
            await pc.close()


@pytest.mark.parametrize(("sdp", "session", "code", "param"), [
    ("hello", None, "invalid_offer", None),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 X 0\r\n", None,
     "invalid_offer", None),
    (None, '{"type": "realtime"}', "missing_required_parameter", "sdp"),
    ("v=0", "{not json", "invalid_json", "session"),
    ("v=0", "[1, 2]", "invalid_type", "session"),
    ("v=0", '{"model": "gpt-realtime"}', "missing_required_parameter", "session.type"),
    ("v=0", '{"type": "realtime", "modalities": ["audio"]}', "unknown_parameter",
     "session.modalities"),
])
async def test_bad_offers_get_400(client: Any, sdp: str | None, session: str | None, code: str,
                                  param: str | None) -> None:
    if session is None:
        r = await client.post("/v1/realtime/calls", data=sdp,
                              headers={**AUTH, "Content-Type": "application/sdp"})
    else:
        fd = _form(session=session) if sdp is None else _form(sdp=sdp, session=session)
        r = await client.post("/v1/realtime/calls", data=fd, headers=AUTH)
    assert r.status == 400
    assert _assert_envelope(await r.json(), code)["param"] == param
    assert not client.local_server.calls


async def test_hangup_needs_a_standard_key_and_a_known_call(client: Any) -> None:
    r = await client.post("/v1/realtime/calls/rtc_nope/hangup", headers=AUTH)
    assert r.status == 404
    _assert_envelope(await r.json(), "call_not_found")
    r = await client.post("/v1/realtime/client_secrets", json={}, headers=AUTH)
    secret = (await r.json())["value"]
    r = await client.post("/v1/realtime/calls/rtc_nope/hangup",
                          headers={"Authorization": f"Bearer {secret}"})
    assert r.status == 401


@pytest.mark.parametrize("seconds", [9, 7201, "60", 1.5, True])
async def test_client_secret_lifetime_is_checked(client: Any, seconds: Any) -> None:
    r = await client.post("/v1/realtime/client_secrets",
                          json={"expires_after": {"anchor": "created_at", "seconds": seconds}},
                          headers=AUTH)
    assert r.status == 400
    assert _assert_envelope(await r.json(), "invalid_value")["param"] == "expires_after.seconds"


# ---------------------------------------------------------------------- the official SDK
async def test_sdk_client_secret_call_create_and_hangup(server: Any) -> None:
    sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    async with sdk:
        secret = await sdk.realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": 120},
            session={"type": "realtime", "model": "gpt-realtime", "instructions": "Hi."})
        assert secret.value.startswith("ek_")
        assert secret.session.type == "realtime" and secret.session.instructions == "Hi."

        pc, offer = await _offer()
        try:
            raw = await sdk.realtime.calls.with_raw_response.create(
                sdp=offer, session={"type": "realtime", "model": "gpt-realtime"})
            assert raw.status_code == 201
            call_id = raw.headers["location"].rsplit("/", 1)[1]
            assert raw.content.startswith(b"v=0")
            assert call_id in server.calls

            assert await sdk.realtime.calls.hangup(call_id) is None
            assert call_id not in server.calls
            with pytest.raises(openai.NotFoundError):
                await sdk.realtime.calls.hangup(call_id)
        finally:
            await pc.close()

        with pytest.raises(openai.BadRequestError) as info:
            await sdk.realtime.client_secrets.create(
                expires_after={"anchor": "created_at", "seconds": 5})
        assert info.value.code == "invalid_value"


async def test_sdk_call_create_with_an_ephemeral_secret(server: Any) -> None:
    sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    async with sdk:
        secret = await sdk.realtime.client_secrets.create(session={"type": "realtime"})
    browser = openai.AsyncOpenAI(base_url=server.base_url, api_key=secret.value, max_retries=0)
    pc, offer = await _offer()
    try:
        async with browser:
            raw = await browser.realtime.calls.with_raw_response.create(sdp=offer)
        assert raw.status_code == 201
        server.expire_secrets()
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=secret.value,
                                      max_retries=0) as late:
            with pytest.raises(openai.AuthenticationError):
                await late.realtime.calls.create(sdp=offer)
    finally:
        await pc.close()


async def test_sdk_realtime_websocket_session_update(server: Any) -> None:
    sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    async with sdk, sdk.realtime.connect(model="gpt-realtime") as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        await conn.session.update(session={"type": "realtime", "instructions": "Be brief.",
                                           "output_modalities": ["text"]})
        updated = await conn.recv()
        assert updated.type == "session.updated"
        assert updated.session.instructions == "Be brief."
        await conn.session.update(session={"type": "realtime", "voice": "alloy"})  # type: ignore[typeddict-unknown-key]
        error = await conn.recv()
        assert error.type == "error" and error.error.code == "unknown_parameter"
    assert not server.ws_sessions


async def test_browsers_may_call_from_any_origin(client: Any) -> None:
    r = await client.options("/v1/realtime/calls", headers={
        "Origin": "http://example.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in r.headers["Access-Control-Allow-Headers"]
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    r = await client.post("/v1/realtime/client_secrets", json={},
                          headers={**AUTH, "Origin": "http://example.test"})
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Expose-Headers"] == "Location"
    r = await client.post("/v1/realtime/client_secrets", json={})  # no Origin: no CORS headers
    assert r.status == 401 and "Access-Control-Allow-Origin" not in r.headers
