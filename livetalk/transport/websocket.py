"""The WebSocket transport: events and base64 audio on one ``GET /realtime`` WebSocket.

It is the fallback when WebRTC cannot connect (UDP blocked, no aiortc), and the sideband
transport that attaches a backend to a live WebRTC call by ``call_id``. Everything is a JSON
text message: user audio goes up as ``input_audio_buffer.append`` events (base64, one per
100 ms, in the session's input format: PCM16 LE at 24 kHz, or G.711 mu-law/A-law at 8 kHz),
and model audio comes down as ``response.output_audio.delta`` events, which this transport
decodes (in the session's output format) for its audio consumers while still passing every
event on. Each message is decoded from JSON once, here.

Audio is resampled at most once each way. User audio goes from its own rate straight to the
rate of the session's input format (no resampling for 24 kHz PCM16 sent as PCM16); the
sent-audio view (``on_sent_audio``, 24 kHz) is made from the audio as it left, which is the
same audio for PCM16 and one resampling up from 8 kHz for G.711. Model audio is decoded and,
for G.711, resampled once from 8 to 24 kHz.

Theory of operation: :meth:`WebSocketTransport.connect` opens the socket (translating a
refused handshake into :class:`~livetalk.errors.APIStatusError` subclasses) and starts two
tasks. The reader hands every event to ``on_event`` and calls ``on_closed`` once when the
socket ends while the transport is open. The writer drains one ordered outbox, so events and
audio leave in the order they were queued and :meth:`WebSocketTransport.send` can stay
synchronous. Audio entries in the outbox can be dropped again with
:meth:`WebSocketTransport.clear_outbound`.

The real API accepts every upgrade and refuses a bad key, model or header *inside* the socket:
one ``error`` event, then a close with code 3000 (auth) or 4000 (request shape). The event
reaches the call like any other (it fails the connect at once, see
:func:`livetalk.transport.signaling.refusal_error`); the close code is kept in
:attr:`WebSocketTransport.close_code`.

There is no media clock at the far end: the server does not know what was played, so the
client tracks the playout position itself (:class:`~livetalk.protocol.client.ClientSession`)
and truncates a reply it cut.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import numpy as np

from livetalk._extras import require
from livetalk._net import is_loopback_url
from livetalk.audio.clock import Clock, MediaClock
from livetalk.audio.codec import EventAudioCodec
from livetalk.audio.format import API_RATE, CHUNK_MS, PCM, Chunker, check_pcm, ms_to_samples
from livetalk.audio.resample import Resampler, resample
from livetalk.audio.sources import Source
from livetalk.errors import (
    ConfigError,
    ConnectError,
    ConnectTimeout,
    EventParseError,
    SignalingError,
)
from livetalk.protocol import wire
from livetalk.protocol.conversation import Playout
from livetalk.protocol.events import InputAudioBufferAppend
from livetalk.protocol.session import DEFAULT_MODEL
from livetalk.transport.base import AudioConsumer, ClosedHandler, EventHandler
from livetalk.transport.signaling import USER_AGENT, _status_error

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = [
    "MAX_MESSAGE_BYTES",
    "WebSocketTransport",
    "encode_append",
    "realtime_url",
]

log = logging.getLogger("livetalk.websocket")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest message accepted from the server (the official SDKs set no limit; a message
this large is far beyond any the API sends)."""
_AUDIO_DELTA_TYPES = ("response.output_audio.delta", "response.audio.delta")
_FLUSH_ON_CLOSE_S = 1.0


def realtime_url(base_url: str, *, model: str | None = None, call_id: str | None = None) -> str:
    """The WebSocket URL of the Realtime endpoint under ``base_url``.

    ``http`` becomes ``ws`` and ``https`` becomes ``wss``; the path gets ``/realtime`` and the
    query ``model=<model or DEFAULT_MODEL>``, or ``call_id=<id>`` for a sideband.

    Args:
        base_url: the API base URL, e.g. ``https://api.openai.com/v1``.
        model: the model of a new session.
        call_id: the ``rtc_...`` id of a live call to attach to (no model then).

    Raises:
        ConfigError: both ``model`` and ``call_id`` are given, or the URL is not http(s)/ws(s).
    """
    if model and call_id:
        raise ConfigError("pass either model or call_id, not both: a sideband joins the "
                          "session of the call, whose model is already set")
    parts = urlsplit(base_url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    scheme = schemes.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ConfigError(f"base_url must be an http(s):// or ws(s):// URL, got {base_url!r}")
    query = {"call_id": call_id} if call_id else {"model": model or DEFAULT_MODEL}
    path = parts.path.rstrip("/") + "/realtime"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def encode_append(pcm: PCM, codec: EventAudioCodec | None = None) -> str:
    """One ``input_audio_buffer.append`` event (JSON text) carrying ``pcm``.

    Args:
        pcm: int16 mono samples at the codec's rate (24 kHz for the default ``audio/pcm``).
        codec: the session's input format (default ``audio/pcm``).
    """
    data = codec.encode(pcm) if codec is not None else pcm.astype("<i2", copy=False).tobytes()
    return wire.serialize(InputAudioBufferAppend(audio=base64.b64encode(data).decode("ascii")))


@dataclass(slots=True)
class _Outgoing:
    text: str
    pcm: PCM | None = None  # for an append: the user audio carried, before the codec
    rate: int = API_RATE  # the rate of ``pcm`` (the session's input rate when queued)

    @property
    def ms(self) -> float:
        return 0.0 if self.pcm is None else self.pcm.size * 1000 / self.rate


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Hands websockets' debug log lines on with the credential masked.

    websockets logs every handshake header at DEBUG, ``Authorization`` included.
    """

    def __init__(self, logger: logging.Logger, secret: str) -> None:
        super().__init__(logger, {})
        self._secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            masked = tuple(
                str(a).replace(self._secret, "***") if self._secret in str(a) else a
                for a in args
            )
            self.logger.log(level, msg, *masked, **kwargs)


class WebSocketTransport:
    """Carries events and base64 audio over one WebSocket.

    Pass it to :func:`livetalk.connect` as ``transport=`` (or let ``connect`` build it with
    ``transport="websocket"``); :func:`livetalk.sideband.attach` builds one with ``call_id``.

    Args:
        base_url: API base URL, e.g. ``https://api.openai.com/v1``.
        api_key: a standard key, or an ``ek_`` client secret for a new session (a sideband
            needs a standard key).
        model: the model of a new session (default
            :data:`~livetalk.protocol.session.DEFAULT_MODEL`).
        call_id: join this live WebRTC call as a sideband instead (no model then). A sideband
            carries no audio: the browser or peer of the call holds the media.
        clock: the media clock pacing :meth:`play` (``MediaClock(speed)`` feeds N x faster).
        connect_timeout: seconds for the TCP/TLS connect and the WebSocket handshake.
        max_message_bytes: the largest message accepted from the server; a bigger one closes
            the connection (code 1009) and the call fails.

    Raises:
        ConfigError: both ``model`` and ``call_id``, or a bad URL.
    """

    kind = "websocket"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str | None = None,
        call_id: str | None = None,
        clock: MediaClock | None = None,
        connect_timeout: float = 15.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.url = realtime_url(base_url, model=model, call_id=call_id)
        if not api_key:
            raise ConfigError("the WebSocket transport needs an API key")
        if max_message_bytes <= 0:
            raise ConfigError(f"max_message_bytes must be > 0, got {max_message_bytes!r}")
        self._api_key = api_key
        self.call_id = call_id
        self.clock: Clock = clock if clock is not None else MediaClock()
        self.connect_timeout = connect_timeout
        self.max_message_bytes = max_message_bytes
        #: the close code the server ended the socket with, once it has
        self.close_code: int | None = None
        #: Called with each piece of user audio (int16 mono 24 kHz) once it was sent.
        self.on_sent_audio: AudioConsumer | None = None
        self._ws: ClientConnection | None = None
        self._on_event: EventHandler | None = None
        self._on_closed: ClosedHandler | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outbox: deque[_Outgoing] = deque()
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None
        self._in_resamplers: dict[int, Resampler] = {}  # input rate -> the input format's rate
        self._in_codec = self._out_codec = EventAudioCodec("audio/pcm")
        self._sent_view = Resampler(API_RATE, API_RATE)  # what left -> 24 kHz, on_sent_audio
        self._from_wire = Resampler(API_RATE, API_RATE)
        self._consumers: list[AudioConsumer] = []
        self._sent_ms = 0.0
        self._sending = 0.0  # milliseconds of the audio entry being written, if any
        self._open = False
        self._closed = False
        self._ended = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._open else "new"
        return f"<WebSocketTransport {self.url} {state}>"

    @property
    def sideband(self) -> bool:
        """True when attached to a live call by ``call_id`` (no audio either way)."""
        return self.call_id is not None

    @property
    def outbound_track(self) -> None:
        """None: user audio travels in events."""
        return None

    @property
    def playout(self) -> Playout:
        """The client plays the deltas; a sideband's call is played by its WebRTC server."""
        return Playout.SERVER if self.sideband else Playout.CLIENT

    @property
    def carries_audio(self) -> bool:
        """False for a sideband: the peer of the call holds the media."""
        return not self.sideband

    @property
    def input_rate(self) -> int:
        """The rate of the session's input format (24 kHz PCM16, 8 kHz G.711), in Hz."""
        return self._in_codec.rate

    def set_audio_formats(self, input_format: str, output_format: str) -> None:
        """Use the session's formats for appended audio and for received deltas.

        Raises:
            ConfigError: an unknown format.
        """
        if input_format != self._in_codec.format:
            self._in_codec = EventAudioCodec(input_format)
            self._in_resamplers.clear()  # they resample to the previous format's rate
        if output_format != self._out_codec.format:
            self._out_codec = EventAudioCodec(output_format)
            self._from_wire = Resampler(self._out_codec.rate, API_RATE)

    # ---------------------------------------------------------------- connect
    async def connect(self, on_event: EventHandler, on_closed: ClosedHandler) -> None:
        """Open the WebSocket and start pumping; raises on failure.

        Call it once; the :class:`~livetalk.call.Call` does. Then :meth:`send` events.

        Raises:
            AuthenticationError: 401/403 (the server's message is kept).
            NotFoundError: 404 (e.g. an unknown or ended ``call_id``).
            RateLimitError: 429.
            APIStatusError: any other refusal of the handshake.
            SignalingError: the server is unreachable or did not speak WebSocket.
            ConnectTimeout: no handshake within ``connect_timeout``.
            MissingExtraError: the ``websockets`` package is missing (``websocket`` extra).
        """
        require("websocket", "the WebSocket transport")
        from websockets.asyncio.client import connect as ws_connect
        from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

        if self._closed or self._open:
            raise ConnectError("a WebSocketTransport connects only once; create a new one")
        self._on_event, self._on_closed = on_event, on_closed
        safe_url = self.url.split("?", 1)[0]
        try:
            self._ws = await asyncio.wait_for(ws_connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self._api_key}"},
                user_agent_header=USER_AGENT,
                compression=None,
                open_timeout=None,
                close_timeout=2,
                max_size=self.max_message_bytes,
                proxy=None if is_loopback_url(self.url) else True,
                logger=_RedactingLogger(logging.getLogger("livetalk.websocket.wire"),
                                        self._api_key),
            ), self.connect_timeout)
        except TimeoutError:
            raise ConnectTimeout(
                f"the WebSocket to {safe_url} did not open within {self.connect_timeout:g} s; "
                "check the network or raise connect_timeout"
            ) from None
        except InvalidStatus as exc:
            raise self._refusal(exc) from exc
        except InvalidURI as exc:
            raise ConfigError(f"invalid WebSocket URL {safe_url!r}: {exc}") from exc
        except (OSError, WebSocketException) as exc:
            raise SignalingError(f"could not open a WebSocket to {safe_url}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        self._open = True
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read(self._ws))
        self._writer = asyncio.ensure_future(self._write(self._ws))

    def _refusal(self, exc: Any) -> SignalingError:
        response = exc.response
        http_url = self.url.replace("ws", "http", 1)
        kept = {"content-type", "retry-after"}
        headers = [(k, v) for k, v in response.headers.raw_items() if k.lower() in kept]
        reply = httpx.Response(response.status_code, headers=headers,
                               content=bytes(response.body or b""),
                               request=httpx.Request("GET", http_url))
        return _status_error(reply)

    # ---------------------------------------------------------------- pumps
    async def _read(self, ws: ClientConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        error: BaseException | None = None
        try:
            # the iteration ends normally on a close with code 1000/1001, and raises otherwise
            async for message in ws:
                self._deliver(message)
        except ConnectionClosed as exc:
            frame = exc.rcvd
            self.close_code = frame.code if frame is not None else None
            error = ConnectError(f"the WebSocket dropped: {_close_reason(exc)}")
        self._end(error)

    def _deliver(self, message: str | bytes) -> None:
        try:
            event = wire.load(message)
        except EventParseError as exc:
            log.warning("ignoring a WebSocket message that is not an event: %s", exc)
            return
        try:
            if event.get("type") in _AUDIO_DELTA_TYPES:
                self._take_audio(event)
            if self._on_event is not None:
                self._on_event(event)
        except Exception:  # a consumer's bug must not stop the socket
            log.exception("a handler of an incoming message failed")

    async def _write(self, ws: ClientConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        assert self._wake is not None and self._progress is not None
        try:
            while True:
                while not self._outbox:
                    self._wake.clear()
                    await self._wake.wait()
                entry = self._outbox.popleft()
                self._sending = entry.ms
                await ws.send(entry.text)
                self._sent_ms += entry.ms
                self._sending = 0.0
                if entry.pcm is not None and self.on_sent_audio is not None:
                    try:
                        self.on_sent_audio(self._sent_at_api_rate(entry.pcm, entry.rate))
                    except Exception:  # a consumer's bug must not stop the socket
                        log.exception("the sent-audio consumer failed")
                self._progress.set()
        except ConnectionClosed:
            pass  # the reader reports why the socket ended
        finally:
            self._progress.set()

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        if self._progress is not None:
            self._progress.set()
        if not self._closed and self._on_closed is not None:
            self._on_closed(error)

    # ---------------------------------------------------------------- events
    def send(self, text: str) -> None:
        """Queue one JSON event; it leaves after everything queued before it.

        Raises:
            ConnectError: the WebSocket is not open.
        """
        self._check_open()
        self._push(_Outgoing(text))

    def _check_open(self) -> None:
        if not self._open or self._closed or self._ended:
            raise ConnectError("the WebSocket is not open")

    def _push(self, entry: _Outgoing) -> None:
        self._outbox.append(entry)
        assert self._wake is not None
        self._wake.set()

    # ---------------------------------------------------------------- user audio
    def _check_media(self) -> None:
        if self.sideband:
            raise ConfigError("a sideband carries no audio: the browser or peer of the call "
                              "holds the media; send audio on that side")

    def send_audio(self, pcm: np.ndarray, rate: int) -> None:
        """Queue user audio (int16 mono at ``rate``) as ``input_audio_buffer.append`` events.

        Successive calls at one rate are one continuous stream, resampled statefully and once,
        to the rate of the session's input format (none at that rate); each event carries at
        most 100 ms.

        Raises:
            ConfigError: this is a sideband.
            AudioFormatError: ``pcm`` is not 1-D int16, or ``rate`` is not a positive integer.
            ConnectError: the WebSocket is not open.
        """
        self._check_media()
        self._check_open()
        wire_rate = self._in_codec.rate
        resampler = self._in_resamplers.get(rate)
        if resampler is None:
            resampler = self._in_resamplers[rate] = Resampler(rate, wire_rate)
        audio = resampler.process(check_pcm(pcm))
        step = ms_to_samples(CHUNK_MS, wire_rate)
        for start in range(0, audio.size, step):
            self._queue_audio(audio[start:start + step], wire_rate)

    def _queue_audio(self, pcm: PCM, rate: int) -> None:
        """Queue audio already at the input format's rate as one append event."""
        if not pcm.size:
            return
        codec = self._in_codec
        if rate != codec.rate:  # the session's input format changed while this audio waited
            pcm, rate = resample(pcm, rate, codec.rate), codec.rate
        self._push(_Outgoing(encode_append(pcm, codec), pcm, rate))

    def _sent_at_api_rate(self, pcm: PCM, rate: int) -> PCM:
        """What left, at 24 kHz for ``on_sent_audio`` (one stateful resampling from G.711's
        8 kHz; PCM16 is already at 24 kHz)."""
        if rate == API_RATE:
            return pcm
        if self._sent_view.in_rate != rate:
            self._sent_view = Resampler(rate, API_RATE)
        return self._sent_view.process(pcm)

    async def play(self, source: Source) -> None:
        """Send every chunk of a source, 100 ms per event, paced by the media clock.

        Returns once the source is exhausted and its audio has left (or the socket ended).
        The source is closed in every case. Cancelling is safe; call :meth:`clear_outbound`
        afterwards to drop what is still queued.

        Raises:
            ConfigError: this is a sideband.
            ConnectError: the WebSocket is not open.
        """
        try:
            self._check_media()
            self._check_open()
            wire_rate = self._in_codec.rate
            resampler = Resampler(source.rate, wire_rate)
            chunker = Chunker(ms_to_samples(CHUNK_MS, wire_rate))
            clock = self.clock
            start, index = clock.now(), 0
            async for chunk in source:
                if self._in_codec.rate != wire_rate:  # the session's input format changed
                    for rest in (*chunker.push(resampler.flush()), chunker.flush()):
                        self._queue_audio(rest, wire_rate)
                    wire_rate = self._in_codec.rate
                    resampler = Resampler(source.rate, wire_rate)
                    chunker = Chunker(ms_to_samples(CHUNK_MS, wire_rate))
                for piece in chunker.push(resampler.process(check_pcm(chunk))):
                    await clock.sleep_until(start + index * CHUNK_MS / 1000)
                    if self._closed or self._ended:
                        return
                    self._queue_audio(piece, wire_rate)
                    index += 1
            for piece in chunker.push(resampler.flush()):
                self._queue_audio(piece, wire_rate)
            self._queue_audio(chunker.flush(), wire_rate)
            await self._wait_sent()
        finally:
            await source.aclose()

    async def _wait_sent(self) -> None:
        progress = self._progress
        assert progress is not None
        while (self._sending or any(e.ms for e in self._outbox)) and not (
            self._closed or self._ended
        ):
            progress.clear()
            await progress.wait()

    def clear_outbound(self) -> float:
        """Drop the user audio queued and not yet sent; return the milliseconds dropped."""
        dropped = sum(e.ms for e in self._outbox)
        self._outbox = deque(e for e in self._outbox if e.pcm is None)
        self._in_resamplers.clear()
        return dropped

    @property
    def sent_ms(self) -> float:
        """Milliseconds of user audio sent so far."""
        return self._sent_ms

    def receive_statistics(self) -> None:
        """None: audio arrives in events, with no jitter buffer."""
        return None

    # ---------------------------------------------------------------- model audio
    def add_audio_consumer(self, consumer: AudioConsumer) -> None:
        """Receive model audio (int16 mono 24 kHz) as its deltas arrive."""
        self._consumers.append(consumer)

    def remove_audio_consumer(self, consumer: AudioConsumer) -> None:
        """Stop receiving model audio."""
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)

    def _take_audio(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if not isinstance(delta, str):
            return
        try:
            raw = base64.b64decode(delta, validate=True)
        except (binascii.Error, ValueError):
            log.warning("ignoring an audio delta that is not valid base64 (%d chars)", len(delta))
            return
        pcm = self._out_codec.decode(raw)
        if self._out_codec.rate != API_RATE:
            pcm = self._from_wire.process(pcm)
        if pcm.size:
            for consumer in list(self._consumers):
                consumer(pcm)

    # ---------------------------------------------------------------- close
    async def close(self, *, hangup_call: bool = True) -> None:
        """Send what is queued (for up to a second), then close the socket. Idempotent.

        There is no hang-up request over WebSocket: closing the socket ends a session it
        opened, and detaches a sideband without ending the call; ``hangup_call`` is accepted
        for the transport interface only.
        """
        if self._closed:
            return
        if self._writer is not None and self._outbox and not self._ended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain(), _FLUSH_ON_CLOSE_S)
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
        if self._ws is not None:
            await self._ws.close()
        tasks = [t for t in (self._reader, self._writer) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._outbox.clear()

    async def _drain(self) -> None:
        progress = self._progress
        assert progress is not None
        while (self._outbox or self._sending) and not self._ended:
            progress.clear()
            await progress.wait()


def _close_reason(exc: Any) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "no close frame (connection lost)"
    return f"code {frame.code}" + (f", {frame.reason}" if frame.reason else "")
