"""The interface every transport of a :class:`~livetalk.call.Call` implements.

Two ship with livetalk: :class:`~livetalk.transport.webrtc.WebRTCTransport` (the default:
events on the ``oai-events`` data channel, audio as Opus RTP) and
:class:`~livetalk.transport.websocket.WebSocketTransport` (events and base64 audio on one
WebSocket). The call object talks to them only through this protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

__all__ = ["AudioConsumer", "ClosedHandler", "MessageHandler", "Transport"]

MessageHandler = Callable[[str], None]
"""Called with each JSON text message received."""
ClosedHandler = Callable[[BaseException | None], None]
"""Called once when the transport drops after connecting (with the cause)."""
AudioConsumer = Callable[[np.ndarray], None]
"""Called with model audio, int16 mono at the transport's output rate (24 kHz)."""


class Transport(Protocol):
    #: "webrtc" or "websocket"
    kind: str
    #: the ``rtc_...`` call id (WebRTC), else None
    call_id: str | None
    #: True when model audio arrives as media and the server sends output_audio_buffer.*
    media_audio: bool
    #: Called with the user audio actually sent, in order, int16 mono 24 kHz (on WebRTC
    #: every 20 ms frame, silence included, so stream time matches the server's). The call
    #: sets it to keep user-turn audio and to run local VAD.
    on_sent_audio: AudioConsumer | None

    async def connect(self, on_message: MessageHandler, on_closed: ClosedHandler) -> None:
        """Connect; raise ConnectError/ConnectTimeout/APIStatusError on failure."""

    def send(self, text: str) -> None:
        """Send one JSON event."""

    def send_audio(self, pcm: np.ndarray, rate: int) -> None:
        """Queue user audio (int16 mono at ``rate``)."""

    async def play(self, source: Any) -> None:
        """Send every chunk of an audio source, paced by the transport's media clock."""

    def clear_outbound(self) -> float:
        """Drop queued user audio; return the milliseconds dropped."""

    @property
    def sent_ms(self) -> float:
        """Milliseconds of user audio sent so far (silence included on WebRTC)."""

    def add_audio_consumer(self, consumer: AudioConsumer) -> None:
        """Receive model audio as it arrives."""

    def remove_audio_consumer(self, consumer: AudioConsumer) -> None:
        """Stop receiving model audio."""

    async def close(self, *, hangup_call: bool = True) -> None:
        """Close; idempotent."""
