"""Open-vocabulary recognition in the local server: real calls, the batch endpoint, load.

Whisper hears free sentences that no phrase list announced, after a real WebRTC round trip
(Opus both ways); the session's ``language`` and ``prompt`` reach it; its segments become
``input_audio_transcription.delta`` events as they are decoded; several calls recognising at
once all get their transcripts and replies.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import livetalk
from livetalk.audio.sources import ArraySource, SilenceSource, concat
from livetalk.localvad import batch_turns, wav_bytes
from livetalk.server.asr import normalize_phrase
from tests.conftest import EventValidator
from tests.speech_helpers import make_turns, shared_synthesizer, word_errors

pytestmark = pytest.mark.slow

KEY = "sk-test-whisper"
SPEED = 1.0
FREE = (
    "I would like to cancel my subscription",
    "What is the weather like today",
    "Please read me the latest news headlines",
)
NAMES = "Zorblax the wizard lives in Quuxville"
PROMPT = "Zorblax the wizard, Quuxville."


def received(validator: EventValidator, type_: str) -> list[dict[str, Any]]:
    return [e for d, e in list(validator.seen) if d == "in" and e["type"] == type_]


async def test_free_sentences_through_a_real_call(make_server: Any, whisper: Any,
                                                  validator: EventValidator) -> None:
    said = [*FREE, NAMES]
    turns = make_turns(said, [1.5] * (len(said) - 1), 24000, lead_s=0.5, tail_s=1.5)
    session = {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1", "language": "en", "prompt": PROMPT},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 600}}}}
    async with make_server(port=0, transcriber=whisper, realtime_factor=SPEED) as server, \
            livetalk.connect(base_url=server.base_url, api_key=KEY, event_log=validator,
                             speed=SPEED, session=session) as call:
        await call.stream(concat(ArraySource(turns.pcm, 24000), SilenceSource(1.0)))
        await call.wait_for_turns(len(said), role="user")
        await call.wait_until_quiet()
    completed = received(validator, "conversation.item.input_audio_transcription.completed")
    heard = [c["transcript"] for c in completed]
    # tiny.en after Opus: a word may go astray ("the latest" -> "my latest"), no more
    assert len(heard) == len(said)
    assert all(word_errors(s, t) <= 1 for s, t in zip(FREE, heard, strict=False)), heard
    assert "Zorblax" in heard[3] and "Quuxville" in heard[3]  # the session's prompt
    deltas = received(validator, "conversation.item.input_audio_transcription.delta")
    inbound = [e for d, e in validator.seen if d == "in"]
    for done in completed:
        mine = [d for d in deltas if d["item_id"] == done["item_id"]]
        assert len(mine) > 1 and "".join(d["delta"] for d in mine) == done["transcript"]
        assert inbound.index(mine[-1]) < inbound.index(done)  # deltas first, as decoded
        assert done["usage"]["type"] == "duration" and 1.0 < done["usage"]["seconds"] < 10.0
    # earlier replies are cut by the next sentence (barge-in); the last one plays out whole
    replies = [t.text for t in call.turns_so_far if t.role == "assistant"]
    assert replies[-1] == f"You said: {heard[-1].rstrip('.?!')}."
    validator.assert_valid()


async def test_several_calls_recognising_at_once(make_server: Any, whisper: Any) -> None:
    session = {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}

    async def one(server: Any, sentence: str) -> tuple[str, str]:
        turn = make_turns([sentence], [], 24000, lead_s=0.5, tail_s=1.2).pcm
        async with livetalk.connect(base_url=server.base_url, api_key=KEY,
                                    session=session) as call:
            await call.stream(ArraySource(turn, 24000))
            user, reply = await call.wait_for_turns(2, timeout=60)
            return user.text, reply.text

    async with make_server(port=0, transcriber=whisper) as server:
        results = await asyncio.gather(*(one(server, s) for s in FREE))
    for sentence, (user, reply) in zip(FREE, results, strict=True):
        assert word_errors(sentence, user) <= 1, (sentence, user)
        assert normalize_phrase(reply) == normalize_phrase(f"you said {user}")


async def test_the_batch_endpoint_and_the_local_vad_batch_path(make_server: Any,
                                                               whisper: Any) -> None:
    pcm, rate = shared_synthesizer().synthesize(NAMES)
    async with make_server(port=0, transcriber=whisper) as server:
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"{server.base_url}/audio/transcriptions",
                headers={"Authorization": f"Bearer {KEY}"},
                files={"file": ("turn.wav", wav_bytes(pcm, rate), "audio/wav")},
                data={"model": "whisper-1", "language": "en", "prompt": PROMPT}, timeout=30)
        assert r.status_code == 200, r.text
        assert "Zorblax" in r.json()["text"] and "Quuxville" in r.json()["text"]
        assert r.json()["usage"]["type"] == "duration"
        recording = make_turns(FREE[:2], [1.5], 24000, lead_s=0.5, tail_s=1.0)
        turns = [t async for t in batch_turns(ArraySource(recording.pcm, 24000),
                                              base_url=server.base_url, api_key=KEY,
                                              language="en")]
    assert len(turns) == 2
    assert all(word_errors(s, t.text) <= 1 for s, t in zip(FREE, turns, strict=False))
