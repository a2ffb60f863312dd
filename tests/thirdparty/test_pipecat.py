"""pipecat's OpenAI Realtime service (``OpenAIRealtimeLLMService``) against the local server.

pipecat is a voice-pipeline framework nobody here wrote. Its Realtime service speaks the GA
WebSocket protocol with its own websockets code and parses every server event with its own
pydantic models; it treats any ``error`` event it does not know as fatal (it stops reading the
socket), so an error code the real API would not send breaks a pipecat app. The tests run a
real pipeline headless (no transport, no audio device): frames go in at the head, the
service talks to ``livetalk serve`` over loopback, and what comes out (text, audio, function
calls, the context) is checked, along with every server event as received.

pipecat-ai is not in the dev extra (it pulls about 260 MB: numba, llvmlite); install it to
run these: ``.venv/bin/pip install pipecat-ai==1.14.0`` (see docs/fidelity.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from livetalk.protocol.session import DEFAULT_MODEL, PCM_RATE
from livetalk.server.brain import ScriptBrain
from tests.conftest import EventValidator

pytest.importorskip("pipecat", reason="pipecat-ai is not installed (not in the dev extra, "
                    "about 260 MB): pip install pipecat-ai==1.14.0")

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema  # noqa: E402
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMRunFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineWorker  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMContextAggregatorPair,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.services.llm_service import FunctionCallParams  # noqa: E402
from pipecat.services.openai.realtime import events as rt  # noqa: E402
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pipecat.*")]

KEY = "sk-local"
WAIT_S = 30.0
"""The bound on any wait for the pipeline (generous: the machine is shared)."""
LONG_REPLY = ("This answer goes on for a good while, so that there is time to interrupt it "
              "long before it has finished playing. It keeps talking about nothing in "
              "particular, one sentence after another.")


class Collector(FrameProcessor):
    """Passes every frame on and keeps the downstream ones."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(frame)
        await self.push_frame(frame, direction)

    def of(self, kind: type[Frame]) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]

    def text(self) -> str:
        """What the service said (its transcript, as TTS text frames)."""
        return "".join(f.text for f in self.of(TTSTextFrame))


@dataclass
class Wire:
    """Every server event the service parsed (validated with the official ``openai`` types)
    and every client event it sent."""

    validator: EventValidator
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e.get("type") == type_]

    def sent_types(self) -> list[str]:
        return [e["type"] for e in self.sent if e["type"] != "input_audio_buffer.append"]


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch, validator: EventValidator) -> Wire:
    """Taps the service's parser of server events (it reads each one through it)."""
    tap = Wire(validator)
    parse = rt.parse_server_event

    def parse_and_record(message: str) -> Any:
        event = json.loads(message)
        tap.received.append(event)
        validator("in", event)
        return parse(message)

    monkeypatch.setattr(rt, "parse_server_event", parse_and_record)
    return tap


def _service(srv: Any, wire: Wire, **session: Any) -> OpenAIRealtimeLLMService:
    llm = OpenAIRealtimeLLMService(
        api_key=KEY, base_url=srv.base_url.replace("http", "ws", 1) + "/realtime",
        settings=OpenAIRealtimeLLMService.Settings(
            model=DEFAULT_MODEL, session_properties=rt.SessionProperties(**session)))
    send = llm.send_client_event

    async def send_and_record(event: rt.ClientEvent) -> None:
        wire.sent.append(event.model_dump(exclude_none=True))
        await send(event)

    llm.send_client_event = send_and_record  # type: ignore[method-assign]
    return llm


@dataclass
class Running:
    worker: PipelineWorker
    out: Collector
    errors: list[Any]

    async def wait_for(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not done():
            if self.errors:
                raise AssertionError(f"the pipeline failed while waiting for {what}: "
                                     f"{self.errors}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {WAIT_S:g} s; frames: "
                                     f"{sorted({type(f).__name__ for f in self.out.frames})}")
            await asyncio.sleep(0.05)

    def replies(self) -> int:
        return len(self.out.of(LLMFullResponseEndFrame))


@contextlib.asynccontextmanager
async def running(llm: OpenAIRealtimeLLMService, context: LLMContext
                  ) -> AsyncIterator[Running]:
    """The usual realtime pipeline, minus the transport: user aggregator, the service, a
    collector, assistant aggregator. Frames are queued on the worker."""
    pair = LLMContextAggregatorPair(context)
    out = Collector()
    worker = PipelineWorker(Pipeline([pair.user(), llm, out, pair.assistant()]),
                            cancel_on_idle_timeout=False)
    started = asyncio.Event()
    errors: list[Any] = []

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker: PipelineWorker, frame: Frame) -> None:
        started.set()

    @worker.event_handler("on_pipeline_error")
    async def on_error(worker: PipelineWorker, frame: ErrorFrame) -> None:
        errors.append(frame)

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    task = asyncio.ensure_future(runner.run())
    try:
        await asyncio.wait_for(started.wait(), WAIT_S)
        yield Running(worker, out, errors)
    finally:
        await worker.queue_frame(EndFrame())
        try:
            await asyncio.wait_for(task, WAIT_S)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_context_with_a_function_call(make_server: Any, wire: Wire) -> None:
    """A context with one user message: pipecat sends it as an item, configures the session
    with its tools and asks for a response; the brain calls the function, pipecat runs the
    handler, sends the output and a response, and speaks the answer (audio and text)."""
    calls: list[dict[str, Any]] = []

    async def get_weather(params: FunctionCallParams) -> None:
        calls.append(dict(params.arguments))
        await params.result_callback({"conditions": "sunny"})

    tools = ToolsSchema(standard_tools=[FunctionSchema(
        name="get_weather", description="The weather in a city.",
        properties={"city": {"type": "string"}}, required=["city"])])
    brain = ScriptBrain([{"tool": "get_weather", "arguments": {"city": "Paris"}},
                         "It is sunny in Paris."])
    async with make_server(port=0, brain=brain) as srv:
        llm = _service(srv, wire, instructions="Be brief.", tools=tools)
        llm.register_function("get_weather", get_weather)
        context = LLMContext([{"role": "user", "content": "What is the weather in Paris?"}],
                             tools=tools)
        async with running(llm, context) as run:
            await run.worker.queue_frames([LLMRunFrame()])
            await run.wait_for(lambda: "sunny in Paris." in run.out.text(), "the answer")
            await run.wait_for(lambda: run.replies() >= 2, "the end of the answer")
        assert run.errors == []
    assert calls == [{"city": "Paris"}]
    assert run.out.text() == "It is sunny in Paris."
    audio = run.out.of(TTSAudioRawFrame)
    assert audio and {(f.sample_rate, f.num_channels) for f in audio} == {(PCM_RATE, 1)}
    assert sum(len(f.audio) for f in audio) / (2 * PCM_RATE) > 0.5
    roles = [(m.get("role"), "tool_calls" in m) for m in context.get_messages()]
    assert roles == [("user", False), ("assistant", True), ("tool", False), ("assistant", False)]
    assert context.get_messages()[-1]["content"] == "It is sunny in Paris."
    assert wire.sent_types() == ["session.update", "conversation.item.create", "session.update",
                                 "response.create", "conversation.item.create",
                                 "response.create"]
    assert wire.of("error") == []
    wire.validator.assert_valid()


async def test_spoken_turn_over_a_reply_interrupts_it(make_server: Any, first_turn: np.ndarray,
                                                      wire: Wire) -> None:
    """Server VAD and input transcription: speech sent while a long reply is playing makes
    pipecat truncate the reply at its playback position (the server confirms), then the
    user's words are transcribed into the context and answered."""
    brain = ScriptBrain([LONG_REPLY])  # then it echoes
    async with make_server(port=0, brain=brain) as srv:
        llm = _service(srv, wire, audio=rt.AudioConfiguration(input=rt.AudioInput(
            transcription=rt.InputAudioTranscription(model="gpt-4o-mini-transcribe"),
            turn_detection=rt.TurnDetection(silence_duration_ms=500))))
        context = LLMContext([{"role": "user", "content": "Tell me something long."}])
        async with running(llm, context) as run:
            await run.worker.queue_frames([LLMRunFrame()])
            await run.wait_for(lambda: bool(run.out.of(TTSAudioRawFrame)), "reply audio")
            await asyncio.sleep(1.0)
            step = PCM_RATE // 10
            for i in range(0, first_turn.size, step):
                await run.worker.queue_frame(InputAudioRawFrame(
                    audio=first_turn[i:i + step].tobytes(), sample_rate=PCM_RATE,
                    num_channels=1))
                await asyncio.sleep(0.05)
            await run.wait_for(lambda: "You said: hello can you hear me." in run.out.text(),
                               "the answer to the user")
            await run.wait_for(lambda: run.replies() >= 2, "the end of the answer")
        assert run.errors == []
    (truncate,) = [e for e in wire.sent if e["type"] == "conversation.item.truncate"]
    (truncated,) = wire.of("conversation.item.truncated")
    assert truncated["audio_end_ms"] == truncate["audio_end_ms"] >= 1000
    (heard,) = wire.of("conversation.item.input_audio_transcription.completed")
    assert heard["transcript"] == "hello can you hear me"
    assert [(m["role"], m["content"]) for m in context.get_messages()][-2:] == [
        ("user", "hello can you hear me"), ("assistant", "You said: hello can you hear me.")]
    assert wire.of("error") == []
    wire.validator.assert_valid()


async def test_retrieving_a_missing_item_fails_that_request_only(make_server: Any,
                                                                 wire: Wire) -> None:
    """``retrieve_conversation_item`` of an item that is gone: the API answers
    ``item_retrieve_invalid_item_id`` with the request's ``event_id``, which pipecat turns
    into an exception for that request; the session goes on (an existing item is retrieved
    after it). With another code pipecat takes the error as fatal, stops reading the socket
    and the request never returns: the local server answered ``item_not_found`` before
    (issue 11, third-party clients)."""
    async with make_server(port=0) as srv:
        llm = _service(srv, wire)
        context = LLMContext([{"role": "user", "content": "Hello there"}])
        async with running(llm, context) as run:
            await run.worker.queue_frames([LLMRunFrame()])
            await run.wait_for(lambda: run.replies() >= 1 and bool(wire.of("response.done")),
                               "the reply")
            with pytest.raises(Exception, match="does not exist"):
                await asyncio.wait_for(llm.retrieve_conversation_item("item_gone"), WAIT_S)
            reply_id = wire.of("response.done")[0]["response"]["output"][0]["id"]
            item = await asyncio.wait_for(llm.retrieve_conversation_item(reply_id), WAIT_S)
        assert run.errors == []
    assert (item.role, item.content[0].transcript) == ("assistant", "You said: Hello there.")
    (error,) = wire.of("error")
    assert (error["error"]["code"], error["error"]["event_id"]) == (
        "item_retrieve_invalid_item_id", "rci_item_gone")
    wire.validator.assert_valid()
