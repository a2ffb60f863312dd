"""Conversation: turns from realistic event sequences, released in conversation order.

Every server event built here is validated against the official openai SDK types before it
is parsed and fed.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import Field, TypeAdapter

from livetalk.protocol.conversation import (
    Conversation,
    FunctionCallDone,
    ResponseFinished,
    Role,
    TranscriptDelta,
    Turn,
    TurnStatus,
    Update,
)
from livetalk.protocol.events import ServerEvent, Usage
from livetalk.protocol.wire import parse_server_event

SDK_SERVER = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {"text_tokens": 10, "audio_tokens": input_tokens - 10,
                                "image_tokens": 0, "cached_tokens": 0,
                                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0,
                                                          "image_tokens": 0}},
        "output_token_details": {"text_tokens": 5, "audio_tokens": output_tokens - 5},
    }


class Script:
    """Builds SDK-validated server events and feeds them to a Conversation."""

    def __init__(self, *, transcription: bool = True) -> None:
        ticks = itertools.count(1)
        self.conv = Conversation(clock=lambda: float(next(ticks)))
        self.updates: list[Update] = []
        self._n = 0
        self.send("session.created", session=_session(transcription))

    def event(self, type_: str, **fields: Any) -> ServerEvent:
        self._n += 1
        data = {"type": type_, "event_id": f"event_{self._n}", **fields}
        SDK_SERVER.validate_python(data)
        return parse_server_event(data)

    def send(self, type_: str, **fields: Any) -> list[Update]:
        out = self.conv.feed(self.event(type_, **fields))
        self.updates += out
        return out

    def turns(self) -> list[Turn]:
        return [u for u in self.updates if isinstance(u, Turn)]

    # --- user side ----------------------------------------------------------------------

    def user_speech(self, item_id: str, previous: str | None, start_ms: int = 1000,
                    end_ms: int = 2400) -> None:
        """speech_started .. conversation.item.done of 11.2 (no transcription events)."""
        self.send("input_audio_buffer.speech_started", audio_start_ms=start_ms, item_id=item_id)
        self.send("input_audio_buffer.speech_stopped", audio_end_ms=end_ms, item_id=item_id)
        self.send("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        item = _user_audio_item(item_id)
        self.send("conversation.item.added", item=item, previous_item_id=previous)
        self.send("conversation.item.done", item=item, previous_item_id=previous)

    def transcript(self, item_id: str, text: str) -> list[Update]:
        out: list[Update] = []
        for word in text.split(" "):
            out += self.send("conversation.item.input_audio_transcription.delta",
                             item_id=item_id, content_index=0, delta=word + " ")
        out += self.send("conversation.item.input_audio_transcription.completed",
                         item_id=item_id, content_index=0, transcript=text,
                         usage={"type": "duration", "seconds": 1.4})
        return out

    def user_text(self, item_id: str, previous: str | None, text: str) -> list[Update]:
        item = {"id": item_id, "object": "realtime.item", "type": "message",
                "status": "completed", "role": "user",
                "content": [{"type": "input_text", "text": text}]}
        out = self.send("conversation.item.added", item=item, previous_item_id=previous)
        return out + self.send("conversation.item.done", item=item, previous_item_id=previous)

    # --- assistant side -----------------------------------------------------------------

    def response_start(self, response_id: str, modality: str = "audio") -> None:
        self.send("response.created", response=_response(response_id, "in_progress",
                                                         modality=modality))

    def reply_start(self, response_id: str, item_id: str, previous: str | None,
                    modality: str = "audio") -> None:
        item = _assistant_item(item_id, "in_progress", None, modality)
        self.send("response.output_item.added", response_id=response_id, output_index=0,
                  item=item)
        self.send("conversation.item.added", item=item, previous_item_id=previous)
        part = {"type": modality, "transcript": ""} if modality == "audio" else {
            "type": "text", "text": ""}
        self.send("response.content_part.added", response_id=response_id, item_id=item_id,
                  output_index=0, content_index=0, part=part)
        if modality == "audio":
            self.send("output_audio_buffer.started", response_id=response_id)

    def reply_deltas(self, response_id: str, item_id: str, pieces: list[str],
                     modality: str = "audio") -> list[Update]:
        kind = ("response.output_audio_transcript.delta" if modality == "audio"
                else "response.output_text.delta")
        out: list[Update] = []
        for piece in pieces:
            out += self.send(kind, response_id=response_id, item_id=item_id, output_index=0,
                             content_index=0, delta=piece)
        return out

    def reply_done(self, response_id: str, item_id: str, previous: str | None, text: str,
                   item_status: str = "completed", modality: str = "audio") -> None:
        ids = {"response_id": response_id, "item_id": item_id, "output_index": 0,
               "content_index": 0}
        if modality == "audio":
            self.send("response.output_audio.done", **ids)
            self.send("response.output_audio_transcript.done", **ids, transcript=text)
            self.send("response.content_part.done", **ids,
                      part={"type": "audio", "transcript": text})
        else:
            self.send("response.output_text.done", **ids, text=text)
            self.send("response.content_part.done", **ids, part={"type": "text", "text": text})
        item = _assistant_item(item_id, item_status, text, modality)
        self.send("response.output_item.done", response_id=response_id, output_index=0,
                  item=item)
        self.send("conversation.item.done", item=item, previous_item_id=previous)

    def response_done(self, response_id: str, status: str = "completed",
                      output: list[dict[str, Any]] | None = None,
                      usage: dict[str, Any] | None = None,
                      details: dict[str, Any] | None = None) -> list[Update]:
        return self.send("response.done", response=_response(
            response_id, status, output=output or [], usage=usage or _usage(100, 50),
            details=details))

    def full_reply(self, response_id: str, item_id: str, previous: str | None, text: str,
                   usage: dict[str, Any] | None = None) -> None:
        self.response_start(response_id)
        self.send("rate_limits.updated", rate_limits=[
            {"name": "tokens", "limit": 50000, "remaining": 49000, "reset_seconds": 2.5}])
        self.reply_start(response_id, item_id, previous)
        self.reply_deltas(response_id, item_id, [w + " " for w in text.split(" ")[:-1]]
                          + [text.split(" ")[-1]])
        self.reply_done(response_id, item_id, previous, text)
        self.response_done(response_id, output=[_assistant_item(item_id, "completed", text)],
                           usage=usage)
        self.send("output_audio_buffer.stopped", response_id=response_id)


def _session(transcription: bool) -> dict[str, Any]:
    return {
        "type": "realtime", "object": "realtime.session", "id": "sess_1",
        "model": "gpt-realtime", "output_modalities": ["audio"], "instructions": "",
        "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": None,
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000},
                      "transcription": {"model": "gpt-4o-mini-transcribe"} if transcription
                      else None,
                      "noise_reduction": None,
                      "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                         "prefix_padding_ms": 300, "silence_duration_ms": 200,
                                         "create_response": True, "interrupt_response": True}},
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin",
                       "speed": 1},
        },
    }


def _user_audio_item(item_id: str, transcript: str | None = None) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
            "role": "user", "content": [{"type": "input_audio", "transcript": transcript}]}


def _assistant_item(item_id: str, status: str, text: str | None,
                    modality: str = "audio") -> dict[str, Any]:
    if text is None:
        content: list[dict[str, Any]] = []
    elif modality == "audio":
        content = [{"type": "output_audio", "transcript": text}]
    else:
        content = [{"type": "output_text", "text": text}]
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": status,
            "role": "assistant", "content": content}


def _response(response_id: str, status: str, *, output: list[dict[str, Any]] | None = None,
              usage: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
              modality: str = "audio") -> dict[str, Any]:
    return {"object": "realtime.response", "id": response_id, "status": status,
            "status_details": details, "output": output or [], "conversation_id": "conv_1",
            "output_modalities": [modality], "max_output_tokens": "inf",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000},
                                 "voice": "marin"}},
            "usage": usage, "metadata": None}


# --- tests -------------------------------------------------------------------------------------


def test_voice_turn_in_the_order_of_section_11_2() -> None:
    s = Script()
    s.user_speech("item_U1", None)
    assert s.turns() == []  # transcription is on: the user turn waits for its transcript
    s.transcript("item_U1", "What time is it?")
    s.full_reply("resp_1", "item_A1", "item_U1", "It is noon.")

    kinds = [type(u).__name__ for u in s.updates]
    assert kinds == (["TranscriptDelta"] * 4 + ["Turn"] + ["TranscriptDelta"] * 3
                     + ["Turn", "ResponseFinished"])
    user, assistant = s.turns()
    assert user.role is Role.USER and user.text == "What time is it?"
    assert user.status is TurnStatus.COMPLETED
    assert (user.item_id, user.previous_item_id, user.response_id) == ("item_U1", None, None)
    assert user.audio_ms == 1400.0 and user.usage is None
    assert user.started_at is not None and user.started_at < user.completed_at
    assert assistant == Turn(
        role=Role.ASSISTANT, item_id="item_A1", text="It is noon.",
        status=TurnStatus.COMPLETED, completed_at=assistant.completed_at,
        response_id="resp_1", previous_item_id="item_U1", started_at=assistant.started_at,
        usage=Usage.from_dict(_usage(100, 50)), index=1, generated_text="It is noon.")
    assert (user.index, user.audio_start_ms, user.audio_end_ms) == (0, 1000.0, 2400.0)
    assert user.completed_at < assistant.completed_at
    assert s.updates[-1] == ResponseFinished("resp_1", "completed", None,
                                             Usage.from_dict(_usage(100, 50)))
    deltas = [u for u in s.updates if isinstance(u, TranscriptDelta)]
    assert deltas[0] == TranscriptDelta(Role.USER, "item_U1", "What ")
    assert deltas[-1] == TranscriptDelta(Role.ASSISTANT, "item_A1", "noon.", "resp_1")
    assert s.conv.turns == [user, assistant]


def test_reply_is_held_until_the_earlier_user_transcript_arrives() -> None:
    s = Script()
    s.user_speech("item_U1", "item_A0")
    s.full_reply("resp_1", "item_A1", "item_U1", "Sure, here it is.")
    assert s.turns() == []  # the reply finished first but is held behind the user turn
    assert isinstance(s.updates[-1], ResponseFinished)  # responses are not held
    released = s.transcript("item_U1", "Send me the file")
    turns = [u for u in released if isinstance(u, Turn)]
    assert [(t.role, t.text) for t in turns] == [
        (Role.USER, "Send me the file"), (Role.ASSISTANT, "Sure, here it is.")]
    assert turns[1].completed_at < turns[0].completed_at  # the reply was final earlier


def test_failed_transcription_gives_a_failed_user_turn_and_releases_the_reply() -> None:
    s = Script()
    s.user_speech("item_U1", None)
    s.send("conversation.item.input_audio_transcription.delta", item_id="item_U1",
           content_index=0, delta="mum")
    s.full_reply("resp_1", "item_A1", "item_U1", "Sorry?")
    out = s.send("conversation.item.input_audio_transcription.failed", item_id="item_U1",
                 content_index=0, error={"type": "transcription_error",
                                         "code": "audio_unintelligible",
                                         "message": "Audio unintelligible.", "param": None})
    assert [(t.role, t.status, t.text) for t in out if isinstance(t, Turn)] == [
        (Role.USER, TurnStatus.FAILED, ""), (Role.ASSISTANT, TurnStatus.COMPLETED, "Sorry?")]


def test_without_transcription_the_user_turn_completes_at_item_done() -> None:
    s = Script(transcription=False)
    s.user_speech("item_U1", None)
    s.full_reply("resp_1", "item_A1", "item_U1", "Hello.")
    user, assistant = s.turns()
    assert (user.text, user.status) == ("", TurnStatus.COMPLETED)
    assert assistant.text == "Hello."


def test_without_transcription_a_transcript_in_the_item_is_used() -> None:
    s = Script(transcription=False)
    s.send("input_audio_buffer.committed", item_id="item_U1", previous_item_id=None)
    item = _user_audio_item("item_U1", transcript="typed by the server")
    out = s.send("conversation.item.done", item=item, previous_item_id=None)
    assert [t.text for t in out if isinstance(t, Turn)] == ["typed by the server"]


def test_session_updated_switches_transcription() -> None:
    s = Script(transcription=False)
    s.send("session.updated", session=_session(transcription=True))
    s.user_speech("item_U1", None)
    assert s.turns() == []
    s.transcript("item_U1", "now transcribed")
    assert [t.text for t in s.turns()] == ["now transcribed"]


def test_barge_in_cancels_the_reply_and_keeps_the_partial_text() -> None:
    s = Script()
    s.user_speech("item_U1", None)
    s.transcript("item_U1", "Tell me a story")
    s.response_start("resp_1")
    assert s.conv.response_active and s.conv.active_response_id == "resp_1"
    s.reply_start("resp_1", "item_A1", "item_U1")
    s.reply_deltas("resp_1", "item_A1", ["Once ", "upon ", "a "])
    assert s.conv.last_assistant_item_id == "item_A1"
    assert s.conv.assistant_text("item_A1") == "Once upon a "
    # The user speaks: the server cancels the response and finishes its items early.
    s.send("input_audio_buffer.speech_started", audio_start_ms=5000, item_id="item_U2")
    s.reply_done("resp_1", "item_A1", "item_U1", "Once upon a ", item_status="incomplete")
    assert [t.role for t in s.turns()] == [Role.USER]  # waits for the response's outcome
    details = {"type": "cancelled", "reason": "turn_detected"}
    out = s.response_done("resp_1", status="cancelled", details=details,
                          output=[_assistant_item("item_A1", "incomplete", "Once upon a ")])
    s.send("output_audio_buffer.cleared", response_id="resp_1")
    turn, finished = out
    assert isinstance(turn, Turn)
    assert (turn.status, turn.text) == (TurnStatus.CANCELLED, "Once upon a ")
    assert finished == ResponseFinished("resp_1", "cancelled", details,
                                        Usage.from_dict(_usage(100, 50)))
    assert not s.conv.response_active and s.conv.active_response_id is None


def test_cancel_without_done_events_keeps_the_deltas() -> None:
    s = Script()
    s.response_start("resp_1")
    s.reply_start("resp_1", "item_A1", None)
    s.reply_deltas("resp_1", "item_A1", ["Let me ", "check"])
    out = s.response_done("resp_1", status="cancelled",
                          details={"type": "cancelled", "reason": "client_cancelled"})
    turn = out[0]
    assert isinstance(turn, Turn)
    assert (turn.status, turn.text) == (TurnStatus.CANCELLED, "Let me check")


@pytest.mark.parametrize(
    ("response_status", "item_status", "expected"),
    [
        ("completed", "completed", TurnStatus.COMPLETED),
        ("completed", "incomplete", TurnStatus.INCOMPLETE),
        ("incomplete", "incomplete", TurnStatus.INCOMPLETE),
        ("failed", "incomplete", TurnStatus.FAILED),
        ("cancelled", "completed", TurnStatus.CANCELLED),
    ],
)
def test_the_response_outcome_sets_the_reply_status(
    response_status: str, item_status: str, expected: TurnStatus
) -> None:
    s = Script()
    s.response_start("resp_1")
    s.reply_start("resp_1", "item_A1", None)
    s.reply_done("resp_1", "item_A1", None, "Partial", item_status=item_status)
    s.response_done("resp_1", status=response_status)
    assert [t.status for t in s.turns()] == [expected]


def test_text_turn_of_section_11_6() -> None:
    s = Script()
    out = s.user_text("item_U1", None, "Summarise the news")
    assert [(t.role, t.text, t.status) for t in out if isinstance(t, Turn)] == [
        (Role.USER, "Summarise the news", TurnStatus.COMPLETED)]
    s.response_start("resp_1", modality="text")
    s.reply_start("resp_1", "item_A1", "item_U1", modality="text")
    deltas = s.reply_deltas("resp_1", "item_A1", ["All ", "quiet."], modality="text")
    assert deltas == [TranscriptDelta(Role.ASSISTANT, "item_A1", "All ", "resp_1"),
                      TranscriptDelta(Role.ASSISTANT, "item_A1", "quiet.", "resp_1")]
    s.reply_done("resp_1", "item_A1", "item_U1", "All quiet.", modality="text")
    s.response_done("resp_1")
    assert [t.text for t in s.turns()] == ["Summarise the news", "All quiet."]
    assert len(s.turns()) == 2  # the item's added + done events gave one turn


def test_function_call_of_section_11_3() -> None:
    s = Script()
    s.user_text("item_U1", None, "Weather in Paris?")
    s.response_start("resp_1")
    call = {"id": "item_F1", "object": "realtime.item", "type": "function_call",
            "status": "in_progress", "name": "get_weather", "call_id": "call_1",
            "arguments": ""}
    s.send("response.output_item.added", response_id="resp_1", output_index=0, item=call)
    s.send("conversation.item.added", item=call, previous_item_id="item_U1")
    ids = {"response_id": "resp_1", "item_id": "item_F1", "output_index": 0,
           "call_id": "call_1"}
    s.send("response.function_call_arguments.delta", **ids, delta='{"city":')
    out = s.send("response.function_call_arguments.done", **ids, name="get_weather",
                 arguments='{"city":"Paris"}')
    assert out == [FunctionCallDone("call_1", "get_weather", '{"city":"Paris"}', "item_F1",
                                    "resp_1")]
    done_call = {**call, "status": "completed", "arguments": '{"city":"Paris"}'}
    s.send("response.output_item.done", response_id="resp_1", output_index=0, item=done_call)
    s.send("conversation.item.done", item=done_call, previous_item_id="item_U1")
    out = s.response_done("resp_1", output=[done_call])
    assert [type(u) for u in out] == [ResponseFinished]  # a function call is not a turn
    output_item = {"id": "item_O1", "object": "realtime.item", "type": "function_call_output",
                   "call_id": "call_1", "output": '{"temp": 21}', "status": "completed"}
    s.send("conversation.item.added", item=output_item, previous_item_id="item_F1")
    s.send("conversation.item.done", item=output_item, previous_item_id="item_F1")
    s.full_reply("resp_2", "item_A2", "item_O1", "It is 21 degrees.")
    assert [(t.role, t.text) for t in s.turns()] == [
        (Role.USER, "Weather in Paris?"), (Role.ASSISTANT, "It is 21 degrees.")]


def test_usage_is_summed_over_responses() -> None:
    s = Script(transcription=False)
    s.user_speech("item_U1", None)
    s.full_reply("resp_1", "item_A1", "item_U1", "One.", usage=_usage(100, 40))
    s.user_speech("item_U2", "item_A1")
    s.full_reply("resp_2", "item_A2", "item_U2", "Two.", usage=_usage(300, 60))
    total = s.conv.usage_total
    assert (total.input_tokens, total.output_tokens, total.total_tokens) == (400, 100, 500)
    assert total.input_audio_tokens == 380 and total.output_audio_tokens == 90
    assert total == Usage.from_dict(_usage(100, 40)) + Usage.from_dict(_usage(300, 60))
    assert [t.usage for t in s.turns() if t.role is Role.ASSISTANT] == [
        Usage.from_dict(_usage(100, 40)), Usage.from_dict(_usage(300, 60))]


def test_flush_releases_held_turns_and_marks_pending_ones_incomplete() -> None:
    s = Script()
    s.user_speech("item_U1", None)
    s.send("conversation.item.input_audio_transcription.delta", item_id="item_U1",
           content_index=0, delta="half a sent")
    s.full_reply("resp_1", "item_A1", "item_U1", "Hm?")
    s.response_start("resp_2")
    s.reply_start("resp_2", "item_A2", "item_A1")
    s.reply_deltas("resp_2", "item_A2", ["I was "])
    assert s.turns() == []
    flushed = s.conv.flush()
    assert [(t.item_id, t.status, t.text) for t in flushed] == [
        ("item_U1", TurnStatus.INCOMPLETE, "half a sent"),
        ("item_A1", TurnStatus.COMPLETED, "Hm?"),
        ("item_A2", TurnStatus.INCOMPLETE, "I was "),
    ]
    assert s.conv.flush() == []
    assert s.conv.turns == flushed


def test_deleting_a_pending_item_releases_the_turns_behind_it() -> None:
    s = Script()
    s.user_speech("item_U1", None)
    s.full_reply("resp_1", "item_A1", "item_U1", "Yes.")
    out = s.send("conversation.item.deleted", item_id="item_U1")
    assert [t.item_id for t in out if isinstance(t, Turn)] == ["item_A1"]


def test_items_are_ordered_by_previous_item_id_not_arrival() -> None:
    s = Script()
    s.user_speech("item_U2", "item_X")  # predecessor unknown: goes to the end
    s.user_text("item_U1", "root", "first")  # inserted at the start of the conversation
    assert [t.text for t in s.turns()] == ["first"]
    s.user_text("item_U3", "item_U2", "third")
    assert [t.text for t in s.turns()] == ["first"]  # held behind item_U2
    out = s.transcript("item_U2", "second")
    assert [t.text for t in out if isinstance(t, Turn)] == ["second", "third"]
    assert [t.previous_item_id for t in s.turns()] == ["root", "item_X", "item_U2"]


def test_a_reply_only_seen_in_response_done_becomes_a_turn() -> None:
    s = Script()
    s.response_start("resp_1")
    out = s.response_done("resp_1", output=[_assistant_item("item_A9", "completed", "Late.")])
    assert [(t.item_id, t.text, t.status) for t in out if isinstance(t, Turn)] == [
        ("item_A9", "Late.", TurnStatus.COMPLETED)]


def test_client_created_assistant_history_is_a_turn_without_response() -> None:
    s = Script()
    item = _assistant_item("item_H1", "completed", "Earlier answer.", modality="text")
    out = s.send("conversation.item.added", item=item, previous_item_id=None)
    turn = out[0]
    assert isinstance(turn, Turn)
    assert (turn.role, turn.text, turn.response_id, turn.usage) == (
        Role.ASSISTANT, "Earlier answer.", None, None)


def test_audio_length_of_the_reply_from_deltas_and_truncation() -> None:
    s = Script()
    s.response_start("resp_1")
    s.reply_start("resp_1", "item_A1", None)
    ids = {"response_id": "resp_1", "item_id": "item_A1", "output_index": 0,
           "content_index": 0}
    chunk = "AAAA" * 1200  # 3600 bytes of pcm16 at 24 kHz = 75 ms
    s.send("response.output_audio.delta", **ids, delta=chunk)
    s.send("response.output_audio.delta", **ids, delta=chunk[:-4] + "AA==")  # 3598 bytes
    s.reply_done("resp_1", "item_A1", None, "Hello there")
    s.response_done("resp_1")
    assert s.turns()[0].audio_ms == pytest.approx(7198 / 48)

    s.response_start("resp_2")
    s.reply_start("resp_2", "item_A2", "item_A1")
    s.send("conversation.item.truncated", item_id="item_A2", content_index=0,
           audio_end_ms=640)
    s.response_done("resp_2", status="cancelled")
    assert s.turns()[1].audio_ms == 640.0


def test_buffer_cleared_forgets_unfinished_speech() -> None:
    s = Script()
    s.send("input_audio_buffer.speech_started", audio_start_ms=100, item_id="item_U1")
    s.send("input_audio_buffer.cleared")
    s.send("input_audio_buffer.committed", item_id="item_U1", previous_item_id=None)
    s.transcript("item_U1", "x")
    assert s.turns()[0].audio_ms is None


def test_timeout_triggered_gives_the_idle_turn_its_length() -> None:
    s = Script(transcription=False)
    s.send("input_audio_buffer.timeout_triggered", audio_start_ms=1000, audio_end_ms=7000,
           item_id="item_U1")
    s.send("input_audio_buffer.committed", item_id="item_U1", previous_item_id=None)
    s.send("conversation.item.done", item=_user_audio_item("item_U1"), previous_item_id=None)
    assert s.turns()[0].audio_ms == 6000.0


def test_events_that_do_not_concern_turns_give_no_updates() -> None:
    s = Script()
    quiet: list[tuple[str, dict[str, Any]]] = [
        ("conversation.created", {"conversation": {"id": "conv_1",
                                                   "object": "realtime.conversation"}}),
        ("error", {"error": {"type": "invalid_request_error", "code": "x", "message": "m"}}),
        ("mcp_list_tools.in_progress", {"item_id": "mcp_1"}),
        ("conversation.item.retrieved", {"item": _user_audio_item("item_U9")}),
        ("response.done", {"response": {"object": "realtime.response"}}),
    ]
    for type_, fields in quiet:
        assert s.send(type_, **fields) == []
    assert s.conv.feed(parse_server_event({"type": "brand.new", "event_id": "e"})) == []
    assert s.conv.assistant_text("nope") == ""
