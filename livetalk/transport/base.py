"""The interface every transport of a :class:`~livetalk.call.Call` implements.

Three ship with livetalk: :class:`~livetalk.transport.webrtc.WebRTCTransport` (the default:
events on the ``oai-events`` data channel, audio as Opus RTP),
:class:`~livetalk.transport.websocket.WebSocketTransport` (events and base64 audio on one
WebSocket; also the sideband that joins a WebRTC call by id) and
:class:`~livetalk.testing.MemoryTransport` (in memory, for tests). The call talks to them only
through this protocol: a transport moves events and audio, and knows nothing of turns.

A transport decodes each incoming frame once (:func:`livetalk.protocol.wire.load`) and hands
the dict to the call; a frame that is not a JSON object is logged and dropped there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from livetalk.protocol.conversation import Playout

if TYPE_CHECKING:
    from livetalk.audio.sources import Source
    from livetalk.transport.jitterbuffer import ReceiveStatistics
    from livetalk.transport.tracks import OutboundAudioTrack

__all__ = ["AudioConsumer", "ClosedHandler", "EventHandler", "Transport"]

EventHandler = Callable[[dict[str, Any]], None]
"""Called with each event received, decoded from JSON (the dict is shared: do not change it)."""
ClosedHandler = Callable[[BaseException | None], None]
"""Called once when the transport drops after connecting (with the cause)."""
AudioConsumer = Callable[[np.ndarray], None]
"""Called with audio: int16 mono at 24 kHz (the API's rate)."""


class Transport(Protocol):
    """What a call needs from a transport."""

    @property
    def kind(self) -> str:
        """``"webrtc"``, ``"websocket"`` or ``"memory"``."""

    @property
    def call_id(self) -> str | None:
        """The ``rtc_...`` call id (WebRTC, and a sideband of one), else None."""

    @property
    def playout(self) -> Playout:
        """Who plays the model's audio: the server (WebRTC media, and a sideband of a WebRTC
        call, whose server sends ``output_audio_buffer.*``) or the client (WebSocket)."""

    @property
    def carries_audio(self) -> bool:
        """Whether this transport can send user audio (a sideband cannot: the peer holds it)."""

    @property
    def connect_timeout(self) -> float:
        """Seconds a connect may take (a replacement transport gets the same)."""

    @property
    def outbound_track(self) -> OutboundAudioTrack | None:
        """The outbound audio track (WebRTC), else None."""

    @property
    def input_rate(self) -> int:
        """The rate user audio travels at, in Hz: audio at this rate is sent as it is, any
        other rate is resampled once, straight to it (48 kHz over WebRTC; the rate of the
        session's input format over WebSocket, 24 kHz PCM16 or 8 kHz G.711; 24 kHz in
        memory). ``Call.stream(path)`` decodes files at this rate."""

    #: Called with the user audio actually sent, in order, int16 mono 24 kHz (on WebRTC every
    #: 20 ms frame, silence included, so stream time matches the server's). The call sets it to
    #: keep user-turn audio and to run local VAD.
    on_sent_audio: AudioConsumer | None

    async def connect(self, on_event: EventHandler, on_closed: ClosedHandler) -> None:
        """Connect; raise ConnectError/ConnectTimeout/APIStatusError on failure."""

    def send(self, text: str) -> None:
        """Send one JSON event (a text frame)."""

    def send_audio(self, pcm: np.ndarray, rate: int) -> None:
        """Queue user audio (int16 mono at ``rate``)."""

    async def play(self, source: Source) -> None:
        """Send every chunk of an audio source, paced by the transport's media clock; return
        once it has all been sent."""

    def clear_outbound(self) -> float:
        """Drop queued user audio; return the milliseconds dropped."""

    @property
    def sent_ms(self) -> float:
        """Milliseconds of user audio sent so far (silence included on WebRTC)."""

    def set_audio_formats(self, input_format: str, output_format: str) -> None:
        """The session's audio formats (``audio/pcm``, ``audio/pcmu``, ``audio/pcma``) for
        audio carried in events; a media transport ignores them (SDP negotiates its codec)."""

    def receive_statistics(self) -> ReceiveStatistics | None:
        """The receive jitter buffer's figures; None where audio comes in events."""

    def add_audio_consumer(self, consumer: AudioConsumer) -> None:
        """Receive model audio as it arrives."""

    def remove_audio_consumer(self, consumer: AudioConsumer) -> None:
        """Stop receiving model audio."""

    async def close(self, *, hangup_call: bool = True) -> None:
        """Close; idempotent."""
