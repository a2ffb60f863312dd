"""An in-memory transport: a :class:`~livetalk.call.Call` with no sockets, no codecs, no aiortc.

In the spirit of httpx's ``MockTransport``: :class:`MemoryTransport` connects a call to a peer
in the same process, so ``Call`` and your own code get fast, deterministic tests. The usual
peer is the local server's session engine (:class:`~livetalk.server.session.ServerSession`,
the same code that answers over WebRTC and WebSocket), built by :func:`memory_session` with
stand-in ears and voice; any object with the peer methods below will do::

    from livetalk.testing import MemoryTransport, memory_session

    async def test_my_agent():
        session = memory_session(heard="what is the time")
        async with livetalk.connect(transport=MemoryTransport(session), api_key="sk-test",
                                    route=my_agent) as call:
            await call.stream(livetalk.SilenceSource(0.5))   # or speech
            ...

A peer has ``add_listener(callback)`` (server events as dicts), ``handle_client_event(text)``
and ``feed_audio(pcm)`` (24 kHz int16 mono). Events travel through the protocol codec as text
both ways, and are delivered on the next loop iteration, as a socket would.

With a ``ServerSession`` that has an ``output`` (:class:`MemoryOutput`), reply audio plays in
media time and the server sends ``output_audio_buffer.*`` (server playout, like WebRTC);
without one, audio comes as ``response.output_audio.delta`` (client playout, like WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from livetalk.audio.clock import MediaClock
from livetalk.audio.format import API_RATE, FRAME_MS, PCM, Chunker, check_pcm, ms_to_samples
from livetalk.audio.resample import Resampler
from livetalk.audio.sources import Source
from livetalk.errors import ConnectError, EventParseError
from livetalk.protocol import wire
from livetalk.protocol.conversation import Playout
from livetalk.transport.base import AudioConsumer, ClosedHandler, EventHandler

__all__ = ["MemoryOutput", "MemoryPeer", "MemoryTransport", "memory_session"]

_FRAME = ms_to_samples(FRAME_MS, API_RATE)


def _to_api_rate(resamplers: dict[int, Resampler], pcm: np.ndarray, rate: int) -> PCM:
    """``pcm`` at 24 kHz, through the stateful resampler kept for ``rate`` (none at 24 kHz)."""
    resampler = resamplers.get(rate)
    if resampler is None:
        resampler = resamplers[rate] = Resampler(rate, API_RATE)
    return resampler.process(check_pcm(pcm))


class MemoryPeer(Protocol):
    """What :class:`MemoryTransport` needs of its peer (a ``ServerSession`` has it)."""

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> None: ...

    def handle_client_event(self, data: Any) -> None: ...

    def feed_audio(self, pcm: np.ndarray) -> None: ...


class MemoryOutput:
    """Reply audio played in media time: the ``output`` of a ``ServerSession`` in memory.

    A background task plays 20 ms at a time by the media clock and hands what played to
    ``on_play`` (the transport's audio consumers), as an RTP track would.
    """

    def __init__(self, clock: MediaClock | None = None) -> None:
        self.clock = clock or MediaClock()
        self.on_play: Callable[[PCM], None] | None = None
        self._queue: list[PCM] = []
        self._resamplers: dict[int, Resampler] = {}  # one continuous stream per input rate
        self._queued = 0
        self._played = 0
        self._task: asyncio.Task[None] | None = None

    def enqueue(self, pcm: np.ndarray, rate: int) -> None:
        audio = _to_api_rate(self._resamplers, pcm, rate)
        self._queue.append(audio)
        self._queued += audio.size
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._play())

    def clear(self) -> float:
        dropped = self._queued
        self._queue.clear()
        self._queued = 0
        return dropped * 1000 / API_RATE

    @property
    def played_ms(self) -> float:
        return self._played * 1000 / API_RATE

    @property
    def queued_ms(self) -> float:
        return self._queued * 1000 / API_RATE

    async def _play(self) -> None:
        start = self.clock.now()
        frames = 0
        while self._queue:
            frames += 1
            await self.clock.sleep_until(start + frames * FRAME_MS / 1000)
            if not self._queue:
                return
            head = self._queue[0]
            piece, rest = head[:_FRAME], head[_FRAME:]
            if rest.size:
                self._queue[0] = rest
            else:
                self._queue.pop(0)
            self._queued -= piece.size
            self._played += piece.size
            if self.on_play is not None:
                self.on_play(piece)

    def stop(self) -> None:
        """Stop playing (the transport closes)."""
        if self._task is not None:
            self._task.cancel()


class MemoryTransport:
    """A :class:`~livetalk.transport.base.Transport` to a peer in the same process.

    Args:
        peer: the server side (see :class:`MemoryPeer`; :func:`memory_session` makes one).
        playout: who plays the model's audio; by default the server when the peer has an
            ``output`` (like WebRTC), else the client (like WebSocket).
        clock: the media clock pacing :meth:`play` (share it with the peer's output).
        call_id: the id the call reports.
        carries_audio: False to behave like a sideband.
    """

    kind = "memory"
    outbound_track = None
    input_rate = API_RATE
    """The peer hears 24 kHz PCM."""

    def __init__(self, peer: MemoryPeer, *, playout: Playout | None = None,
                 clock: MediaClock | None = None, call_id: str | None = "rtc_memory",
                 carries_audio: bool = True, connect_timeout: float = 5.0) -> None:
        output = getattr(peer, "output", None)
        self.peer = peer
        self.playout = playout or (Playout.SERVER if output is not None else Playout.CLIENT)
        self.clock = clock or (output.clock if isinstance(output, MemoryOutput) else MediaClock())
        self.call_id = call_id
        self.carries_audio = carries_audio
        self.connect_timeout = connect_timeout
        self.on_sent_audio: AudioConsumer | None = None
        self.sent: list[dict[str, Any]] = []
        """Every client event sent, decoded (for assertions)."""
        self._consumers: list[AudioConsumer] = []
        self._on_event: EventHandler | None = None
        self._on_closed: ClosedHandler | None = None
        self._sent_samples = 0
        self._resamplers: dict[int, Resampler] = {}  # for send_audio, one per input rate
        self._open = False
        self._closed = False
        if isinstance(output, MemoryOutput):
            output.on_play = self._deliver_audio

    def __repr__(self) -> str:
        return f"<MemoryTransport {self.call_id} {'open' if self._open else 'closed'}>"

    async def connect(self, on_event: EventHandler, on_closed: ClosedHandler) -> None:
        """Attach to the peer (which greets with ``session.created``)."""
        if self._open or self._closed:
            raise ConnectError("a MemoryTransport connects only once")
        self._on_event, self._on_closed = on_event, on_closed
        self._open = True
        self.peer.add_listener(self._from_peer)

    def _from_peer(self, event: dict[str, Any]) -> None:
        text = wire.dumps(event)  # as on a socket: a snapshot, decoded again on arrival
        asyncio.get_running_loop().call_soon(self._deliver, text)

    def _deliver(self, text: str) -> None:
        if self._closed or self._on_event is None:
            return
        event = wire.load(text)
        if event.get("type") in ("response.output_audio.delta", "response.audio.delta"):
            import base64

            raw = base64.b64decode(event.get("delta") or "")
            self._deliver_audio(np.frombuffer(raw[: len(raw) - len(raw) % 2], "<i2")
                                .astype(np.int16))
        self._on_event(event)

    def _deliver_audio(self, pcm: PCM) -> None:
        for consumer in list(self._consumers):
            consumer(pcm)

    def send(self, text: str) -> None:
        """Hand one event to the peer (decoded here for :attr:`sent`)."""
        if not self._open or self._closed:
            raise ConnectError("the memory transport is not open")
        with contextlib.suppress(EventParseError):
            self.sent.append(wire.load(text))
        self.peer.handle_client_event(text)

    def send_audio(self, pcm: np.ndarray, rate: int) -> None:
        """Feed user audio to the peer at once (successive calls at one rate are one stream)."""
        self._feed(_to_api_rate(self._resamplers, pcm, rate))

    def _feed(self, pcm: PCM) -> None:
        if not self.carries_audio:
            from livetalk.errors import ConfigError

            raise ConfigError("this transport carries no audio (a sideband)")
        self._sent_samples += pcm.size
        self.peer.feed_audio(pcm)
        if self.on_sent_audio is not None:
            self.on_sent_audio(pcm)

    async def play(self, source: Source) -> None:
        """Feed a source in 20 ms frames, paced by the media clock."""
        try:
            resampler = Resampler(source.rate, API_RATE)
            chunker = Chunker(_FRAME)
            start, frames = self.clock.now(), 0
            async for chunk in source:
                for frame in chunker.push(resampler.process(check_pcm(chunk))):
                    frames += 1
                    await self.clock.sleep_until(start + frames * FRAME_MS / 1000)
                    if self._closed:
                        return
                    self._feed(frame)
            for frame in chunker.push(resampler.flush()):  # the filter's last samples
                self._feed(frame)
            tail = chunker.flush()
            if tail.size:
                self._feed(tail)
        finally:
            await source.aclose()

    def clear_outbound(self) -> float:
        """Nothing is queued in memory: returns 0."""
        return 0.0

    @property
    def sent_ms(self) -> float:
        return self._sent_samples * 1000 / API_RATE

    def receive_statistics(self) -> None:
        """None: audio crosses in memory, with no jitter buffer."""
        return None

    def set_audio_formats(self, input_format: str, output_format: str) -> None:
        """Ignored: audio crosses in memory as 24 kHz PCM."""

    def add_audio_consumer(self, consumer: AudioConsumer) -> None:
        self._consumers.append(consumer)

    def remove_audio_consumer(self, consumer: AudioConsumer) -> None:
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)

    def drop(self, error: BaseException | None = None) -> None:
        """Simulate the connection ending (``error``: abnormally) from the peer's side."""
        if self._open and not self._closed and self._on_closed is not None:
            self._on_closed(error)

    async def close(self, *, hangup_call: bool = True) -> None:
        """Detach from the peer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        remove = getattr(self.peer, "remove_listener", None)
        if remove is not None:
            remove(self._from_peer)
        output = getattr(self.peer, "output", None)
        if isinstance(output, MemoryOutput):
            output.stop()


def memory_session(*, heard: str | Callable[[np.ndarray, int], str] = "",
                   brain: Any = "echo", speed: float = 1.0, media: bool = True,
                   session: dict[str, Any] | None = None, word_ms: float = 150.0) -> Any:
    """A local-server session engine with stand-in ears and voice, for a MemoryTransport.

    Args:
        heard: what the ears hear in every user turn (or a ``(pcm, rate) -> text`` callable).
        brain: the server's brain, as for ``livetalk serve`` (``"echo"``, a script, a callable).
        speed: the media clock's speed (the call should use the same ``speed``).
        media: True: reply audio plays on a :class:`MemoryOutput` (server playout, WebRTC-like);
            False: it is sent as audio deltas (client playout, WebSocket-like).
        session: the initial session (GA dict).
        word_ms: how long the stand-in voice takes per word (a tone).

    Returns:
        A :class:`~livetalk.server.session.ServerSession`.
    """
    from livetalk.server.asr import CallableTranscriber
    from livetalk.server.brain import make_brain
    from livetalk.server.session import ServerSession

    def ears(pcm: np.ndarray, rate: int) -> str:
        return heard(pcm, rate) if callable(heard) else heard

    class ToneVoice:
        def synthesize(self, text: str) -> tuple[np.ndarray, int]:
            n = int(max(1, len(text.split())) * word_ms * API_RATE / 1000)
            t = np.arange(n) / API_RATE
            return (6000 * np.sin(2 * np.pi * 330 * t)).astype(np.int16), API_RATE

    clock = MediaClock(speed)
    return ServerSession(transcriber=CallableTranscriber(ears), synthesizer=ToneVoice(),
                         brain=make_brain(brain), output=MemoryOutput(clock) if media else None,
                         session=session, realtime_factor=speed, audio_deltas=not media)
