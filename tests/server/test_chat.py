"""ChatBrain against a small Chat Completions stub on 127.0.0.1 (aiohttp, written here).

The stub streams scripted answers as server-sent events, as OpenAI-compatible servers do, and
records every request. Unit tests cover the mapping both ways and every failure; the slow
ones put the brain in the local server and talk to it over real WebRTC calls.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

import livetalk
from livetalk.audio.sources import ArraySource
from livetalk.server.brain import BrainContext, BrainError, SpeakReply, ToolCallReply
from livetalk.server.chat import (
    CHAT_API_KEY_ENV,
    ChatBrain,
    chat_messages,
    chat_tool_choice,
    chat_tools,
)
from tests.conftest import EventValidator
from tests.speech_helpers import make_turns, word_errors

KEY = "sk-test-chat"
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}


@dataclass
class Answer:
    """One scripted answer: text deltas, tool calls (name, argument chunks), or a failure."""

    deltas: list[str] = field(default_factory=list)
    calls: list[tuple[str, list[str]]] = field(default_factory=list)
    status: int = 200
    raw: str | None = None  # sent as is instead of the events
    whole: bool = False  # one application/json body instead of a stream
    hold_after: int | None = None  # wait for `release` after this many deltas


class StubChat:
    """A Chat Completions endpoint that plays :class:`Answer` objects in order."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.release = asyncio.Event()
        self.completed = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> StubChat:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        answer = self.answers.pop(0)
        if answer.status != 200:
            return web.json_response({"error": {"message": "the model is overloaded",
                                                "type": "server_error"}}, status=answer.status)
        if answer.whole:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(answer.deltas)}
            return web.json_response({"choices": [{"index": 0, "message": message}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if answer.raw is not None:
            await response.write(answer.raw.encode())
            return response

        async def send(delta: dict[str, Any]) -> None:
            chunk = {"object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await response.write(b": a comment line, ignored\n\n")
        await send({"role": "assistant"})
        for i, text in enumerate(answer.deltas):
            if answer.hold_after is not None and i == answer.hold_after:
                await asyncio.wait_for(self.release.wait(), 30)
            await send({"content": text})
        for index, (name, chunks) in enumerate(answer.calls):
            for j, part in enumerate(chunks or [""]):
                call: dict[str, Any] = {"index": index, "function": {"arguments": part}}
                if j == 0:
                    call.update(id=f"chatcmpl_call_{index}", type="function")
                    call["function"]["name"] = name
                await send({"tool_calls": [call]})
        await response.write(b"data: [DONE]\n\n")
        self.completed.set()
        return response


@pytest.fixture
async def stub() -> AsyncIterator[StubChat]:
    async with StubChat() as chat:
        yield chat


async def collect(brain: ChatBrain, ctx: BrainContext) -> list[Any]:
    return [chunk async for chunk in brain.stream(ctx)]


# ---------------------------------------------------------------------- mapping
def test_the_conversation_maps_to_chat_messages() -> None:
    items = [
        {"type": "message", "role": "user",
         "content": [{"type": "input_audio", "transcript": "What's the weather in Paris?"}]},
        {"type": "function_call", "name": "get_weather", "call_id": "call_1",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"sky": "sunny"}'},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_audio", "transcript": "It is sunny."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_audio",
                                                         "transcript": None}]},
    ]
    ctx = BrainContext(transcript="", instructions="Be brief.", items=items)
    assert chat_messages(ctx) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "(inaudible)"},
    ]
    # a call made after some spoken text joins that assistant message
    spoken = [{"type": "message", "role": "assistant",
               "content": [{"type": "output_text", "text": "Let me look."}]}, items[1]]
    merged = chat_messages(BrainContext(transcript="", items=spoken))
    assert merged == [{"role": "assistant", "content": "Let me look.",
                       "tool_calls": [chat_messages(ctx)[2]["tool_calls"][0]]}]


def test_tools_and_tool_choice_map_to_the_chat_shape() -> None:
    assert chat_tools([WEATHER_TOOL, {"type": "mcp", "server_label": "x"}]) == [
        {"type": "function", "function": {k: WEATHER_TOOL[k]
                                          for k in ("name", "description", "parameters")}}]
    assert chat_tool_choice("auto") == "auto" and chat_tool_choice("required") == "required"
    assert chat_tool_choice({"type": "function", "name": "get_weather"}) == {
        "type": "function", "function": {"name": "get_weather"}}


# ---------------------------------------------------------------------- the client
async def test_a_streamed_answer_comes_out_delta_by_delta(stub: StubChat) -> None:
    stub.answers.append(Answer(deltas=["Hello", " there.", " How can I help?"]))
    brain = ChatBrain(stub.base_url, "llama-3", temperature=0.2, max_tokens=64)
    ctx = BrainContext(transcript="hi", instructions="Be brief.", tools=[WEATHER_TOOL],
                       tool_choice={"type": "function", "name": "get_weather"})
    assert await collect(brain, ctx) == ["Hello", " there.", " How can I help?"]
    body = stub.requests[0]
    assert body["model"] == "llama-3" and body["stream"] is True
    assert body["temperature"] == 0.2 and body["max_tokens"] == 64
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "hi"}]
    assert body["tools"] == chat_tools([WEATHER_TOOL])
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "Authorization" not in stub.headers[0]


async def test_tool_calls_are_assembled_from_their_chunks(stub: StubChat) -> None:
    stub.answers.append(Answer(calls=[("get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
                                      ("get_time", [])]))
    chunks = await collect(ChatBrain(stub.base_url, "m"), BrainContext(transcript="weather?"))
    assert chunks == [ToolCallReply("get_weather", '{"city": "Paris"}'),
                      ToolCallReply("get_time", "{}")]
    stub.answers.append(Answer(deltas=["It is", " sunny."]))
    assert await ChatBrain(stub.base_url, "m").reply(BrainContext("")) == SpeakReply(
        "It is sunny.")


async def test_a_non_streaming_server_and_the_api_key(stub: StubChat,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stub.answers.append(Answer(deltas=["Whole answer."], whole=True))
    brain = ChatBrain(stub.base_url, "m", api_key="sk-chat-secret")
    assert await collect(brain, BrainContext("")) == ["Whole answer."]
    assert stub.headers[0]["Authorization"] == "Bearer sk-chat-secret"
    assert "sk-chat-secret" not in repr(brain)
    monkeypatch.setenv(CHAT_API_KEY_ENV, "sk-from-env")
    stub.answers.append(Answer(deltas=["ok"]))
    await collect(ChatBrain(stub.base_url, "m"), BrainContext(""))
    assert stub.headers[1]["Authorization"] == "Bearer sk-from-env"


@pytest.mark.parametrize("answer, message", [
    (Answer(status=500), "answered 500: the model is overloaded"),
    (Answer(raw="data: {not json\n\n"), "malformed event"),
    (Answer(raw='data: {"error": {"message": "context too long"}}\n\n'), "context too long"),
    (Answer(calls=[("get_weather", ['{"city": '])]), "tool call is unusable"),
])
async def test_failures_become_brain_errors(stub: StubChat, answer: Answer, message: str) -> None:
    stub.answers.append(answer)
    with pytest.raises(BrainError, match=message):
        await collect(ChatBrain(stub.base_url, "m"), BrainContext("hi"))


async def test_an_unreachable_or_silent_endpoint(stub: StubChat) -> None:
    with pytest.raises(BrainError, match="cannot reach the chat endpoint"):
        await collect(ChatBrain("http://127.0.0.1:9/v1", "m"), BrainContext("hi"))
    stub.answers.append(Answer(deltas=["never", " sent"], hold_after=0))
    with pytest.raises(BrainError, match="did not answer within 0.3 s"):
        await collect(ChatBrain(stub.base_url, "m", timeout_s=0.3), BrainContext("hi"))
    stub.release.set()


def test_bad_settings() -> None:
    from livetalk.errors import ConfigError

    with pytest.raises(ConfigError, match="base URL"):
        ChatBrain("", "m")
    with pytest.raises(ConfigError, match="model name"):
        ChatBrain("http://127.0.0.1:1/v1", " ")
    with pytest.raises(ConfigError, match="timeout_s"):
        ChatBrain("http://127.0.0.1:1/v1", "m", timeout_s=0)


# ---------------------------------------------------------------------- in real calls
def received(validator: EventValidator, type_: str) -> list[dict[str, Any]]:
    return [e for d, e in list(validator.seen) if d == "in" and e["type"] == type_]


async def first_delta(validator: EventValidator) -> None:
    while not received(validator, "response.output_audio_transcript.delta"):
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_a_spoken_turn_answered_by_the_model_sentence_by_sentence(
        make_server: Any, whisper: Any, stub: StubChat, validator: EventValidator) -> None:
    answer = ["It should", " be sunny", " today.", " Take your", " sunglasses."]
    # held back after " Take your": a sentence is known to be over when the next one starts
    stub.answers.append(Answer(deltas=answer, hold_after=4))
    brain = ChatBrain(stub.base_url, "local-model")
    turn = make_turns(["What is the weather like today"], [], 24000, lead_s=0.5, tail_s=1.2)
    session = {"type": "realtime", "instructions": "You are a weather assistant.",
               "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
    async with make_server(port=0, transcriber=whisper, brain=brain) as server, \
            livetalk.connect(base_url=server.base_url, api_key=KEY, event_log=validator,
                             session=session) as call:
        await call.stream(ArraySource(turn.pcm, 24000))
        # the first sentence is spoken while the model still holds the rest back
        await call.wait_for_turns(1, role="user", timeout=30)
        await asyncio.wait_for(first_delta(validator), 30)
        assert not stub.completed.is_set()
        stub.release.set()
        user, reply = await call.wait_for_turns(2, timeout=60)
        await call.wait_until_quiet()
    assert word_errors("what is the weather like today", user.text) <= 1
    assert reply.text == "".join(answer)
    messages = stub.requests[0]["messages"]
    assert messages[0] == {"role": "system", "content": "You are a weather assistant."}
    assert messages[1] == {"role": "user", "content": user.text}
    done = received(validator, "response.done")[0]["response"]
    assert done["status"] == "completed"
    validator.assert_valid()


@pytest.mark.slow
async def test_a_tool_call_round_trip(make_server: Any, stub: StubChat,
                                      validator: EventValidator) -> None:
    stub.answers += [Answer(calls=[("get_weather", ['{"city":', ' "Paris"}'])]),
                     Answer(deltas=["It is sunny", " in Paris."])]
    asked: list[str] = []

    def get_weather(city: str) -> dict[str, str]:
        asked.append(city)
        return {"sky": "sunny"}

    session = {"type": "realtime", "tools": [WEATHER_TOOL],
               "audio": {"input": {"turn_detection": None}}}
    async with make_server(port=0, brain=ChatBrain(stub.base_url, "m")) as server, \
            livetalk.connect(base_url=server.base_url, api_key=KEY, event_log=validator,
                             session=session, tool_handlers={"get_weather": get_weather}) as call:
        call.add_text("What's the weather in Paris?")
        call.create_response()
        reply = (await call.wait_for_turns(1, role="assistant", timeout=60))[0]
    assert asked == ["Paris"]
    assert reply.text == "It is sunny in Paris."
    call_item = received(validator, "response.function_call_arguments.done")[0]
    assert json.loads(call_item["arguments"]) == {"city": "Paris"}
    second = stub.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_item["call_id"], "type": "function",
         "function": {"name": "get_weather", "arguments": call_item["arguments"]}}]}
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == call_item["call_id"]
    assert json.loads(second[-1]["content"]) == {"sky": "sunny"}
    validator.assert_valid()


@pytest.mark.slow
async def test_a_failing_endpoint_fails_the_response_and_the_call_goes_on(
        make_server: Any, stub: StubChat, validator: EventValidator) -> None:
    stub.answers += [Answer(status=503), Answer(deltas=["Back again."])]
    session = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    async with make_server(port=0, brain=ChatBrain(stub.base_url, "m")) as server, \
            livetalk.connect(base_url=server.base_url, api_key=KEY, event_log=validator,
                             session=session) as call:
        call.add_text("Hello?")
        call.create_response()
        while not received(validator, "response.done"):
            await asyncio.sleep(0.02)
        call.create_response()
        reply = (await call.wait_for_turns(1, role="assistant", timeout=30))[0]
    failed, completed = (e["response"] for e in received(validator, "response.done"))
    assert failed["status"] == "failed"
    assert failed["status_details"]["error"]["code"] == "brain_error"
    assert "answered 503" in failed["status_details"]["error"]["message"]
    [error] = received(validator, "error")
    assert error["error"]["code"] == "brain_error" and error["error"]["type"] == "server_error"
    assert [e.code for e in call.errors] == ["brain_error"]
    assert completed["status"] == "completed" and reply.text == "Back again."
    validator.assert_valid()


def test_livetalk_serve_brain_chat_needs_its_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    from livetalk.cli import main

    assert main(["serve", "--port", "0", "--brain", "chat", "--chat-model", "m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["livetalk: error: the chat brain needs the endpoint's base URL "
                   "(--chat-base-url)"]
