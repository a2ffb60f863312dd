"""A backend attached by call_id to a live WebRTC call on the local server."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

import livetalk
from livetalk.audio.sources import FileSource, SilenceSource, concat
from livetalk.errors import ConfigError, NotFoundError
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from livetalk.server.brain import ScriptBrain
from livetalk.sideband import attach
from livetalk.transport.signaling import mint_client_secret
from tests.conftest import DATA, EventValidator

pytestmark = pytest.mark.slow

KEY = "sk-test-sideband"
ORDER_TOOL = {"type": "function", "name": "order_status", "description": "Look an order up.",
              "parameters": {"type": "object", "properties": {"order": {"type": "string"}},
                             "required": ["order"]}}
DEMO_USER = ["hello can you hear me", "what is the weather like today", "thank you goodbye"]


def _config() -> SessionConfig:
    return SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                         turn_detection=ServerVAD(silence_duration_ms=500))


async def _first(call: Any, type_: str, **fields: Any) -> Any:
    async for event in call.events():
        if event.type == type_ and all(
            event.session.get(k) == v for k, v in fields.items()
        ):
            return event
    raise AssertionError(f"the call ended before a {type_}")


async def test_backend_sees_the_call_and_steers_it(make_server, validator) -> None:
    owner_log = EventValidator()
    async with make_server(port=0, realtime_factor=4.0) as server, livetalk.connect(
        base_url=server.base_url, api_key=KEY, session=_config(), speed=4.0,
        event_log=owner_log,
    ) as owner:
        async with attach(owner.call_id, api_key=KEY, base_url=server.base_url,
                          event_log=validator) as backend:
            assert backend.call_id == owner.call_id
            assert backend.session["audio"]["input"]["transcription"] is not None

            # the backend's session.update reaches the call (the owner sees session.updated)
            updated = asyncio.ensure_future(
                _first(owner, "session.updated", instructions="Backend rules apply."))
            session = await backend.update_session({"instructions": "Backend rules apply."})
            assert session["instructions"] == "Backend rules apply."
            await asyncio.wait_for(updated, 10)
            assert owner.session["instructions"] == "Backend rules apply."

            # the owner speaks; the backend follows the transcripts and turns
            await owner.stream(concat(FileSource(DATA / "demo.wav"), SilenceSource(1.5)))
            seen = await backend.wait_for_turns(6, timeout=40)
            owner_turns = await owner.wait_for_turns(6, timeout=10)
            assert [(t.role, t.text) for t in seen] == [(t.role, t.text) for t in owner_turns]
            assert [t.role for t in seen] == ["user", "assistant"] * 3
            heard_user = [t.text for t in seen if t.role == "user"]
            # the recognizer runs on Opus at 4x on a shared machine: allow one miss
            assert sum(h == d for h, d in zip(heard_user, DEMO_USER, strict=True)) >= 2

            # the backend makes the model speak; the audio reaches the owner over WebRTC
            heard: list[np.ndarray] = []

            async def listen() -> None:
                async for chunk in owner.audio_chunks():
                    heard.append(chunk)

            listener = asyncio.ensure_future(listen())
            backend.say("welcome from the backend")
            replies = await owner.wait_for_turns(4, role="assistant", timeout=20)
            assert replies[-1].text == "welcome from the backend"
            await owner.wait_until_quiet(timeout=20)
            listener.cancel()
            assert sum(c.size for c in heard) > 12000  # the reply was heard, not just logged
            with pytest.raises(ConfigError, match="sideband"):
                backend.send_audio(np.zeros(2400, np.int16), 24000)
        assert owner.call_id in server.calls  # detaching the backend leaves the call up
    validator.assert_valid()
    owner_log.assert_valid()
    assert "response.output_audio.delta" not in validator.types("in")


async def test_backend_answers_the_models_tool_calls(make_server, validator) -> None:
    brain = ScriptBrain([{"tool": "order_status", "arguments": {"order": "42"}}])
    calls: list[str] = []

    def order_status(order: str) -> str:
        calls.append(order)
        return f"order {order} has shipped"

    async with make_server(port=0, brain=brain) as server, livetalk.connect(
        base_url=server.base_url, api_key=KEY, session=SessionConfig(turn_detection=None),
    ) as owner, attach(owner.call_id, api_key=KEY, base_url=server.base_url,
                       session={"type": "realtime", "tools": [ORDER_TOOL]},
                       tool_handlers={"order_status": order_status},
                       event_log=validator) as backend:
        assert owner.session["tools"][0]["name"] == "order_status"  # declared by the backend
        owner.add_text("where is my order")
        owner.create_response()
        turns = await owner.wait_for_turns(1, role="assistant", timeout=20)
        assert calls == ["42"]
        assert turns[-1].text == "The result is order 42 has shipped."
        sent = [e for d, e in validator.seen if d == "out"]
        assert [e["type"] for e in sent][-2:] == ["conversation.item.create", "response.create"]
        assert sent[-2]["item"]["output"] == "order 42 has shipped"
        await backend.close()
    validator.assert_valid()


async def test_owner_hangup_ends_the_backend_normally(server) -> None:
    owner = await livetalk.connect(base_url=server.base_url, api_key=KEY,
                                   session=SessionConfig(turn_detection=None))
    backend = await attach(owner.call_id, api_key=KEY, base_url=server.base_url)
    events = asyncio.ensure_future(_drain(backend))
    await owner.close()
    count = await asyncio.wait_for(events, 10)  # ends without raising
    assert count >= 1  # at least the session.created of the sideband
    assert backend.closed


async def _drain(call: Any) -> int:
    return len([e async for e in call.events()])


async def test_ephemeral_secret_is_refused_for_the_sideband(server) -> None:
    """Observed on the API (2026-09): an ek_ secret gets a 404 call_id_not_found handshake."""
    async with livetalk.connect(base_url=server.base_url, api_key=KEY) as owner:
        secret = await mint_client_secret(api_key=KEY, base_url=server.base_url)
        with pytest.raises(NotFoundError) as info:
            await attach(owner.call_id, api_key=secret.value, base_url=server.base_url)
        assert info.value.status == 404 and info.value.code == "call_id_not_found"
        assert secret.value not in str(info.value)


async def test_unknown_call_id_is_not_found(server) -> None:
    with pytest.raises(NotFoundError) as info:
        await attach("rtc_0123", api_key=KEY, base_url=server.base_url)
    assert "No session found" in info.value.message


async def test_empty_call_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        await attach("", api_key=KEY, base_url="http://127.0.0.1:9/v1")
