"""The audio formats of audio carried inside events (WebSocket ``input_audio_buffer.append`` and
``response.output_audio.delta``): ``audio/pcm`` (16-bit little-endian mono at 24 kHz),
``audio/pcmu`` and ``audio/pcma`` (G.711 mu-law and A-law, 8 kHz mono).

The G.711 codecs are FFmpeg's, through PyAV. Over WebRTC none of this applies: the media codec
(Opus) is negotiated in SDP whatever the session's format says.
"""

from __future__ import annotations

from typing import Final, cast

import av
import numpy as np

from livetalk.audio.format import API_RATE, PCM
from livetalk.errors import ConfigError

__all__ = ["EVENT_AUDIO_RATES", "EventAudioCodec"]

EVENT_AUDIO_RATES: Final = {"audio/pcm": API_RATE, "audio/pcmu": 8000, "audio/pcma": 8000}
"""The sample rate of each format."""

_FFMPEG_CODECS: Final = {"audio/pcmu": "pcm_mulaw", "audio/pcma": "pcm_alaw"}


class EventAudioCodec:
    """Bytes of one event audio format to and from int16 mono PCM at the format's rate.

    Args:
        fmt: ``audio/pcm``, ``audio/pcmu`` or ``audio/pcma``.

    Raises:
        ConfigError: an unknown format.
    """

    def __init__(self, fmt: str) -> None:
        if fmt not in EVENT_AUDIO_RATES:
            raise ConfigError(f"unknown audio format {fmt!r}; supported: "
                              f"{', '.join(EVENT_AUDIO_RATES)}")
        self.format = fmt
        self.rate = EVENT_AUDIO_RATES[fmt]
        name = _FFMPEG_CODECS.get(fmt)
        self._decoder: av.AudioCodecContext | None = None
        self._encoder: av.AudioCodecContext | None = None
        if name is not None:
            decoder = cast(av.AudioCodecContext, av.CodecContext.create(name, "r"))
            decoder.sample_rate = self.rate
            decoder.layout = "mono"
            encoder = cast(av.AudioCodecContext, av.CodecContext.create(name, "w"))
            encoder.sample_rate = self.rate
            encoder.format = "s16"
            encoder.layout = "mono"
            encoder.open()
            self._decoder, self._encoder = decoder, encoder

    def __repr__(self) -> str:
        return f"<EventAudioCodec {self.format} {self.rate} Hz>"

    def decode(self, data: bytes) -> PCM:
        """Decode the bytes of one event into int16 mono samples at :attr:`rate`."""
        if self._decoder is None:
            return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)
        if not data:
            return np.zeros(0, dtype=np.int16)
        frames = self._decoder.decode(av.Packet(data))
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)

    def encode(self, pcm: PCM) -> bytes:
        """Encode int16 mono samples at :attr:`rate` into the bytes of one event."""
        if self._encoder is None:
            return np.asarray(pcm, dtype="<i2").tobytes()
        if pcm.size == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = self.rate
        packets = self._encoder.encode(frame)
        return b"".join(bytes(p) for p in packets)
