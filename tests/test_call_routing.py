"""Function calling and host routing over real loopback WebRTC calls."""

from __future__ import annotations

import asyncio
import json

import pytest

import livetalk
from livetalk.protocol.session import FunctionTool, SessionConfig
from livetalk.server.brain import ScriptBrain
from livetalk.tools import run_tool_handler

pytestmark = pytest.mark.slow

KEY = "sk-test-tools"
WEATHER = FunctionTool(
    name="get_weather", description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]},
)


def _text_session(**kw: object) -> SessionConfig:
    return SessionConfig(output_modalities=["text"], turn_detection=None, tools=[WEATHER], **kw)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_tool_call_is_dispatched_and_answered(make_server, validator, kind) -> None:
    seen: list[dict[str, str]] = []

    def sync_handler(city: str) -> dict[str, str]:
        seen.append({"city": city})
        return {"city": city, "forecast": "sunny"}

    async def async_handler(city: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return sync_handler(city)

    brain = ScriptBrain([{"tool": "get_weather", "arguments": {"city": "Paris"}}])
    async with make_server(port=0, brain=brain) as server, livetalk.connect(
        base_url=server.base_url, api_key=KEY, session=_text_session(), event_log=validator,
        tool_handlers={"get_weather": sync_handler if kind == "sync" else async_handler},
    ) as call:
        call.add_text("what is the weather in paris")
        call.create_response()
        turns = await call.wait_for_turns(2, timeout=20)
        calls = [c async for c in _take(call.function_calls(), 1)]
    assert seen == [{"city": "Paris"}]
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    assert turns[0].role == "user" and turns[0].text == "what is the weather in paris"
    assert turns[1].role == "assistant"
    assert json.loads(turns[1].text.removeprefix("The result is ").rstrip(".")) == {
        "city": "Paris", "forecast": "sunny"}
    out = [e for d, e in validator.seen if d == "out" and e["type"] == "conversation.item.create"
           and e["item"]["type"] == "function_call_output"]
    assert len(out) == 1 and out[0]["item"]["call_id"] == calls[0].call_id
    validator.assert_valid()


async def test_failing_tool_is_reported_to_the_model_not_fatal(make_server, validator) -> None:
    def broken(city: str) -> str:
        raise RuntimeError("weather service down")

    brain = ScriptBrain([{"tool": "get_weather", "arguments": {"city": "Oslo"}}])
    async with make_server(port=0, brain=brain) as server, livetalk.connect(
        base_url=server.base_url, api_key=KEY, session=_text_session(), event_log=validator,
        tool_handlers={"get_weather": broken},
    ) as call:
        call.add_text("weather in oslo")
        call.create_response()
        turns = await call.wait_for_turns(2, timeout=20)
        assert not call.closed
    assert "weather service down" in turns[1].text
    assert "RuntimeError" in turns[1].text
    validator.assert_valid()


async def test_run_tool_handler_reports_bad_arguments() -> None:
    assert json.loads(await run_tool_handler(lambda: "x", "[1, 2]"))["error"].startswith(
        "TypeError")
    assert await run_tool_handler(lambda: "plain", "") == "plain"
    assert json.loads(await run_tool_handler(lambda a: {"a": a}, '{"a": 3}')) == {"a": 3}


async def test_host_routing_say_speaks_the_hosts_answer(server, validator) -> None:
    """With create_response=false the host answers each user turn itself (text turn here)."""
    async with livetalk.connect(
        base_url=server.base_url, api_key=KEY, event_log=validator,
        session=SessionConfig(output_modalities=["text"], turn_detection=None),
    ) as call:
        call.add_text("what time is it")
        user = (await call.wait_for_turns(1, timeout=10))[0]
        answer = f"It is noon. You asked: {user.text}"
        call.say(answer)
        turns = await call.wait_for_turns(2, timeout=20)
    assert turns[1].role == "assistant" and turns[1].text == answer
    validator.assert_valid()


async def _take(iterator, n):
    got = 0
    async for item in iterator:
        yield item
        got += 1
        if got >= n:
            return


async def test_interrupt_cuts_the_reply_and_keeps_the_words_heard(make_server, validator) -> None:
    """interrupt() while the reply plays (its generation long done, as on the API): the
    server clears the audio and the reply's turn is cancelled with the words heard."""
    long_reply = ("one two three four five six seven eight nine ten eleven twelve thirteen "
                  "fourteen fifteen sixteen seventeen eighteen nineteen twenty")
    async with make_server(port=0, brain=ScriptBrain([{"say": long_reply}])) as server, \
            livetalk.connect(base_url=server.base_url, api_key=KEY, event_log=validator,
                             session=SessionConfig(turn_detection=None)) as call:
        call.add_text("count to twenty")
        pending = call.create_response()
        async for response in call.responses():
            assert response.status == "completed"  # generated, still playing
            break
        await asyncio.sleep(1.0)
        assert call.assistant_speaking and not call.response_active
        call.interrupt()
        reply = await pending.wait(10)
        await call.wait_until_quiet(timeout=10)
        assert not call.assistant_speaking
    assert reply is not None and reply.role == "assistant" and reply.status == "cancelled"
    assert reply.generated_text == long_reply
    assert long_reply.startswith(reply.text) and 0 < len(reply.text) < len(long_reply)
    assert reply.audio_ms is not None and 800 < reply.audio_ms < 3000
    sent = [e["type"] for d, e in validator.seen if d == "out"]
    assert sent[-1] == "output_audio_buffer.clear"  # nothing to cancel any more
    received = validator.types("in")
    assert "output_audio_buffer.cleared" in received
    assert received.count("response.done") == 1
    validator.assert_valid()
