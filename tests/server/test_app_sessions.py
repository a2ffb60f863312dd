"""The local server takes what the SDK describes: every model name on every path that carries
one (``?model=`` on WebSocket, ``session.update``, the multipart ``session`` part of
``/realtime/calls``, ``client_secrets``), and every GA session field; it refuses unknown fields
as the API does, through the same validator the client uses leniently."""

from __future__ import annotations

import itertools
import json
from typing import Annotated, Any

import pytest
from aiohttp import FormData
from aiortc import RTCConfiguration, RTCPeerConnection
from openai.types.realtime import RealtimeServerEvent, RealtimeSessionCreateResponse
from pydantic import Field, TypeAdapter

from livetalk.protocol.session import SessionConfig
from livetalk.server import LocalServer
from livetalk.transport.ice import loopback_candidates
from tests.sdk_types import EVERYTHING, REALTIME_MODELS, TRANSCRIPTION_MODELS

pytestmark = pytest.mark.slow

AUTH = {"Authorization": "Bearer sk-test-models"}
SDK_SERVER = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])
# each realtime model with a transcription model, every name of both lists used at least once
PAIRS = list(zip(REALTIME_MODELS, itertools.islice(itertools.cycle(TRANSCRIPTION_MODELS),
                                                   len(REALTIME_MODELS)), strict=True))
assert len(REALTIME_MODELS) >= len(TRANSCRIPTION_MODELS)


def _session(model: str, transcription: str) -> dict[str, Any]:
    return {"type": "realtime", "model": model,
            "audio": {"input": {"transcription": {"model": transcription}}}}


async def _receive(ws: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await ws.receive_str(timeout=10))
    SDK_SERVER.validate_python(event)  # what the official SDK would parse
    return event


async def test_every_model_over_websocket_and_session_update(client: Any) -> None:
    for model, transcription in PAIRS:
        async with client.ws_connect(f"/v1/realtime?model={model}", headers=AUTH) as ws:
            created = await _receive(ws)
            assert created["type"] == "session.created"
            assert created["session"]["model"] == model
            await ws.send_json({"type": "session.update",
                                "session": _session(model, transcription)})
            updated = await _receive(ws)
            assert updated["type"] == "session.updated", updated
            assert updated["session"]["model"] == model
            assert (updated["session"]["audio"]["input"]["transcription"]["model"]
                    == transcription)


async def test_every_model_in_client_secrets(client: Any) -> None:
    for model, transcription in PAIRS:
        r = await client.post("/v1/realtime/client_secrets", headers=AUTH,
                              json={"session": _session(model, transcription)})
        assert r.status == 200, await r.text()
        session = (await r.json())["session"]
        RealtimeSessionCreateResponse.model_validate(session)
        assert session["model"] == model
        assert session["audio"]["input"]["transcription"]["model"] == transcription


async def test_every_model_in_the_multipart_offer(client: Any) -> None:
    srv: LocalServer = client.local_server
    for model, transcription in PAIRS:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.createDataChannel("oai-events")
            pc.addTransceiver("audio", direction="sendrecv")
            with loopback_candidates():
                await pc.setLocalDescription(await pc.createOffer())
            form = FormData({"sdp": pc.localDescription.sdp,
                             "session": json.dumps(_session(model, transcription))},
                            default_to_multipart=True)
            r = await client.post("/v1/realtime/calls", data=form, headers=AUTH)
            assert r.status == 201, await r.text()
            call_id = r.headers["Location"].rsplit("/", 1)[1]
            session = srv.calls[call_id].session.session
            assert session["model"] == model
            assert session["audio"]["input"]["transcription"]["model"] == transcription
            hangup = await client.post(f"/v1/realtime/calls/{call_id}/hangup", headers=AUTH)
            assert hangup.status == 200
        finally:
            await pc.close()


async def test_every_sdk_session_field_is_taken_by_session_update(client: Any) -> None:
    async with client.ws_connect("/v1/realtime?model=gpt-realtime-2.1", headers=AUTH) as ws:
        await _receive(ws)  # session.created
        await ws.send_json({"type": "session.update", "session": EVERYTHING})
        updated = await _receive(ws)
        assert updated["type"] == "session.updated", updated
        session = updated["session"]
        for key in ("reasoning", "parallel_tool_calls", "prompt", "tracing", "truncation",
                    "include", "tools", "tool_choice"):
            assert session[key] == EVERYTHING[key], key
        assert session["audio"]["input"]["noise_reduction"] == {"type": "far_field",
                                                                 "strength": 0.6}
        assert session["audio"]["input"]["transcription"] == (
            EVERYTHING["audio"]["input"]["transcription"])


async def test_a_field_the_client_passes_through_is_refused_by_the_server(client: Any) -> None:
    future = {"type": "realtime", "memory": {"enabled": True}}
    assert SessionConfig.from_dict(future).to_dict() == future  # the client keeps it
    async with client.ws_connect("/v1/realtime?model=gpt-realtime-2.1", headers=AUTH) as ws:
        await _receive(ws)
        await ws.send_json({"type": "session.update", "event_id": "evt_1", "session": future})
        error = await _receive(ws)
        assert error["type"] == "error"
        assert error["error"]["code"] == "unknown_parameter"
        assert error["error"]["param"] == "session.memory"
        assert error["error"]["message"] == "Unknown parameter: 'session.memory'."
    r = await client.post("/v1/realtime/client_secrets", headers=AUTH, json={"session": future})
    assert r.status == 400
    assert (await r.json())["error"]["code"] == "unknown_parameter"
