"""The WebRTC transport: one aiortc peer connection to ``POST /realtime/calls``.

The peer has the ``oai-events`` data channel (created before the offer, so the offer carries
the ``m=application`` line), one sendrecv audio transceiver fed by an
:class:`~livetalk.transport.tracks.OutboundAudioTrack`, and a
:class:`~livetalk.transport.tracks.RemoteAudioReader` that always drains the remote track.
No STUN server is configured by default: the API offers host candidates, and a dead STUN
server stalls aiortc's gathering for seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from livetalk._net import is_loopback_url
from livetalk.audio.clock import MediaClock
from livetalk.audio.format import API_RATE, FRAME_MS, RTC_RATE
from livetalk.audio.sources import Source
from livetalk.errors import (
    ConnectError,
    ConnectTimeout,
    EventParseError,
    LivetalkError,
    LocalProtocolError,
)
from livetalk.protocol import wire
from livetalk.protocol.conversation import Playout
from livetalk.transport.base import ClosedHandler, EventHandler
from livetalk.transport.ice import loopback_candidates
from livetalk.transport.jitter import (
    AdaptiveReceiver,
    install_adaptive_playout,
    set_peer_receive_prefetch,
)
from livetalk.transport.jitterbuffer import JitterBufferSettings, ReceiveStatistics
from livetalk.transport.opus import OPUS_RATES
from livetalk.transport.signaling import create_call, hangup, is_ephemeral
from livetalk.transport.tracks import OutboundAudioTrack, RemoteAudioReader

__all__ = ["WebRTCTransport"]

log = logging.getLogger("livetalk.webrtc")


class WebRTCTransport:
    """Carries events over the data channel and audio over RTP.

    Args:
        base_url: API base URL, e.g. ``https://api.openai.com/v1``.
        api_key: a standard key or an ``ek_`` client secret.
        session: the GA session dict sent in the multipart form, or None for raw SDP.
        http_client: httpx client to use for signaling.
        ice_servers: STUN/TURN servers (none by default).
        clock: the outbound media clock (``MediaClock(speed)`` for accelerated feeding).
        connect_timeout: seconds for signaling + ICE + DTLS + data channel open.
        output_rate: the rate at which received audio is delivered to consumers.
        media_timeout: seconds without any RTP audio from the server after which the call
            counts as lost (the API and the local server send audio continuously, silence
            included); None disables the watchdog and leaves detection to ICE consent
            checks (about 30 s).
        jitter_buffer: the adaptive receive jitter buffer's settings (the defaults if None;
            ``JitterBufferSettings.low_latency()`` caps its delay at one frame).
        jitter_prefetch_frames: use aiortc's fixed receive jitter buffer instead of the
            adaptive one, this many 20 ms frames deep (aiortc's default is 4 = 80 ms); it
            conceals nothing. For comparisons; None (the default) keeps the adaptive buffer.
    """

    kind = "webrtc"
    playout = Playout.SERVER
    carries_audio = True
    input_rate = RTC_RATE
    """User audio travels as 48 kHz Opus."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        session: dict[str, Any] | None,
        http_client: httpx.AsyncClient,
        ice_servers: list[RTCIceServer] | None = None,
        clock: MediaClock | None = None,
        connect_timeout: float = 15.0,
        output_rate: int = API_RATE,
        media_timeout: float | None = 5.0,
        jitter_prefetch_frames: int | None = None,
        jitter_buffer: JitterBufferSettings | None = None,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self._session = session
        self._http = http_client
        self._ice_servers = ice_servers or []
        self.connect_timeout = connect_timeout
        self.call_id: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.channel: Any = None
        self.track = OutboundAudioTrack(clock=clock)
        self.reader: RemoteAudioReader | None = None
        self._audio_consumers: list[Callable[[np.ndarray], None]] = []
        self._output_rate = output_rate
        self._on_event: EventHandler | None = None
        self._on_closed: ClosedHandler | None = None
        self._closed = False
        self._open = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._failed: BaseException | None = None
        self.media_timeout = media_timeout
        self._watchdog: asyncio.Task[None] | None = None
        self._jitter_prefetch = jitter_prefetch_frames
        self._jitter_settings = jitter_buffer
        self._receivers: list[AdaptiveReceiver] = []

    def __repr__(self) -> str:
        return f"<WebRTCTransport {self.base_url} call_id={self.call_id}>"

    # ---------------------------------------------------------------- connect
    async def connect(self, on_event: EventHandler, on_closed: ClosedHandler) -> None:
        """Offer, POST, answer, and wait for the data channel; raises ConnectError/Timeout."""
        self._on_event, self._on_closed = on_event, on_closed
        try:
            await asyncio.wait_for(self._connect(), self.connect_timeout)
        except TimeoutError:
            await self._teardown()
            raise ConnectTimeout(
                f"the WebRTC call to {self.base_url} did not connect within "
                f"{self.connect_timeout:g} s (ICE/DTLS or data channel); check that the server "
                "is reachable over UDP, or raise connect_timeout"
            ) from None
        except BaseException:
            await self._teardown()
            raise

    async def _connect(self) -> None:
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
        channel = self.channel = pc.createDataChannel("oai-events")
        pc.addTrack(self.track)
        if self._jitter_prefetch is not None:
            set_peer_receive_prefetch(pc, self._jitter_prefetch)
        else:
            rate = self._output_rate if self._output_rate in OPUS_RATES else RTC_RATE
            self._receivers = install_adaptive_playout(
                pc, settings=self._jitter_settings, clock=self.track.clock, rate=rate)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio" and self.reader is None:
                self.reader = RemoteAudioReader(track, rate=self._output_rate,
                                                on_audio=self._deliver_audio)
                self.reader.start()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "failed":
                self._fail(ConnectError("the WebRTC connection failed (ICE or DTLS)"))

        @channel.on("open")
        def on_open() -> None:
            self._open.set()
            if not self._ready.done():
                self._ready.set_result(None)

        @channel.on("message")
        def on_message(message: Any) -> None:
            try:
                event = wire.load(message)
            except EventParseError as exc:
                log.warning("ignoring a data-channel message that is not an event: %s", exc)
                return
            if self._on_event is not None:
                self._on_event(event)

        @channel.on("close")
        def on_close() -> None:
            if self._open.is_set():
                self._fail(ConnectError("the oai-events data channel closed"))

        with loopback_candidates(is_loopback_url(self.base_url)):
            await pc.setLocalDescription(await pc.createOffer())
        answer = await create_call(
            self._http, base_url=self.base_url, api_key=self._api_key,
            offer_sdp=pc.localDescription.sdp, session=self._session,
            timeout=self.connect_timeout,
        )
        self.call_id = answer.call_id
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        except (ValueError, LivetalkError) as exc:
            raise ConnectError(f"the server's SDP answer was rejected: {exc}") from exc
        await self._ready
        if self.media_timeout is not None:
            self._watchdog = asyncio.ensure_future(self._watch_media(self.media_timeout))

    async def _watch_media(self, timeout: float) -> None:
        """Fail the call when no RTP audio has arrived for ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        last_frames, last_change = -1, loop.time()
        while not self._closed and self._failed is None:
            await asyncio.sleep(timeout / 4)
            frames = self.reader.frames if self.reader is not None else 0
            now = loop.time()
            if frames != last_frames:
                last_frames, last_change = frames, now
            elif now - last_change >= timeout:
                self._fail(ConnectError(
                    f"no audio from the server for {timeout:g} s: the connection is lost"))
                return

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None and not self._closed:
            self._failed = exc
            if not self._ready.done():
                self._ready.set_exception(exc)
            elif self._on_closed is not None:
                self._on_closed(exc)

    # ---------------------------------------------------------------- audio
    def receive_statistics(self) -> ReceiveStatistics | None:
        """The adaptive receive jitter buffer's figures (None with aiortc's fixed buffer)."""
        return self._receivers[0].statistics() if self._receivers else None

    @property
    def outbound_track(self) -> OutboundAudioTrack:
        """The track carrying the user's audio."""
        return self.track

    def set_audio_formats(self, input_format: str, output_format: str) -> None:
        """Ignored: over WebRTC the media codec is negotiated in SDP (Opus)."""

    def add_audio_consumer(self, consumer: Callable[[np.ndarray], None]) -> None:
        """Receive model audio (int16 mono at ``output_rate``) as it arrives."""
        self._audio_consumers.append(consumer)

    def remove_audio_consumer(self, consumer: Callable[[np.ndarray], None]) -> None:
        with contextlib.suppress(ValueError):
            self._audio_consumers.remove(consumer)

    def _deliver_audio(self, pcm: np.ndarray) -> None:
        for consumer in self._audio_consumers:
            consumer(pcm)

    @property
    def on_sent_audio(self) -> Callable[[np.ndarray], None] | None:
        """Called with each 20 ms of audio actually sent (24 kHz; silence included): the
        track's sent-audio view, resampled once from the frames as they leave."""
        return self.track.on_sent_audio

    @on_sent_audio.setter
    def on_sent_audio(self, consumer: Callable[[np.ndarray], None] | None) -> None:
        self.track.on_sent_audio = consumer

    def send_audio(self, pcm: np.ndarray, rate: int) -> None:
        """Queue microphone audio on the outbound track."""
        self.track.enqueue(pcm, rate)

    async def play(self, source: Source) -> None:
        """Feed a source to the outbound track, paced by its clock; return once its audio
        has been sent (not merely queued), as over WebSocket."""
        await self.track.play(source)
        await self.track.wait_drained()

    def clear_outbound(self) -> float:
        """Drop the audio queued on the outbound track."""
        return float(self.track.clear())

    @property
    def sent_ms(self) -> float:
        """Media milliseconds sent on the outbound track (silence included)."""
        return self.track.frames * float(FRAME_MS)

    # ---------------------------------------------------------------- events
    def send(self, text: str) -> None:
        """Send one JSON event over the data channel.

        Raises:
            ConnectError: the channel is not open.
            LocalProtocolError: the event is larger than the peer accepts.
        """
        if self.channel is None or self.channel.readyState != "open":
            raise ConnectError("the oai-events data channel is not open")
        try:
            self.channel.send(text)
        except ValueError as exc:  # aiortc: over the peer's max-message-size
            raise LocalProtocolError(
                f"event of {len(text.encode())} bytes refused by the data channel: {exc}"
            ) from exc

    # ---------------------------------------------------------------- close
    async def close(self, *, hangup_call: bool = True) -> None:
        """Hang up (standard keys only), stop the tracks and close the peer connection."""
        if self._closed:
            return
        self._closed = True
        if hangup_call and self.call_id and not is_ephemeral(self._api_key) and self._open.is_set():
            try:
                await hangup(self._http, base_url=self.base_url, api_key=self._api_key,
                             call_id=self.call_id)
            except LivetalkError as exc:
                log.info("hangup failed: %s", exc)
        await self._teardown()

    async def _teardown(self) -> None:
        self._closed = True
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        if self.reader is not None:
            await self.reader.stop()
        for receiver in self._receivers:
            await receiver.aclose()
        self.track.stop()
        if self.pc is not None:
            await self.pc.close()
