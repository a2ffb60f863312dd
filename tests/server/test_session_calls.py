"""The local server's event flows end to end, over real loopback WebRTC calls.

The session engine's orders are unit-tested in ``tests/server/test_session.py``; these
tests prove that they hold on the wire: raw client events sent with ``Call.send`` over the
``oai-events`` data channel, audio over RTP, every server event validated against the
official SDK types.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import livetalk
from livetalk.audio.sources import ArraySource, SilenceSource, concat
from tests.conftest import EventValidator
from tests.speech_helpers import make_turns

pytestmark = pytest.mark.slow

KEY = "sk-test-flows"
SPEED = 4.0
LONG = "one two three four five six seven eight nine ten eleven twelve"


def received(validator: EventValidator, type_: str) -> list[dict[str, Any]]:
    return [e for d, e in list(validator.seen) if d == "in" and e["type"] == type_]


async def wait_for(validator: EventValidator, type_: str, count: int = 1,
                   timeout: float = 15.0) -> dict[str, Any]:
    """The ``count``-th ``type_`` event the client received, waiting for it if needed."""
    async def poll() -> dict[str, Any]:
        while len(found := received(validator, type_)) < count:
            await asyncio.sleep(0.01)
        return found[count - 1]

    return await asyncio.wait_for(poll(), timeout)


async def _media_arrived(server: Any, call: Any, timeout: float = 10.0) -> None:
    sent = call.outbound_track.frames
    reader = server.calls[call.call_id].reader

    async def poll() -> None:
        while reader is None or reader.frames < sent:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_push_to_talk_with_manual_commits(make_server, validator) -> None:
    phrase = "hello can you hear me"
    speech = make_turns([phrase], [], 24000, lead_s=0.2, tail_s=0.6).pcm
    async with make_server(port=0, realtime_factor=SPEED) as server, livetalk.connect(
        base_url=server.base_url, api_key=KEY, event_log=validator, speed=SPEED
    ) as call:
        session = await call.update_session({"type": "realtime", "audio": {"input": {
            "turn_detection": None, "transcription": {"model": "gpt-4o-mini-transcribe"}}}})
        assert session["audio"]["input"]["turn_detection"] is None
        call.send({"type": "input_audio_buffer.clear"})  # press
        await wait_for(validator, "input_audio_buffer.cleared")
        await call.stream(concat(ArraySource(speech, 24000), SilenceSource(0.3)))
        # RTP and the data channel are separate paths: a loaded server decodes media late,
        # so wait until it has received every frame sent so far before committing
        await _media_arrived(server, call)
        call.send({"type": "input_audio_buffer.commit"})  # release
        reply = call.create_response()
        done = await wait_for(validator, "response.done", timeout=30)
        await reply.wait(30)  # its audio has played out: the turn is complete
    inbound = [e["type"] for d, e in validator.seen if d == "in"]
    assert "input_audio_buffer.speech_started" not in inbound
    start = inbound.index("input_audio_buffer.committed")
    assert inbound[start:start + 3] == ["input_audio_buffer.committed",
                                        "conversation.item.added", "conversation.item.done"]
    user_id = received(validator, "input_audio_buffer.committed")[0]["item_id"]
    completed = received(validator, "conversation.item.input_audio_transcription.completed")
    assert [(c["item_id"], c["transcript"]) for c in completed] == [(user_id, phrase)]
    assert done["response"]["status"] == "completed"
    assert done["response"]["output"][0]["content"][0]["transcript"] == f"You said: {phrase}."
    assert [t.text for t in call.turns_so_far] == [phrase, f"You said: {phrase}."]
    validator.assert_valid()


async def test_interrupt_while_the_reply_plays(make_server, validator) -> None:
    """Real-traffic order: generation is long done when the user cuts in; the server sends
    only output_audio_buffer.cleared and truncates the item to what played; the client's turn
    is cancelled with the words heard (issue 11 item 2)."""
    async with make_server(port=0, realtime_factor=SPEED) as server, livetalk.connect(
        base_url=server.base_url, api_key=KEY, event_log=validator, speed=SPEED,
        session={"type": "realtime", "audio": {"input": {"turn_detection": None}}},
    ) as call:
        reply = call.say(LONG)
        await wait_for(validator, "output_audio_buffer.started")
        await wait_for(validator, "response.done")  # generated; the audio plays on
        await asyncio.sleep(0.6 / SPEED)
        assert call.assistant_speaking and not call.response_active
        call.interrupt()
        cleared = await wait_for(validator, "output_audio_buffer.cleared")
        turn = await reply.wait(10)
        call.send({"type": "response.cancel", "event_id": "evt_late"})
        error = await wait_for(validator, "error")
        assert not call.assistant_speaking
        server_item = server.calls[call.call_id].session.items[turn.item_id]
    dones = received(validator, "response.done")
    assert len(dones) == 1 and dones[0]["response"]["status"] == "completed"
    assert cleared["response_id"] == dones[0]["response"]["id"]
    assert turn is not None and turn.status == "cancelled" and turn.generated_text == LONG
    assert 0 < len(turn.text) < len(LONG) and LONG.startswith(turn.text)
    assert turn.audio_ms is not None and 0 < turn.audio_ms < 10_000
    assert server_item["content"][0]["transcript"] is None  # truncated server-side
    inbound = [e["type"] for d, e in validator.seen if d == "in"]
    assert "output_audio_buffer.stopped" not in inbound
    assert (error["error"]["code"], error["error"]["event_id"]) == (
        "response_cancel_not_active", "evt_late")
    validator.assert_valid()


async def test_text_turn_over_the_data_channel(server, validator) -> None:
    async with livetalk.connect(
        base_url=server.base_url, api_key=KEY, event_log=validator,
        session={"type": "realtime", "audio": {"input": {"turn_detection": None}}},
    ) as call:
        events = call.events()
        collected: list[str] = []

        async def collect() -> None:
            async for event in events:
                collected.append(event.type)
                if event.type == "rate_limits.updated":
                    return

        reader = asyncio.ensure_future(collect())
        await asyncio.sleep(0)
        call.add_text("what time is it")
        call.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        await asyncio.wait_for(reader, 15)
    deltas = [t for t in collected if t == "response.output_text.delta"]
    turn = collected[collected.index("conversation.item.added"):]  # after session.created
    assert deltas and turn == [
        "conversation.item.added", "conversation.item.done", "response.created",
        "response.output_item.added", "conversation.item.added",
        "response.content_part.added", *deltas, "response.output_text.done",
        "response.content_part.done", "conversation.item.done", "response.output_item.done",
        "response.done", "rate_limits.updated"]
    assert [(t.role, t.text) for t in call.turns_so_far] == [
        ("user", "what time is it"), ("assistant", "You said: what time is it.")]
    validator.assert_valid()
