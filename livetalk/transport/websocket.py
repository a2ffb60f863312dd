"""The WebSocket transport: events and base64 audio on one ``GET /realtime`` WebSocket.

It is the fallback when WebRTC cannot connect (UDP blocked, no aiortc), and the sideband
transport that attaches a backend to a live WebRTC call by ``call_id``. Everything is a JSON
text message: user audio goes up as ``input_audio_buffer.append`` events (base64 PCM16 LE,
24 kHz, one per 100 ms), and model audio comes down as ``response.output_audio.delta`` events,
which this transport decodes for its audio consumers while still passing every message on.

Theory of operation: :meth:`WebSocketTransport.connect` opens the socket (translating a
refused handshake into :class:`~livetalk.errors.APIStatusError` subclasses) and starts two
tasks. The reader hands every message to ``on_message`` and calls ``on_closed`` once when the
socket ends while the transport is open. The writer drains one ordered outbox, so events and
audio leave in the order they were queued and :meth:`WebSocketTransport.send` can stay
synchronous. Audio entries in the outbox can be dropped again with
:meth:`WebSocketTransport.clear_outbound`.

There is no media clock at the far end: the server does not know what was played, so after a
barge-in the client truncates the reply itself at the played position with
:func:`truncate_event` (see :meth:`WebSocketTransport.truncation`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import numpy as np

from livetalk._extras import require
from livetalk.audio.clock import Clock, MediaClock
from livetalk.audio.format import API_RATE, CHUNK_MS, PCM, Chunker, check_pcm, ms_to_samples
from livetalk.audio.resample import Resampler
from livetalk.errors import ConfigError, ConnectError, ConnectTimeout, SignalingError
from livetalk.transport.base import AudioConsumer, ClosedHandler, MessageHandler
from livetalk.transport.ice import is_loopback_url
from livetalk.transport.signaling import _status_error

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = [
    "DEFAULT_MODEL",
    "WebSocketTransport",
    "encode_append",
    "realtime_url",
    "truncate_event",
]

log = logging.getLogger("livetalk.websocket")

DEFAULT_MODEL = "gpt-realtime"
"""The model put in the URL when none is given."""
_CHUNK_SAMPLES = ms_to_samples(CHUNK_MS, API_RATE)
_AUDIO_DELTA_TYPES = ("response.output_audio.delta", "response.audio.delta")
_MAX_TRACKED_ITEMS = 16
_FLUSH_ON_CLOSE_S = 1.0
_USER_AGENT = "livetalk/0.1"
_JOIN_EVENT = json.dumps({"type": "session.update", "session": {"type": "realtime"}},
                         separators=(",", ":"))


def realtime_url(base_url: str, *, model: str | None = None, call_id: str | None = None) -> str:
    """The WebSocket URL of the Realtime endpoint under ``base_url``.

    ``http`` becomes ``ws`` and ``https`` becomes ``wss``; the path gets ``/realtime`` and the
    query ``model=<model or gpt-realtime>``, or ``call_id=<id>`` for a sideband.

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


def truncate_event(item_id: str, received_ms: float, played_ms: float) -> dict[str, Any] | None:
    """The ``conversation.item.truncate`` that cuts a reply at the played position.

    The server accepts only an integer ``audio_end_ms`` within the audio it sent, so the
    position is clamped to ``[0, received_ms]`` and floored.

    Args:
        item_id: the assistant item whose audio was playing.
        received_ms: milliseconds of that item's audio received so far.
        played_ms: milliseconds of it played (heard) so far.

    Returns:
        The event to send (after ``response.cancel`` if the response is still active), or
        None when no audio of the item was received yet: there is nothing to truncate.
    """
    if received_ms <= 0:
        return None
    end = int(min(max(played_ms, 0.0), received_ms))
    return {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
            "audio_end_ms": end}


def encode_append(pcm: PCM) -> str:
    """One ``input_audio_buffer.append`` event (JSON text) carrying 24 kHz PCM16 LE."""
    audio = base64.b64encode(pcm.astype("<i2", copy=False).tobytes()).decode("ascii")
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio},
                      separators=(",", ":"))


@dataclass(slots=True)
class _Outgoing:
    text: str
    pcm: PCM | None = None  # the 24 kHz user audio carried, for an append

    @property
    def samples(self) -> int:
        return 0 if self.pcm is None else int(self.pcm.size)


@dataclass(slots=True)
class _ItemAudio:
    received_samples: int = 0
    first_media_t: float = 0.0


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
        model: the model of a new session (default ``gpt-realtime``).
        call_id: join this live WebRTC call as a sideband instead (no model then). A sideband
            carries no audio: the browser or peer of the call holds the media.
        clock: the media clock pacing :meth:`play` (``MediaClock(speed)`` feeds N x faster).
        connect_timeout: seconds for the TCP/TLS connect and the WebSocket handshake.
        output_rate: the rate at which model audio is delivered to consumers.
        max_message_bytes: the largest message accepted from the server; a bigger one closes
            the connection (code 1009) and the call fails.

    Raises:
        ConfigError: both ``model`` and ``call_id``, or a bad URL or rate.
    """

    kind = "websocket"
    media_audio = False

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str | None = None,
        call_id: str | None = None,
        clock: MediaClock | None = None,
        connect_timeout: float = 15.0,
        output_rate: int = 24000,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.url = realtime_url(base_url, model=model, call_id=call_id)
        if not api_key:
            raise ConfigError("the WebSocket transport needs an API key")
        if isinstance(output_rate, bool) or not isinstance(output_rate, int) or output_rate <= 0:
            raise ConfigError(f"output_rate must be a positive integer, got {output_rate!r}")
        if max_message_bytes <= 0:
            raise ConfigError(f"max_message_bytes must be > 0, got {max_message_bytes!r}")
        self._api_key = api_key
        self.call_id = call_id
        self.clock: Clock = clock if clock is not None else MediaClock()
        self.connect_timeout = connect_timeout
        self.output_rate = output_rate
        self.max_message_bytes = max_message_bytes
        #: Called with each piece of user audio (int16 mono 24 kHz) once it was sent.
        self.on_sent_audio: AudioConsumer | None = None
        self._ws: ClientConnection | None = None
        self._on_message: MessageHandler | None = None
        self._on_closed: ClosedHandler | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outbox: deque[_Outgoing] = deque()
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None
        self._in_resamplers: dict[int, Resampler] = {}
        self._out_resampler = Resampler(API_RATE, output_rate)
        self._consumers: list[AudioConsumer] = []
        self._items: OrderedDict[str, _ItemAudio] = OrderedDict()
        self._sent_samples = 0
        self._sending = 0  # samples of the audio entry being written, if any
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

    # ---------------------------------------------------------------- connect
    async def connect(self, on_message: MessageHandler, on_closed: ClosedHandler) -> None:
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
        self._on_message, self._on_closed = on_message, on_closed
        safe_url = self.url.split("?", 1)[0]
        try:
            self._ws = await asyncio.wait_for(ws_connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self._api_key}"},
                user_agent_header=_USER_AGENT,
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
        if self.sideband:
            # A sideband joins a session that already exists: whether the server greets it
            # with session.created is not documented. An empty update is answered with
            # session.updated carrying the full effective session, which is what the call
            # waits for before it is ready.
            self._push(_Outgoing(_JOIN_EVENT))

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
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self._deliver(text)
        except ConnectionClosed as exc:
            error = ConnectError(f"the WebSocket dropped: {_close_reason(exc)}")
        self._end(error)

    def _deliver(self, text: str) -> None:
        try:
            if self._on_message is not None:
                self._on_message(text)
            if '.audio.delta"' in text or '.output_audio.delta"' in text:
                self._take_audio(text)
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
                self._sending = entry.samples
                await ws.send(entry.text)
                self._sent_samples += entry.samples
                self._sending = 0
                if entry.pcm is not None and self.on_sent_audio is not None:
                    try:
                        self.on_sent_audio(entry.pcm)
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

        Successive calls at one rate are one continuous stream (resampled statefully to
        24 kHz); each event carries at most 100 ms.

        Raises:
            ConfigError: this is a sideband.
            AudioFormatError: ``pcm`` is not 1-D int16, or ``rate`` is not a positive integer.
            ConnectError: the WebSocket is not open.
        """
        self._check_media()
        self._check_open()
        resampler = self._in_resamplers.get(rate)
        if resampler is None:
            resampler = self._in_resamplers[rate] = Resampler(rate, API_RATE)
        audio = resampler.process(check_pcm(pcm))
        for start in range(0, audio.size, _CHUNK_SAMPLES):
            self._queue_audio(audio[start:start + _CHUNK_SAMPLES])

    def _queue_audio(self, pcm: PCM) -> None:
        if pcm.size:
            self._push(_Outgoing(encode_append(pcm), pcm))

    async def play(self, source: Any) -> None:
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
            resampler = Resampler(source.rate, API_RATE)
            chunker = Chunker(_CHUNK_SAMPLES)
            clock = self.clock
            start, index = clock.now(), 0
            async for chunk in source:
                for piece in chunker.push(resampler.process(check_pcm(chunk))):
                    await clock.sleep_until(start + index * CHUNK_MS / 1000)
                    if self._closed or self._ended:
                        return
                    self._queue_audio(piece)
                    index += 1
            for piece in chunker.push(resampler.flush()):
                self._queue_audio(piece)
            self._queue_audio(chunker.flush())
            await self._wait_sent()
        finally:
            await source.aclose()

    async def _wait_sent(self) -> None:
        progress = self._progress
        assert progress is not None
        while (self._sending or any(e.samples for e in self._outbox)) and not (
            self._closed or self._ended
        ):
            progress.clear()
            await progress.wait()

    def clear_outbound(self) -> float:
        """Drop the user audio queued and not yet sent; return the milliseconds dropped."""
        dropped = sum(e.samples for e in self._outbox)
        self._outbox = deque(e for e in self._outbox if not e.samples)
        self._in_resamplers.clear()
        return dropped * 1000 / API_RATE

    @property
    def sent_ms(self) -> float:
        """Milliseconds of user audio sent so far."""
        return self._sent_samples * 1000 / API_RATE

    # ---------------------------------------------------------------- model audio
    def add_audio_consumer(self, consumer: AudioConsumer) -> None:
        """Receive model audio (int16 mono at ``output_rate``) as its deltas arrive."""
        self._consumers.append(consumer)

    def remove_audio_consumer(self, consumer: AudioConsumer) -> None:
        """Stop receiving model audio."""
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)

    def _take_audio(self, text: str) -> None:
        event = json.loads(text)
        if event.get("type") not in _AUDIO_DELTA_TYPES:
            return
        delta, item_id = event.get("delta"), event.get("item_id")
        if not isinstance(delta, str) or not isinstance(item_id, str):
            return
        try:
            raw = base64.b64decode(delta, validate=True)
        except (binascii.Error, ValueError):
            log.warning("ignoring an audio delta that is not valid base64 (%d chars)", len(delta))
            return
        pcm = np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2").astype(np.int16)
        if pcm.size == 0:
            return
        self._track(item_id).received_samples += pcm.size
        out = self._out_resampler.process(pcm)
        if out.size:
            for consumer in list(self._consumers):
                consumer(out)

    def _track(self, item_id: str) -> _ItemAudio:
        entry = self._items.get(item_id)
        if entry is None:
            entry = self._items[item_id] = _ItemAudio(first_media_t=self.clock.now())
            while len(self._items) > _MAX_TRACKED_ITEMS:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(item_id)
        return entry

    @property
    def audio_item_id(self) -> str | None:
        """The assistant item whose audio arrived last, or None."""
        return next(reversed(self._items), None)

    def received_ms(self, item_id: str) -> float:
        """Milliseconds of audio received for ``item_id`` (0 for an unknown item)."""
        entry = self._items.get(item_id)
        return entry.received_samples * 1000 / API_RATE if entry else 0.0

    def truncation(self, played_ms: float | None = None) -> dict[str, Any] | None:
        """The ``conversation.item.truncate`` for an interruption of the latest reply audio.

        Send it after ``response.cancel`` (when a response is active) to make the server
        forget the audio that was never heard.

        Args:
            played_ms: how much of that item's audio was played. By default it is estimated
                as the media time since its first delta arrived (playback that starts as soon
                as audio arrives), capped at what was received.

        Returns:
            The event (see :func:`truncate_event`), or None when no reply audio arrived yet.
        """
        item_id = self.audio_item_id
        if item_id is None:
            return None
        entry = self._items[item_id]
        if played_ms is None:
            played_ms = (self.clock.now() - entry.first_media_t) * 1000
        return truncate_event(item_id, self.received_ms(item_id), played_ms)

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
