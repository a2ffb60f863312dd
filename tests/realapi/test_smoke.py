"""Smoke tests against the real Realtime API (``make test-realapi``; needs OPENAI_API_KEY).

Each test is bounded (``pytest.mark.timeout`` and ``asyncio.wait_for``), keeps the model's
answers short and hangs up at the end. See docs/fidelity.md ("The real-API smoke suite")
for what each test checks and what a run costs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

import livetalk
from livetalk import ArraySource, FunctionTool, ServerVAD, SessionConfig, Transcription, sideband
from livetalk.errors import AuthenticationError, ConnectTimeout
from livetalk.protocol.conversation import Role, TurnStatus

pytestmark = pytest.mark.timeout(120)

DEMO = Path(livetalk.__file__).resolve().parent / "data" / "demo.wav"
BRIEF = "You are a test harness. Answer in one short sentence."


def _first_phrase() -> np.ndarray:
    """The first 2.6 s of the bundled demo.wav (16 kHz): 'hello can you hear me'."""
    with av.open(str(DEMO)) as container:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return pcm[: int(2.6 * 16000)].astype(np.int16)


def _voice_session(transcribe_model: str) -> SessionConfig:
    return SessionConfig(instructions=BRIEF, transcription=Transcription(model=transcribe_model),
                         turn_detection=ServerVAD(silence_duration_ms=500))


async def test_webrtc_call_with_a_spoken_file(model: str, transcribe_model: str) -> None:
    """Audio up over WebRTC; a transcript, a spoken reply, usage, audio back; hang up."""
    call = await livetalk.connect(model=model, session=_voice_session(transcribe_model),
                                  connect_timeout=20)
    received: list[np.ndarray] = []
    async with call:
        assert call.call_id is not None and call.call_id.startswith("rtc_")
        assert call.session.get("model")

        async def listen() -> None:
            async for chunk in call.audio_chunks():
                received.append(chunk)

        listener = asyncio.ensure_future(listen())
        await call.stream(ArraySource(_first_phrase(), rate=16000))
        await call.stream(livetalk.SilenceSource(1.0))
        user, reply = await call.wait_for_turns(2, timeout=45)
        await call.wait_until_quiet(timeout=30)
        listener.cancel()
    assert user.role is Role.USER and "hear" in user.text.lower(), user.text
    assert reply.role is Role.ASSISTANT and reply.text.strip()
    assert reply.status is TurnStatus.COMPLETED
    assert reply.usage is not None and reply.usage.output_audio_tokens > 0
    assert call.usage.input_audio_tokens > 0
    assert sum(c.size for c in received) > 24000 // 2, "less than 0.5 s of reply audio"


async def test_interrupt_cuts_the_reply(model: str, transcribe_model: str) -> None:
    """interrupt() while the model speaks: the buffer is cleared and the turn is cancelled."""
    call = await livetalk.connect(model=model, session=_voice_session(transcribe_model),
                                  connect_timeout=20)
    types: list[str] = []

    async def watch() -> None:
        async for event in call.events():
            types.append(event.type)

    async with call:
        watcher = asyncio.ensure_future(watch())
        call.create_response(instructions="Count slowly from one to thirty, one number per "
                             "sentence.")
        for _ in range(200):
            if call.assistant_speaking:
                break
            await asyncio.sleep(0.05)
        assert call.assistant_speaking, "the reply never started playing"
        await asyncio.sleep(1.5)
        call.interrupt()
        (reply,) = await call.wait_for_turns(1, role="assistant", timeout=30)
        await asyncio.sleep(0.5)
        watcher.cancel()
    assert "output_audio_buffer.cleared" in types, types
    assert reply.status is TurnStatus.CANCELLED, (reply.status, reply.text)
    assert "thirty" not in reply.text.lower()
    assert reply.audio_ms is not None and 0 < reply.audio_ms < 15000


async def test_tool_call_is_answered(model: str) -> None:
    """The model calls a declared function; livetalk answers it; the reply uses the result."""
    calls: list[dict[str, Any]] = []

    def get_weather(city: str) -> dict[str, str]:
        calls.append({"city": city})
        return {"city": city, "forecast": "sunny and 21 degrees"}

    tool = FunctionTool(name="get_weather", description="Current weather for a city.",
                        parameters={"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]})
    session = SessionConfig(instructions=BRIEF + " Use get_weather for weather questions.",
                            output_modalities=["text"], tools=[tool])
    async with livetalk.connect(model=model, session=session, connect_timeout=20,
                                tool_handlers={"get_weather": get_weather}) as call:
        call.add_text("What is the weather in Paris right now?")
        call.create_response()
        turns = await call.wait_for_turns(2, role="assistant", timeout=45)
    assert calls and calls[0]["city"].lower().startswith("paris")
    assert "sunny" in turns[-1].text.lower() or "21" in turns[-1].text


async def test_ephemeral_secret_flow(model: str) -> None:
    """A backend mints an ek_ secret; a client connects with it alone."""
    secret = await livetalk.mint_client_secret(
        session={"type": "realtime", "model": model, "output_modalities": ["text"]},
        expires_after_s=120)
    assert secret.value.startswith("ek_") and secret.value not in repr(secret)
    async with livetalk.connect(api_key=secret.value, connect_timeout=20,
                                session=SessionConfig(instructions=BRIEF)) as call:
        assert call.session.get("output_modalities") == ["text"]
        call.add_text("Say the word 'ready'.")
        call.create_response()
        (reply,) = await call.wait_for_turns(1, role="assistant", timeout=30)
    assert "ready" in reply.text.lower()


async def test_websocket_transport(model: str) -> None:
    """The WebSocket fallback: a text turn with usage."""
    session = SessionConfig(instructions=BRIEF, output_modalities=["text"])
    async with livetalk.connect(transport="websocket", model=model, session=session,
                                connect_timeout=20) as call:
        assert call.transport_kind == "websocket"
        call.add_text("Say hi in three words.")
        call.create_response()
        user, reply = await call.wait_for_turns(2, timeout=30)
    assert (user.role, reply.role) == (Role.USER, Role.ASSISTANT)
    assert reply.status is TurnStatus.COMPLETED and reply.text.strip()
    assert call.usage.output_tokens > 0


async def test_websocket_rejection_is_a_typed_error_at_once(model: str) -> None:
    """A bad key over WebSocket: the server's error, not a connect timeout (costs nothing)."""
    with pytest.raises(AuthenticationError) as caught:
        await asyncio.wait_for(livetalk.connect(
            transport="websocket", model=model, api_key="sk-livetalk-invalid-0000",
            connect_timeout=15), 20)
    assert not isinstance(caught.value, ConnectTimeout)
    assert "0000" not in str(caught.value)


async def test_sideband_joins_the_call(model: str, transcribe_model: str) -> None:
    """A backend attaches to a WebRTC call by id and speaks on it."""
    async with livetalk.connect(model=model, session=_voice_session(transcribe_model),
                                connect_timeout=20) as call:
        assert call.call_id is not None
        async with sideband.attach(call.call_id, connect_timeout=20) as backend:
            assert backend.session.get("type") == "realtime"
            backend.say("The sideband is attached.")
            (reply,) = await call.wait_for_turns(1, role="assistant", timeout=30)
            seen = await backend.wait_for_turns(1, role="assistant", timeout=10)
    assert "sideband" in reply.text.lower()
    assert seen[0].item_id == reply.item_id
