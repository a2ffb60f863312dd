"""Real WebRTC calls over loopback against the local server (aiortc on both ends)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import livetalk
from livetalk.audio.sinks import BufferSink
from livetalk.audio.sources import FileSource, SilenceSource, concat
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from tests.conftest import DATA

pytestmark = pytest.mark.slow

KEY = "sk-test-loopback"


def _config(**kw: object) -> SessionConfig:
    return SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                         turn_detection=ServerVAD(silence_duration_ms=500), **kw)


async def test_connect_reports_call_id_and_session(server, validator) -> None:
    async with livetalk.connect(base_url=server.base_url, api_key=KEY, session=_config(),
                                event_log=validator) as call:
        assert call.call_id is not None and call.call_id.startswith("rtc_")
        assert call.call_id in server.calls
        assert call.session["type"] == "realtime"
        assert call.session["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"
        assert call.connect_ms is not None and call.connect_ms > 0
    assert validator.types("in")[0] == "session.created"
    validator.assert_valid()
    await asyncio.sleep(0.1)
    assert call.call_id not in server.calls  # hung up


async def test_spoken_file_round_trip_gives_turns_in_order(make_server, validator) -> None:
    threads_before = threading.active_count()
    reply = BufferSink(rate=24000)
    async with make_server(port=0, realtime_factor=4.0) as server, livetalk.connect(
        base_url=server.base_url, api_key=KEY, session=_config(), event_log=validator, speed=4.0
    ) as call:
        call.record_to(reply)
        await call.stream(concat(FileSource(DATA / "demo.wav"), SilenceSource(1.5)))
        turns = await call.wait_for_turns(6, timeout=60)
    user = [t for t in turns if t.role == "user"]
    assistant = [t for t in turns if t.role == "assistant"]
    assert [t.text for t in user] == ["hello can you hear me", "what is the weather like today",
                                      "thank you goodbye"]
    assert [t.text for t in assistant] == [f"You said: {t.text}." for t in user]
    assert [t.role for t in turns] == ["user", "assistant"] * 3
    assert all(t.status == "completed" for t in turns)
    audio = reply.array()
    assert audio.size > 24000  # more than a second of spoken reply came back
    assert np.abs(audio).max() > 1000
    validator.assert_valid()
    await asyncio.sleep(0.2)
    leftover = [t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")]
    assert len(leftover) <= threads_before, leftover
