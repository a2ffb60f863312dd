"""Calls over the WebSocket transport against the local server (no mocks of the audio path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiohttp import web

import livetalk
from livetalk.audio.sinks import BufferSink
from livetalk.audio.sources import FileSource, SilenceSource, concat
from livetalk.errors import AuthenticationError, BadRequestError, NotFoundError, SignalingError
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from livetalk.server.app import LocalServer
from tests.conftest import DATA

pytestmark = pytest.mark.slow

KEY = "sk-test-websocket"
DEMO_USER = ["hello can you hear me", "what is the weather like today", "thank you goodbye"]


def _config(**kw: Any) -> SessionConfig:
    return SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                         turn_detection=ServerVAD(silence_duration_ms=500), **kw)


async def test_demo_over_websocket_gives_the_webrtc_turns(server, validator) -> None:
    reply = BufferSink(rate=24000)
    async with livetalk.connect(base_url=server.base_url, api_key=KEY, session=_config(),
                                transport="websocket", event_log=validator, speed=8.0) as call:
        assert call.call_id is None
        assert repr(call).find("websocket") > 0
        assert call.session["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"
        call.record_to(reply)
        chunks: list[np.ndarray] = []

        async def collect() -> None:
            async for chunk in call.audio_chunks():
                chunks.append(chunk)

        collector = asyncio.ensure_future(collect())
        await call.stream(concat(FileSource(DATA / "demo.wav"), SilenceSource(1.2)))
        turns = await call.wait_for_turns(6, timeout=30)
        sent_ms = call._transport.sent_ms
    await collector
    user = [t.text for t in turns if t.role == "user"]
    assistant = [t for t in turns if t.role == "assistant"]
    assert user == DEMO_USER
    assert [t.generated_text for t in assistant] == [f"You said: {t}." for t in DEMO_USER]
    # fed at 8x, the next question may start while a reply still plays (by the client's
    # playout clock): that reply is then cut where it was, with the words heard. A cut in
    # the reply's trailing quiet hears every word, so a cancelled turn may have them all.
    for turn in assistant:
        assert turn.generated_text is not None and turn.generated_text.startswith(turn.text)
        assert turn.status in ("completed", "cancelled")
        if turn.status == "completed":
            assert turn.text == turn.generated_text
        if turn.text != turn.generated_text:
            assert turn.status == "cancelled"
    assert [t.role for t in turns] == ["user", "assistant"] * 3
    assert 14_000 <= sent_ms <= 15_500  # 13.7 s of speech + 1.2 s of silence, all sent
    audio = reply.array()
    assert audio.size > 3 * 24000  # three spoken replies came back as deltas
    assert np.abs(audio).max() > 1000
    assert sum(c.size for c in chunks) == audio.size
    types = validator.types("in")
    assert "response.output_audio.delta" in types
    assert "output_audio_buffer.started" not in types  # WebSocket sessions get no media events
    validator.assert_valid()


async def test_interrupt_truncates_at_the_played_position(server, validator) -> None:
    """Over WebSocket the client plays the deltas, so it cuts a reply where its playout is:
    an integer position within the audio received, which the server accepts; the turn is
    cancelled with the text heard (issue 11 item 2)."""
    async with livetalk.connect(base_url=server.base_url, api_key=KEY, transport="websocket",
                                session=SessionConfig(turn_detection=None),
                                event_log=validator) as call:
        call.interrupt()  # nothing plays yet: nothing to truncate, nothing sent but no error
        text = "one two three four five six seven eight nine ten eleven twelve"
        reply = call.say(text)
        await _next_event(call, "response.done")  # generated: all audio received, now playing
        call.interrupt(played_ms=1000.7)
        truncated = await asyncio.wait_for(_next_event(call, "conversation.item.truncated"), 10)
        assert truncated.audio_end_ms == 1000
        turn = await reply.wait(10)
        assert turn is not None and turn.status == "cancelled"
        assert turn.audio_ms == 1000 and turn.generated_text == text
        assert text.startswith(turn.text) and 0 < len(turn.text) < len(text)
        # a position past what was received is clamped to it
        second = call.say("thirteen fourteen fifteen")
        await _next_event(call, "response.done", after=1)
        call.interrupt(played_ms=1e9)
        got = await asyncio.wait_for(_next_event(call, "conversation.item.truncated", after=1),
                                     10)
        cut = await second.wait(10)
        assert cut is not None and got.audio_end_ms == int(cut.audio_ms or 0) > 0
    assert not call.errors  # both truncations were accepted by the server
    validator.assert_valid()


async def _next_event(call: Any, type_: str, *, after: int = 0) -> Any:
    """The first ``type_`` event of the call after skipping ``after`` of them."""
    async for event in call.events():
        if event.type == type_:
            if after == 0:
                return event
            after -= 1
    raise AssertionError(f"no {type_}")


async def test_bad_key_is_refused_at_once_with_the_servers_message(server) -> None:
    """The API accepts the upgrade, sends one error event and closes with 3000: the client
    raises the typed error at once instead of waiting for its connect timeout (item 1)."""
    started = asyncio.get_running_loop().time()
    with pytest.raises(AuthenticationError) as info:
        await livetalk.connect(base_url=server.base_url, api_key="bad-key-123456",
                               transport="websocket", connect_timeout=10)
    assert asyncio.get_running_loop().time() - started < 5
    assert info.value.status is None and info.value.code == "invalid_api_key"
    assert info.value.message.startswith("Incorrect API key provided")
    assert "bad-key-123456" not in str(info.value)


@pytest.mark.parametrize(("query", "code", "cls"), [
    ("?model=gpt-nonsense", "invalid_model", BadRequestError),
    ("", "missing_model", BadRequestError),
])
async def test_shape_refusals_are_bad_requests(server, query: str, code: str, cls: type) -> None:
    from livetalk.transport.websocket import WebSocketTransport

    transport = WebSocketTransport(base_url=server.base_url, api_key=KEY)
    transport.url = transport.url.split("?")[0] + query
    with pytest.raises(cls) as info:
        await livetalk.connect(base_url=server.base_url, api_key=KEY, transport=transport,
                               connect_timeout=10)
    assert info.value.code == code


async def test_unknown_call_id_is_not_found(server) -> None:
    from livetalk.transport.websocket import WebSocketTransport

    transport = WebSocketTransport(base_url=server.base_url, api_key=KEY, call_id="rtc_missing")
    with pytest.raises(NotFoundError) as info:
        await livetalk.connect(base_url=server.base_url, api_key=KEY, transport=transport)
    assert info.value.code == "call_id_not_found"


async def test_unreachable_server_is_a_signaling_error(unused_tcp_port: int) -> None:
    with pytest.raises(SignalingError):
        await livetalk.connect(base_url=f"http://127.0.0.1:{unused_tcp_port}/v1", api_key=KEY,
                               transport="websocket", connect_timeout=5)


class _StalledCalls(LocalServer):
    """A local server whose WebRTC endpoint never answers in time (WebSocket works)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release = asyncio.Event()
        self.offers = 0

    async def _create_call(self, request: web.Request) -> web.Response:
        self.offers += 1
        await self.release.wait()
        return web.json_response({"error": {"message": "too late", "type": "server_error",
                                            "param": None, "code": None}}, status=503)


@pytest.fixture
async def stalled(transcriber: Any, synthesizer: Any) -> AsyncIterator[_StalledCalls]:
    srv = _StalledCalls(transcriber=transcriber, synthesizer=synthesizer)
    await srv.start()
    try:
        yield srv
    finally:
        srv.release.set()
        await srv.stop()


async def test_auto_falls_back_to_websocket_when_webrtc_stalls(stalled, validator) -> None:
    t0 = time.monotonic()
    async with livetalk.connect(base_url=stalled.base_url, api_key=KEY, transport="auto",
                                connect_timeout=1.5, session=SessionConfig(turn_detection=None),
                                event_log=validator) as call:
        elapsed = time.monotonic() - t0
        assert stalled.offers == 1  # WebRTC was tried first
        assert call._transport.kind == "websocket"
        assert elapsed < 10
        call.add_text("hello there")
        call.create_response()
        turns = await call.wait_for_turns(2, timeout=15)
    assert [t.role for t in turns] == ["user", "assistant"]
    assert turns[1].text == "You said: hello there."
    validator.assert_valid()
