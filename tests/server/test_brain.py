"""The local server's brains: echo, script, host callables, and make_brain."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from livetalk.errors import ConfigError, LivetalkError
from livetalk.server.brain import (
    Brain,
    BrainChunk,
    BrainContext,
    BrainError,
    BrainReply,
    CallableBrain,
    EchoBrain,
    ScriptBrain,
    SpeakReply,
    StreamingBrain,
    ToolCallReply,
    brain_stream,
    make_brain,
    sentences,
)

WEATHER_OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"}


def ctx(transcript: str = "", **kwargs: object) -> BrainContext:
    return BrainContext(transcript, **kwargs)  # type: ignore[arg-type]


async def test_echo_brain() -> None:
    brain = EchoBrain()
    assert isinstance(brain, Brain)
    assert await brain.reply(ctx("hello can you hear me")) == SpeakReply(
        "You said: hello can you hear me."
    )
    assert await brain.reply(ctx("what time is it?")) == SpeakReply("You said: what time is it.")
    assert await brain.reply(ctx("  ")) == SpeakReply("I heard nothing.")
    after_tool = ctx("what is the weather", tool_outputs=[WEATHER_OUTPUT])
    assert await brain.reply(after_tool) == SpeakReply("The result is sunny, 21 C.")


async def test_script_brain_plays_in_order_then_echoes() -> None:
    brain = ScriptBrain([
        "Hi there.",
        {"say": "Let me check."},
        {"tool": "get_weather", "arguments": {"city": "Oslo"}},
    ])
    assert await brain.reply(ctx("hello")) == SpeakReply("Hi there.")
    assert await brain.reply(ctx("weather?")) == SpeakReply("Let me check.")
    call = await brain.reply(ctx("weather?"))
    assert isinstance(call, ToolCallReply) and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    assert await brain.reply(ctx("thanks")) == SpeakReply("You said: thanks.")


async def test_script_brain_loops_when_asked() -> None:
    brain = ScriptBrain(["one", "two"], loop=True)
    replies = [await brain.reply(ctx()) for _ in range(5)]
    assert replies == [SpeakReply(t) for t in ("one", "two", "one", "two", "one")]


@pytest.mark.parametrize(
    "replies",
    [
        [],
        "just a string",
        [42],
        [{"say": 1}],
        [{"say": "x", "extra": 1}],
        [{"tool": "f", "arguments": "[1, 2]"}],
        [{"tool": "f", "arguments": "{not json"}],
        [{"tool": ""}],
        [{"tool": "f", "args": {}}],
        [{"neither": True}],
    ],
)
def test_script_brain_rejects_bad_entries(replies: object) -> None:
    with pytest.raises(ConfigError):
        ScriptBrain(replies)  # type: ignore[arg-type]


async def test_script_brain_from_files(tmp_path: Path) -> None:
    text = tmp_path / "script.txt"
    text.write_text("# greeting\nHello!\n\nGoodbye.\n")
    brain = ScriptBrain.from_file(text)
    assert not brain.loop
    assert [await brain.reply(ctx()) for _ in range(2)] == [
        SpeakReply("Hello!"), SpeakReply("Goodbye.")
    ]

    js = tmp_path / "script.json"
    js.write_text(json.dumps({"replies": ["a", {"tool": "f", "arguments": "{}"}], "loop": True}))
    brain = ScriptBrain.from_file(js)
    assert brain.loop
    assert [await brain.reply(ctx()) for _ in range(3)] == [
        SpeakReply("a"), ToolCallReply("f", "{}"), SpeakReply("a")
    ]
    assert not ScriptBrain.from_file(js, loop=False).loop

    pytest.importorskip("yaml")
    yml = tmp_path / "script.yaml"
    yml.write_text("- hello\n- say: sure\n- tool: lights\n  arguments: {room: kitchen}\n")
    brain = ScriptBrain.from_file(yml)
    replies = [await brain.reply(ctx()) for _ in range(3)]
    assert replies[:2] == [SpeakReply("hello"), SpeakReply("sure")]
    assert replies[2] == ToolCallReply("lights", '{"room": "kitchen"}')


def test_script_brain_file_errors(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{oops")
    wrong_shape = tmp_path / "shape.json"
    wrong_shape.write_text('{"say": "hi"}')
    for path in (bad_json, wrong_shape, tmp_path / "missing.txt"):
        with pytest.raises(ConfigError):
            ScriptBrain.from_file(path)


async def test_callable_brain_sync_and_async() -> None:
    seen: list[BrainContext] = []

    def sync_fn(c: BrainContext) -> str:
        seen.append(c)
        return f"I know {len(c.history)} messages"

    async def async_fn(c: BrainContext) -> BrainReply:
        await asyncio.sleep(0)
        return ToolCallReply("lookup", json.dumps({"q": c.transcript}))

    context = ctx("find cats", history=[("user", "find cats")], instructions="be brief")
    assert await CallableBrain(sync_fn).reply(context) == SpeakReply("I know 1 messages")
    assert seen == [context]
    reply = await CallableBrain(async_fn).reply(context)
    assert reply == ToolCallReply("lookup", '{"q": "find cats"}')


async def test_callable_brain_failures_become_brain_errors() -> None:
    def broken(c: BrainContext) -> str:
        raise KeyError("missing")

    async def broken_async(c: BrainContext) -> str:
        raise ValueError("bad")

    for fn, cause in ((broken, KeyError), (broken_async, ValueError)):
        with pytest.raises(BrainError) as info:
            await CallableBrain(fn).reply(ctx())
        assert isinstance(info.value.__cause__, cause)
        assert isinstance(info.value, LivetalkError)
    with pytest.raises(BrainError, match="int"):
        await CallableBrain(lambda c: 42).reply(ctx())  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigError):
        CallableBrain(42)  # type: ignore[arg-type]


async def test_make_brain(tmp_path: Path) -> None:
    assert isinstance(make_brain("echo"), EchoBrain)
    assert isinstance(make_brain(None), EchoBrain)
    script = tmp_path / "s.txt"
    script.write_text("scripted\n")
    for spec in (script, str(script)):
        brain = make_brain(spec)
        assert isinstance(brain, ScriptBrain)
        assert await brain.reply(ctx()) == SpeakReply("scripted")
    custom = EchoBrain()
    assert make_brain(custom) is custom
    wrapped = make_brain(lambda c: "hi")
    assert isinstance(wrapped, CallableBrain)
    assert await wrapped.reply(ctx()) == SpeakReply("hi")
    with pytest.raises(ConfigError, match="no such file"):
        make_brain("smart")
    with pytest.raises(ConfigError):
        make_brain(42)  # type: ignore[arg-type]


def test_tool_call_reply_validates_arguments() -> None:
    assert ToolCallReply("f").arguments == "{}"
    for args in ("[]", "nope", 5):
        with pytest.raises(ConfigError):
            ToolCallReply("f", args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- streaming
async def _pieces(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


async def test_sentences_are_cut_as_soon_as_they_end() -> None:
    got = [s async for s in sentences(_pieces(
        "Hello", " there.", " How are", " you? I'm", " fine", "\nOk", ' "quoted." next'))]
    assert got == ["Hello there.", "How are you?", "I'm fine", 'Ok "quoted."', "next"]
    assert [s async for s in sentences(_pieces("3.5 apples", " and 2.5 pears"))] == [
        "3.5 apples and 2.5 pears"]
    long = [s async for s in sentences(_pieces("word " * 60))]
    assert len(long) == 2 and all(len(s) <= 200 for s in long)
    assert " ".join(long) == ("word " * 60).strip()
    assert [s async for s in sentences(_pieces("", "  ", ""))] == []


async def test_brain_stream_of_plain_and_streaming_brains() -> None:
    ctx = BrainContext(transcript="hello there")
    assert [c async for c in brain_stream(EchoBrain(), ctx)] == ["You", " said:", " hello",
                                                                 " there."]
    call = ToolCallReply("get_time")
    assert [c async for c in brain_stream(ScriptBrain([{"tool": "get_time"}]), ctx)] == [call]

    class Streamer:
        closed = False

        async def stream(self, ctx: BrainContext) -> AsyncIterator[BrainChunk]:
            try:
                yield "Hi"
                yield " you."
                yield call
            finally:
                Streamer.closed = True

    assert isinstance(Streamer(), StreamingBrain)
    stream = brain_stream(Streamer(), ctx)
    assert await anext(stream) == "Hi"
    await stream.aclose()  # the response was cancelled: the brain's stream is closed too
    assert Streamer.closed
