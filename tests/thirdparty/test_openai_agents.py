"""openai-agents-python (the official Agents SDK, ``agents.realtime``) against the local server.

The SDK is a client nobody here wrote: it opens ``GET /v1/realtime?model=`` (or ``?call_id=``
for a sideband) with its own websockets code, sends the session it builds from a
``RealtimeAgent``, validates every server event with the ``openai`` types, runs function tools
and handoffs, and truncates the reply where its playback stopped when interrupted. Each test
drives one of those paths through the SDK's public API (``RealtimeRunner``,
``RealtimeSession``) and checks what the SDK reports (its event stream and history) and what
went over the wire. A divergence from the real API shows up as an SDK ``error`` event, a
validation failure or a wrong history; see docs/fidelity.md ("Third-party clients").
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

import livetalk
from livetalk.protocol.session import DEFAULT_MODEL, PCM_RATE
from livetalk.server.brain import BrainChunk, BrainContext, BrainReply, ScriptBrain
from tests.conftest import EventValidator
from tests.thirdparty.conftest import realtime_url

pytest.importorskip("agents.realtime", reason="openai-agents is not installed (it is in the "
                    "dev extra: pip install -e '.[dev]')")

from agents import function_tool  # noqa: E402
from agents.realtime import (  # noqa: E402
    RealtimeAgent,
    RealtimeRunner,
    RealtimeSession,
    RealtimeSessionEvent,
    realtime_handoff,
)
from agents.realtime.openai_realtime import OpenAIRealtimeSIPModel  # noqa: E402

pytestmark = pytest.mark.slow

KEY = "sk-local"
WAIT_S = 30.0
"""The bound on any wait for the SDK (generous: the machine is shared)."""
LONG_REPLY = ("This answer goes on for a good while, so that there is time to interrupt it "
              "long before it has finished playing. It keeps talking about nothing in "
              "particular, one sentence after another. And then it says a little more.")


class Observer:
    """Reads a session's event stream in the background: the SDK's events, and the server
    events it received (each validated with the official ``openai`` types)."""

    def __init__(self, session: RealtimeSession, validator: EventValidator) -> None:
        self.events: list[RealtimeSessionEvent] = []
        self.raw: list[dict[str, Any]] = []
        self._validator = validator
        self._changed = asyncio.Condition()
        self._task = asyncio.ensure_future(self._pump(session))

    async def _pump(self, session: RealtimeSession) -> None:
        async for event in session:
            if event.type == "raw_model_event":
                if event.data.type == "raw_server_event":
                    self.raw.append(event.data.data)
                    self._validator("in", event.data.data)
            else:
                self.events.append(event)
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, done: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(WAIT_S), self._changed:
                await self._changed.wait_for(done)
        except TimeoutError:
            raise AssertionError(f"no {what} within {WAIT_S:g} s; the SDK reported "
                                 f"{[e.type for e in self.events]}") from None

    def of(self, type_: str) -> list[Any]:
        """The SDK's events of one type."""
        return [e for e in self.events if e.type == type_]

    def wire(self, type_: str) -> list[dict[str, Any]]:
        """The server events of one type, as received."""
        return [e for e in self.raw if e.get("type") == type_]

    def history(self) -> list[Any]:
        """The SDK's conversation history, as its last ``history_updated`` event had it."""
        return list(self.of("history_updated")[-1].history)

    def errors(self) -> list[Any]:
        """What the SDK reported as errors, and the ``error`` events it received."""
        return [getattr(e, "error", e) for e in self.of("error")] + self.wire("error")

    def received_ms(self) -> float:
        """Reply audio received so far (the SDK hands out PCM16 at 24 kHz)."""
        return sum(len(e.audio.data) for e in self.of("audio")) * 1000 / (2 * PCM_RATE)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def _text(item: Any) -> str:
    """The text of a history message item (text parts, or audio transcripts)."""
    return "".join(getattr(p, "text", None) or getattr(p, "transcript", None) or ""
                   for p in getattr(item, "content", []))


def _runner(agent: RealtimeAgent[Any], **settings: Any) -> RealtimeRunner:
    return RealtimeRunner(agent, config={"model_settings": {"model_name": DEFAULT_MODEL,
                                                            **settings}})


async def _start(runner: RealtimeRunner, srv: Any, validator: EventValidator
                 ) -> tuple[RealtimeSession, Observer]:
    session = await runner.run(model_config={
        "url": realtime_url(srv.base_url, f"model={DEFAULT_MODEL}"), "api_key": KEY})
    await session.enter()
    return session, Observer(session, validator)


async def _stop(session: RealtimeSession, observer: Observer) -> None:
    await session.close()
    await observer.close()


async def _speak(session: RealtimeSession, pcm: np.ndarray) -> None:
    """Send speech as ``send_audio`` chunks of 100 ms (the server's VAD runs on media time,
    so sending faster than real time is fine)."""
    step = PCM_RATE // 10
    for i in range(0, pcm.size, step):
        await session.send_audio(pcm[i:i + step].tobytes())
        await asyncio.sleep(0.01)


async def test_text_session_runs_a_function_tool(make_server: Any, validator: EventValidator
                                                 ) -> None:
    """Two text turns: a plain reply, then a function call the SDK runs and answers with a
    ``function_call_output`` and a new response, which the server answers in turn."""
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    brain = ScriptBrain(["Hello there, friend.",
                         {"tool": "get_weather", "arguments": {"city": "Paris"}},
                         "It is sunny in Paris."])
    agent = RealtimeAgent(name="Assistant", instructions="Be brief.", tools=[get_weather])
    async with make_server(port=0, brain=brain) as srv:
        session, seen = await _start(_runner(agent, output_modalities=["text"]), srv, validator)
        try:
            await session.send_message("Hi")
            await seen.wait_for(lambda: len(seen.of("agent_end")) == 1, "first reply")
            await session.send_message("What is the weather in Paris?")
            await seen.wait_for(lambda: len(seen.of("agent_end")) == 3
                                and bool(seen.of("tool_end")), "reply after the tool")
        finally:
            await _stop(session, seen)
    assert calls == ["Paris"]
    (tool_end,) = seen.of("tool_end")
    assert (tool_end.tool.name, tool_end.output) == ("get_weather", "sunny in Paris")
    outputs = [e["item"] for e in seen.wire("conversation.item.added")
               if e["item"]["type"] == "function_call_output"]
    assert [o["output"] for o in outputs] == ["sunny in Paris"]  # the SDK's answer, as sent
    history = seen.history()
    assert [(i.type, getattr(i, "role", None)) for i in history] == [
        ("message", "user"), ("message", "assistant"), ("message", "user"),
        ("function_call", None), ("message", "assistant")]
    assert [_text(i) for i in history if getattr(i, "role", None) == "assistant"] == [
        "Hello there, friend.", "It is sunny in Paris."]
    assert history[3].output == "sunny in Paris"
    assert [e["response"]["status"] for e in seen.wire("response.done")] == ["completed"] * 3
    assert seen.errors() == []
    validator.assert_valid()


async def test_spoken_turn_with_the_sdk_defaults(make_server: Any, first_turn: np.ndarray,
                                                 validator: EventValidator) -> None:
    """The SDK's default session (semantic VAD, ``gpt-4o-mini-transcribe``, voice ``ash``,
    PCM16) is accepted as sent; speech sent with ``send_audio`` comes back as the user's
    transcript and a spoken reply (audio events and its transcript)."""
    agent = RealtimeAgent(name="Assistant", instructions="Be brief.")
    async with make_server(port=0) as srv:
        session, seen = await _start(_runner(agent), srv, validator)
        try:
            await _speak(session, first_turn)
            await seen.wait_for(lambda: bool(seen.of("agent_end")), "spoken reply")
        finally:
            await _stop(session, seen)
    effective = seen.wire("session.updated")[-1]["session"]
    assert effective["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert effective["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"
    assert effective["audio"]["output"]["voice"] == "ash"
    (heard,) = seen.wire("conversation.item.input_audio_transcription.completed")
    assert heard["transcript"] == "hello can you hear me"
    user, assistant = seen.history()
    assert (user.role, _text(user)) == ("user", "hello can you hear me")
    assert (assistant.role, _text(assistant)) == ("assistant", "You said: hello can you hear me.")
    audio = np.frombuffer(b"".join(e.audio.data for e in seen.of("audio")), dtype=np.int16)
    assert 1.0 < audio.size / PCM_RATE < 5.0  # "You said: ..." spoken, at 24 kHz
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 300  # speech, not silence
    assert seen.of("audio_end")
    assert seen.errors() == []
    validator.assert_valid()


async def test_interrupt_truncates_the_reply_where_playback_stopped(
        make_server: Any, validator: EventValidator) -> None:
    """``session.interrupt()`` one second into a long reply: the SDK truncates the item at its
    own playback position, the server confirms and, as the API does, drops the item's
    transcript (the SDK retrieves the item to see it)."""
    async with make_server(port=0, brain=ScriptBrain([LONG_REPLY])) as srv:
        session, seen = await _start(_runner(RealtimeAgent(name="Assistant")), srv, validator)
        try:
            await session.send_message("Tell me something long.")
            await seen.wait_for(lambda: bool(seen.of("audio")), "reply audio")
            await asyncio.sleep(1.0)
            await session.interrupt()
            await seen.wait_for(lambda: bool(seen.wire("conversation.item.retrieved")),
                                "item retrieved after the truncation")
        finally:
            await _stop(session, seen)
    assert seen.of("audio_interrupted")
    (truncated,) = seen.wire("conversation.item.truncated")
    assert 1000 <= truncated["audio_end_ms"] < seen.received_ms()
    (retrieved,) = seen.wire("conversation.item.retrieved")
    assert retrieved["item"]["id"] == truncated["item_id"]
    assert retrieved["item"]["content"][0]["transcript"] is None  # no unheard text is kept
    assert seen.errors() == []
    validator.assert_valid()


async def test_speaking_over_the_reply_interrupts_it(make_server: Any, first_turn: np.ndarray,
                                                     validator: EventValidator) -> None:
    """Barge-in by voice: the server's ``speech_started`` makes the SDK stop its playback and
    truncate the reply; the user's turn is then transcribed and answered."""
    brain = ScriptBrain([LONG_REPLY])  # then it echoes
    async with make_server(port=0, brain=brain) as srv:
        session, seen = await _start(_runner(RealtimeAgent(name="Assistant")), srv, validator)
        try:
            await session.send_message("Tell me something long.")
            await seen.wait_for(lambda: bool(seen.of("audio")), "reply audio")
            await asyncio.sleep(1.0)
            await _speak(session, first_turn)
            await seen.wait_for(lambda: len(seen.of("agent_end")) == 2, "answer to the user")
        finally:
            await _stop(session, seen)
    assert seen.of("audio_interrupted")
    (truncated,) = seen.wire("conversation.item.truncated")
    assert truncated["audio_end_ms"] >= 1000
    assert _text(seen.history()[-1]) == "You said: hello can you hear me."
    assert seen.errors() == []
    validator.assert_valid()


class PausingBrain:
    """Says one sentence, then pauses (as a language model sometimes does) before the rest."""

    async def reply(self, ctx: BrainContext) -> BrainReply:
        raise NotImplementedError("the server streams this brain")

    async def stream(self, ctx: BrainContext) -> AsyncIterator[BrainChunk]:
        yield "Hello there, friend. "
        await asyncio.sleep(20)
        yield "This part comes much later."


async def test_interrupt_during_a_pause_truncates_at_the_audio_received(
        make_server: Any, validator: EventValidator) -> None:
    """Push-to-talk (no server VAD): interrupted while the response is still being generated
    and its received audio has all played, the SDK truncates at the received length rounded
    up to a whole ms (openai-agents-python clamps there) and cancels the response. The API's
    audio comes in whole frames, so that position is never refused there; the local server,
    whose lengths have fractions of a ms, refused it before (issue 11, third-party clients)."""
    async with make_server(port=0, brain=PausingBrain()) as srv:
        session, seen = await _start(_runner(RealtimeAgent(name="Assistant"),
                                             turn_detection=None), srv, validator)
        try:
            await session.send_message("Talk to me.")
            await seen.wait_for(lambda: bool(seen.of("audio")), "first sentence")
            await asyncio.sleep(0.5)  # the sentence's audio comes all at once
            received = seen.received_ms()
            await asyncio.sleep(received / 1000)  # by the SDK's clock, it has all played
            await session.interrupt()
            await seen.wait_for(lambda: bool(seen.wire("response.done")), "response.done")
            await seen.wait_for(lambda: bool(seen.wire("conversation.item.truncated")
                                             or seen.errors()), "truncation")
        finally:
            await _stop(session, seen)
    assert seen.errors() == []
    (truncated,) = seen.wire("conversation.item.truncated")
    assert truncated["audio_end_ms"] == math.ceil(received)
    (done,) = seen.wire("response.done")
    assert done["response"]["status"] == "cancelled"
    validator.assert_valid()


async def test_handoff_switches_the_agent(make_server: Any, validator: EventValidator) -> None:
    """A handoff tool call: the SDK switches agents, sends the new agent's session (its
    instructions), answers the call and asks for a response, which the new agent gives."""
    billing = RealtimeAgent(name="Billing", instructions="You handle billing.")
    triage = RealtimeAgent(name="Triage", instructions="Route the user.", handoffs=[billing])
    brain = ScriptBrain([{"tool": realtime_handoff(billing).tool_name},
                         "Billing here, how can I help?"])
    async with make_server(port=0, brain=brain) as srv:
        session, seen = await _start(_runner(triage, output_modalities=["text"]), srv,
                                     validator)
        try:
            await session.send_message("I have a question about my bill.")
            await seen.wait_for(lambda: len(seen.of("agent_end")) == 2, "the new agent's reply")
        finally:
            await _stop(session, seen)
    (handoff,) = seen.of("handoff")
    assert (handoff.from_agent.name, handoff.to_agent.name) == ("Triage", "Billing")
    instructions = [e["session"]["instructions"] for e in seen.wire("session.updated")]
    assert instructions[-1] == "You handle billing." and "Route the user." in instructions
    assert _text(seen.history()[-1]) == "Billing here, how can I help?"
    assert seen.errors() == []
    validator.assert_valid()


async def test_sideband_runs_the_tools_of_a_webrtc_call(make_server: Any,
                                                        validator: EventValidator) -> None:
    """The server-side-tools pattern: a livetalk WebRTC call is the user's device; the SDK
    joins it as a sideband (``?call_id=``, ``OpenAIRealtimeSIPModel``), owns the tools, runs
    the call the brain makes and answers it; the reply is heard on the WebRTC call."""
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    brain = ScriptBrain([{"tool": "get_weather", "arguments": {"city": "Paris"}},
                         "It is sunny in Paris."])
    agent = RealtimeAgent(name="Assistant", instructions="Be brief.", tools=[get_weather])
    async with make_server(port=0, brain=brain) as srv, livetalk.connect(
            base_url=srv.base_url, api_key=KEY) as call:
        assert call.call_id is not None
        runner = RealtimeRunner(agent, model=OpenAIRealtimeSIPModel())
        session = await runner.run(model_config={
            "url": realtime_url(srv.base_url, f"call_id={call.call_id}"), "api_key": KEY,
            "call_id": call.call_id})
        await session.enter()
        seen = Observer(session, validator)
        try:
            await session.send_message("What is the weather in Paris?")
            await seen.wait_for(lambda: len(seen.of("agent_end")) == 2, "reply after the tool")
            (heard,) = await call.wait_for_turns(1, role="assistant", timeout=WAIT_S)
        finally:
            await _stop(session, seen)
    assert calls == ["Paris"]
    assert (heard.text, heard.status.value) == ("It is sunny in Paris.", "completed")
    assert [t.text for t in call.turns_so_far if t.role == "user"] == [
        "What is the weather in Paris?"]
    assert seen.wire("output_audio_buffer.started") and seen.wire("output_audio_buffer.stopped")
    assert seen.errors() == []
    validator.assert_valid()
