"""The local server's session engine: event orders, errors and races, without sockets.

Each test drives a :class:`ServerSession` with client events (dicts) and input audio, with a
fake media output that the test plays forward (or that plays instantly), a tone synthesizer
and a fixed-text transcriber. Every event the session emits is validated against the
official openai SDK types; the orders are those of ``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from livetalk.server.asr import CallableTranscriber
from livetalk.server.brain import Brain, BrainContext, BrainReply, EchoBrain, ScriptBrain
from livetalk.server.session import SAY_EXACTLY_PREFIX, ServerSession
from tests.conftest import EventValidator
from tests.speech_helpers import make_turns

HEARD = "hello can you hear me"
WORD_MS = 150
TONE_RATE = 16000
TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather in a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


class ToneSynthesizer:
    """A fake voice: 150 ms of 440 Hz tone per word, at 16 kHz."""

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        n = len(text.split()) * WORD_MS * TONE_RATE // 1000
        t = np.arange(n) / TONE_RATE
        return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), TONE_RATE


class FakeOutput:
    """A media output that plays only when told to (or everything at once with ``instant``)."""

    def __init__(self, *, instant: bool = False) -> None:
        self.instant = instant
        self.played = 0.0
        self.queued = 0.0
        self.clears = 0

    def enqueue(self, pcm: np.ndarray, rate: int) -> None:
        self.queued += pcm.size * 1000 / rate
        if self.instant:
            self.advance(self.queued)

    def clear(self) -> float:
        dropped, self.queued = self.queued, 0.0
        self.clears += 1
        return dropped

    def advance(self, ms: float) -> None:
        step = min(ms, self.queued)
        self.played += step
        self.queued -= step

    @property
    def played_ms(self) -> float:
        return self.played

    @property
    def queued_ms(self) -> float:
        return self.queued


@dataclass
class Harness:
    session: ServerSession
    output: FakeOutput | None
    validator: EventValidator = field(default_factory=EventValidator)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        def listen(event: dict[str, Any]) -> None:
            # what a transport does at once: serialise (so later state changes cannot leak in)
            event = json.loads(json.dumps(event))
            self.validator("in", event)
            self.events.append(event)

        self.session.add_listener(listen)  # greeted with its own session.created

    def send(self, type_: str, **fields: Any) -> None:
        self.session.handle_client_event({"type": type_, **fields})

    def types(self, since: int = 0) -> list[str]:
        return [e["type"] for e in self.events[since:]]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    def one(self, type_: str) -> dict[str, Any]:
        found = self.of(type_)
        assert len(found) == 1, f"{len(found)} {type_} events: {self.types()}"
        return found[0]

    async def wait_for(self, type_: str, count: int = 1, *, play: bool = False,
                       timeout: float = 5.0) -> dict[str, Any]:
        """Wait until ``count`` events of ``type_`` arrived (playing the output if ``play``)."""
        async def poll() -> dict[str, Any]:
            while len(self.of(type_)) < count:
                if play and self.output is not None:
                    self.output.advance(50)
                await asyncio.sleep(0.002)
            return self.of(type_)[count - 1]

        try:
            return await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {type_} (#{count}) in {self.types()}") from None

    def feed(self, pcm: np.ndarray, chunk: int = 2400) -> None:
        for i in range(0, pcm.size, chunk):
            self.session.feed_audio(pcm[i:i + chunk])

    def user_text(self, text: str) -> None:
        self.send("conversation.item.create", item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})


MakeHarness = Callable[..., Harness]


@pytest.fixture
async def make() -> AsyncIterator[MakeHarness]:
    made: list[Harness] = []

    def factory(*, brain: Brain | None = None, output: FakeOutput | None | str = "manual",
                session: dict[str, Any] | None = None, heard: str = HEARD,
                audio_deltas: bool = False, transcriber: Any = None,
                synthesizer: Any = None) -> Harness:
        out = FakeOutput() if output == "manual" else FakeOutput(instant=True) if (
            output == "instant") else output
        assert out is None or isinstance(out, FakeOutput)
        server = ServerSession(
            transcriber=transcriber or CallableTranscriber(lambda pcm, rate: heard),
            synthesizer=synthesizer or ToneSynthesizer(), brain=brain or EchoBrain(), output=out,
            session=session, realtime_factor=20.0, audio_deltas=audio_deltas)
        harness = Harness(server, out)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        await harness.session.close()
        harness.validator.assert_valid()  # every event of every test matches the SDK types


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """One spoken phrase at 24 kHz: 1 s of silence, the phrase, 1.5 s of silence."""
    return make_turns([HEARD], [], 24000, lead_s=1.0, tail_s=1.5).pcm


def collapse(types: Sequence[str]) -> list[str]:
    """Event types with each run of one ``*.delta`` type written once as ``type*``."""
    out: list[str] = []
    for t in types:
        name = t + "*" if t.endswith(".delta") else t
        if not (out and out[-1] == name and name.endswith("*")):
            out.append(name)
    return out


def assert_chain(h: Harness) -> None:
    """``previous_item_id`` of every ``conversation.item.added`` rebuilds the session's order."""
    order: list[str] = []
    for event in h.events:
        if event["type"] == "conversation.item.added":
            prev = event["previous_item_id"]
            order.insert(order.index(prev) + 1 if prev is not None else 0, event["item"]["id"])
        elif event["type"] == "conversation.item.deleted":
            order.remove(event["item_id"])
    assert order == h.session.order


def transcription(model: str | None = "gpt-4o-mini-transcribe", **td: Any) -> dict[str, Any]:
    turn_detection = {"type": "server_vad", "silence_duration_ms": 500, **td}
    return {"type": "realtime", "audio": {"input": {
        "transcription": {"model": model} if model else None, "turn_detection": turn_detection}}}


GENERATED_AUDIO = [
    "response.created", "response.output_item.added",
    "conversation.item.added", "response.content_part.added", "output_audio_buffer.started",
    "response.output_audio_transcript.delta*", "response.output_audio.done",
    "response.output_audio_transcript.done", "response.content_part.done",
    "conversation.item.done", "response.output_item.done", "response.done",
    "rate_limits.updated",
]
# the order of real traffic: generation ends (response.done, then rate_limits.updated) while the
# audio still plays; output_audio_buffer.stopped when it has played out
RESPONSE_AUDIO = [*GENERATED_AUDIO, "output_audio_buffer.stopped"]
USER_VOICE = [
    "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
]
TRANSCRIPTION = ["conversation.item.input_audio_transcription.delta*",
                 "conversation.item.input_audio_transcription.completed"]


# ------------------------------------------------------------------------------ connect
async def test_session_created_comes_first_with_the_full_session(make: MakeHarness) -> None:
    h = make(session={"type": "realtime", "instructions": "Be brief."})
    assert h.types() == ["session.created"]
    session = h.events[0]["session"]
    assert session["instructions"] == "Be brief."
    assert session["id"].startswith("sess_") and session["object"] == "realtime.session"
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"


# ------------------------------------------------------------------------------ voice turns
async def test_voice_turn_follows_section_11_2(make: MakeHarness, speech: np.ndarray) -> None:
    h = make(session=transcription(), output="instant")
    h.feed(speech)
    await h.wait_for("output_audio_buffer.stopped")
    assert collapse(h.types(1)) == USER_VOICE + TRANSCRIPTION + RESPONSE_AUDIO
    started = h.one("input_audio_buffer.speech_started")
    user_id = started["item_id"]
    assert h.one("input_audio_buffer.speech_stopped")["item_id"] == user_id
    committed = h.one("input_audio_buffer.committed")
    assert (committed["item_id"], committed["previous_item_id"]) == (user_id, None)
    assert h.one("conversation.item.input_audio_transcription.completed")["transcript"] == HEARD
    deltas = h.of("conversation.item.input_audio_transcription.delta")
    assert "".join(d["delta"] for d in deltas) == HEARD
    done = h.one("response.done")["response"]
    assert done["status"] == "completed"
    reply = done["output"][0]
    assert reply["content"][0]["transcript"] == f"You said: {HEARD}."
    assert h.of("conversation.item.added")[1]["previous_item_id"] == user_id
    assert h.one("output_audio_buffer.started")["response_id"] == done["id"]
    assert h.one("output_audio_buffer.stopped")["response_id"] == done["id"]
    usage = done["usage"]
    assert usage["input_token_details"]["audio_tokens"] > 0  # the user's speech
    assert usage["output_token_details"]["audio_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert_chain(h)


async def test_events_are_snapshots_of_the_state_when_emitted(make: MakeHarness) -> None:
    h = make()
    raw: list[dict[str, Any]] = []
    h.session.add_listener(raw.append, greet=False)  # keeps the dicts, as a queue does
    h.user_text("hello")
    h.send("response.create", response={"output_modalities": ["text"]})
    await h.wait_for("response.done")
    added = next(e for e in raw if e["type"] == "response.output_item.added")
    assert added["item"]["status"] == "in_progress" and added["item"]["content"] == []
    created = next(e for e in raw if e["type"] == "response.created")
    assert created["response"]["output"] == []
    assert [json.loads(json.dumps(e)) for e in raw] == h.events[1:]


async def test_no_transcription_events_when_transcription_is_null(
        make: MakeHarness, speech: np.ndarray) -> None:
    h = make(session=transcription(model=None), output="instant")
    h.feed(speech)
    await h.wait_for("output_audio_buffer.stopped")
    assert collapse(h.types(1)) == USER_VOICE + RESPONSE_AUDIO
    # the brain still heard the turn
    assert h.one("response.done")["response"]["output"][0]["content"][0]["transcript"] == (
        f"You said: {HEARD}.")


async def test_response_done_comes_at_generation_end_and_stopped_after_playout(
        make: MakeHarness) -> None:
    """As in real traffic (issue 11 item 11): the deltas and response.done do not wait for
    the audio; output_audio_buffer.stopped does."""
    h = make()
    h.send("response.create", response={"instructions": f"{SAY_EXACTLY_PREFIX} one two three"})
    await h.wait_for("rate_limits.updated")
    assert h.output is not None and h.output.queued_ms == pytest.approx(3 * WORD_MS, abs=1)
    assert collapse(h.types(1)) == GENERATED_AUDIO  # nothing has played yet
    assert len(h.of("response.output_audio_transcript.delta")) == 3
    limits = h.one("rate_limits.updated")["rate_limits"]
    assert [entry["name"] for entry in limits] == ["tokens"]
    h.output.advance(WORD_MS)
    await asyncio.sleep(0.05)
    assert "output_audio_buffer.stopped" not in h.types()
    h.output.advance(10_000)
    stopped = await h.wait_for("output_audio_buffer.stopped")
    assert stopped["response_id"] == h.one("response.done")["response"]["id"]


async def test_create_response_false_stops_after_the_user_item(
        make: MakeHarness, speech: np.ndarray) -> None:
    h = make(session=transcription(create_response=False), output="instant")
    h.feed(speech)
    await h.wait_for("conversation.item.input_audio_transcription.completed")
    assert collapse(h.types(1)) == USER_VOICE + TRANSCRIPTION
    # had the server made its own response, this one would collide with it or be cut by it
    h.send("response.create", event_id="evt_mine")
    await h.wait_for("output_audio_buffer.stopped")
    assert len(h.of("response.created")) == 1 and not h.of("error")
    assert h.one("response.done")["response"]["status"] == "completed"


class StatelessEars(CallableTranscriber):
    """A host function as the ears, declared free of side effects (as Whisper is)."""

    stateless = True


class CountingEars:
    """A transcriber that hears the number of samples it is given, and notes how many
    ``speech_stopped`` the session had sent when it was called."""

    def __init__(self) -> None:
        self.harness: Harness | None = None
        self.calls: list[tuple[int, int]] = []  # (samples, speech_stopped events so far)

    def __call__(self, pcm: np.ndarray, rate: int) -> str:
        assert self.harness is not None
        self.calls.append((pcm.size, len(self.harness.of("input_audio_buffer.speech_stopped"))))
        return f"{pcm.size} samples"


def counted(make: MakeHarness, *, stateless: bool) -> tuple[Harness, CountingEars]:
    """A session with server VAD, no automatic response and :class:`CountingEars`, declared
    stateless (as Whisper is) or not (as pocketsphinx)."""
    ears = CountingEars()
    kind = StatelessEars if stateless else CallableTranscriber
    h = make(session=transcription(create_response=False), transcriber=kind(ears),
             output="instant")
    ears.harness = h
    return h, ears


async def feed_in_real_time(h: Harness, pcm: np.ndarray, speed: float = 10.0) -> None:
    """Feed 20 ms at a time, giving the session's tasks a turn between chunks."""
    for i in range(0, pcm.size, 480):
        h.session.feed_audio(pcm[i:i + 480])
        await asyncio.sleep(0.02 / speed)


async def test_a_turn_is_recognised_before_its_silence_ends_it(make: MakeHarness,
                                                               speech: np.ndarray) -> None:
    """With server VAD the recogniser starts once the turn's end is settled, 300 ms before
    the 500 ms of silence commit it, and the commit reuses that work: one recognition of
    exactly the committed audio."""
    h, ears = counted(make, stateless=True)
    await feed_in_real_time(h, speech)
    done = await h.wait_for("conversation.item.input_audio_transcription.completed")
    assert collapse(h.types(1)) == USER_VOICE + TRANSCRIPTION
    assert len(ears.calls) == 1
    samples, stopped_before = ears.calls[0]
    assert stopped_before == 0  # started before the turn was over
    assert done["transcript"] == f"{samples} samples"
    assert done["usage"]["seconds"] == round(samples / 24000, 3)  # the committed audio


async def test_a_stateful_recogniser_hears_the_turn_once_committed(make: MakeHarness,
                                                                   speech: np.ndarray) -> None:
    """A recogniser that does not declare ``stateless`` (pocketsphinx adapts to what it
    decoded) is never run on a turn that may still go on: once, after the commit."""
    h, ears = counted(make, stateless=False)
    await feed_in_real_time(h, speech)
    await h.wait_for("conversation.item.input_audio_transcription.completed")
    assert len(ears.calls) == 1 and ears.calls[0][1] == 1  # after speech_stopped


async def test_speech_within_the_silence_drops_the_early_recognition(
        make: MakeHarness) -> None:
    """The user pauses 400 ms (less than the 500 ms that end a turn) and goes on: the early
    recognition of the first part is dropped and the whole turn is recognised."""
    h, ears = counted(make, stateless=True)
    pcm = make_turns([HEARD, "what is the weather like"], [0.4], 24000, lead_s=1.0,
                     tail_s=1.5).pcm
    await feed_in_real_time(h, pcm)
    done = await h.wait_for("conversation.item.input_audio_transcription.completed")
    assert len(h.of("input_audio_buffer.committed")) == 1  # one turn
    whole = round(done["usage"]["seconds"] * 24000)
    assert done["transcript"] == f"{whole} samples"
    assert len(ears.calls) == 2 and ears.calls[0][0] < whole  # the first part, then all


async def test_push_to_talk_commit_then_create_answers_the_turn(
        make: MakeHarness, speech: np.ndarray) -> None:
    h = make(session=transcription(), output="instant")
    h.send("session.update", session={"type": "realtime",
                                      "audio": {"input": {"turn_detection": None}}})
    assert h.one("session.updated")["session"]["audio"]["input"]["turn_detection"] is None
    h.send("input_audio_buffer.clear")
    assert h.types()[-1] == "input_audio_buffer.cleared"
    raw = base64.b64encode(speech.astype("<i2").tobytes()).decode()
    h.send("input_audio_buffer.append", audio=raw)
    mark = len(h.events)
    h.send("input_audio_buffer.commit")
    assert h.types(mark) == ["input_audio_buffer.committed", "conversation.item.added",
                             "conversation.item.done"]
    assert "input_audio_buffer.speech_started" not in h.types()
    # sent at once: the reply must still wait for the transcript of the committed turn
    h.send("response.create")
    await h.wait_for("output_audio_buffer.stopped")
    assert h.one("response.done")["response"]["output"][0]["content"][0]["transcript"] == (
        f"You said: {HEARD}.")
    user = h.one("input_audio_buffer.committed")["item_id"]
    assert h.one("conversation.item.input_audio_transcription.completed")["item_id"] == user
    assert_chain(h)


@pytest.mark.parametrize("vad", [False, True])
async def test_commit_of_under_100_ms_is_refused_with_the_event_id(
        make: MakeHarness, vad: bool) -> None:
    h = make(session=None if vad else transcription() | {"audio": {"input": {
        "turn_detection": None}}})
    h.session.feed_audio(np.zeros(24 * 60, dtype=np.int16))  # 60 ms, and no speech
    h.send("input_audio_buffer.commit", event_id="evt_commit")
    error = h.one("error")["error"]
    assert error["code"] == "input_audio_buffer_commit_empty"
    assert error["event_id"] == "evt_commit"
    assert "input_audio_buffer.committed" not in h.types()


async def test_input_clear_empties_the_buffer(make: MakeHarness) -> None:
    h = make(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    h.session.feed_audio(np.full(24000, 1000, dtype=np.int16))
    h.send("input_audio_buffer.clear")
    assert h.types()[-1] == "input_audio_buffer.cleared"
    h.send("input_audio_buffer.commit", event_id="evt_after_clear")
    assert h.one("error")["error"]["code"] == "input_audio_buffer_commit_empty"


# ------------------------------------------------------------------------------ text, tools
async def test_text_turn_follows_section_11_6(make: MakeHarness) -> None:
    h = make()
    h.user_text("what time is it")
    assert h.types(1) == ["conversation.item.added", "conversation.item.done"]
    h.send("response.create", response={"output_modalities": ["text"]})
    await h.wait_for("response.done")
    await h.wait_for("rate_limits.updated")
    assert collapse(h.types(3)) == [
        "response.created", "response.output_item.added",
        "conversation.item.added", "response.content_part.added", "response.output_text.delta*",
        "response.output_text.done", "response.content_part.done", "conversation.item.done",
        "response.output_item.done", "response.done", "rate_limits.updated"]
    assert all(isinstance(d.get("obfuscation"), str) for d in h.of("response.output_text.delta"))
    added = h.one("response.output_item.added")["item"]
    assert added["status"] == "in_progress" and added["content"] == []
    assert h.one("response.content_part.added")["part"] == {"type": "text", "text": ""}
    done = h.one("response.done")["response"]
    assert done["output_modalities"] == ["text"]
    assert done["output"][0]["content"] == [{"type": "output_text",
                                             "text": "You said: what time is it."}]
    assert "".join(d["delta"] for d in h.of("response.output_text.delta")) == (
        "You said: what time is it.")
    assert done["usage"]["output_token_details"]["audio_tokens"] == 0
    assert_chain(h)


async def test_function_call_follows_section_11_3_then_uses_the_output(
        make: MakeHarness) -> None:
    h = make(brain=ScriptBrain([{"tool": "get_weather", "arguments": {"city": "Paris"}}]),
             output="instant", session={"type": "realtime", "tools": TOOLS})
    h.user_text("what is the weather in paris")
    h.send("response.create")
    await h.wait_for("response.done")
    await h.wait_for("rate_limits.updated")
    assert collapse(h.types(3)) == [
        "response.created", "response.output_item.added",
        "conversation.item.added", "response.function_call_arguments.delta*",
        "response.function_call_arguments.done", "conversation.item.done",
        "response.output_item.done", "response.done", "rate_limits.updated"]
    call = h.one("response.function_call_arguments.done")
    assert (call["name"], json.loads(call["arguments"])) == ("get_weather", {"city": "Paris"})
    added = h.one("response.output_item.added")["item"]
    assert added["arguments"] == "" and added["call_id"] == call["call_id"]
    done = h.one("response.done")["response"]
    assert done["output"][0]["type"] == "function_call"
    assert done["output"][0]["arguments"] == call["arguments"]
    h.send("conversation.item.create", item={"type": "function_call_output",
                                             "call_id": call["call_id"], "output": "sunny"})
    h.send("response.create")
    await h.wait_for("output_audio_buffer.stopped")
    reply = h.of("response.done")[1]["response"]["output"][0]
    assert reply["content"][0]["transcript"] == "The result is sunny."
    assert_chain(h)


async def test_tool_call_without_session_tools_is_not_emitted(make: MakeHarness) -> None:
    h = make(brain=ScriptBrain([{"tool": "get_weather"}]), output="instant")
    h.send("response.create")
    await h.wait_for("response.done")
    assert "response.function_call_arguments.done" not in h.types()
    assert h.one("response.done")["response"]["status"] == "completed"


# ------------------------------------------------------------------------------ cancelling
class GatedSynthesizer(ToneSynthesizer):
    """A voice that waits for the test before it speaks: the response is still being
    generated until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = __import__("threading").Event()

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        self.gate.wait(5)
        return super().synthesize(text)


SIX_WORDS = "alpha bravo charlie delta echo foxtrot"


async def _generated(h: Harness) -> None:
    """A spoken reply whose generation has ended (response.done) and whose audio now plays."""
    h.send("response.create", response={"instructions": f"{SAY_EXACTLY_PREFIX} {SIX_WORDS}"})
    await h.wait_for("rate_limits.updated")
    assert h.output is not None and "output_audio_buffer.stopped" not in h.types()


async def test_response_cancel_during_generation_cuts_it(make: MakeHarness) -> None:
    h = make(synthesizer=(voice := GatedSynthesizer()))
    h.send("response.create", response={"instructions": f"{SAY_EXACTLY_PREFIX} {SIX_WORDS}"})
    await h.wait_for("response.content_part.added")
    mark = len(h.events)
    h.send("response.cancel", event_id="evt_cancel")
    voice.gate.set()
    assert h.types(mark) == [
        "response.output_audio.done", "response.output_audio_transcript.done",
        "response.content_part.done", "conversation.item.done", "response.output_item.done",
        "response.done", "rate_limits.updated"]  # no audio had started: no cleared
    done = h.one("response.done")["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"
    await asyncio.sleep(0.05)  # the cancelled task emits nothing more
    assert h.types()[-1] == "rate_limits.updated"
    h.send("response.create", event_id="evt_next")  # the slot is free at once
    assert not h.of("error")


async def test_response_cancel_after_generation_is_not_active(make: MakeHarness) -> None:
    """Generation has ended although the audio still plays: nothing to cancel (real API)."""
    h = make()
    await _generated(h)
    h.send("response.cancel", event_id="evt_late")
    error = h.one("error")["error"]
    assert (error["code"], error["event_id"]) == ("response_cancel_not_active", "evt_late")
    assert "output_audio_buffer.cleared" not in h.types()


async def test_response_cancel_with_nothing_running_is_an_error(make: MakeHarness) -> None:
    h = make()
    h.send("response.cancel", event_id="evt_idle")
    error = h.one("error")["error"]
    assert (error["code"], error["event_id"]) == ("response_cancel_not_active", "evt_idle")


async def test_cancel_before_audio_starts_sends_no_cleared(make: MakeHarness) -> None:
    release = asyncio.Event()

    class SlowBrain:
        async def reply(self, ctx: BrainContext) -> BrainReply:
            await release.wait()
            return await EchoBrain().reply(ctx)

    h = make(brain=SlowBrain())
    h.send("response.create")
    await h.wait_for("response.created")
    h.send("response.cancel")
    release.set()
    assert h.types()[-2:] == ["response.done", "rate_limits.updated"]
    assert h.one("response.done")["response"]["output"] == []
    await asyncio.sleep(0.05)  # the cancelled brain call must not resume the response
    assert "response.output_item.added" not in h.types()
    assert "output_audio_buffer.cleared" not in h.types()


async def test_clear_after_generation_clears_and_truncates_to_what_played(
        make: MakeHarness) -> None:
    """Real traffic: the reply is done but still playing; a clear gives only
    output_audio_buffer.cleared (no second response.done), and the server truncates the item
    to what was played, dropping its transcript."""
    h = make()
    await _generated(h)
    assert h.output is not None
    h.output.advance(2 * WORD_MS)
    mark = len(h.events)
    h.send("output_audio_buffer.clear")
    assert h.types(mark) == ["output_audio_buffer.cleared"]
    assert len(h.of("response.done")) == 1
    item_id = h.one("response.done")["response"]["output"][0]["id"]
    h.send("conversation.item.retrieve", item_id=item_id)
    part = h.one("conversation.item.retrieved")["item"]["content"][0]
    assert part["transcript"] is None  # no unheard text stays in the context
    h.send("conversation.item.truncate", item_id=item_id, content_index=0,
           audio_end_ms=2 * WORD_MS + 5, event_id="evt_over")
    assert "already shorter than" in h.one("error")["error"]["message"]  # only what played is left
    h.send("output_audio_buffer.clear")  # nothing plays any more: no second cleared
    assert len(h.of("output_audio_buffer.cleared")) == 1


async def test_clear_during_generation_cancels_then_clears(make: MakeHarness) -> None:
    h = make(synthesizer=(voice := GatedSynthesizer()))
    h.send("response.create", response={"instructions": f"{SAY_EXACTLY_PREFIX} one two"})
    await h.wait_for("response.content_part.added")
    h.send("output_audio_buffer.clear")  # no audio yet: the response is cancelled, no cleared
    voice.gate.set()
    assert h.one("response.done")["response"]["status"] == "cancelled"
    assert "output_audio_buffer.cleared" not in h.types()


async def test_barge_in_after_generation_only_clears(
        make: MakeHarness, speech: np.ndarray) -> None:
    """Section 18's WebRTC barge-in: speech_started, then output_audio_buffer.cleared, and no
    second response.done for the reply that had finished generating."""
    h = make(session=transcription())
    h.session.feed_audio(np.zeros(24000, dtype=np.int16))  # the VAD's warm-up
    await _generated(h)
    assert h.output is not None
    h.output.advance(WORD_MS)
    mark = len(h.events)
    h.feed(speech[24000:])
    assert h.types(mark)[:3] == ["input_audio_buffer.speech_started",
                                 "output_audio_buffer.cleared",
                                 "input_audio_buffer.speech_stopped"]
    first = h.one("response.created")["response"]["id"]
    assert h.one("output_audio_buffer.cleared")["response_id"] == first
    await h.wait_for("output_audio_buffer.stopped", play=True)  # the user's turn gets a reply
    dones = [d["response"] for d in h.of("response.done")]
    assert [d["status"] for d in dones] == ["completed", "completed"]
    assert dones[1]["output"][0]["content"][0]["transcript"] == f"You said: {HEARD}."
    assert_chain(h)


async def test_barge_in_during_generation_cancels_then_clears(
        make: MakeHarness, speech: np.ndarray) -> None:
    h = make(session=transcription(), synthesizer=(voice := GatedSynthesizer()))
    h.session.feed_audio(np.zeros(24000, dtype=np.int16))
    h.send("response.create", response={"instructions": f"{SAY_EXACTLY_PREFIX} {SIX_WORDS}"})
    await h.wait_for("response.content_part.added")
    mark = len(h.events)
    h.feed(speech[24000:])
    voice.gate.set()
    assert h.types(mark)[:9] == [
        "input_audio_buffer.speech_started", "response.output_audio.done",
        "response.output_audio_transcript.done", "response.content_part.done",
        "conversation.item.done", "response.output_item.done", "response.done",
        "rate_limits.updated", "input_audio_buffer.speech_stopped"]
    cut = h.of("response.done")[0]["response"]
    assert cut["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    await h.wait_for("output_audio_buffer.stopped", play=True)
    assert h.of("response.done")[1]["response"]["output"][0]["content"][0]["transcript"] == (
        f"You said: {HEARD}.")


async def test_no_barge_in_when_interrupt_response_is_false(
        make: MakeHarness, speech: np.ndarray) -> None:
    h = make(session=transcription(interrupt_response=False))
    h.session.feed_audio(np.zeros(24000, dtype=np.int16))
    await _generated(h)
    h.feed(speech[24000:])
    await h.wait_for("response.done", 2, play=True)
    assert "output_audio_buffer.cleared" not in h.types()
    first, second = (d["response"] for d in h.of("response.done"))
    assert first["output"][0]["content"][0]["transcript"] == SIX_WORDS
    assert second["output"][0]["content"][0]["transcript"] == f"You said: {HEARD}."
    await h.wait_for("output_audio_buffer.stopped", 2, play=True)
    # the second reply's audio started after the first had played out
    order = [(e["type"], e["response_id"]) for e in h.events
             if e["type"].startswith("output_audio_buffer.")]
    assert [t for t, _ in order] == ["output_audio_buffer.started", "output_audio_buffer.stopped",
                                     "output_audio_buffer.started", "output_audio_buffer.stopped"]
    assert order[0][1] == first["id"] and order[2][1] == second["id"]


async def test_second_response_create_is_refused_while_one_runs(make: MakeHarness) -> None:
    h = make(synthesizer=(voice := GatedSynthesizer()))
    h.send("response.create")
    await h.wait_for("response.content_part.added")
    h.send("response.create", event_id="evt_again")
    voice.gate.set()
    error = h.one("error")["error"]
    assert error["code"] == "conversation_already_has_active_response"
    assert error["event_id"] == "evt_again"
    assert h.one("response.created")["response"]["id"] in error["message"]


# ------------------------------------------------------------------------------ session.update
async def test_session_update_merges_and_returns_the_full_session(make: MakeHarness) -> None:
    h = make()
    h.send("session.update", session={"type": "realtime", "instructions": "Be terse."})
    h.send("session.update", session={"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 800}}}})
    first, second = (e["session"] for e in h.of("session.updated"))
    assert first["instructions"] == "Be terse." and first["audio"]["output"]["voice"] == "marin"
    assert second["instructions"] == "Be terse."
    td = second["audio"]["input"]["turn_detection"]
    assert td["silence_duration_ms"] == 800 and td["create_response"] is True
    assert set(second) == set(h.events[0]["session"])


@pytest.mark.parametrize(("session", "code", "param"), [
    ({"instructions": "hi"}, "missing_required_parameter", "session.type"),
    ({"type": "realtime", "modalities": ["text"]}, "unknown_parameter", "session.modalities"),
    ({"type": "realtime", "voice": "alloy"}, "unknown_parameter", "session.voice"),
    ({"type": "realtime", "turn_detection": None}, "unknown_parameter",
     "session.turn_detection"),
    ({"type": "realtime", "output_modalities": ["audio", "text"]}, "invalid_value",
     "session.output_modalities"),
    ({"type": "realtime", "audio": {"output": {"voice": "bogus"}}}, "invalid_value",
     "session.audio.output.voice"),
])
async def test_rejected_session_update_echoes_the_event_id(
        make: MakeHarness, session: dict[str, Any], code: str, param: str) -> None:
    h = make()
    h.send("session.update", session=session, event_id="evt_update")
    assert h.types(1) == ["error"]  # refused whole: no session.updated
    error = h.one("error")["error"]
    assert (error["code"], error["param"], error["event_id"]) == (code, param, "evt_update")
    assert h.session.session["instructions"] != "hi"


async def test_unknown_event_type_is_an_invalid_value_of_type(make: MakeHarness) -> None:
    h = make()
    h.send("response.audio.delta", event_id="evt_beta")
    error = h.one("error")["error"]
    assert (error["code"], error["param"], error["event_id"]) == (
        "invalid_value", "type", "evt_beta")


# ------------------------------------------------------------------------------ items
async def test_item_create_retrieve_delete_and_previous_ids(make: MakeHarness) -> None:
    h = make()
    h.user_text("first")
    first = h.session.order[0]
    h.send("conversation.item.create", previous_item_id="root", item={
        "id": "item_sys", "type": "message", "role": "system",
        "content": [{"type": "input_text", "text": "be nice"}]})
    assert h.of("conversation.item.added")[-1]["previous_item_id"] is None
    h.send("conversation.item.create", previous_item_id="item_sys", item={
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "mid"}]})
    assert h.of("conversation.item.added")[-1]["previous_item_id"] == "item_sys"
    assert h.session.order[0] == "item_sys" and h.session.order[-1] == first
    h.send("conversation.item.retrieve", item_id="item_sys")
    retrieved = h.one("conversation.item.retrieved")["item"]
    assert retrieved["content"] == [{"type": "input_text", "text": "be nice"}]
    h.send("conversation.item.delete", item_id="item_sys")
    assert h.one("conversation.item.deleted")["item_id"] == "item_sys"
    h.send("conversation.item.retrieve", item_id="item_sys", event_id="evt_gone")
    error = h.one("error")["error"]
    assert (error["code"], error["event_id"]) == ("item_retrieve_invalid_item_id", "evt_gone")
    h.send("conversation.item.create", item={"id": first, "type": "message", "role": "user",
                                             "content": []}, event_id="evt_dup")
    assert h.of("error")[-1]["error"]["event_id"] == "evt_dup"
    assert_chain(h)


async def test_truncate_an_assistant_reply(make: MakeHarness) -> None:
    h = make(output="instant")
    h.send("response.create", response={"instructions": f"{SAY_EXACTLY_PREFIX} one two three"})
    await h.wait_for("output_audio_buffer.stopped")
    item_id = h.one("response.done")["response"]["output"][0]["id"]
    h.send("conversation.item.truncate", item_id=item_id, content_index=0,
           audio_end_ms=3 * WORD_MS + 1, event_id="evt_long")
    error = h.one("error")["error"]
    assert (error["code"], error["event_id"]) == (None, "evt_long")
    assert error["message"] == (f"Audio content of {3 * WORD_MS}ms is already shorter than "
                                f"{3 * WORD_MS + 1}ms")
    h.send("conversation.item.truncate", item_id=item_id, content_index=0,
           audio_end_ms=2 * WORD_MS)
    assert h.one("conversation.item.truncated")["audio_end_ms"] == 2 * WORD_MS
    h.send("conversation.item.retrieve", item_id=item_id)
    # the API drops the transcript of a truncated item (no unheard text in the context)
    assert h.one("conversation.item.retrieved")["item"]["content"][0]["transcript"] is None


# ------------------------------------------------------------------------------ WebSocket mode
async def test_websocket_mode_sends_audio_deltas_and_no_buffer_events(make: MakeHarness) -> None:
    h = make(output=None, audio_deltas=True)
    h.send("response.create", response={"instructions": f"{SAY_EXACTLY_PREFIX} one two three"})
    await h.wait_for("response.done")
    assert not [t for t in h.types() if t.startswith("output_audio_buffer.")]
    types = h.types(1)
    deltas = [t for t in types if t.endswith("delta")]
    assert deltas[:4] == ["response.output_audio_transcript.delta", "response.output_audio.delta",
                          "response.output_audio_transcript.delta",
                          "response.output_audio.delta"]  # interleaved, as generated
    assert [t for t in types if not t.endswith("delta")] == [
        "response.created", "response.output_item.added",
        "conversation.item.added", "response.content_part.added", "response.output_audio.done",
        "response.output_audio_transcript.done", "response.content_part.done",
        "conversation.item.done", "response.output_item.done", "response.done",
        "rate_limits.updated"]
    pcm = b"".join(base64.b64decode(d["delta"]) for d in h.of("response.output_audio.delta"))
    samples = np.frombuffer(pcm, dtype="<i2")
    assert samples.size == pytest.approx(3 * WORD_MS * 24, abs=48)  # 24 kHz PCM16
    assert np.abs(samples).max() > 4000


async def test_output_audio_buffer_clear_is_refused_over_websocket(make: MakeHarness) -> None:
    h = make(output=None, audio_deltas=True)
    h.send("output_audio_buffer.clear", event_id="evt_ws")
    assert h.one("error")["error"]["event_id"] == "evt_ws"


async def test_websocket_truncation_goes_by_the_audio_sent(make: MakeHarness) -> None:
    """The item's length is the audio the client received; a position rounded up from it is
    accepted (as the agents SDK clamps), one past it refused in the API's words; unknown
    items and items without model audio get the API's codes (docs/protocol.md)."""
    class OddRateVoice:  # 22.05 kHz like espeak: lengths with fractions of a ms
        def synthesize(self, text: str) -> tuple[np.ndarray, int]:
            return np.full(3301, 3000, dtype=np.int16), 22050

    h = make(output=None, audio_deltas=True, synthesizer=OddRateVoice())
    h.user_text("hi")
    h.send("response.create")
    done = (await h.wait_for("response.done"))["response"]
    item_id = done["output"][0]["id"]
    sent = b"".join(base64.b64decode(d["delta"]) for d in h.of("response.output_audio.delta"))
    received_ms = len(sent) / 2 / 24  # PCM16 at 24 kHz
    assert received_ms % 1  # the point of this voice
    h.send("conversation.item.truncate", item_id=item_id, content_index=0,
           audio_end_ms=math.ceil(received_ms) + 1, event_id="evt_past")
    error = h.one("error")["error"]
    assert (error["code"], error["param"], error["event_id"]) == (None, None, "evt_past")
    assert error["message"] == (f"Audio content of {int(received_ms)}ms is already shorter "
                                f"than {math.ceil(received_ms) + 1}ms")
    h.send("conversation.item.truncate", item_id=item_id, content_index=0,
           audio_end_ms=math.ceil(received_ms))
    assert h.one("conversation.item.truncated")["audio_end_ms"] == math.ceil(received_ms)
    for type_, code in [("conversation.item.truncate", "item_truncate_invalid_item_id"),
                        ("conversation.item.retrieve", "item_retrieve_invalid_item_id"),
                        ("conversation.item.delete", "item_delete_invalid_item_id")]:
        fields = {"content_index": 0, "audio_end_ms": 0} if type_.endswith("truncate") else {}
        h.send(type_, item_id="item_gone", **fields)
        error = h.of("error")[-1]["error"]
        assert (error["code"], error["param"]) == (code, None)
        assert "the item with id 'item_gone' does not exist." in error["message"]
    user_id = h.of("conversation.item.added")[0]["item"]["id"]
    h.send("conversation.item.truncate", item_id=user_id, content_index=0, audio_end_ms=0)
    assert h.of("error")[-1]["error"]["code"] == "unsupported_content_type"


# ------------------------------------------------------------------------------ failures, idle
async def test_failing_brain_fails_the_response_and_frees_the_slot(make: MakeHarness) -> None:
    class BrokenBrain:
        async def reply(self, ctx: BrainContext) -> BrainReply:
            raise RuntimeError("boom")

    h = make(brain=BrokenBrain())
    h.send("response.create")
    done = (await h.wait_for("response.done"))["response"]
    assert done["status"] == "failed" and done["status_details"]["type"] == "failed"
    assert "boom" in done["status_details"]["error"]["message"]
    h.send("response.create")
    await h.wait_for("response.done", 2)
    assert not h.of("error")


@pytest.mark.parametrize("configured", [True, False])
async def test_transcription_failure_is_reported_only_when_configured(
        make: MakeHarness, speech: np.ndarray, configured: bool) -> None:
    def deaf(pcm: np.ndarray, rate: int) -> str:
        raise RuntimeError("no ears")

    h = make(session=transcription(model="whisper-1" if configured else None,
                                   create_response=False),
             transcriber=CallableTranscriber(deaf))
    h.feed(speech)
    h.send("response.create")  # answered once the (failed) transcription has ended
    done = (await h.wait_for("response.done", play=True))["response"]
    assert done["output"][0]["content"][0]["transcript"] == "I heard nothing."
    failed = h.of("conversation.item.input_audio_transcription.failed")
    assert len(failed) == (1 if configured else 0)
    assert not h.of("conversation.item.input_audio_transcription.completed")


async def test_idle_timeout_commits_silence_and_responds(make: MakeHarness) -> None:
    h = make(session=transcription(idle_timeout_ms=5000), output="instant", heard="")
    h.feed(np.zeros(24000, dtype=np.int16))  # the idle time counts from the reply's end
    h.user_text("hi")
    h.send("response.create")
    await h.wait_for("output_audio_buffer.stopped")
    start = 1000
    h.feed(np.zeros(24000 * 4, dtype=np.int16))
    assert "input_audio_buffer.timeout_triggered" not in h.types()
    mark = len(h.events)
    h.feed(np.zeros(24000 * 2, dtype=np.int16))
    assert h.types(mark)[:4] == ["input_audio_buffer.timeout_triggered",
                                 "input_audio_buffer.committed", "conversation.item.added",
                                 "conversation.item.done"]
    timeout = h.one("input_audio_buffer.timeout_triggered")
    assert timeout["audio_start_ms"] == start
    assert timeout["audio_end_ms"] - start == pytest.approx(5000, abs=100)
    assert h.one("input_audio_buffer.committed")["item_id"] == timeout["item_id"]
    await h.wait_for("output_audio_buffer.stopped", 2)
    assert h.of("response.done")[1]["response"]["output"][0]["content"][0]["transcript"] == (
        "I heard nothing.")


async def test_out_of_band_response_stays_out_of_the_conversation(make: MakeHarness) -> None:
    h = make(output="instant")
    h.user_text("hello")
    h.send("response.create", response={"conversation": "none", "metadata": {"topic": "x"},
                                        "instructions": f"{SAY_EXACTLY_PREFIX} aside"})
    await h.wait_for("output_audio_buffer.stopped")
    done = h.one("response.done")["response"]
    assert done["conversation_id"] is None and done["metadata"] == {"topic": "x"}
    assert done["output"][0]["content"][0]["transcript"] == "aside"
    assert len(h.of("conversation.item.added")) == 1  # only the user's message
    assert "conversation.item.done" not in h.types(3)
    assert done["output"][0]["id"] not in h.session.order


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma"])
async def test_websocket_mode_speaks_and_hears_g711(make: MakeHarness, fmt: str) -> None:
    """Audio in events follows the session's formats: 8 kHz G.711 both ways (issue 11 item 3)."""
    from livetalk.audio.codec import EventAudioCodec

    g711 = {"type": fmt}
    h = make(output=None, audio_deltas=True, session={"type": "realtime", "audio": {
        "input": {"format": g711, "turn_detection": None}, "output": {"format": g711}}})
    codec = EventAudioCodec(fmt)
    one_second = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 300) * 9000).astype(np.int16)
    h.send("input_audio_buffer.append",
           audio=base64.b64encode(codec.encode(one_second)).decode())
    h.send("input_audio_buffer.commit")
    committed = h.one("input_audio_buffer.committed")["item_id"]
    assert h.session._audio_ms[committed] == pytest.approx(1000, abs=20)  # 1 s, not 1/3 s
    h.send("response.create", response={"instructions": f"{SAY_EXACTLY_PREFIX} one two three"})
    await h.wait_for("response.done")
    data = b"".join(base64.b64decode(d["delta"]) for d in h.of("response.output_audio.delta"))
    assert len(data) == pytest.approx(3 * WORD_MS * 8, abs=16)  # one byte per 8 kHz sample
    decoded = EventAudioCodec(fmt).decode(data)
    assert np.abs(decoded).max() > 4000
