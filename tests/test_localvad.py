"""Server VAD, local VAD and batch turn detection over real calls, clean and in noise."""

from __future__ import annotations

import numpy as np
import pytest

import livetalk
from livetalk.audio.sources import ArraySource, SilenceSource, concat
from livetalk.localvad import LocalVAD, batch_turns
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from tests.speech_helpers import add_noise, make_turns

pytestmark = pytest.mark.slow

KEY = "sk-test-vad"
PHRASES = ["hello can you hear me", "what is the weather like today", "thank you goodbye"]
SPEED = 4.0


def _recording(snr_db: float | None):
    turns = make_turns(PHRASES, [3.2, 3.2], 24000, lead_s=1.0, tail_s=3.0)
    pcm = turns.pcm if snr_db is None else add_noise(turns.pcm, 24000, turns.bounds_ms, snr_db, 7)
    return pcm, turns.bounds_ms


async def _run(make_server, validator, *, snr_db, vad):
    pcm, bounds = _recording(snr_db)
    config = SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                           turn_detection=ServerVAD(silence_duration_ms=700))
    async with make_server(port=0, phrases=PHRASES, realtime_factor=SPEED) as server:
        async with livetalk.connect(base_url=server.base_url, api_key=KEY, session=config,
                                    event_log=validator, speed=SPEED, vad=vad) as call:
            await call.stream(concat(ArraySource(pcm, 24000), SilenceSource(1.0)))
            turns = await call.wait_for_turns(6, timeout=60)
    return turns, bounds


@pytest.mark.parametrize("snr_db", [None, 10.0], ids=["clean", "snr10"])
@pytest.mark.parametrize("vad", ["server", "local"])
async def test_multi_turn_recording_gives_the_right_turns(make_server, validator, vad, snr_db):
    turns, bounds = await _run(make_server, validator, snr_db=snr_db, vad=vad)
    user = [t for t in turns if t.role == "user"]
    vad_events = [(e["type"].rsplit(".", 1)[-1], e.get("audio_start_ms", e.get("audio_end_ms")))
                  for d, e in validator.seen if e["type"].startswith("input_audio_buffer.speech")]
    assert [t.text for t in user] == PHRASES, (vad_events, bounds)
    assert [t.role for t in turns] == ["user", "assistant"] * 3
    # each user turn carries the audio that was sent for it, about as long as the phrase
    for turn, (start, end) in zip(user, bounds, strict=True):
        assert turn.audio is not None
        speech_ms = end - start
        got_ms = turn.audio.size * 1000 / 24000
        assert speech_ms < got_ms < speech_ms + 1500, (vad_events, bounds, got_ms)
        assert np.abs(turn.audio).max() > 3000
    if vad == "local":
        sent = [e["type"] for d, e in validator.seen if d == "out"]
        assert sent.count("input_audio_buffer.commit") == 3
        assert validator.types("in").count("input_audio_buffer.speech_started") == 0
    validator.assert_valid()


async def test_batch_path_transcribes_each_detected_turn(server) -> None:
    pcm, _ = _recording(10.0)
    turns = [t async for t in batch_turns(ArraySource(pcm, 24000), base_url=server.base_url,
                                          api_key=KEY, vad=LocalVAD(silence_ms=700))]
    assert [t.text for t in turns] == PHRASES
    assert all(t.audio is not None and t.audio.size > 0 for t in turns)
