"""Real Realtime API traffic (``tests/corpus/``) replayed through livetalk's public API.

Every replay runs over loopback against a peer from ``tests/replay.py`` that plays the
server side of a recording; the assertions are what a user of livetalk should see (turns,
usage, typed errors). The second half plays the recordings' client side to the local server
and compares its answers with the recorded ones.

Each divergence issue 11 found has a test here that expects the real behaviour (it failed
before the fix, and passes now; docs/fidelity.md lists them). Scenarios that are composed
(recorded frames plus documented events, because no capture of them exists) say so in their
docstring.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

import livetalk
from livetalk import sideband
from livetalk.call import Reconnect
from livetalk.errors import (
    APIStatusError,
    AuthenticationError,
    ConfigError,
    ConnectTimeout,
    LivetalkError,
)
from livetalk.protocol import wire
from livetalk.protocol.conversation import Conversation, Role, TurnStatus
from livetalk.transport.signaling import create_call
from livetalk.transport.tracks import OutboundAudioTrack
from tests.replay import (
    CORPUS,
    Frame,
    Recording,
    WebRTCReplay,
    WebSocketReplay,
    client,
    collapse,
    gate,
    load_recording,
    load_sdp,
    play_client,
    recording_names,
    sdp_names,
    serve_on_loopback,
    server,
)

TEXT = "ws_text_turns_2026-09-18_llmgw"
TRANSCRIPTION = "ws_transcription_2026-09-18_llmgw"
SIP = "ws_audio_turns_2025-12-31_sip_gateway"
TAIL = "ws_response_tail_2025-12_sip_gateway"
REJECTIONS = recording_names("ws_reject_")
KEY = "sk-test-not-a-real-key"
SIP_INSTRUCTIONS = "You are a polite AI assistant on a phone call. Keep answers short."
TRANSCRIBED = {"audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}}}


def _without_bogus_update(rec: Recording) -> Recording:
    """The text session without the client frames livetalk does not send (bad inputs)."""
    return rec.with_frames([
        f for f in rec.frames
        if not (f.dir == "out" and f.event is not None
                and "bogus_field" in f.event.get("session", {}))
    ])


# =========================================================================== the corpus itself
def test_every_corpus_file_is_described_with_its_source() -> None:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".sdp", ".jsonl"))
    assert len(files) >= 12
    for name in files:
        row = next((line for line in readme.splitlines() if f"`{name}`" in line), None)
        assert row is not None, f"{name} is not described in tests/corpus/README.md"
        assert re.search(r"commit `[0-9a-f]{40}`", row) or "| same" in row, \
            f"{name}: no source commit named"


def test_recorded_server_events_validate_against_the_official_sdk(validator: Any) -> None:
    """The corpus is GA traffic: every recorded server event fits openai-python's types."""
    names = recording_names()
    for name in names:
        for event in load_recording(name).server_events:
            validator("in", event)
    validator.assert_valid()
    assert len(validator.seen) > 80


def test_recorded_server_events_parse_as_known_events() -> None:
    for name in recording_names():
        for event in load_recording(name).server_events:
            parsed = wire.parse_server_event(event)
            assert type(parsed).__name__ != "UnknownEvent", event["type"]
            assert parsed.to_dict()["type"] == event["type"]


def test_recorded_usage_is_read_with_cached_tokens_per_modality() -> None:
    """response.done usage as recorded (text session and a SIP voice reply), summed."""
    conversation = Conversation()
    for name in (TEXT, TAIL):
        for event in load_recording(name).server_events:
            conversation.feed(wire.parse_server_event(event))
    usage = conversation.usage_total
    assert usage.input_tokens == 120 + 139 + 132
    assert usage.output_tokens == 7 + 5 + 188
    assert usage.cached_text_tokens == 64 + 128
    assert usage.cached_audio_tokens == 64
    assert usage.input_audio_tokens == 73
    assert usage.output_audio_tokens == 147


# =========================================================================== SDP answers
class _CallsEndpoint:
    """A loopback ``POST /v1/realtime/calls`` answering 201 with a recorded answer."""

    def __init__(self, sdp: str, location: str) -> None:
        self.sdp, self.location, self.port = sdp, location, 0
        self._runner: web.AppRunner | None = None

    async def _answer(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201, body=self.sdp.encode(), content_type="application/sdp",
                            headers={"Location": self.location})

    async def __aenter__(self) -> _CallsEndpoint:
        app = web.Application()
        app.router.add_post("/v1/realtime/calls", self._answer)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


CALL_ID = "rtc_u1_9c6574da8b8a41a18da9308f4ad974ce"  # the shape of ids seen in Location


@pytest.mark.parametrize("answer", sdp_names())
@pytest.mark.parametrize("location", [f"/v1/realtime/calls/{CALL_ID}",
                                      f"https://api.openai.com/v1/realtime/calls/{CALL_ID}"])
async def test_signaling_reads_a_recorded_201_reply(answer: str, location: str) -> None:
    import httpx

    sdp = load_sdp(answer)
    async with _CallsEndpoint(sdp, location) as endpoint, httpx.AsyncClient() as http:
        reply = await create_call(http, base_url=f"http://127.0.0.1:{endpoint.port}/v1",
                                  api_key=KEY, offer_sdp="v=0\r\n")
    assert reply.sdp == sdp
    assert reply.call_id == CALL_ID


async def test_signaling_takes_the_call_id_whatever_its_prefix() -> None:
    import httpx

    location = "/v1/realtime/calls/call_9c6574da8b8a41a18da9308f4ad974ce"
    async with _CallsEndpoint(load_sdp(sdp_names()[0]), location) as endpoint, \
            httpx.AsyncClient() as http:
        reply = await create_call(http, base_url=f"http://127.0.0.1:{endpoint.port}/v1",
                                  api_key=KEY, offer_sdp="v=0\r\n")
    assert reply.call_id == "call_9c6574da8b8a41a18da9308f4ad974ce"


async def _offer_like_livetalk() -> RTCPeerConnection:
    """A peer built as livetalk's WebRTC transport builds it, with its offer set."""
    from livetalk.transport.ice import loopback_candidates

    pc = RTCPeerConnection()
    pc.createDataChannel("oai-events")
    pc.addTrack(OutboundAudioTrack())
    with loopback_candidates(True):
        await pc.setLocalDescription(await pc.createOffer())
    return pc


@pytest.mark.parametrize("answer", sdp_names())
async def test_aiortc_accepts_each_recorded_answer(answer: str) -> None:
    """setRemoteDescription takes every recorded answer as is (mids 0/1 match aiortc's)."""
    pc = await _offer_like_livetalk()
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=load_sdp(answer), type="answer"))
        remote = pc.remoteDescription
        assert remote is not None and remote.type == "answer"
        assert pc.getTransceivers()[0].currentDirection == "sendrecv"
        parsed = SessionDescription.parse(remote.sdp)
        audio, data = parsed.media
        assert (audio.rtp.muxId, data.rtp.muxId) == ("0", "1")
        assert audio.rtp.codecs[0].mimeType == "audio/opus"
        assert audio.dtls is not None and audio.dtls.role == "client"  # a=setup:active
        assert audio.dtls.fingerprints, "the session-level fingerprint was not read"
        assert audio.ice.iceLite == ("icelite" in answer)
        assert data.sctpCapabilities is not None
    finally:
        await pc.close()


# =========================================================================== WebSocket replays
async def _connect_ws(peer: WebSocketReplay, **kwargs: Any) -> livetalk.Call:
    kwargs.setdefault("connect_timeout", 5.0)
    return await livetalk.connect(transport="websocket", base_url=peer.base_url, api_key=KEY,
                                  **kwargs)


@pytest.mark.slow
async def test_text_session_replay_gives_turns_usage_and_errors() -> None:
    """Two recorded text turns (gpt-realtime-mini) and the server's answers to bad inputs."""
    rec = _without_bogus_update(load_recording(TEXT))
    async with WebSocketReplay(rec) as peer:
        call = await _connect_ws(peer, model="gpt-realtime-mini",
                                 session={"output_modalities": ["text"]})
        async with call:
            deltas: list[str] = []

            async def collect() -> None:
                async for delta in call.transcript_deltas():
                    deltas.append(delta.delta)

            reader = asyncio.ensure_future(collect())
            call.add_text("Say hi in three words")
            call.create_response()
            await call.wait_for_turns(2, timeout=10)
            call.add_text("Now say bye in two words")
            call.create_response()
            turns = await call.wait_for_turns(4, timeout=10)
            await asyncio.wait_for(peer.player.finished.wait(), 10)
            assert [(t.role, t.text, t.status) for t in turns] == [
                (Role.USER, "Say hi in three words", TurnStatus.COMPLETED),
                (Role.ASSISTANT, "Hi there, friend!", TurnStatus.COMPLETED),
                (Role.USER, "Now say bye in two words", TurnStatus.COMPLETED),
                (Role.ASSISTANT, "See ya!", TurnStatus.COMPLETED),
            ]
            assert turns[1].usage is not None and turns[1].usage.cached_tokens == 64
            usage = call.usage
            assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (259, 192, 12)
            assert [(e.code, e.event_id) for e in call.errors] == [
                ("invalid_value", None), ("unknown_parameter", None),
                ("invalid_json", None), ("invalid_event", None)]
            assert "Unknown parameter: 'session.bogus_field'." in str(call.errors[1])
            assert not call.closed
        reader.cancel()
        assert deltas == ["Hi", " there", ",", " friend", "!", "See", " ya", "!"]
    assert peer.player.mismatches == []
    assert peer.handshakes[0]["query"] == {"model": "gpt-realtime-mini"}
    assert peer.handshakes[0]["beta_header"] is None


@pytest.mark.slow
async def test_transcription_replay_gives_the_user_turn() -> None:
    """The recorded transcription of 1.6 s of speech becomes one user turn."""
    async with WebSocketReplay(load_recording(TRANSCRIPTION)) as peer:
        call = await _connect_ws(peer, session=TRANSCRIBED)
        async with call:
            call.send_audio(np.zeros(24000 * 16 // 10, dtype=np.int16))
            call.commit()
            (turn,) = await call.wait_for_turns(1, timeout=10)
        assert turn.role is Role.USER
        assert turn.text == "Hello from the Gateway Probe."
        assert turn.status is TurnStatus.COMPLETED
    assert peer.player.mismatches == []


def _sip_expectations(turns: list[Any]) -> None:
    story = load_recording(SIP).of_type("response.content_part.done")[0]["part"]["transcript"]
    assert [(t.role, t.status) for t in turns] == [
        (Role.USER, TurnStatus.COMPLETED), (Role.ASSISTANT, TurnStatus.INCOMPLETE),
        (Role.USER, TurnStatus.COMPLETED), (Role.ASSISTANT, TurnStatus.INCOMPLETE)]
    assert [t.audio_ms for t in turns[::2]] == [3808 - 1236, 14720 - 11956]
    assert turns[1].text == story and turns[3].text == "The"
    assert turns[1].response_id == "resp_Ct1OZ5ukpGEZNeUWx1iOH"
    assert turns[2].previous_item_id == "item_Ct1OZd4ZkrcbhoRueeC2O"


@pytest.mark.slow
async def test_sip_voice_session_replay_over_websocket() -> None:
    """The recorded voice session holds replies until close: the source lacks response.done."""
    async with WebSocketReplay(load_recording(SIP)) as peer:
        call = await _connect_ws(peer, model="gpt-realtime",
                                 session={"instructions": SIP_INSTRUCTIONS})
        await asyncio.wait_for(peer.player.finished.wait(), 10)
        await asyncio.sleep(0.2)
        assert [t.role for t in call.turns_so_far] == [Role.USER]
        assert call.session["instructions"] == SIP_INSTRUCTIONS
        await call.close()
    _sip_expectations(call.turns_so_far)
    assert peer.player.mismatches == []


@pytest.mark.slow
@pytest.mark.parametrize("imitate", [None, *sdp_names()])
async def test_sip_voice_session_replay_over_webrtc(imitate: str | None) -> None:
    """The same frames on oai-events of a real WebRTC call; the answer carries the quirks of
    each recorded answer (session-level fingerprint, ice-lite, ufrag attribute, TCP twins,
    max-message-size) around aiortc's own credentials."""
    async with WebRTCReplay(load_recording(SIP), imitate=imitate) as peer:
        call = await livetalk.connect(base_url=peer.base_url, api_key=KEY,
                                      send_session_in_offer=False, connect_timeout=10,
                                      session={"instructions": SIP_INSTRUCTIONS})
        assert call.call_id == peer.call.call_id
        await asyncio.wait_for(peer.player.finished.wait(), 10)
        await asyncio.sleep(0.2)
        await call.close()
    _sip_expectations(call.turns_so_far)
    assert peer.hangups == [peer.call.call_id]
    if imitate is not None:
        assert ("a=ice-lite" in peer.answers[0]) == ("icelite" in imitate)


# =========================================================================== item 1: rejections
def _expected_error(rec: Recording) -> tuple[type[BaseException] | tuple[type, ...], str]:
    error = rec.server_events[0]["error"]
    auth = rec.server_close is not None and rec.server_close["code"] == 3000
    return (AuthenticationError if auth else (ConfigError, APIStatusError)), error["message"]


def _check_rejection(exc: BaseException, rec: Recording) -> None:
    expected, message = _expected_error(rec)
    assert isinstance(exc, LivetalkError) and not isinstance(exc, ConnectTimeout), repr(exc)
    assert isinstance(exc, expected), repr(exc)
    if expected is not AuthenticationError:
        assert not isinstance(exc, AuthenticationError), repr(exc)
    head = message.split("…")[0].split(":")[0]
    assert head in str(exc)
    for fragment in ("sQoA", "AAAA"):  # the key tails the recorded messages quote
        assert fragment not in str(exc)


@pytest.mark.slow
@pytest.mark.parametrize("name", REJECTIONS)
async def test_websocket_rejection_raises_the_typed_error_at_once(name: str) -> None:
    rec = load_recording(name)
    async with WebSocketReplay(rec) as peer:
        with pytest.raises(LivetalkError) as caught:
            await _connect_ws(peer, connect_timeout=3.0)
    _check_rejection(caught.value, rec)


@pytest.mark.slow
async def test_sideband_rejection_raises_authentication_error() -> None:
    rec = load_recording("ws_reject_invalid_api_key_alfred-KE")
    async with WebSocketReplay(rec) as peer:
        with pytest.raises(LivetalkError) as caught:
            await sideband.attach(CALL_ID, api_key=KEY, base_url=peer.base_url,
                                           connect_timeout=3.0)
    assert peer.handshakes[0]["query"] == {"call_id": CALL_ID}
    _check_rejection(caught.value, rec)


def _unreachable(sdp: str) -> str:
    """A recorded answer whose candidates point at a closed loopback port (ICE fails)."""
    return re.sub(r"(a=candidate:\S+ \d \S+ \d+ )\S+ \d+", r"\g<1>127.0.0.1 9", sdp)


@pytest.mark.slow
async def test_auto_transport_reports_the_websocket_rejection() -> None:
    rec = load_recording("ws_reject_invalid_api_key_2026-09-18_llmgw")
    async with WebSocketReplay(rec, calls_answer=_unreachable(
            load_sdp("answer_2026-04-27_aiortc_icelite"))) as peer:
        with pytest.raises(LivetalkError) as caught:
            await livetalk.connect(transport="auto", base_url=peer.base_url, api_key=KEY,
                                   connect_timeout=2.0)
    assert peer.calls_posted == 1 and len(peer.handshakes) == 1
    _check_rejection(caught.value, rec)


@pytest.mark.slow
async def test_webrtc_error_before_session_created_fails_the_connect() -> None:
    """Composed: the recorded invalid_model error, played on oai-events before anything."""
    rec = load_recording("ws_reject_invalid_model_2026-09-18_llmgw")
    scripted = rec.with_frames([server(rec.server_events[0])])
    async with WebRTCReplay(scripted) as peer:
        with pytest.raises(LivetalkError) as caught:
            await livetalk.connect(base_url=peer.base_url, api_key=KEY, connect_timeout=3.0)
    assert not isinstance(caught.value, ConnectTimeout), repr(caught.value)
    assert "is not supported in realtime mode" in str(caught.value)


# =========================================================================== item 2: barge-in
def _story_turn_with_playback(end: list[Frame], *, webrtc: bool = True) -> Recording:
    """Composed scenario: the recorded first SIP turn, completed as documented.

    Recorded (verbatim): session.created/updated, the user turn, response.created,
    output_item.added, content_part.added, the first delta and content_part.done. Added, in
    the documented shapes: over WebRTC ``output_audio_buffer.started`` after
    content_part.added (hex-style id); over WebSocket 3 s of reply audio as
    ``response.output_audio.delta`` (a 24 kHz tone, 100 ms per delta); then the remaining
    done events and ``response.done`` (completed) built from content_part.done, then a gate
    while the audio plays, then ``end``.
    """
    rec = load_recording(SIP)
    frames: list[Frame] = []
    done = rec.of_type("response.content_part.done")[0]
    rid, item_id = done["response_id"], done["item_id"]
    transcript = done["part"]["transcript"]
    item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_audio", "transcript": transcript}]}
    base = {"event_id": "event_scripted", "response_id": rid, "output_index": 0}
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * np.arange(2400) / 24000)).astype("<i2")
    for frame in rec.frames:
        if frame.gap is not None:
            continue
        frames.append(frame)
        kind = frame.event["type"] if frame.event else None
        if kind == "response.content_part.added":
            if webrtc:
                frames.append(server({"type": "output_audio_buffer.started",
                                      "event_id": "1f0a2b3c4d5e6f70", "response_id": rid}))
            else:
                frames += [server({"type": "response.output_audio.delta", **base,
                                   "item_id": item_id, "content_index": 0,
                                   "delta": base64.b64encode(tone.tobytes()).decode()})
                           for _ in range(30)]
        if kind == "response.content_part.done":
            frames += [
                server({"type": "response.output_audio.done", **base, "item_id": item_id,
                        "content_index": 0}),
                server({"type": "response.output_audio_transcript.done", **base,
                        "item_id": item_id, "content_index": 0, "transcript": transcript}),
                server({"type": "response.output_item.done", **base, "item": item}),
                server({"type": "response.done", "event_id": "event_scripted", "response": {
                    "object": "realtime.response", "id": rid, "status": "completed",
                    "status_details": None, "output": [item],
                    "conversation_id": "conv_Ct1OV3QLbjuyAYbanznrU",
                    "output_modalities": ["audio"], "usage": None}}),
                gate("playing"),
                *end,
            ]
            break
    return rec.with_frames(frames, suffix="barge-in")


def _cleared(rid: str) -> Frame:
    return server({"type": "output_audio_buffer.cleared", "event_id": "2a0b1c2d3e4f5061",
                   "response_id": rid})


RID = "resp_Ct1OZ5ukpGEZNeUWx1iOH"
VAD_BARGE_IN = [server({"type": "input_audio_buffer.speech_started",
                        "event_id": "event_scripted", "audio_start_ms": 9000,
                        "item_id": "item_scripted_user2"}), _cleared(RID)]
CLIENT_BARGE_IN = [client({"type": "output_audio_buffer.clear"}), _cleared(RID)]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["server_vad", "interrupt"])
async def test_barge_in_after_response_done_cancels_the_reply(how: str) -> None:
    scenario = _story_turn_with_playback(VAD_BARGE_IN if how == "server_vad"
                                         else CLIENT_BARGE_IN)
    transcript = scenario.of_type("response.content_part.done")[0]["part"]["transcript"]
    async with WebRTCReplay(scenario) as peer:
        call = await livetalk.connect(base_url=peer.base_url, api_key=KEY,
                                      send_session_in_offer=False, connect_timeout=10,
                                      session={"instructions": SIP_INSTRUCTIONS})
        async with call:
            deadline = time.monotonic() + 10
            while peer.call.track.tone_frames < 40 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # about 0.8 s of the reply's audio has gone out
            assert call.assistant_speaking
            assert [t.role for t in call.turns_so_far] == [Role.USER], \
                "the reply was released while its audio was still playing"
            if how == "interrupt":
                call.interrupt()
            peer.player.open_gate("playing")
            (reply,) = await call.wait_for_turns(1, role="assistant", timeout=10)
    played_ms = peer.call.track.tone_frames * 20
    assert reply.status is TurnStatus.CANCELLED
    assert reply.audio_ms is not None and 0 < reply.audio_ms <= played_ms + 200
    assert transcript.startswith(reply.text) and len(reply.text) < len(transcript)


def _truncated(truncate: dict[str, Any]) -> dict[str, Any]:
    """The documented answer to ``conversation.item.truncate``."""
    return {"type": "conversation.item.truncated", "event_id": "event_scripted",
            "item_id": truncate["item_id"], "content_index": truncate["content_index"],
            "audio_end_ms": truncate["audio_end_ms"]}


@pytest.mark.slow
async def test_websocket_interrupt_after_response_done_cancels_the_reply() -> None:
    """Composed: 3 s of reply audio arrive at once, the user interrupts 1 s into playout."""
    scenario = _story_turn_with_playback(
        [client({"type": "conversation.item.truncate"}, reply=_truncated)], webrtc=False)
    transcript = scenario.of_type("response.content_part.done")[0]["part"]["transcript"]
    async with WebSocketReplay(scenario) as peer:
        call = await _connect_ws(peer, session={"instructions": SIP_INSTRUCTIONS})
        async with call:
            deadline = time.monotonic() + 10
            while not any(e.get("type") == "response.done" for e in peer.player.sent):
                assert time.monotonic() < deadline, "the scenario did not reach response.done"
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)
            assert [t.role for t in call.turns_so_far] == [Role.USER], \
                "the reply was released before the client played it"
            call.interrupt()
            peer.player.open_gate("playing")
            (reply,) = await call.wait_for_turns(1, role="assistant", timeout=10)
    truncate = next(m for m in peer.player.received
                    if isinstance(m, dict) and m.get("type") == "conversation.item.truncate")
    assert 500 < truncate["audio_end_ms"] < 3000
    assert reply.status is TurnStatus.CANCELLED
    assert reply.audio_ms == truncate["audio_end_ms"]
    assert transcript.startswith(reply.text) and len(reply.text) < len(transcript)


# =========================================================================== item 3: G.711
def _g711(pcm_8k: np.ndarray, codec: str) -> bytes:
    """Encode int16 8 kHz mono with PyAV's G.711 encoder."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.sample_rate, ctx.layout, ctx.format = 8000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(pcm_8k.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


@pytest.mark.slow
@pytest.mark.parametrize("fmt,codec", [("audio/pcmu", "pcm_mulaw"), ("audio/pcma", "pcm_alaw")])
async def test_g711_output_is_decoded_or_refused(fmt: str, codec: str) -> None:
    """Composed: the recorded SIP session with its output format set to G.711 (an edit),
    then one reply whose audio deltas carry 1 s of an 8 kHz tone."""
    rec = load_recording(SIP)
    t = np.arange(8000)
    payload = _g711((8000 * np.sin(2 * np.pi * 440 * t / 8000)).astype(np.int16), codec)
    frames: list[Frame] = []
    for frame in rec.frames[:3]:  # session.created, the client's update, session.updated
        if frame.event is not None and frame.dir == "in":
            event = json.loads(json.dumps(frame.event))
            event["session"]["audio"]["output"]["format"] = {"type": fmt}
            frame = server(event)
        frames.append(frame)
    rid, item_id = "resp_g711", "item_g711"
    frames.append(gate("listening"))
    frames += [server({"type": "response.output_audio.delta", "event_id": "event_scripted",
                       "response_id": rid, "item_id": item_id, "output_index": 0,
                       "content_index": 0,
                       "delta": base64.b64encode(payload[i:i + 1600]).decode()})
               for i in range(0, len(payload), 1600)]
    scenario = rec.with_frames(frames, suffix=fmt)
    received: list[np.ndarray] = []
    async with WebSocketReplay(scenario) as peer:
        try:
            call = await _connect_ws(peer, session={
                "instructions": SIP_INSTRUCTIONS, "audio": {"output": {"format": {"type": fmt}}}})
        except LivetalkError as exc:  # refusing the format at connect is allowed
            assert fmt in str(exc)
            return
        async with call:
            async def collect() -> None:
                async for chunk in call.audio_chunks():
                    received.append(chunk)

            reader = asyncio.ensure_future(collect())
            await asyncio.sleep(0.1)
            peer.player.open_gate("listening")
            await asyncio.wait_for(peer.player.finished.wait(), 10)
            await asyncio.sleep(0.3)
            reader.cancel()
    samples = sum(c.size for c in received)
    assert abs(samples - 24000) < 24000 * 0.05, f"{samples} samples for 1 s of {fmt}"


# =========================================================================== item 4: lost event
def _transcription_variant(drop_usage: bool, drop_completed: bool) -> Recording:
    rec = load_recording(TRANSCRIPTION)
    frames = []
    for frame in rec.frames:
        event = frame.event
        if event is not None and event["type"].endswith("transcription.completed"):
            if drop_completed:
                continue
            if drop_usage:
                event = {k: v for k, v in event.items() if k != "usage"}
                frame = server(event, frame.t_ms)
        frames.append(frame)
    return rec.with_frames(frames, suffix="edited")


@pytest.mark.slow
async def test_event_missing_an_optional_field_still_counts(
        every_event_is_validated: Any) -> None:
    """The recorded transcription with ``usage`` removed from ``completed`` (an edit; the SDK
    type requires ``usage``, so that one event is exempt from the validation fixture)."""
    async with WebSocketReplay(_transcription_variant(True, False)) as peer:
        call = await _connect_ws(peer, session=TRANSCRIBED)
        async with call:
            call.send_audio(np.zeros(24000, dtype=np.int16))
            call.commit()
            try:
                (turn,) = await call.wait_for_turns(1, timeout=5)
            finally:
                failures = every_event_is_validated.failures
                assert all("transcription.completed" in f for f in failures), failures
                failures.clear()
    assert (turn.text, turn.status) == ("Hello from the Gateway Probe.", TurnStatus.COMPLETED)


@pytest.mark.slow
async def test_a_transcription_that_never_completes_is_released_as_incomplete() -> None:
    """The recorded transcription without its ``completed`` event (an edit)."""
    async with WebSocketReplay(_transcription_variant(False, True)) as peer:
        call = await _connect_ws(peer, session=TRANSCRIBED, transcript_timeout=2.0)
        async with call:
            call.send_audio(np.zeros(24000, dtype=np.int16))
            call.commit()
            (turn,) = await call.wait_for_turns(1, timeout=10)
            assert not call.closed
    assert turn.status is TurnStatus.INCOMPLETE
    assert turn.text == "Hello from the Gateway Probe."


# =========================================================================== item 5: models
DEPRECATED_MODELS = {"gpt-realtime", "gpt-realtime-mini", "gpt-realtime-2025-08-28",
                     "gpt-realtime-mini-2025-10-06", "gpt-realtime-mini-2025-12-15"}


def _sdk_realtime_models() -> list[str]:
    import typing

    from openai.types.realtime.realtime_session_create_request import (
        RealtimeSessionCreateRequest,
    )

    annotation = RealtimeSessionCreateRequest.model_fields["model"].annotation
    names: list[str] = []
    stack = [annotation]
    while stack:
        current = stack.pop()
        if typing.get_origin(current) is typing.Literal:
            names += [a for a in typing.get_args(current) if isinstance(a, str)]
        else:
            stack += list(typing.get_args(current))
    return sorted(set(names))


@pytest.mark.slow
async def test_default_model_is_a_current_one() -> None:
    rec = _without_bogus_update(load_recording(TEXT))
    async with WebSocketReplay(rec) as peer:
        call = await _connect_ws(peer)
        await call.close()
    model = peer.handshakes[0]["query"]["model"]
    assert model not in DEPRECATED_MODELS, model
    assert model in _sdk_realtime_models()


def test_price_table_covers_the_current_models() -> None:
    from livetalk.scenarios.pricing import DEFAULT_PRICES

    current = [m for m in _sdk_realtime_models()
               if m not in DEPRECATED_MODELS and not re.search(r"-\d{4}-\d{2}-\d{2}$", m)
               and not m.startswith(("gpt-4o", "gpt-audio"))]
    assert "gpt-realtime-2.1" in current
    missing = [m for m in current if m not in DEFAULT_PRICES]
    assert not missing, f"no price for {missing}"


@pytest.mark.slow
async def test_local_server_accepts_every_model_the_sdk_lists(server: Any) -> None:
    url = server.base_url.replace("http", "ws", 1) + "/realtime?model="
    for model in _sdk_realtime_models():
        rec = Recording("probe", {}, ())
        run = await play_client(url + model, rec, headers={"Authorization": "Bearer sk-local"},
                                quiet_s=0.2)
        assert [e["type"] for e in run.events][:1] == ["session.created"], (model, run)
        assert run.events[0]["session"]["model"] == model


# =========================================================================== item 6: valid input
CHICKMARK_SESSION = {  # Radi454/chickmark integration_test/realtime_attach_probe_test.dart
    "type": "realtime", "output_modalities": ["audio"],
    "audio": {"input": {"noise_reduction": {"type": "near_field"},
                        "transcription": {"model": "gpt-4o-mini-transcribe",
                                          "prompt": "ChickMark hatchery operations."},
                        "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                           "prefix_padding_ms": 300, "silence_duration_ms": 500,
                                           "create_response": True, "interrupt_response": True}},
              "output": {"voice": "cedar"}},
    "reasoning": {"effort": "low"}, "tool_choice": "auto",
    "tools": [{"type": "function", "name": "get_user_scope",
               "description": "Return the enforced customer access.",
               "parameters": {"type": "object", "properties": {}, "required": []}}],
    "instructions": "You are a probe. Say nothing.",
}


def test_a_production_client_session_is_accepted() -> None:
    """A session.update a production app sends to the real API (named in docs/fidelity.md)."""
    from livetalk.protocol.session import SessionConfig

    config = SessionConfig.from_dict(CHICKMARK_SESSION)
    sent = config.to_dict()
    assert sent["reasoning"] == {"effort": "low"}
    assert sent["audio"]["output"]["voice"] == "cedar"


def test_session_fields_the_sdk_has_are_not_refused() -> None:
    from openai.types.realtime.realtime_session_create_request import (
        RealtimeSessionCreateRequest,
    )

    from livetalk.protocol.session import SessionConfig

    session = {**CHICKMARK_SESSION, "parallel_tool_calls": False,
               "tools": [*CHICKMARK_SESSION["tools"],
                         {"type": "mcp", "server_label": "docs",
                          "server_url": "https://example.invalid/mcp"}]}
    RealtimeSessionCreateRequest.model_validate(session)  # valid GA input
    assert SessionConfig.from_dict(session).to_dict()["tools"][1]["type"] == "mcp"


# =========================================================================== item 7: ek_ reconnect
@pytest.mark.slow
async def test_reconnect_with_an_expired_secret_fails_once_with_a_clear_message(
        server: Any) -> None:
    secret = await livetalk.mint_client_secret(api_key="sk-local", base_url=server.base_url)
    policy = Reconnect(max_attempts=3, initial_backoff_s=0.05, recycle_after_s=None)
    call = await livetalk.connect(base_url=server.base_url, api_key=secret.value,
                                  reconnect=policy, connect_timeout=10, media_timeout=1.0)
    notices: list[Any] = []

    async def collect() -> None:
        async for notice in call.notices():
            notices.append(notice)

    reader = asyncio.ensure_future(collect())
    server.expire_secrets()
    await next(iter(server.calls.values())).kill()
    deadline = time.monotonic() + 20
    while not call.closed and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await call.close()
    reader.cancel()
    assert call.failure is not None
    attempts = [n for n in notices if n.kind == "reconnecting"]
    assert len(attempts) <= 1, [n.error for n in notices]
    assert "secret" in str(call.failure)


# =========================================================================== item 8: large messages
@pytest.mark.slow
async def test_a_large_server_message_does_not_end_the_call() -> None:
    """Composed: the recorded text session's first frames, then a 20 MiB audio delta."""
    rec = load_recording(TEXT)
    big = base64.b64encode(bytes(15 * 1024 * 1024)).decode()  # 20 MiB of base64
    frames = [*rec.frames[:3],
              server({"type": "response.output_audio.delta", "event_id": "event_scripted",
                      "response_id": "resp_big", "item_id": "item_big", "output_index": 0,
                      "content_index": 0, "delta": big})]
    async with WebSocketReplay(rec.with_frames(frames, suffix="large")) as peer:
        call = await _connect_ws(peer, session={"output_modalities": ["text"]})
        await asyncio.wait_for(peer.player.finished.wait(), 20)
        await asyncio.sleep(0.5)
        assert not call.closed, call.failure
        await call.close()


# =========================================================================== the local server
def _server_url(server: Any, query: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return server.base_url.replace("http", "ws", 1) + "/realtime?" + urlencode(query)


@pytest.fixture
async def text_run(server: Any) -> AsyncIterator[tuple[Recording, Any]]:
    """The recorded text session's client frames played to the local server."""
    rec = load_recording(TEXT)
    run = await play_client(_server_url(server, rec.meta["query"]), rec,
                            headers={"Authorization": "Bearer sk-local"})
    yield rec, run


def _turn_types(events: list[dict[str, Any]]) -> list[str]:
    """Types of the first response cycle: from the user item to the last event before the
    next client input is answered (errors excluded)."""
    types = collapse(e["type"] for e in events if e["type"] != "error")
    start = types.index("conversation.item.added")
    end = types.index("response.done") + 1
    if end < len(types) and types[end] == "rate_limits.updated":
        end += 1
    return types[start:end]


@pytest.mark.slow
async def test_local_server_text_turn_has_the_recorded_event_order(
        text_run: tuple[Recording, Any]) -> None:
    rec, run = text_run
    assert _turn_types(run.events) == _turn_types(rec.server_events)


@pytest.mark.slow
async def test_local_server_sends_rate_limits_after_response_done(
        text_run: tuple[Recording, Any]) -> None:
    _, run = text_run
    types = [e["type"] for e in run.events]
    assert "rate_limits.updated" in types
    assert types.index("rate_limits.updated") > types.index("response.done")


@pytest.mark.slow
async def test_local_server_usage_has_the_recorded_shape(
        text_run: tuple[Recording, Any]) -> None:
    rec, run = text_run

    def shape(value: Any) -> Any:
        return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else None

    recorded = rec.of_type("response.done")[0]["response"]["usage"]
    local = next(e for e in run.events if e["type"] == "response.done")["response"]["usage"]
    assert shape(local) == shape(recorded)
    assert run.events[0]["session"]["model"] == "gpt-realtime-mini"


@pytest.mark.slow
async def test_local_server_answers_bad_inputs_as_recorded(
        text_run: tuple[Recording, Any]) -> None:
    rec, run = text_run

    def errors(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(e["error"]["type"], e["error"]["code"], e["error"]["param"],
                 e["error"]["event_id"]) for e in events if e["type"] == "error"]

    assert errors(run.events) == errors(rec.server_events)
    assert [e["type"] for e in run.events].count("response.done") == 2  # still open
    assert run.close_code == 1000


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in REJECTIONS if "llmgw" in n])
async def test_local_server_rejects_websockets_as_recorded(make_server: Any, name: str) -> None:
    rec = load_recording(name)
    headers = {k: ("Bearer sk-bad" if "bad key" in v else "Bearer sk-local")
               if k == "Authorization" else v for k, v in rec.meta["headers"].items()}
    async with make_server(port=0, api_key="sk-local") as server:  # checks the key, as the API
        run = await play_client(_server_url(server, rec.meta["query"]), rec, headers=headers,
                                quiet_s=0.2)
    assert run.status is None, f"the upgrade was refused with HTTP {run.status}"
    recorded = rec.server_events[0]["error"]
    assert [(e["type"], (e.get("error") or {}).get("code")) for e in run.events] == [
        ("error", recorded["code"])], "not rejected with one error event"
    assert (run.close_code, run.close_reason) == (rec.server_close["code"],
                                                  rec.server_close["reason"])


def _first_phrase() -> np.ndarray:
    """The first 2.6 s of the bundled demo.wav (16 kHz): 'hello can you hear me'."""
    path = CORPUS.parent.parent / "livetalk" / "data" / "demo.wav"
    with av.open(str(path)) as container:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return pcm[: int(2.6 * 16000)].astype(np.int16)


@pytest.mark.slow
async def test_local_server_voice_turn_has_the_recorded_order(server: Any) -> None:
    """A voice turn over WebRTC, against the recorded SIP voice turn: the recorded event types
    come in the recorded order, and ``response.done`` comes when generation ends, so most of
    the reply's audio is still to be played after it (as in every real WebRTC capture
    described in docs/fidelity.md)."""
    recorded = [e["type"] for e in load_recording(SIP).server_events]
    turn = recorded[recorded.index("input_audio_buffer.speech_started"):
                    recorded.index("rate_limits.updated") + 1]
    # the source printed this first turn without the assistant's conversation.item.added
    # (its second turn has it, between response.output_item.added and content_part.added)
    turn.insert(turn.index("response.output_item.added") + 1, "conversation.item.added")
    # and it elided the events from the first transcript delta to content_part.done: compare
    # up to that gap, and the end of the turn separately below
    turn = turn[:turn.index("response.output_audio_transcript.delta") + 1]
    types: list[str] = []
    loud = {"before": 0, "after": 0}
    async with livetalk.connect(base_url=server.base_url, api_key="sk-local",
                                connect_timeout=10) as call:
        async def watch() -> None:
            async for event in call.events():
                types.append(event.type)

        async def listen() -> None:
            async for chunk in call.audio_chunks():
                if np.abs(chunk.astype(np.int32)).mean() > 300:
                    loud["after" if "response.done" in types else "before"] += chunk.size

        tasks = [asyncio.ensure_future(watch()), asyncio.ensure_future(listen())]
        await call.stream(livetalk.ArraySource(_first_phrase(), rate=16000))
        await call.stream(livetalk.SilenceSource(1.0))
        await call.wait_for_turns(2, timeout=30)
        await call.wait_until_quiet(timeout=30)
        await asyncio.sleep(0.5)
        for task in tasks:
            task.cancel()
    ours = collapse(t for t in types if t in set(turn))
    start = ours.index("input_audio_buffer.speech_started")
    assert loud["after"] > loud["before"], loud
    assert ours[start:start + len(collapse(turn))] == collapse(turn)
    assert types.index("rate_limits.updated") == types.index("response.done") + 1


@pytest.mark.slow
async def test_local_server_accepts_the_browser_subprotocols(server: Any) -> None:
    """What both official JS SDKs send from a browser (no Authorization header)."""
    rec = Recording("browser", {}, ())
    run = await play_client(_server_url(server, {"model": "gpt-realtime-mini"}), rec,
                            subprotocols=["realtime", "openai-insecure-api-key.sk-local",
                                          "openai-agents-sdk.0.3.0"], quiet_s=0.3)
    assert run.status is None, f"the upgrade was refused with HTTP {run.status}"
    assert run.subprotocol == "realtime"
    assert [e["type"] for e in run.events][:1] == ["session.created"]


@pytest.mark.slow
async def test_local_server_serves_wss_with_a_certificate(make_server: Any,
                                                          tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    async with make_server(port=0, tls_cert=str(cert_file), tls_key=str(key_file)) as srv:
        from websockets.asyncio.client import connect as ws_connect

        context = ssl.create_default_context()
        ca.configure_trust(context)
        url = srv.base_url.replace("https", "wss", 1) + "/realtime?model=gpt-realtime-mini"
        assert url.startswith("wss://")
        async with ws_connect(url, ssl=context,
                              additional_headers={"Authorization": "Bearer sk-local"}) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first["type"] == "session.created"

