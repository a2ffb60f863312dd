"""Opt-in reconnect: a dropped call is replaced, its history replayed, the host told."""

from __future__ import annotations

import asyncio

import pytest

import livetalk
from livetalk.errors import CallClosedError, ConfigError
from livetalk.protocol.session import SessionConfig
from livetalk.reconnect import CallNotice, Reconnect

pytestmark = pytest.mark.slow

KEY = "sk-test-reconnect"
TEXT = SessionConfig(output_modalities=["text"], turn_detection=None, instructions="Be brief.")


async def _notices(call, n: int) -> list[CallNotice]:
    got: list[CallNotice] = []
    async for notice in call.notices():
        got.append(notice)
        if len(got) >= n:
            break
    return got


async def test_dropped_call_reconnects_and_replays_history(server, validator) -> None:
    async with livetalk.connect(base_url=server.base_url, api_key=KEY, session=TEXT,
                                event_log=validator,
                                reconnect=Reconnect(initial_backoff_s=0.05)) as call:
        call.add_text("hello there")
        call.create_response()
        await call.wait_for_turns(2, timeout=10)
        first_id = call.call_id
        usage_before = call.usage.total_tokens
        await server._close_call(server.calls[first_id])  # the server drops the call
        notices = await asyncio.wait_for(_notices(call, 2), 20)
        assert [n.kind for n in notices] == ["reconnecting", "reconnected"]
        assert notices[1].call_id == call.call_id != first_id
        replayed = server.calls[call.call_id].session
        async with asyncio.timeout(5):
            while len(replayed.order) < 2:
                await asyncio.sleep(0.02)
        texts = [replayed.items[i]["content"][0]["text"] for i in replayed.order]
        assert texts == ["hello there", "You said: hello there."]
        assert replayed.session["instructions"] == "Be brief."
        call.add_text("and again")
        call.create_response()
        turns = await call.wait_for_turns(4, timeout=10)
        assert [t.text for t in turns] == ["hello there", "You said: hello there.",
                                           "and again", "You said: and again."]
        assert call.usage.total_tokens > usage_before
    validator.assert_valid()


async def test_without_reconnect_a_drop_ends_iterators_with_an_error(server) -> None:
    call = await livetalk.connect(base_url=server.base_url, api_key=KEY, session=TEXT)
    try:
        call.add_text("keep this")
        await call.wait_for_turns(1, timeout=10)
        await server._close_call(server.calls[call.call_id])
        seen = []
        with pytest.raises(CallClosedError):
            async with asyncio.timeout(20):
                async for turn in call.turns():
                    seen.append(turn.text)
        assert seen == ["keep this"]  # what arrived before the drop is kept
        assert call.closed
    finally:
        await call.close()


def test_reconnect_policy_is_validated() -> None:
    with pytest.raises(ConfigError):
        Reconnect(max_attempts=0)
    with pytest.raises(ConfigError):
        Reconnect(initial_backoff_s=5, max_backoff_s=1)
