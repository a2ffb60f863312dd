"""Routing user turns to the host's agent (``connect(route=...)``), and reply handles.

The fast tests run a real :class:`~livetalk.call.Call` against the local server's session
engine in memory (:class:`~livetalk.testing.MemoryTransport`: no sockets, stand-in ears and
voice); the slow ones open real WebRTC calls to the local server.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import livetalk
from livetalk.errors import CallClosedError, ConfigError, ServerError
from livetalk.protocol.conversation import Turn, TurnStatus
from livetalk.protocol.session import FunctionTool, SessionConfig
from livetalk.reconnect import Reconnect
from livetalk.server.brain import ScriptBrain
from livetalk.testing import MemoryTransport, memory_session
from livetalk.turnlog import SqliteTurnLog, TurnLog

KEY = "sk-test-routing"
SPEED = 20.0
MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}


def heard(*texts: str) -> Callable[[np.ndarray, int], str]:
    """Ears that hear ``texts`` in order, one per committed turn."""
    it: Iterator[str] = iter(texts)
    return lambda pcm, rate: next(it, "")


def routed(agent: Any, *texts: str, **options: Any) -> Any:
    """A routed call, in memory, whose user turns are committed by hand."""
    session = memory_session(heard=heard(*texts), speed=SPEED, session=MANUAL)
    options.setdefault("speed", SPEED)
    return livetalk.connect(transport=MemoryTransport(session), api_key=KEY, route=agent,
                            **options)


def speak(call: livetalk.Call) -> None:
    """One user turn: 200 ms of audio, committed."""
    call.send_audio(np.full(4800, 900, dtype=np.int16))
    call.commit()


def texts(call: livetalk.Call) -> list[tuple[str, str]]:
    return [(str(t.role), t.text) for t in call.turns_so_far]


# ------------------------------------------------------------------------------ the flow
async def test_each_user_turn_is_answered_in_order_by_a_sync_agent() -> None:
    seen: list[str] = []

    def agent(turn: Turn) -> str:
        seen.append(turn.text)
        time.sleep(0.05)  # a blocking agent: runs in a thread, the loop goes on
        return f"answer to {turn.text}"

    async with routed(agent, "first question", "second question") as call:
        speak(call)
        speak(call)  # both questions before any answer: the answers follow, in order
        await call.wait_until_quiet(timeout=20)
        assert texts(call) == [("user", "first question"), ("user", "second question"),
                               ("assistant", "answer to first question"),
                               ("assistant", "answer to second question")]
        assert seen == ["first question", "second question"]
        assert not call.errors
        # create_response was turned off for the host, and transcription on
        td = call.session["audio"]["input"]["turn_detection"]
        assert td is None and call.session["audio"]["input"]["transcription"] is not None


async def test_a_slow_async_agent_is_waited_for_and_none_stays_silent() -> None:
    async def agent(turn: Turn) -> str | None:
        await asyncio.sleep(0.4)
        return None if "nothing" in turn.text else "done thinking"

    async with routed(agent, "say nothing", "think hard") as call:
        speak(call)
        speak(call)
        t0 = time.monotonic()
        await call.wait_until_quiet(timeout=20)
        assert time.monotonic() - t0 >= 0.7  # both calls of the agent, one after the other
        assert texts(call) == [("user", "say nothing"), ("user", "think hard"),
                               ("assistant", "done thinking")]


async def test_a_failing_agent_is_reported_and_the_call_goes_on(caplog) -> None:
    def agent(turn: Turn) -> Any:
        if turn.text == "boom":
            raise RuntimeError("the planner crashed")
        if turn.text == "number":
            return 42
        return "fine"

    caplog.set_level(logging.ERROR, logger="livetalk")
    async with routed(agent, "boom", "number", "ok") as call:
        notices: list[Any] = []

        async def collect() -> None:
            async for notice in call.notices():
                notices.append(notice)

        reader = asyncio.ensure_future(collect())
        for _ in range(3):
            speak(call)
        await call.wait_until_quiet(timeout=20)
        assert texts(call)[-1] == ("assistant", "fine")
        assert [t.role for t in call.turns_so_far] == ["user", "user", "user", "assistant"]
    await reader
    assert [(n.kind, n.error) for n in notices] == [
        ("route_error", "RuntimeError: the planner crashed"),
        ("route_error", "the route handler returned int, not str or None")]
    assert notices[0].item_id == call.turns_so_far[0].item_id
    assert "the planner crashed" in caplog.text


async def test_an_agent_slower_than_the_next_turn_is_still_answered_in_order() -> None:
    async def agent(turn: Turn) -> str:
        await asyncio.sleep(0.5 if turn.text == "slow one" else 0.01)
        return f"re: {turn.text}"

    async with routed(agent, "slow one", "quick one") as call:
        speak(call)
        await asyncio.sleep(0.1)
        speak(call)  # the user speaks again before the first answer is ready
        await call.wait_until_quiet(timeout=20)
        assert [t for _, t in texts(call)] == ["slow one", "quick one", "re: slow one",
                                               "re: quick one"]


async def test_stale_answers_can_be_dropped() -> None:
    async def agent(turn: Turn) -> str:
        await asyncio.sleep(0.5 if turn.text == "slow one" else 0.01)
        return f"re: {turn.text}"

    async with routed(agent, "slow one", "quick one", route_stale="drop") as call:
        notices: list[Any] = []

        async def collect() -> None:
            async for notice in call.notices():
                notices.append(notice)

        reader = asyncio.ensure_future(collect())
        speak(call)
        await asyncio.sleep(0.1)
        speak(call)
        await call.wait_until_quiet(timeout=20)
        assert [t for _, t in texts(call)] == ["slow one", "quick one", "re: quick one"]
    await reader
    assert [n.kind for n in notices] == ["stale_answer"]


async def test_route_and_tools_work_together() -> None:
    session = memory_session(
        heard=heard("weather please"), speed=SPEED,
        brain=ScriptBrain([{"tool": "get_weather", "arguments": {"city": "Paris"}}]),
        session={**MANUAL, "tools": [FunctionTool(name="get_weather").to_dict()]})
    async with livetalk.connect(transport=MemoryTransport(session), api_key=KEY, speed=SPEED,
                                route=lambda turn: None,
                                tool_handlers={"get_weather": lambda city: f"sunny in {city}"},
                                ) as call:
        speak(call)
        await call.wait_until_quiet(timeout=20)
        reply = call.create_response()  # the model (here: the script) decides to call a tool
        turn = await reply.wait(20)
        assert turn is not None and turn.text == "The result is sunny in Paris."
        await call.wait_until_quiet(timeout=20)


# ------------------------------------------------------------------------------ replies
async def test_say_returns_a_reply_that_waits_its_turn() -> None:
    async with routed(lambda turn: None) as call:
        first = call.say("one two three")
        second = call.say("four five")  # sent only when the first is done: never refused
        one, two = await asyncio.gather(first.wait(20), second.wait(20))
        assert one is not None and two is not None
        assert (one.text, two.text) == ("one two three", "four five")
        assert one.status is TurnStatus.COMPLETED and one.index < two.index
        assert first.done() and first.turn == one and first.error is None
        assert not call.errors  # no conversation_already_has_active_response
        sent = [e["type"] for e in call._transport.sent]
        assert sent.count("response.create") == 2


async def test_say_checks_its_input_and_the_call() -> None:
    async with routed(lambda turn: None) as call:
        with pytest.raises(ConfigError):
            call.say("")
        with pytest.raises(ConfigError):
            call.say("   ")
    with pytest.raises(CallClosedError):
        call.say("too late")
    with pytest.raises(CallClosedError):
        call.create_response()


async def test_a_reply_pending_at_close_fails_clearly() -> None:
    async with routed(lambda turn: None) as call:
        reply = call.say("a long answer that will not be heard")
    with pytest.raises(CallClosedError):
        await reply
    assert isinstance(reply.error, CallClosedError)


async def test_interrupting_a_spoken_answer_cancels_its_reply() -> None:
    session = memory_session(heard=heard(), speed=2.0, session=MANUAL)
    async with livetalk.connect(transport=MemoryTransport(session), api_key=KEY,
                                speed=2.0) as call:
        text = "one two three four five six seven eight nine ten eleven twelve"
        reply = call.say(text)
        async for event in call.events():
            if event.type == "output_audio_buffer.started":
                break
        await asyncio.sleep(0.3)
        call.interrupt()
        turn = await reply.wait(10)
    assert turn is not None and turn.status is TurnStatus.CANCELLED
    assert turn.generated_text == text and text.startswith(turn.text) and turn.text != text


async def test_a_refused_request_fails_its_handle_and_is_logged(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="livetalk")
    async with routed(lambda turn: None) as call:
        with pytest.raises(ServerError) as info:
            await call.update_session({"type": "realtime", "voice": "alloy"})
        assert info.value.code == "unknown_parameter" and info.value.event_id
        reply = call.create_response(output_modalities=["text", "audio"])
        with pytest.raises(ServerError) as failed:
            await reply.wait(10)
        assert failed.value.code == "invalid_value"
        assert not call.closed
    assert "unknown_parameter" in caplog.text and "invalid_value" in caplog.text


# ------------------------------------------------------------------------------ finishing
async def test_finish_ends_a_stream_without_trailing_silence(synthesizer) -> None:
    """Server VAD in memory: the input stops in the middle of nowhere; finish() sends the
    silence the VAD needs, waits for the routed answer and its audio, and closes."""
    from livetalk.audio.resample import resample

    pcm, rate = synthesizer.synthesize("what is the weather like today")
    speech = np.concatenate([np.zeros(12000, np.int16), resample(pcm, rate, 24000)])
    session = memory_session(heard="what is the weather like today", speed=4.0)

    async def agent(turn: Turn) -> str:
        await asyncio.sleep(0.3)
        return "sunny all day"

    async with livetalk.connect(transport=MemoryTransport(session), api_key=KEY, speed=4.0,
                                route=agent) as call:
        await call.stream(livetalk.ArraySource(speech, 24000))  # no silence after the words
        await call.finish(timeout=30)
        assert call.closed
    assert texts(call) == [("user", "what is the weather like today"),
                           ("assistant", "sunny all day")]
    assert call.turns_so_far[1].status is TurnStatus.COMPLETED


async def test_wait_until_quiet_says_what_is_pending_on_timeout() -> None:
    async def agent(turn: Turn) -> str:
        await asyncio.sleep(5)
        return "late"

    async with routed(agent, "hello") as call:
        speak(call)
        await call.wait_for_turns(1, timeout=10)
        with pytest.raises(TimeoutError, match="being prepared by the host"):
            await call.wait_until_quiet(timeout=0.2)


# ------------------------------------------------------------------------------ turn logs
@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
async def test_the_turn_log_holds_each_turn_once_in_order(tmp_path, kind: str) -> None:
    path = tmp_path / ("turns.jsonl" if kind == "jsonl" else "turns.db")
    log = TurnLog(path) if kind == "jsonl" else SqliteTurnLog(path)
    async with routed(lambda turn: f"re {turn.text}", "a", "b", turn_log=log) as call:
        speak(call)
        await call.wait_until_quiet(timeout=20)
        speak(call)
        await call.wait_until_quiet(timeout=20)
        turns = call.turns_so_far
    assert [log.append(t) for t in turns] == [False] * 4  # a replay stores nothing twice
    records = log.records()
    log.close()
    assert [(r["index"], r["role"], r["text"]) for r in records] == [
        (0, "user", "a"), (1, "assistant", "re a"), (2, "user", "b"), (3, "assistant", "re b")]
    assert all(r["call_id"] == "rtc_memory" and r["item_id"] for r in records)
    again = TurnLog(path) if kind == "jsonl" else SqliteTurnLog(path)
    assert not again.append(turns[0])  # reopened: still knows what it holds
    again.close()


# ------------------------------------------------------------------------------ real calls
@pytest.mark.slow
async def test_routed_call_over_webrtc_with_a_reconnect_during_a_pending_answer(
        make_server, demo_phrases) -> None:
    """The answer being prepared when the call drops is spoken on the new call."""
    release = asyncio.Event()

    async def agent(turn: Turn) -> str:
        await release.wait()
        return "here is your answer"

    async with make_server(port=0, phrases=demo_phrases, realtime_factor=4.0) as server:
        # push-to-talk: one committed turn, whatever the load does to VAD timing
        async with livetalk.connect(base_url=server.base_url, api_key=KEY, speed=4.0,
                                    session=SessionConfig(turn_detection=None),
                                    route=agent, reconnect=Reconnect(initial_backoff_s=0.05)
                                    ) as call:
            await call.stream(livetalk.testing.speech("hello can you hear me",
                                                      silence_after_s=0.3))
            call.commit()
            (user,) = await call.wait_for_turns(1, timeout=30)
            first = call.call_id
            await server.calls[first].kill()  # vanishes: the media watchdog notices
            async for notice in call.notices():
                if notice.kind == "reconnected":
                    break
            release.set()
            await call.wait_until_quiet(timeout=30)
            turns = call.turns_so_far
    assert call.call_id != first
    assert [(t.role, t.text) for t in turns] == [("user", user.text),
                                                 ("assistant", "here is your answer")]
    assert turns[1].call_id == call.call_id and turns[1].index == 1


@pytest.mark.slow
async def test_twenty_routed_turns_each_get_one_answer(make_server, demo_phrases) -> None:
    """The issue's check, smaller: every user turn gets exactly one answer spoken or a
    documented cancellation, none is lost, the turn log holds each turn once, in order."""
    rng = random.Random(7)
    phrases = demo_phrases[:3]

    async def agent(turn: Turn) -> str:
        await asyncio.sleep(rng.uniform(0.1, 0.8))
        return f"answer {turn.index}"

    log = SqliteTurnLog(":memory:")
    user_audio = [livetalk.testing.speech(p, silence_after_s=1.0) for p in phrases * 2]
    async with make_server(port=0, phrases=demo_phrases, realtime_factor=4.0) as server:
        async with livetalk.connect(base_url=server.base_url, api_key=KEY, speed=4.0,
                                    route=agent, turn_log=log) as call:
            for source in user_audio:
                await call.stream(source)
            await call.finish(timeout=60)
    turns = call.turns_so_far
    users = [t for t in turns if t.role == "user"]
    answers = [t for t in turns if t.role == "assistant"]
    assert len(users) == 6 and len(answers) == 6, [(t.role, t.text, t.status) for t in turns]
    assert all(a.status in (TurnStatus.COMPLETED, TurnStatus.CANCELLED) for a in answers)
    assert [r["item_id"] for r in log.records()] == [t.item_id for t in turns]
