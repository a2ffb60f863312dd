"""WebSocketTransport against a small in-process websockets server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from livetalk.audio.clock import ManualClock
from livetalk.audio.codec import EventAudioCodec
from livetalk.audio.sources import ArraySource
from livetalk.errors import (
    APIStatusError,
    AuthenticationError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    NotFoundError,
    RateLimitError,
    SignalingError,
)
from livetalk.protocol.session import DEFAULT_MODEL
from livetalk.transport.websocket import (
    WebSocketTransport,
    encode_append,
    realtime_url,
)
from tests.resampling import spy_on_resampling

pytest.importorskip("websockets")
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.datastructures import Headers  # noqa: E402
from websockets.http11 import Request, Response  # noqa: E402

KEY = "sk-unit-secret-123"


# ------------------------------------------------------------------ pure functions
def test_url_maps_scheme_and_adds_the_default_model() -> None:
    assert realtime_url("https://api.openai.com/v1") == (
        f"wss://api.openai.com/v1/realtime?model={DEFAULT_MODEL}")
    assert realtime_url("http://127.0.0.1:8080/v1/", model="gpt-x mini") == (
        "ws://127.0.0.1:8080/v1/realtime?model=gpt-x+mini")


def test_url_for_a_sideband_has_only_the_call_id() -> None:
    assert realtime_url("https://h/v1", call_id="rtc_ab") == "wss://h/v1/realtime?call_id=rtc_ab"


@pytest.mark.parametrize("kwargs", [{"model": "m", "call_id": "rtc_1"}])
def test_model_and_call_id_together_are_refused(kwargs: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="not both"):
        realtime_url("https://h/v1", **kwargs)
    with pytest.raises(ConfigError):
        WebSocketTransport(base_url="https://h/v1", api_key=KEY, **kwargs)


def test_url_needs_an_http_or_ws_scheme() -> None:
    with pytest.raises(ConfigError):
        realtime_url("ftp://h/v1")


def test_append_event_is_base64_pcm16_le() -> None:
    pcm = np.array([1, -2, 32767, -32768], dtype=np.int16)
    event = json.loads(encode_append(pcm))
    assert event["type"] == "input_audio_buffer.append"
    assert base64.b64decode(event["audio"]) == b"\x01\x00\xfe\xff\xff\x7f\x00\x80"


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma"])
def test_append_event_in_g711_round_trips(fmt: str) -> None:
    codec = EventAudioCodec(fmt)
    pcm = (np.sin(np.arange(800) / 8000 * 2 * np.pi * 300) * 9000).astype(np.int16)
    data = base64.b64decode(json.loads(encode_append(pcm, codec))["audio"])
    assert len(data) == 800  # one byte per 8 kHz sample
    back = EventAudioCodec(fmt).decode(data)
    assert np.corrcoef(back.astype(float), pcm.astype(float))[0, 1] > 0.99


def test_repr_hides_the_key() -> None:
    transport = WebSocketTransport(base_url="https://h/v1", api_key=KEY)
    assert KEY not in repr(transport) and "wss://h/v1/realtime" in repr(transport)


# ------------------------------------------------------------------ fake server
@dataclass
class Peer:
    """What the fake server saw, and a way to talk back."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    connections: list[ServerConnection] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        while len(self.received) < count:
            self.got.clear()
            await asyncio.wait_for(self.got.wait(), 5)
        return self.received

    def appends(self) -> np.ndarray:
        chunks = [np.frombuffer(base64.b64decode(e["audio"]), "<i2")
                  for e in self.received if e["type"] == "input_audio_buffer.append"]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _reply(status: int, body: bytes, **headers: str) -> Response:
    return Response(status, "refused", Headers({"Content-Type": "application/json", **headers}),
                    body)


@pytest.fixture
async def peer_factory() -> AsyncIterator[Callable[..., Any]]:
    servers: list[Any] = []

    async def start(refuse: Response | None = None) -> Peer:
        peer = Peer()

        def process_request(conn: ServerConnection, request: Request) -> Response | None:
            peer.requests.append(request)
            return refuse

        async def handler(conn: ServerConnection) -> None:
            peer.connections.append(conn)
            async for message in conn:
                peer.received.append(json.loads(message))
                peer.got.set()

        server = await serve(handler, "127.0.0.1", 0, process_request=process_request)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        peer.url = f"http://127.0.0.1:{port}/v1"
        return peer

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.closed: list[BaseException | None] = []
        self.audio: list[np.ndarray] = []
        self.closed_event = asyncio.Event()

    def on_message(self, event: dict[str, Any]) -> None:
        self.messages.append(event)

    def on_closed(self, exc: BaseException | None) -> None:
        self.closed.append(exc)
        self.closed_event.set()


async def _open(peer: Peer, **kwargs: Any) -> tuple[WebSocketTransport, Recorder]:
    transport = WebSocketTransport(base_url=peer.url, api_key=KEY, **kwargs)
    rec = Recorder()
    transport.add_audio_consumer(rec.audio.append)
    await transport.connect(rec.on_message, rec.on_closed)
    return transport, rec


# ------------------------------------------------------------------ connect
async def test_connects_with_bearer_auth_and_model(peer_factory) -> None:
    peer = await peer_factory()
    transport, _ = await _open(peer, model="gpt-test")
    request = peer.requests[0]
    assert request.path == "/v1/realtime?model=gpt-test"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    await transport.close()


async def test_the_key_never_reaches_the_log(peer_factory, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="livetalk.websocket.wire")
    peer = await peer_factory()
    transport, _ = await _open(peer)
    await transport.close()
    assert "Authorization: Bearer ***" in caplog.text  # the handshake was logged, masked
    assert KEY not in caplog.text


@pytest.mark.parametrize(("status", "cls"), [(401, AuthenticationError), (403, AuthenticationError),
                                             (404, NotFoundError), (500, APIStatusError)])
async def test_refused_handshake_keeps_the_servers_message(peer_factory, status, cls) -> None:
    body = json.dumps({"error": {"message": "Nope, not you.", "type": "invalid_request_error",
                                 "code": "denied", "param": None}}).encode()
    peer = await peer_factory(refuse=_reply(status, body))
    transport = WebSocketTransport(base_url=peer.url, api_key=KEY)
    with pytest.raises(cls) as info:
        await transport.connect(Recorder().on_message, Recorder().on_closed)
    assert type(info.value) is cls
    assert info.value.status == status
    assert info.value.message == "Nope, not you." and info.value.code == "denied"
    assert KEY not in str(info.value) and "?model" not in str(info.value)


async def test_rate_limit_carries_retry_after(peer_factory) -> None:
    peer = await peer_factory(refuse=_reply(429, b"{}", **{"Retry-After": "7"}))
    transport = WebSocketTransport(base_url=peer.url, api_key=KEY)
    with pytest.raises(RateLimitError) as info:
        await transport.connect(Recorder().on_message, Recorder().on_closed)
    assert info.value.retry_after == 7.0


async def test_unreachable_server_is_a_signaling_error(unused_tcp_port: int) -> None:
    transport = WebSocketTransport(base_url=f"http://127.0.0.1:{unused_tcp_port}/v1",
                                   api_key=KEY)
    with pytest.raises(SignalingError) as info:
        await transport.connect(Recorder().on_message, Recorder().on_closed)
    assert KEY not in str(info.value)


async def test_a_silent_server_times_out() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # take the handshake and never answer

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = WebSocketTransport(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY,
                                   connect_timeout=0.3)
    with pytest.raises(ConnectTimeout):
        await transport.connect(Recorder().on_message, Recorder().on_closed)
    server.close()


# ------------------------------------------------------------------ sending
async def test_audio_and_events_leave_in_order(peer_factory) -> None:
    peer = await peer_factory()
    transport, _ = await _open(peer)
    sent: list[np.ndarray] = []
    transport.on_sent_audio = sent.append
    pcm = (np.arange(6000) % 300).astype(np.int16)  # 250 ms at 24 kHz
    transport.send_audio(pcm, 24000)
    transport.send('{"type":"input_audio_buffer.commit"}')
    received = await peer.wait_for(4)
    assert [e["type"] for e in received] == ["input_audio_buffer.append"] * 3 + [
        "input_audio_buffer.commit"]
    assert np.array_equal(peer.appends(), pcm)
    assert [len(base64.b64decode(e["audio"])) // 2 for e in received[:3]] == [2400, 2400, 1200]
    assert transport.sent_ms == 250.0
    assert np.array_equal(np.concatenate(sent), pcm)
    await transport.close()


async def test_audio_at_another_rate_is_resampled_to_24k(peer_factory) -> None:
    peer = await peer_factory()
    transport, _ = await _open(peer)
    t = np.arange(16000) / 16000
    transport.send_audio((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16), 16000)
    transport.send('{"type":"input_audio_buffer.commit"}')
    while not peer.received or peer.received[-1]["type"] != "input_audio_buffer.commit":
        await peer.wait_for(len(peer.received) + 1)
    assert abs(peer.appends().size - 24000) < 100  # one second at 24 kHz
    await transport.close()


async def _until_committed(peer: Peer) -> None:
    while not peer.received or peer.received[-1]["type"] != "input_audio_buffer.commit":
        await peer.wait_for(len(peer.received) + 1)


def _tone(rate: int, seconds: float = 1.0, freq: float = 300.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 9000).astype(np.int16)


async def test_48k_audio_is_resampled_once_and_the_view_is_what_left(
        peer_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    peer = await peer_factory()
    transport, _ = await _open(peer)
    log = spy_on_resampling(monkeypatch)
    sent: list[np.ndarray] = []
    transport.on_sent_audio = sent.append
    transport.send_audio(_tone(48000), 48000)
    transport.send('{"type":"input_audio_buffer.commit"}')
    await _until_committed(peer)
    assert log.conversions == [(48000, 24000)]  # straight to the wire rate, once
    assert np.array_equal(np.concatenate(sent), peer.appends())  # PCM16: the view is the wire
    await transport.close()


async def test_g711_input_is_resampled_once_to_8k_and_viewed_once_at_24k(
        peer_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    peer = await peer_factory()
    transport, _ = await _open(peer)
    assert transport.input_rate == 24000
    transport.set_audio_formats("audio/pcmu", "audio/pcm")
    assert transport.input_rate == 8000  # what call.stream(path) decodes files to
    log = spy_on_resampling(monkeypatch)
    sent: list[np.ndarray] = []
    transport.on_sent_audio = sent.append
    transport.send_audio(_tone(48000), 48000)
    transport.send('{"type":"input_audio_buffer.commit"}')
    await _until_committed(peer)
    # 48 -> 8 kHz for the wire and 8 -> 24 kHz for the view: never 48 -> 24 -> 8 kHz
    assert log.conversions == [(8000, 24000), (48000, 8000)]
    payloads = [base64.b64decode(e["audio"]) for e in peer.received
                if e["type"] == "input_audio_buffer.append"]
    assert [len(p) for p in payloads[:-1]] == [800] * (len(payloads) - 1)  # 100 ms at 8 kHz
    wire = np.concatenate([EventAudioCodec("audio/pcmu").decode(p) for p in payloads])
    view = np.concatenate(sent)
    # a second each, less what the filters still hold (their delays: a few milliseconds)
    assert 0 <= 8000 - wire.size <= 80 and 0 <= 24000 - view.size <= 240
    assert np.corrcoef(view[:23000].astype(float), _tone(24000)[:23000].astype(float))[0, 1] > 0.99
    assert transport.sent_ms == pytest.approx(wire.size / 8)
    await transport.close()


async def test_clear_outbound_drops_queued_audio_but_keeps_events(peer_factory) -> None:
    peer = await peer_factory()
    transport, _ = await _open(peer)
    transport.send_audio(np.ones(24000, np.int16), 24000)  # nothing left yet: no await
    transport.send('{"type":"response.cancel"}')
    assert transport.clear_outbound() == 1000.0
    transport.send('{"type":"input_audio_buffer.clear"}')
    received = await peer.wait_for(2)
    assert [e["type"] for e in received] == ["response.cancel", "input_audio_buffer.clear"]
    assert transport.sent_ms == 0
    await transport.close()


async def test_play_paces_100ms_events_by_the_media_clock(peer_factory) -> None:
    peer = await peer_factory()
    clock = ManualClock()
    transport, _ = await _open(peer, clock=clock)
    pcm = (np.arange(12000) % 500).astype(np.int16)  # 500 ms
    source = ArraySource(pcm, 24000)
    playing = asyncio.ensure_future(transport.play(source))
    await peer.wait_for(1)
    for _ in range(20):  # nothing more leaves until the media clock moves
        await asyncio.sleep(0)
    assert len(peer.received) == 1 and not playing.done()
    clock.advance(0.1)
    await peer.wait_for(2)
    clock.advance(1.0)
    await asyncio.wait_for(playing, 5)
    assert len(peer.received) == 5
    assert np.array_equal(peer.appends(), pcm)
    assert source.closed
    assert transport.sent_ms == 500.0
    await transport.close()


# ------------------------------------------------------------------ receiving
def _delta(item_id: str, pcm: np.ndarray, type_: str = "response.output_audio.delta") -> str:
    return json.dumps({"type": type_, "event_id": "e1", "response_id": "r1", "item_id": item_id,
                       "output_index": 0, "content_index": 0,
                       "delta": base64.b64encode(pcm.astype("<i2").tobytes()).decode()})


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_audio_deltas_reach_consumers_and_every_message_is_passed_on(peer_factory) -> None:
    peer = await peer_factory()
    transport, rec = await _open(peer)
    first = (np.arange(4800) % 1000).astype(np.int16)
    await peer.connections[0].send(_delta("item_a", first))
    await peer.connections[0].send(_delta("item_a", first[:2400], "response.audio.delta"))
    await peer.connections[0].send('{"type":"response.done","event_id":"e2"}')
    await peer.connections[0].send("not json")  # dropped with a warning, never passed on
    await peer.connections[0].send('{"type":"rate_limits.updated","rate_limits":[]}')
    await _until(lambda: len(rec.messages) == 4)
    assert np.array_equal(np.concatenate(rec.audio), np.concatenate([first, first[:2400]]))
    assert [m["type"] for m in rec.messages[2:]] == ["response.done", "rate_limits.updated"]
    await transport.close()


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma"])
async def test_g711_deltas_are_decoded_to_24k(peer_factory, fmt: str) -> None:
    """8 kHz G.711 output is decoded and resampled, not read as 24 kHz PCM (issue 11 item 3)."""
    peer = await peer_factory()
    transport, rec = await _open(peer)
    transport.set_audio_formats("audio/pcm", fmt)
    tone = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 200) * 9000).astype(np.int16)
    payload = base64.b64encode(EventAudioCodec(fmt).encode(tone)).decode()
    await peer.connections[0].send(json.dumps({
        "type": "response.output_audio.delta", "event_id": "e1", "response_id": "r1",
        "item_id": "i1", "output_index": 0, "content_index": 0, "delta": payload}))
    await _until(lambda: len(rec.messages) == 1)
    audio = np.concatenate(rec.audio)
    assert abs(audio.size - 24000) < 200  # one second at 24 kHz, not a third of one
    assert np.abs(audio).max() > 6000
    await transport.close()


# ------------------------------------------------------------------ sideband
async def test_sideband_has_only_the_call_id_and_refuses_audio(peer_factory) -> None:
    peer = await peer_factory()
    transport, _ = await _open(peer, call_id="rtc_live")
    assert peer.requests[0].path == "/v1/realtime?call_id=rtc_live"
    assert not transport.carries_audio and transport.playout == "server"
    with pytest.raises(ConfigError, match="holds the media"):
        transport.send_audio(np.zeros(240, np.int16), 24000)
    source = ArraySource(np.zeros(2400, np.int16), 24000)
    with pytest.raises(ConfigError, match="holds the media"):
        await transport.play(source)
    assert source.closed
    await transport.close()


# ------------------------------------------------------------------ closing
async def test_a_dropped_connection_is_reported_once(peer_factory) -> None:
    peer = await peer_factory()
    transport, rec = await _open(peer)
    peer.connections[0].transport.abort()
    await asyncio.wait_for(rec.closed_event.wait(), 5)
    await transport.close()
    assert len(rec.closed) == 1 and isinstance(rec.closed[0], ConnectError)
    with pytest.raises(ConnectError):
        transport.send("{}")


async def test_a_normal_close_by_the_server_ends_without_error(peer_factory) -> None:
    peer = await peer_factory()
    transport, rec = await _open(peer)
    await peer.connections[0].close()
    await asyncio.wait_for(rec.closed_event.wait(), 5)
    assert rec.closed == [None]
    await transport.close()


async def test_close_flushes_events_is_idempotent_and_silent(peer_factory) -> None:
    peer = await peer_factory()
    transport, rec = await _open(peer)
    transport.send('{"type":"response.cancel"}')
    await transport.close()
    await transport.close()
    assert [e["type"] for e in await peer.wait_for(1)] == ["response.cancel"]
    assert rec.closed == []  # closing on purpose is not a failure
    with pytest.raises(ConnectError):
        transport.send("{}")
    with pytest.raises(ConnectError):
        await transport.connect(rec.on_message, rec.on_closed)
