"""The sans-I/O client session: requests, the reply queue, playout, timeouts, without I/O.

Every server event fed here is first validated against the official openai SDK's types, and
every client event the session queues is validated too: the session is driven exactly as the
call drives it, with a manual clock.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import Field, TypeAdapter

from livetalk.errors import CallClosedError, ResponseFailedError, ServerError
from livetalk.protocol.client import (
    REPLY_METADATA_KEY,
    ClientSession,
    Rejected,
    ReplyDone,
    ReplyFailed,
    RequestDone,
    RequestFailed,
)
from livetalk.protocol.conversation import (
    DEFAULT_CHARS_PER_S,
    FunctionCallDone,
    Playout,
    Turn,
    TurnStatus,
    heard_text,
)

SERVER = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])
CLIENT = TypeAdapter(Annotated[RealtimeClientEvent, Field(discriminator="type")])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _session(create_response: bool = True, transcription: bool = False) -> dict[str, Any]:
    return {"type": "realtime", "object": "realtime.session", "id": "sess_1",
            "model": "gpt-realtime-2.1", "output_modalities": ["audio"], "instructions": "",
            "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": None,
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "transcription": {"model": "gpt-transcribe"} if transcription
                                else None, "noise_reduction": None,
                                "turn_detection": {"type": "server_vad",
                                                   "create_response": create_response,
                                                   "interrupt_response": True}},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000},
                                 "voice": "marin", "speed": 1}}}


class Peer:
    """Builds SDK-valid server events, feeds them, and checks what the session sends."""

    def __init__(self, playout: Playout = Playout.SERVER, **session: Any) -> None:
        self.clock = Clock()
        self.s = ClientSession(playout=playout, clock=self.clock, transcript_timeout_s=5.0)
        self.outputs: list[Any] = []
        self.sent: list[dict[str, Any]] = []
        self._n = 0
        self.feed("session.created", session=_session(**session))

    def feed(self, type_: str, **fields: Any) -> list[Any]:
        self._n += 1
        data = {"type": type_, "event_id": f"event_{self._n}", **fields}
        SERVER.validate_python(data)
        out = self.s.receive(data)
        self.outputs += out
        self.drain()
        return out

    def tick(self, seconds: float) -> list[Any]:
        self.clock.now += seconds
        out = self.s.tick()
        self.outputs += out
        self.drain()
        return out

    def drain(self) -> list[dict[str, Any]]:
        new = [e.to_dict() for e in self.s.data_to_send()]
        for event in new:
            CLIENT.validate_python(event)
        self.sent += new
        return new

    def of(self, kind: type) -> list[Any]:
        return [o for o in self.outputs if isinstance(o, kind)]

    def creates(self) -> list[dict[str, Any]]:
        self.drain()
        return [e for e in self.sent if e["type"] == "response.create"]

    # --- a whole reply -------------------------------------------------------------------
    def reply(self, rid: str, iid: str, text: str, *, tag: str | None, audio: bool = True,
              previous: str | None = None, status: str = "completed") -> None:
        metadata = {REPLY_METADATA_KEY: tag} if tag else None
        self.feed("response.created", response=_response(rid, "in_progress", metadata=metadata))
        item = {"id": iid, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        self.feed("response.output_item.added", response_id=rid, output_index=0, item=item)
        self.feed("conversation.item.added", item=item, previous_item_id=previous)
        kind = "audio" if audio else "text"
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        ids = {"response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0}
        self.feed("response.content_part.added", **ids, part=part)
        if audio:
            self.feed("output_audio_buffer.started", response_id=rid)
        delta = "response.output_audio_transcript.delta" if audio else "response.output_text.delta"
        for i, word in enumerate(text.split()):
            self.feed(delta, **ids, delta=word if i == 0 else " " + word)
        done = {"id": iid, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "completed", "content": [
                    {"type": "output_audio", "transcript": text} if audio
                    else {"type": "output_text", "text": text}]}
        self.feed("conversation.item.done", item=done, previous_item_id=previous)
        self.feed("response.output_item.done", response_id=rid, output_index=0, item=done)
        self.feed("response.done", response=_response(rid, status, output=[done],
                                                      metadata=metadata, kind=kind))


def _response(rid: str, status: str, *, output: list[Any] | None = None,
              metadata: dict[str, Any] | None = None, kind: str = "audio",
              details: dict[str, Any] | None = None) -> dict[str, Any]:
    usage = {"total_tokens": 30, "input_tokens": 20, "output_tokens": 10} if status != (
        "in_progress") else None
    return {"object": "realtime.response", "id": rid, "status": status,
            "status_details": details, "output": output or [], "conversation_id": "conv_1",
            "output_modalities": [kind], "max_output_tokens": "inf",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000},
                                 "voice": "marin"}},
            "usage": usage, "metadata": metadata}


# ------------------------------------------------------------------------------ requests
def test_session_update_is_answered_in_order_or_refused_with_its_event_id() -> None:
    p = Peer()
    first = p.s.update_session({"instructions": "a"})
    second = p.s.update_session({"instructions": "b"})
    assert [e["session"] for e in p.drain() or p.sent] == [
        {"instructions": "a", "type": "realtime"}, {"instructions": "b", "type": "realtime"}]
    p.feed("error", error={"type": "invalid_request_error", "code": "unknown_parameter",
                           "message": "Unknown parameter: 'session.x'.", "param": "session.x",
                           "event_id": second})
    p.feed("session.updated", session=_session())
    done, failed = p.of(RequestDone), p.of(RequestFailed)
    assert [d.request_id for d in done] == [first]
    assert failed[0].request_id == second and isinstance(failed[0].error, ServerError)
    assert failed[0].error.code == "unknown_parameter"


def test_an_error_before_session_created_is_a_refusal() -> None:
    s = ClientSession()
    out = s.receive({"type": "error", "event_id": "e1", "error": {
        "type": "invalid_request_error", "code": "invalid_api_key", "message": "no",
        "param": None, "event_id": None}})
    assert isinstance(out[1], Rejected) and out[1].error.code == "invalid_api_key"
    assert not s.ready


# ------------------------------------------------------------------------------ the reply queue
def test_replies_wait_their_turn_and_resolve_after_their_audio_stopped() -> None:
    p = Peer()
    one = p.s.request_response({"instructions": "say one"})
    two = p.s.request_response({"instructions": "say two"})
    assert [c["response"]["metadata"][REPLY_METADATA_KEY] for c in p.creates()] == [one]
    p.reply("resp_1", "item_1", "one", tag=one)
    assert not p.of(ReplyDone)  # generated, still playing: not finished for the host
    assert [c["response"]["metadata"][REPLY_METADATA_KEY] for c in p.creates()] == [one, two]
    p.clock.now += 2.0
    p.feed("output_audio_buffer.stopped", response_id="resp_1")
    (done,) = p.of(ReplyDone)
    assert done.reply_id == one and done.turn is not None
    assert (done.turn.text, done.turn.status) == ("one", TurnStatus.COMPLETED)
    assert done.turn.audio_ms == pytest.approx(2000)
    assert not p.s.quiet  # the second reply is in flight
    p.reply("resp_2", "item_2", "two", tag=two, audio=False)
    assert [d.reply_id for d in p.of(ReplyDone)] == [one, two]  # no audio: done at once
    assert p.s.quiet


def test_a_reply_refused_for_an_active_response_goes_back_to_the_queue() -> None:
    p = Peer()
    reply = p.s.request_response()
    create_id = p.creates()[0]["event_id"]
    # the server answers a committed turn at the same moment: ours is refused
    user = {"id": "item_u", "object": "realtime.item", "type": "message", "role": "user",
            "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
    p.feed("input_audio_buffer.committed", item_id="item_u", previous_item_id=None)
    p.feed("conversation.item.done", item=user, previous_item_id=None)
    p.feed("response.created", response=_response("resp_auto", "in_progress"))
    p.feed("error", error={"type": "invalid_request_error",
                           "code": "conversation_already_has_active_response",
                           "message": "busy", "param": None, "event_id": create_id})
    assert not p.of(ReplyFailed) and len(p.creates()) == 1
    p.feed("response.done", response=_response("resp_auto", "completed"))
    assert len(p.creates()) == 2  # sent again once the slot is free
    p.reply("resp_2", "item_2", "hi", tag=reply, audio=False)
    assert [d.reply_id for d in p.of(ReplyDone)] == [reply]


def test_a_wrongly_bound_untagged_response_is_undone_by_the_refusal() -> None:
    p = Peer()
    p.s.request_response()
    create_id = p.creates()[0]["event_id"]
    p.feed("response.created", response=_response("resp_x", "in_progress"))  # not ours
    p.feed("error", error={"type": "invalid_request_error",
                           "code": "conversation_already_has_active_response",
                           "message": "busy", "param": None, "event_id": create_id})
    p.feed("response.done", response=_response("resp_x", "completed"))
    assert not p.of(ReplyDone) and len(p.creates()) == 2


def test_other_refusals_and_failures_fail_the_reply() -> None:
    p = Peer()
    refused = p.s.request_response({"output_modalities": ["text", "audio"]})
    p.feed("error", error={"type": "invalid_request_error", "code": "invalid_value",
                           "message": "bad", "param": "response.output_modalities",
                           "event_id": p.creates()[0]["event_id"]})
    failing = p.s.request_response()
    p.feed("response.created", response=_response("resp_f", "in_progress",
                                                  metadata={REPLY_METADATA_KEY: failing}))
    p.feed("response.done", response=_response(
        "resp_f", "failed", metadata={REPLY_METADATA_KEY: failing},
        details={"type": "failed", "error": {"type": "server_error", "code": "brain_error",
                                             "message": "the brain failed"}}))
    (first, second) = p.of(ReplyFailed)
    assert first.reply_id == refused and isinstance(first.error, ServerError)
    assert second.reply_id == failing and isinstance(second.error, ResponseFailedError)
    assert second.error.code == "brain_error" and "brain failed" in str(second.error)


def test_an_untagged_response_is_ours_unless_the_server_owes_a_turn_one() -> None:
    p = Peer()
    reply = p.s.request_response()
    p.feed("input_audio_buffer.committed", item_id="item_u", previous_item_id=None)
    p.feed("response.created", response=_response("resp_auto", "in_progress"))  # the VAD's
    p.feed("response.done", response=_response("resp_auto", "completed"))
    p.feed("response.created", response=_response("resp_mine", "in_progress"))  # untagged
    p.feed("response.done", response=_response("resp_mine", "completed"))
    assert [d.reply_id for d in p.of(ReplyDone)] == [reply]


def test_tool_outputs_continue_the_same_reply() -> None:
    p = Peer()
    reply = p.s.request_response()
    p.feed("response.created", response=_response("resp_1", "in_progress",
                                                  metadata={REPLY_METADATA_KEY: reply}))
    call = {"id": "item_fc", "object": "realtime.item", "type": "function_call",
            "status": "completed", "name": "weather", "call_id": "call_1", "arguments": "{}"}
    p.feed("response.function_call_arguments.done", response_id="resp_1", item_id="item_fc",
           output_index=0, call_id="call_1", name="weather", arguments="{}")
    (fc,) = p.of(FunctionCallDone)
    p.s.expect_tool_outputs(fc.response_id)
    p.feed("response.done", response=_response("resp_1", "completed", output=[call],
                                               metadata={REPLY_METADATA_KEY: reply}))
    assert not p.of(ReplyDone)  # waiting for the tool's output and the follow-up
    assert p.s.send_tool_outputs("resp_1", [("call_1", '"sunny"')]) == reply
    sent = p.drain() or p.sent
    assert [e["type"] for e in p.sent[-2:]] == ["conversation.item.create", "response.create"]
    assert p.sent[-2]["item"] == {"type": "function_call_output", "call_id": "call_1",
                                  "output": '"sunny"'}
    p.reply("resp_2", "item_2", "It is sunny.", tag=reply, audio=False)
    (done,) = p.of(ReplyDone)
    assert done.reply_id == reply and done.turn is not None and done.turn.text == "It is sunny."
    assert sent is not None


def test_close_fails_open_replies_unless_they_move_to_a_new_session() -> None:
    p = Peer()
    a = p.s.request_response()
    b = p.s.request_response()
    moved = p.s.unfinished_replies()
    assert [r for r, _ in moved] == [a, b]
    out = p.s.close()
    assert [(o.reply_id, type(o.error)) for o in out if isinstance(o, ReplyFailed)] == [
        (a, CallClosedError), (b, CallClosedError)]
    with pytest.raises(CallClosedError):
        p.s.request_response()
    fresh = Peer()
    fresh.s.adopt_replies(moved)
    assert [c["response"]["metadata"][REPLY_METADATA_KEY] for c in fresh.creates()] == [a]


# ------------------------------------------------------------------------------ playout
def test_server_playout_cleared_after_done_is_a_cancelled_turn_with_the_words_heard() -> None:
    p = Peer()
    reply = p.s.request_response()
    text = "one two three four five six seven eight nine ten"
    p.reply("resp_1", "item_1", text, tag=reply)
    assert p.s.assistant_speaking
    p.clock.now += 1.0  # one second played, then the user barged in
    p.feed("input_audio_buffer.speech_started", audio_start_ms=9000, item_id="item_u2")
    p.feed("output_audio_buffer.cleared", response_id="resp_1")
    (done,) = p.of(ReplyDone)
    turn = done.turn
    assert turn is not None and turn.status is TurnStatus.CANCELLED
    assert turn.generated_text == text and turn.audio_ms == pytest.approx(1000)
    assert turn.text == heard_text(text, 1000, total_ms=None)
    assert len(turn.text) <= DEFAULT_CHARS_PER_S + len("three") and text.startswith(turn.text)
    assert not p.s.assistant_speaking


def test_the_speaking_rate_is_learned_from_replies_that_played_out() -> None:
    p = Peer()
    p.reply("resp_1", "item_1", "x" * 40, tag=None)
    p.clock.now += 2.0  # 40 characters in 2 s
    p.feed("output_audio_buffer.stopped", response_id="resp_1")
    assert p.s.conversation.chars_per_s == pytest.approx(20.0)


def test_interrupt_on_server_playout_cancels_and_clears() -> None:
    p = Peer()
    p.feed("response.created", response=_response("resp_1", "in_progress"))
    p.s.interrupt()
    assert [e["type"] for e in p.drain()] == ["response.cancel", "output_audio_buffer.clear"]


def test_client_playout_is_cut_by_a_barge_in_and_truncated_where_it_was() -> None:
    p = Peer(Playout.CLIENT)
    p.reply("resp_1", "item_1", "one two three four", tag=None, audio=False)
    # audio deltas: 2 s of 24 kHz PCM16 (base64 of 96000 bytes), all at once
    import base64

    chunk = base64.b64encode(b"\0" * 48000).decode()
    p2 = Peer(Playout.CLIENT)
    p2.feed("response.created", response=_response("resp_a", "in_progress"))
    item = {"id": "item_a", "object": "realtime.item", "type": "message", "role": "assistant",
            "status": "in_progress", "content": []}
    p2.feed("response.output_item.added", response_id="resp_a", output_index=0, item=item)
    ids = {"response_id": "resp_a", "item_id": "item_a", "output_index": 0,
           "content_index": 0}
    for _ in range(2):
        p2.feed("response.output_audio.delta", **ids, delta=chunk)
    p2.feed("response.output_audio_transcript.delta", **ids, delta="one two three four")
    p2.feed("response.done", response=_response("resp_a", "completed", output=[
        {**item, "status": "completed",
         "content": [{"type": "output_audio", "transcript": "one two three four"}]}]))
    assert p2.s.assistant_speaking
    p2.clock.now += 0.5
    p2.feed("input_audio_buffer.speech_started", audio_start_ms=100, item_id="item_u")
    (truncate,) = [e for e in p2.sent if e["type"] == "conversation.item.truncate"]
    assert truncate == {"type": "conversation.item.truncate", "event_id": truncate["event_id"],
                        "item_id": "item_a", "content_index": 0, "audio_end_ms": 500}
    (turn,) = [o for o in p2.outputs if isinstance(o, Turn)]
    assert turn.status is TurnStatus.CANCELLED and turn.audio_ms == 500
    assert turn.text == "one two"  # a quarter of the audio: the word being said counts


def test_client_playout_ends_when_its_audio_had_time_to_play() -> None:
    import base64

    p = Peer(Playout.CLIENT)
    p.feed("response.created", response=_response("resp_a", "in_progress"))
    item = {"id": "item_a", "object": "realtime.item", "type": "message", "role": "assistant",
            "status": "completed", "content": [{"type": "output_audio", "transcript": "hi"}]}
    ids = {"response_id": "resp_a", "item_id": "item_a", "output_index": 0, "content_index": 0}
    p.feed("response.output_audio.delta", **ids, delta=base64.b64encode(b"\0" * 48000).decode())
    p.feed("response.done", response=_response("resp_a", "completed", output=[item]))
    assert not [o for o in p.outputs if isinstance(o, Turn)]
    assert p.s.next_deadline() == pytest.approx(p.clock.now + 1.0)
    p.tick(1.0)
    (turn,) = [o for o in p.outputs if isinstance(o, Turn)]
    assert turn.status is TurnStatus.COMPLETED and turn.audio_ms == 1000


# ------------------------------------------------------------------------------ time
def test_a_transcription_that_never_ends_is_given_up_after_the_timeout() -> None:
    p = Peer(transcription=True)
    user = {"id": "item_u", "object": "realtime.item", "type": "message", "role": "user",
            "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
    p.feed("input_audio_buffer.committed", item_id="item_u", previous_item_id=None)
    p.feed("conversation.item.done", item=user, previous_item_id=None)
    p.feed("conversation.item.input_audio_transcription.delta", item_id="item_u",
           content_index=0, delta="hello")
    assert not p.s.quiet and "a turn is not finished" in " ".join(p.s.pending())
    assert p.s.next_deadline() == pytest.approx(p.clock.now + 5.0)
    assert not p.tick(4.0)
    (turn,) = [o for o in p.tick(1.0) if isinstance(o, Turn)]
    assert (turn.status, turn.text) == (TurnStatus.INCOMPLETE, "hello")


def test_quiet_counts_speech_holds_queued_replies_and_playing_audio() -> None:
    p = Peer()
    assert p.s.quiet
    p.feed("input_audio_buffer.speech_started", audio_start_ms=0, item_id="item_u")
    assert p.s.pending() == ["the user is speaking"]
    p.feed("input_audio_buffer.cleared")
    p.s.hold("route:item_u")
    assert "answer(s) being prepared by the host" in p.s.pending()[0]
    p.s.release("route:item_u")
    assert p.s.quiet
    p.feed("input_audio_buffer.speech_stopped", audio_end_ms=10, item_id="item_v")
    assert not p.s.quiet
    p.tick(6.0)  # a speech_stopped no commit followed stops counting
    assert p.s.quiet


def test_replayed_history_is_sent_but_never_released_again() -> None:
    p = Peer()
    history = [Turn(role="user", item_id="old_1", text="hi", status=TurnStatus.COMPLETED,
                    completed_at=1.0, index=0),  # type: ignore[arg-type]
               Turn(role="assistant", item_id="old_2", text="hello", status=TurnStatus.COMPLETED,
                    completed_at=2.0, index=1)]  # type: ignore[arg-type]
    p.s.replay(history)
    created = [e for e in p.drain() or p.sent if e["type"] == "conversation.item.create"]
    assert [c["item"]["content"][0]["text"] for c in created] == ["hi", "hello"]
    for event in created:
        item = {**event["item"], "object": "realtime.item", "status": "completed"}
        p.feed("conversation.item.added", item=item, previous_item_id=None)
        p.feed("conversation.item.done", item=item, previous_item_id=None)
    assert not [o for o in p.outputs if isinstance(o, Turn)]


def test_a_reply_queued_behind_another_ones_audio_ends_after_its_own_audio() -> None:
    """Server playout queues the second reply's audio after the first: its turn waits for its
    own started/stopped, not for its response.done."""
    p = Peer()
    p.reply("resp_1", "item_1", "first reply", tag=None)
    p.feed("output_audio_buffer.started", response_id="resp_1")
    second = {"id": "item_2", "object": "realtime.item", "type": "message",
              "role": "assistant", "status": "completed",
              "content": [{"type": "output_audio", "transcript": "second"}]}
    ids = {"response_id": "resp_2", "item_id": "item_2", "output_index": 0, "content_index": 0}
    p.feed("response.created", response=_response("resp_2", "in_progress"))
    p.feed("response.output_item.added", response_id="resp_2", output_index=0,
           item={**second, "status": "in_progress", "content": []})
    p.feed("response.content_part.added", **ids, part={"type": "audio", "transcript": ""})
    p.feed("response.output_item.done", response_id="resp_2", output_index=0, item=second)
    p.feed("response.done", response=_response("resp_2", "completed", output=[second]))
    p.tick(10.0)  # long after: still queued behind the first reply's audio
    assert [t.item_id for t in p.outputs if isinstance(t, Turn)] == []
    p.feed("output_audio_buffer.stopped", response_id="resp_1")
    p.feed("output_audio_buffer.started", response_id="resp_2")
    p.clock.now += 1.5
    p.feed("output_audio_buffer.stopped", response_id="resp_2")
    turns = [t for t in p.outputs if isinstance(t, Turn)]
    assert [t.item_id for t in turns] == ["item_1", "item_2"]
    assert turns[1].audio_ms == pytest.approx(1500)
