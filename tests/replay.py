"""Replay recorded Realtime API traffic (``tests/corpus/``) to livetalk over loopback.

Theory of operation. A recording is a ``.jsonl`` file: a ``{"meta": ...}`` line, then one line
per frame, ``{"dir": "in" | "out", "t_ms": ..., ...}``. ``in`` frames are what the server sent
(``event``, or ``close`` with the close code), ``out`` frames what the recorded client sent
(``event``, ``raw`` text, ``binary_bytes``, or ``append_frames`` for elided audio). Some lines
only mark what the source left out (``gap``). See ``tests/corpus/README.md``.

Two peers play the server side of a recording to a real livetalk client:

* :class:`WebSocketReplay`: an aiohttp server on 127.0.0.1 that accepts ``GET /v1/realtime``
  (selecting the ``realtime`` subprotocol when offered, as the real server does), then plays
  the ``in`` frames in order with their gaps compressed, and before each ``out`` frame the
  recording shows, waits (bounded) for the client to send an event of that type. A recorded
  rejection is one ``error`` event followed by the close code, in the same millisecond.
* :class:`WebRTCReplay`: an aiortc answerer behind ``POST /v1/realtime/calls`` that plays the
  same frames on the ``oai-events`` data channel and sends audio on its track: silence, or a
  tone while the recording says the server's output audio buffer is playing
  (``output_audio_buffer.started`` until ``.stopped``/``.cleared``). Its SDP answer can be
  rewritten to carry the quirks of a recorded answer (:func:`imitate_answer`).

Scripted scenarios (tests compose them from recorded frames plus documented events; they are
not corpus files) may add ``{"gate": name}`` frames: playback pauses there until the test
calls :meth:`_Player.open_gate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.echo_peer import drain, read_offer
from livetalk.transport.ice import loopback_candidates

CORPUS = Path(__file__).resolve().parent / "corpus"

#: client event types a replay waits for by default before playing the frames that follow them
DEFAULT_AWAITED = frozenset({"session.update", "conversation.item.create", "response.create",
                             "input_audio_buffer.commit", "response.cancel",
                             "output_audio_buffer.clear", "conversation.item.truncate"})
_WAIT_S = 10.0  # the longest a replay waits for one client event or gate
_MAX_GAP_S = 0.05  # recorded gaps are compressed to at most this
_TONE_RATE = 48000
_FRAME = 960


# --------------------------------------------------------------------------- recordings
@dataclass(frozen=True, slots=True)
class Frame:
    """One line of a recording (see the module docstring for the keys)."""

    dir: str
    t_ms: float | None
    event: dict[str, Any] | None = None
    close: dict[str, Any] | None = None
    raw: str | None = None
    binary_bytes: int | None = None
    gap: str | None = None
    gate: str | None = None
    other: dict[str, Any] = field(default_factory=dict)
    #: scripted client frames only: the server event answering the client's event
    reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @classmethod
    def from_line(cls, data: dict[str, Any]) -> Frame:
        known = {"dir", "t_ms", "event", "close", "raw", "binary_bytes", "gap", "gate"}
        return cls(dir=data.get("dir", "in"), t_ms=data.get("t_ms"), event=data.get("event"),
                   close=data.get("close"), raw=data.get("raw"),
                   binary_bytes=data.get("binary_bytes"), gap=data.get("gap"),
                   gate=data.get("gate"),
                   other={k: v for k, v in data.items() if k not in known})


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Start ``app`` on 127.0.0.1 at a free port; returns its runner (to clean up) and port."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def server(event: dict[str, Any], t_ms: float | None = None) -> Frame:
    """A scripted server frame."""
    return Frame("in", t_ms, event=event)


def client(event: dict[str, Any], t_ms: float | None = None,
           reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Frame:
    """A scripted client frame: the replay waits for an event of its type, then plays
    ``reply(the client's event)`` if given."""
    return Frame("out", t_ms, event=event, reply=reply)


def gate(name: str) -> Frame:
    """A pause in playback until the test opens the gate."""
    return Frame("in", None, gate=name)


@dataclass(frozen=True, slots=True)
class Recording:
    """A loaded recording: its ``meta`` line and its frames, in order."""

    name: str
    meta: dict[str, Any]
    frames: tuple[Frame, ...]

    @property
    def server_events(self) -> list[dict[str, Any]]:
        """Every event the server sent, in order."""
        return [f.event for f in self.frames if f.dir == "in" and f.event is not None]

    @property
    def client_events(self) -> list[dict[str, Any]]:
        """Every JSON event the recorded client sent, in order."""
        return [f.event for f in self.frames if f.dir == "out" and f.event is not None]

    @property
    def server_close(self) -> dict[str, Any] | None:
        """The close the server initiated (code, reason), or None."""
        for f in self.frames:
            if f.close is not None and f.close.get("initiator") == "server":
                return f.close
        return None

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        """The server events of one type."""
        return [e for e in self.server_events if e.get("type") == type_]

    def with_frames(self, frames: Iterable[Frame], *, suffix: str = "scripted") -> Recording:
        """A scripted variant with other frames (for scenarios composed in tests)."""
        return replace(self, name=f"{self.name}+{suffix}", frames=tuple(frames))


def recording_names(prefix: str = "") -> list[str]:
    """The corpus recordings (file stems) whose name starts with ``prefix``."""
    return sorted(p.stem for p in CORPUS.glob(f"{prefix}*.jsonl"))


def load_recording(name: str) -> Recording:
    """Load ``tests/corpus/<name>.jsonl``."""
    lines = (CORPUS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    meta = first["meta"]
    frames = tuple(Frame.from_line(json.loads(line)) for line in lines[1:] if line.strip())
    return Recording(name, meta, frames)


def sdp_names() -> list[str]:
    """The recorded SDP answers (file stems)."""
    return sorted(p.stem for p in CORPUS.glob("*.sdp"))


def load_sdp(name: str) -> str:
    """A recorded SDP answer as it travels on the wire (CRLF line endings, final CRLF)."""
    text = (CORPUS / f"{name}.sdp").read_text(encoding="utf-8")
    return "\r\n".join(text.splitlines()) + "\r\n"


# --------------------------------------------------------------------------- playback
class _Player:
    """Plays a recording's server frames through ``send``/``close`` callables."""

    def __init__(self, recording: Recording, *, awaited: frozenset[str],
                 speed: float) -> None:
        self.recording = recording
        self.awaited = awaited
        self.speed = speed
        self.received: list[Any] = []  # every client frame (dicts for JSON, else raw)
        self.sent: list[dict[str, Any]] = []  # every server event played
        self.mismatches: list[str] = []  # client events awaited in vain
        self.finished = asyncio.Event()
        self.gates: dict[str, asyncio.Event] = {}
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()

    def open_gate(self, name: str) -> None:
        """Let playback continue past ``gate(name)``."""
        self.gates.setdefault(name, asyncio.Event()).set()

    def feed(self, message: Any) -> None:
        """A frame from the client."""
        if isinstance(message, str):
            with contextlib.suppress(ValueError):
                message = json.loads(message)
        self.received.append(message)
        self._inbox.put_nowait(message)

    def client_types(self) -> list[str]:
        return [m.get("type", "?") for m in self.received if isinstance(m, dict)]

    async def _await_client(self, type_: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + _WAIT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.mismatches.append(f"the client never sent {type_}")
                return None
            try:
                message = await asyncio.wait_for(self._inbox.get(), remaining)
            except TimeoutError:
                continue
            if isinstance(message, dict) and message.get("type") == type_:
                return message

    async def _send(self, send: Callable[[str], Any], event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)
        self.sent.append(event)
        result = send(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        if asyncio.iscoroutine(result):
            await result

    async def play(self, send: Callable[[str], Any],
                   close: Callable[[int, str], Any]) -> None:
        previous: float | None = None
        try:
            for frame in self.recording.frames:
                if frame.gap is not None:
                    continue
                if frame.gate is not None:
                    waiter = self.gates.setdefault(frame.gate, asyncio.Event())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter.wait(), _WAIT_S)
                    continue
                if frame.dir == "out":
                    if frame.event is not None and (frame.event.get("type") in self.awaited
                                                    or frame.reply is not None):
                        got = await self._await_client(frame.event["type"])
                        if got is not None and frame.reply is not None:
                            await self._send(send, frame.reply(got))
                    previous = None
                    continue
                if frame.t_ms is not None and previous is not None:
                    await asyncio.sleep(min(max(frame.t_ms - previous, 0) / 1000 * self.speed,
                                            _MAX_GAP_S))
                if frame.t_ms is not None:
                    previous = frame.t_ms
                if frame.close is not None:
                    if frame.close.get("initiator") == "server":
                        await close(int(frame.close["code"]), str(frame.close.get("reason", "")))
                        return
                    continue  # a client-initiated close: leave the socket to the client
                if frame.event is not None:
                    await self._send(send, frame.event)
        finally:
            self.finished.set()


# --------------------------------------------------------------------------- WebSocket peer
class WebSocketReplay:
    """A loopback WebSocket server playing one recording to every connection.

    Args:
        recording: what to play.
        awaited: client event types to wait for where the recording shows them.
        speed: recorded gaps are multiplied by this (and capped at 50 ms).
        calls_answer: an SDP answer for ``POST /v1/realtime/calls`` (201), so that a WebRTC
            attempt gets that far before failing (for ``transport="auto"``); None: no route.

    Use ``async with WebSocketReplay(rec) as peer:`` and connect to :attr:`base_url`.
    """

    def __init__(self, recording: Recording, *, awaited: frozenset[str] = DEFAULT_AWAITED,
                 speed: float = 0.1, calls_answer: str | None = None) -> None:
        self.recording = recording
        self.awaited = awaited
        self.speed = speed
        self.calls_answer = calls_answer
        self.calls_posted = 0
        self.port = 0
        self.handshakes: list[dict[str, Any]] = []
        self.players: list[_Player] = []
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def player(self) -> _Player:
        """The player of the latest connection."""
        return self.players[-1]

    async def __aenter__(self) -> WebSocketReplay:
        app = web.Application()
        app.router.add_get("/v1/realtime", self._socket)
        if self.calls_answer is not None:
            app.router.add_post("/v1/realtime/calls", self._calls)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _calls(self, request: web.Request) -> web.Response:
        await request.read()
        self.calls_posted += 1
        return web.Response(status=201, text=self.calls_answer, content_type="application/sdp",
                            headers={"Location": "/v1/realtime/calls/rtc_u1_" +
                                     secrets.token_hex(16)})

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        auth = request.headers.get("Authorization")
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                   if p.strip()]
        self.handshakes.append({
            "query": dict(request.query),
            "authorization": None if auth is None else auth.split(" ", 1)[0] + " ***",
            "beta_header": request.headers.get("OpenAI-Beta"),
            "protocols": [p if not p.startswith("openai-insecure-api-key.")
                          else "openai-insecure-api-key.***" for p in offered],
        })
        ws = web.WebSocketResponse(protocols=("realtime",), heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        player = _Player(self.recording, awaited=self.awaited, speed=self.speed)
        self.players.append(player)

        async def close(code: int, reason: str) -> None:
            await ws.close(code=code, message=reason.encode())

        task = asyncio.ensure_future(player.play(ws.send_str, close))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                player.feed(message.data)
            elif message.type == WSMsgType.BINARY:
                player.feed(bytes(message.data))
        return ws


# --------------------------------------------------------------------------- WebRTC peer
class _SpeakerTrack(MediaStreamTrack):
    """The answerer's audio: 20 ms frames of silence, or a tone while ``speaking``."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.speaking = False
        self.tone_frames = 0  # frames of tone sent so far
        self._index = 0
        self._start: float | None = None
        n = np.arange(_FRAME)
        tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * n / _TONE_RATE)).astype(np.int16)
        self._tone = np.repeat(tone, 2).reshape(1, -1)
        self._silence = np.zeros((1, 2 * _FRAME), dtype=np.int16)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._index * _FRAME / _TONE_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        samples = self._tone if self.speaking else self._silence
        if self.speaking:
            self.tone_frames += 1
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = _TONE_RATE
        frame.pts = self._index * _FRAME
        frame.time_base = fractions.Fraction(1, _TONE_RATE)
        self._index += 1
        return frame


def imitate_answer(sdp: str, recorded: str) -> str:
    """Give an aiortc answer the quirks of a recorded ``/realtime/calls`` answer.

    The fingerprint moves to session level only, ``a=ice-lite`` is added when the recorded
    answer has it, its ``msid-semantic`` spelling is copied, every candidate gets the
    non-standard trailing ``ufrag <ufrag>`` attribute and a TCP-passive twin on port 443,
    the audio section gets ``a=rtcp-rsize`` and the ``realtimeapi`` cname, and the data
    section announces ``a=max-message-size:1073741823``. The ICE credentials, fingerprint,
    candidate addresses and mids stay aiortc's own so that the call really connects.
    """
    rec = recorded.splitlines()
    lines = [line for line in sdp.splitlines() if line]
    fingerprints = sorted({line for line in lines if line.startswith("a=fingerprint:")})
    ufrag = next(line.split(":", 1)[1] for line in lines if line.startswith("a=ice-ufrag:"))
    out: list[str] = []
    session = True
    for line in lines:
        if line.startswith("m="):
            if session:
                out += fingerprints
                if "a=ice-lite" in rec:
                    out.append("a=ice-lite")
            session = False
        if line.startswith(("a=fingerprint:", "a=max-message-size:")):
            continue
        if line.startswith("a=msid-semantic:"):
            line = next((r for r in rec if r.startswith("a=msid-semantic:")), line)
        if line.startswith("a=ssrc:") and " cname:" in line:
            line = re.sub(r"cname:\S+", "cname:realtimeapi", line)
        if line.startswith("a=candidate:") and " udp " in line:
            out.append(f"{line} ufrag {ufrag}")
            parts = line.split()
            out.append(f"{parts[0]}1 1 tcp 1671430143 {parts[4]} 443 typ host tcptype passive "
                       f"ufrag {ufrag}")
            continue
        out.append(line)
        if line == "a=rtcp-mux" and "a=rtcp-rsize" not in lines:
            out.append("a=rtcp-rsize")
        if line.startswith("a=sctp-port:") or line.startswith("a=sctpmap:"):
            out.append("a=max-message-size:1073741823")
    return "\r\n".join(out) + "\r\n"


@dataclass
class _Answered:
    call_id: str
    pc: RTCPeerConnection
    track: _SpeakerTrack
    player: _Player
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class WebRTCReplay:
    """A loopback ``/v1/realtime/calls`` answerer playing a recording on ``oai-events``.

    Args:
        recording: what to play once the data channel opens.
        awaited: client event types to wait for where the recording shows them.
        imitate: the stem of a recorded SDP answer whose quirks the answer copies (None: the
            plain aiortc answer).
        location: how the ``Location`` header is built from the call id.
        speed: recorded gaps are multiplied by this (and capped at 50 ms).
    """

    def __init__(self, recording: Recording, *, awaited: frozenset[str] = DEFAULT_AWAITED,
                 imitate: str | None = None,
                 location: Callable[[str], str] = lambda cid: f"/v1/realtime/calls/{cid}",
                 call_prefix: str = "rtc_u1_", speed: float = 0.1) -> None:
        self.recording = recording
        self.awaited = awaited
        self.imitate = imitate
        self.location = location
        self.call_prefix = call_prefix
        self.speed = speed
        self.port = 0
        self.calls: list[_Answered] = []
        self.hangups: list[str] = []
        self.answers: list[str] = []
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def call(self) -> _Answered:
        """The latest answered call."""
        return self.calls[-1]

    @property
    def player(self) -> _Player:
        return self.call.player

    async def __aenter__(self) -> WebRTCReplay:
        app = web.Application()
        app.router.add_post("/v1/realtime/calls", self._answer)
        app.router.add_post("/v1/realtime/calls/{call_id}/hangup", self._hangup)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for call in self.calls:
            for task in call.tasks:
                task.cancel()
            await asyncio.gather(*call.tasks, return_exceptions=True)
            call.track.stop()
            await call.pc.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        offer = await read_offer(request)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        track = _SpeakerTrack()
        player = _Player(self.recording, awaited=self.awaited, speed=self.speed)
        call = _Answered(self.call_prefix + secrets.token_hex(16), pc, track, player)

        def on_event(event: dict[str, Any]) -> None:
            kind = event.get("type")
            if kind == "output_audio_buffer.started":
                track.speaking = True
            elif kind in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
                track.speaking = False

        player.on_event = on_event

        @pc.on("track")
        def on_track(remote: MediaStreamTrack) -> None:
            call.tasks.append(asyncio.ensure_future(drain(remote)))

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            @channel.on("message")
            def on_message(message: Any) -> None:
                player.feed(message)

            async def close(code: int, reason: str) -> None:
                channel.close()

            call.tasks.append(asyncio.ensure_future(player.play(channel.send, close)))

        with loopback_candidates():
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            pc.addTrack(track)
            await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        if self.imitate is not None:
            answer = imitate_answer(answer, load_sdp(self.imitate))
        self.answers.append(answer)
        self.calls.append(call)
        return web.Response(status=201, text=answer, content_type="application/sdp",
                            headers={"Location": self.location(call.call_id)})

    async def _hangup(self, request: web.Request) -> web.Response:
        self.hangups.append(request.match_info["call_id"])
        return web.Response(status=200)


# --------------------------------------------------------------------------- client side
@dataclass
class ClientRun:
    """What a server answered when a recording's client frames were played to it."""

    events: list[dict[str, Any]]
    subprotocol: str | None
    close_code: int | None
    close_reason: str | None
    status: int | None  # the HTTP status when the upgrade itself was refused


def collapse(types: Iterable[str]) -> list[str]:
    """Event types with runs of the same delta type collapsed to one entry."""
    out: list[str] = []
    for kind in types:
        if out and kind == out[-1] and kind.endswith(".delta"):
            continue
        out.append(kind)
    return out


async def play_client(url: str, recording: Recording, *, headers: dict[str, str] | None = None,
                      subprotocols: list[str] | None = None, quiet_s: float = 1.0,
                      wait_s: float = _WAIT_S) -> ClientRun:
    """Play a recording's client frames to a real server and collect what it answers.

    Before each client frame, wait (bounded) until the server has sent as many events of the
    type that preceded this frame in the recording as it had then; after the last frame, wait
    until the server is quiet for ``quiet_s``. Elided audio appends are sent as silence.
    """
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    events: list[dict[str, Any]] = []
    arrived = asyncio.Event()
    try:
        ws = await ws_connect(url, additional_headers=headers or {},
                              subprotocols=subprotocols,  # type: ignore[arg-type]
                              max_size=None, open_timeout=wait_s)
    except InvalidStatus as exc:
        return ClientRun([], None, None, None, exc.response.status_code)

    async def reader() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                events.append(json.loads(message))
                arrived.set()

    task = asyncio.ensure_future(reader())

    async def wait_for_count(kind: str, count: int, limit: float) -> None:
        deadline = time.monotonic() + limit
        while sum(e.get("type") == kind for e in events) < count and not task.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), remaining)

    seen: dict[str, int] = {}
    last: str | None = None
    try:
        for frame in recording.frames:
            if frame.dir == "in":
                if frame.event is not None:
                    last = frame.event["type"]
                    seen[last] = seen.get(last, 0) + 1
                continue
            if last is not None:
                await wait_for_count(last, seen[last], wait_s)
            if task.done():
                break
            if frame.event is not None:
                await ws.send(json.dumps(frame.event))
            elif frame.raw is not None:
                await ws.send(frame.raw)
            elif frame.binary_bytes is not None:
                await ws.send(bytes(frame.binary_bytes))
            elif "append_frames" in frame.other:
                chunk = {"type": "input_audio_buffer.append",
                         "audio": "A" * (frame.other["bytes_each"] * 4 // 3)}
                for _ in range(int(frame.other["append_frames"])):
                    await ws.send(json.dumps(chunk))
        while not task.done():
            count = len(events)
            await asyncio.sleep(quiet_s)
            if len(events) == count:
                break
    finally:
        await ws.close()
        await asyncio.gather(task, return_exceptions=True)
    return ClientRun(events, ws.subprotocol, ws.close_code, ws.close_reason, None)
