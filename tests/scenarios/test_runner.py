"""Scenarios run over real loopback WebRTC against the local server (speed 4)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from livetalk.protocol.session import DEFAULT_MODEL
from livetalk.scenarios import (
    TurnKind,
    load_scenario,
    run_scenario,
    scenario_from_dict,
    scenario_phrases,
)

pytestmark = pytest.mark.slow

KEY = "sk-test-scenarios"
SPEED = 4.0
BOOK = "please book a table for two"
OUTSIDE = "can we sit outside tonight"
THREE = "actually make it three"
PHRASES = [BOOK, OUTSIDE, THREE]

CONVERSATION = {
    "name": "booking",
    "session": {"instructions": "You are a booking assistant.", "turn_detection": "server_vad"},
    "turns": [
        {"say": BOOK, "expect": {"transcript_contains": "table", "reply_contains": "table"}},
        {"say": OUTSIDE, "expect": {"reply_contains": "banana"}},
        {"pause_ms": 300},  # sent while the reply plays: the next turn barges in
        {"say": THREE, "barge_in_after_ms": 600,
         "expect": {"transcript_contains": "three", "reply_status": "completed"}},
    ],
}


@pytest.fixture(scope="module")
def ears() -> Any:
    """A recogniser that knows the scenarios' phrases (make_server's default knows others)."""
    from livetalk.server.asr import PocketSphinxTranscriber

    return PocketSphinxTranscriber(phrases=PHRASES)


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


async def test_conversation_passes_fails_and_barges_in(make_server, ears, validator) -> None:
    scenario = scenario_from_dict(CONVERSATION)
    async with make_server(port=0, transcriber=ears, realtime_factor=SPEED) as server:
        result = await run_scenario(scenario, base_url=server.base_url, api_key=KEY,
                                    speed=SPEED, event_log=validator)
    validator.assert_valid()
    assert result.error is None
    assert [t.index for t in result.turns] == [0, 1, 3]
    first, second, third = result.turns

    assert first.user_transcript == BOOK
    assert first.reply_text == f"You said: {BOOK}."
    assert first.reply_status == "completed"
    assert [e.passed for e in first.expectations] == [True, True]
    assert first.passed

    # its reply was cut off by the barge-in of the next turn; its expectation fails
    assert second.user_transcript == OUTSIDE
    assert second.reply_status == "cancelled"
    assert not second.passed
    assert second.failures == [f"turn 1 (say: {OUTSIDE}): reply_contains expected ['banana'], "
                               f"got {second.reply_text!r}"]

    assert third.user_transcript == THREE
    assert third.reply_status == "completed" and third.passed
    assert not result.passed
    assert result.call_id is not None and result.call_id.startswith("rtc_")
    assert result.model == DEFAULT_MODEL

    for turn in result.turns:
        assert turn.user_item_id is not None and turn.response_id is not None
        timings = (turn.transcript_ms, turn.first_audio_ms, turn.reply_done_ms)
        assert all(t is not None and t > 0 for t in timings), turn
        assert turn.first_audio_ms is not None and turn.reply_done_ms is not None
        assert turn.first_audio_ms < turn.reply_done_ms
        assert turn.first_audio_heard_ms is not None
        assert turn.first_audio_heard_ms >= turn.first_audio_ms
        assert turn.usage is not None and turn.usage.output_audio_tokens > 0
        assert turn.cost_usd is not None and turn.cost_usd > 0
    assert result.usage.input_audio_tokens == sum(t.usage.input_audio_tokens
                                                  for t in result.turns if t.usage)
    assert result.cost_usd == pytest.approx(sum(t.cost_usd or 0 for t in result.turns))
    sent = validator.types("out")
    assert "input_audio_buffer.commit" not in sent  # server VAD closed every turn
    assert validator.types("in").count("output_audio_buffer.cleared") == 1


async def test_push_to_talk_and_recorded_audio(make_server, ears, synthesizer,
                                               tmp_path) -> None:
    recording = tmp_path / "book.wav"
    pcm, rate = synthesizer.synthesize(BOOK)
    import wave

    with wave.open(str(recording), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())
    path = _write(tmp_path / "ptt.json", {
        "session": {"turn_detection": "none"},
        "turns": [{"audio": "book.wav", "text": BOOK,
                   "expect": {"transcript_contains": BOOK, "reply_status": "completed"}},
                  {"say": THREE, "expect": {"transcript_contains": "three"}}],
    })
    scenario = load_scenario(path)
    assert scenario.manual_turns and scenario.turns[0].kind is TurnKind.AUDIO
    assert scenario_phrases([path]) == [BOOK, THREE]
    async with make_server(port=0, transcriber=ears, realtime_factor=SPEED) as server:
        result = await run_scenario(scenario, base_url=server.base_url, api_key=KEY,
                                    speed=SPEED, synthesizer=synthesizer)
    assert result.passed, result.failures
    assert [t.user_transcript for t in result.turns] == [BOOK, THREE]
    assert result.turns[0].label == "audio: book.wav"


async def test_rate_limited_calls_wait_for_retry_after_then_run(make_server, ears) -> None:
    from livetalk.scenarios.limits import CallLimits, LocalLimiter
    from livetalk.server.faults import Faults

    scenario = scenario_from_dict({"turns": [{"say": BOOK,
                                              "expect": {"transcript_contains": BOOK}}]})
    faults = Faults(calls_status=429, calls_status_times=2, retry_after_s=0.2)
    limiter = LocalLimiter(CallLimits(max_concurrent=1))
    async with make_server(port=0, transcriber=ears, realtime_factor=SPEED,
                           faults=faults) as server:
        result = await run_scenario(scenario, base_url=server.base_url, api_key=KEY,
                                    speed=SPEED, limiter=limiter)
    assert result.passed, result.failures
    assert result.retries == 2 and faults.calls_refused == 2
    stats = limiter.statistics()
    assert (stats.granted, stats.backoffs, stats.in_use, stats.max_in_use) == (3, 2, 0, 1)

    refusing = Faults(calls_status=429, retry_after_s=0.1)  # never clears
    async with make_server(port=0, faults=refusing) as server:
        result = await run_scenario(scenario, base_url=server.base_url, api_key=KEY,
                                    rate_limit_retries=1)
    assert result.error_kind == "RateLimitError" and result.retries == 1
    assert refusing.calls_refused == 2 and result.turns == ()


async def test_unreachable_server_is_reported_not_raised(tmp_path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = _write(tmp_path / "s.json", {"turns": [{"say": BOOK}]})
    base_url = f"http://127.0.0.1:{port}/v1"
    result = await run_scenario(load_scenario(path), base_url=base_url, api_key=KEY,
                                connect_timeout=5)
    assert not result.passed and result.turns == ()
    assert result.error_kind is not None and result.error is not None
    assert KEY not in result.error
