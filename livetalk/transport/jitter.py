"""The receive jitter buffer of WebRTC audio: livetalk's adaptive one, or aiortc's own.

**Adaptive (the default).** :class:`AdaptiveReceiver` takes the place of aiortc's
sequence-number ``JitterBuffer`` on one audio :class:`~aiortc.RTCRtpReceiver`. aiortc still
receives, decrypts and depayloads each RTP packet; instead of waiting for four newer packets
and handing the frame to its decoder thread, the packet goes to an
:class:`~livetalk.transport.jitterbuffer.AdaptiveJitterBuffer` (the sans-I/O core: target delay from
the measured arrival jitter, concealment of missing packets, late packets dropped). A task on
the event loop plays each slot when the media clock reaches it: it decodes the packet with
libopus (:class:`~livetalk.transport.opus.OpusDecoder`) straight to mono at the rate the
application reads, or conceals a missing one with libopus's packet-loss concealment (or the
next packet's in-band FEC), and puts the ``av.AudioFrame`` on the receiver's track, where
:class:`~livetalk.transport.tracks.RemoteAudioReader` reads it as before. aiortc's decoder
thread stays idle. Without libopus (see :func:`~livetalk.transport.opus.opus_decoder_available`)
PyAV decodes and a missing frame is concealed by repeating the last one, fading by half each
time. A stream in another codec than Opus is left to aiortc's own buffer and decoder.

Install it with :func:`install_adaptive_playout` (every audio receiver of a peer connection)
right after ``addTrack`` (offerer) or ``setRemoteDescription`` (answerer); read its figures
with :meth:`AdaptiveReceiver.statistics`. ``livetalk.connect()`` does it for every call.

**aiortc's fixed buffer.** aiortc gives every audio receiver a
``JitterBuffer(capacity=16, prefetch=4)``: a frame goes to the decoder only once four newer
frames have arrived, so every received frame waits 80 ms (4 x 20 ms), and nothing is concealed
(a lost packet is missing from the decoded audio). :func:`set_receive_prefetch` sets the depth
of one such receiver, :func:`set_peer_receive_prefetch` of every audio receiver of a peer
connection (``WebRTCTransport(jitter_prefetch_frames=...)`` uses them instead of the adaptive
buffer). Call them before media flows; on a receiver that already holds frames they keep only
the newest ``frames`` of them, dropping at most ``(old depth - new depth)`` x 20 ms once.

Example::

    pc = RTCPeerConnection()
    pc.addTrack(track)
    receivers = install_adaptive_playout(pc)   # or set_peer_receive_prefetch(pc, 1)
    ...
    print(receivers[0].statistics())
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from typing import Any, cast

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from livetalk.audio.clock import Clock, MediaClock
from livetalk.audio.format import PCM, RTC_RATE
from livetalk.errors import ConfigError
from livetalk.transport.jitterbuffer import (
    PACKET,
    RECOVER,
    AdaptiveJitterBuffer,
    JitterBufferSettings,
    ReceiveStatistics,
    Slot,
)
from livetalk.transport.opus import (
    OPUS_RATES,
    OpusDecoder,
    OpusError,
    opus_decoder_available,
    packet_samples,
)

__all__ = [
    "AIORTC_AUDIO_CAPACITY",
    "AIORTC_AUDIO_PREFETCH",
    "ACCELERATED_MIN_DELAY_MS",
    "COMMIT_SAFE_MEDIA_MS",
    "LOW_LATENCY_PREFETCH",
    "QUIET_PEAK",
    "AdaptiveReceiver",
    "ReceiveStatistics",
    "adaptive_receivers",
    "install_adaptive_playout",
    "install_server_playout",
    "receive_prefetch",
    "set_peer_receive_prefetch",
    "set_receive_prefetch",
]

log = logging.getLogger(__name__)

AIORTC_AUDIO_PREFETCH = 4
"""aiortc's own audio prefetch: frames held back before decoding (80 ms)."""

AIORTC_AUDIO_CAPACITY = 16
"""aiortc's own audio jitter-buffer capacity, in packets."""

LOW_LATENCY_PREFETCH = 1
"""The shallowest useful depth: a frame is released as soon as the next one arrives (20 ms).

aiortc releases a frame only when a packet with a newer timestamp arrives, so depths 0 and 1
behave the same.
"""

ACCELERATED_MIN_DELAY_MS = 60.0
"""The default delay floor, in real milliseconds, when the media clock runs faster than real
time (``connect(speed=N)`` against ``serve(realtime_factor=N)``)."""
COMMIT_SAFE_MEDIA_MS = 200.0
"""The most media the local server's buffer holds back (:func:`install_server_playout`): under
the 250 ms a livetalk client waits before committing a turn."""
QUIET_PEAK = 330
"""A decoded slot whose peak stays below this (about -40 dBFS) counts as quiet: the adaptive
buffer only shrinks its delay across quiet slots."""

_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_CODECS_ATTR = "_RTCRtpReceiver__codecs"
_KIND_ATTR = "_RTCRtpReceiver__kind"
_DECODER_ATTR = "_RTCRtpReceiver__decoder_thread"
_STARTED_ATTR = "_RTCRtpReceiver__started"
_IDLE_CHECK_S = 0.5
_LATE_S = 0.002
"""A slot pulled this late (real seconds) may find its packet still in the socket."""
_IO_TURNS = 3
"""Event-loop turns from a datagram in the socket to aiortc handing its packet over."""
"""While idle (no packet to play), how often the playout task checks that its track lives."""


def _buffer_of(receiver: RTCRtpReceiver) -> JitterBuffer:
    buffer = getattr(receiver, _BUFFER_ATTR, None)
    if isinstance(buffer, AdaptiveReceiver):
        raise ConfigError(
            "this receiver runs livetalk's adaptive jitter buffer; aiortc's prefetch does not "
            "apply (create the transport with jitter_prefetch_frames to use aiortc's buffer)"
        )
    if not isinstance(buffer, JitterBuffer):
        raise ConfigError(
            "this aiortc version keeps no JitterBuffer where livetalk expects it; "
            "the receive jitter buffer cannot be changed"
        )
    return buffer


def _is_audio(receiver: RTCRtpReceiver) -> bool:
    kind = getattr(receiver, _KIND_ATTR, None)
    if kind is not None:
        return bool(kind == "audio")
    return not getattr(_buffer_of(receiver), "_is_video", False)


def receive_prefetch(receiver: RTCRtpReceiver) -> int:
    """The receiver's current jitter-buffer depth, in frames (aiortc's audio default is 4).

    Raises:
        ConfigError: the installed aiortc keeps its jitter buffer elsewhere.
    """
    return int(_buffer_of(receiver)._prefetch)


def set_receive_prefetch(
    receiver: RTCRtpReceiver, frames: int, *, capacity: int = AIORTC_AUDIO_CAPACITY
) -> int:
    """Set how many frames an audio receiver holds back before decoding.

    Each frame held adds 20 ms of receive latency; 1 (:data:`LOW_LATENCY_PREFETCH`) is the
    minimum, 4 (:data:`AIORTC_AUDIO_PREFETCH`) is aiortc's default. Call it before media flows
    (see the module docstring); read the result back with :func:`receive_prefetch`.

    Args:
        receiver: an audio ``RTCRtpReceiver`` (``pc.getReceivers()``, ``transceiver.receiver``).
        frames: the new depth, 0 to ``capacity - 1``.
        capacity: packets the buffer can hold, a power of two; a gap this long (a lost packet
            followed by ``capacity`` newer ones) makes the buffer skip the hole.

    Returns:
        The number of frames dropped to reach the new depth (0 before media flows).

    Raises:
        ConfigError: ``frames`` or ``capacity`` is out of range, the receiver is a video one,
            or the installed aiortc keeps its jitter buffer elsewhere.
    """
    if isinstance(capacity, bool) or capacity < 2 or capacity & (capacity - 1):
        raise ConfigError(f"capacity must be a power of two >= 2, got {capacity!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or not 0 <= frames < capacity:
        raise ConfigError(f"frames must be an integer from 0 to {capacity - 1}, got {frames!r}")
    if not _is_audio(receiver):
        raise ConfigError("set_receive_prefetch applies to audio receivers only")
    old = _buffer_of(receiver)
    held = _held_packets(old)
    keep = held[len(held) - max(frames, 1):] if held else []
    fresh = JitterBuffer(capacity=capacity, prefetch=frames)
    for packet in keep:
        fresh.add(packet)
    setattr(receiver, _BUFFER_ATTR, fresh)
    return len(held) - len(keep)


def set_peer_receive_prefetch(
    pc: RTCPeerConnection, frames: int, *, capacity: int = AIORTC_AUDIO_CAPACITY
) -> int:
    """Apply :func:`set_receive_prefetch` to every audio receiver of ``pc``.

    Call it after ``addTrack`` and before ``createOffer`` (or right after
    ``setRemoteDescription`` on the answering side).

    Returns:
        The number of audio receivers changed.
    """
    changed = 0
    for receiver in pc.getReceivers():
        if _is_audio(receiver):
            set_receive_prefetch(receiver, frames, capacity=capacity)
            changed += 1
    return changed


def _held_packets(buffer: JitterBuffer) -> list[RtpPacket]:
    """The packets a jitter buffer holds, oldest first (by sequence from its origin)."""
    origin = buffer._origin
    if origin is None:
        return []
    slots = buffer._packets
    size = buffer.capacity
    held: list[RtpPacket] = []
    for offset in range(size):
        packet = slots[(origin + offset) % size]
        if packet is not None:
            held.append(packet)
    return held


# ------------------------------------------------------------------------------ adaptive glue
class AdaptiveReceiver:
    """livetalk's adaptive jitter buffer, decoder and concealment on one aiortc audio receiver.

    It stands where aiortc keeps the receiver's ``JitterBuffer`` (aiortc calls :meth:`add`
    with every depayloaded RTP packet) and plays the stream on ``clock`` (see the module
    docstring). Build it with :func:`install_adaptive_playout`.

    Args:
        receiver: an audio ``RTCRtpReceiver`` whose media has not started.
        settings: the buffer's trade-off (:class:`JitterBufferSettings`; the defaults if None).
        clock: the media clock (real time if None). A ``MediaClock(speed)`` faster than real
            time (``connect(speed=N)`` against ``serve(realtime_factor=N)``) plays slots
            ``speed`` times faster, while the jitter and delays stay measured in real time.
        rate: the rate of the decoded frames put on the track (8, 12, 16, 24 or 48 kHz;
            ``RemoteAudioReader`` then needs no resampling when it reads at that rate).

    Raises:
        ConfigError: not an audio receiver, or a rate libopus cannot decode to.
    """

    def __init__(self, receiver: RTCRtpReceiver, *, settings: JitterBufferSettings | None = None,
                 clock: Clock | None = None, rate: int = RTC_RATE) -> None:
        if not _is_audio(receiver):
            raise ConfigError("the adaptive jitter buffer applies to audio receivers only")
        if rate not in OPUS_RATES:
            raise ConfigError(f"the decoded rate must be one of {OPUS_RATES} Hz, got {rate!r}")
        self.receiver = receiver
        self.clock: Clock = clock if clock is not None else MediaClock()
        self._speed = float(getattr(self.clock, "speed", 1.0))
        if settings is None and self._speed > 1:
            # faster than real time, every ms the event loop is late costs `speed` ms of
            # media: a floor keeps accelerated runs (tests, batch feeding) free of glitches
            settings = JitterBufferSettings(min_delay_ms=ACCELERATED_MIN_DELAY_MS)
        self.core = AdaptiveJitterBuffer(settings, speed=self._speed)
        self.rate = rate
        self._decoder: _Decoder = (_LibopusDecoder(rate) if opus_decoder_available()
                                   else _PyAVDecoder(rate))
        self._fallback: JitterBuffer | None = None  # for a codec other than Opus
        self._time_base = fractions.Fraction(1, rate)
        self._pts = 0
        self._task: asyncio.Task[None] | None = None  # the playout task (other clocks)
        self._wake: asyncio.Event | None = None
        self._timer: asyncio.Handle | None = None  # the next slot's callback (MediaClock)
        self._io_turns = 0
        self._timers = isinstance(self.clock, MediaClock)
        self._closed = False
        self.decode_errors = 0
        """Packets libopus refused (concealed instead)."""

    def __repr__(self) -> str:
        s = self.core.statistics()
        return (f"<AdaptiveReceiver {self.concealment} target={s.target_ms:.0f}ms "
                f"delay={s.delay_ms:.0f}ms concealed={s.concealed}>")

    @property
    def concealment(self) -> str:
        """How missing packets are concealed: ``"libopus"`` (its packet-loss concealment and
        in-band FEC) or ``"fade-repeat"`` (no libopus found)."""
        return self._decoder.concealment

    def statistics(self) -> ReceiveStatistics:
        """The buffer's figures now (see :class:`ReceiveStatistics`)."""
        return self.core.statistics()

    # ---------------------------------------------------------------- aiortc's side
    @property
    def capacity(self) -> int:
        """aiortc's ``JitterBuffer`` attribute; the adaptive buffer has no fixed capacity."""
        return 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Take one depayloaded RTP packet (aiortc's ``JitterBuffer.add`` interface).

        Opus packets go to the adaptive buffer and never to aiortc's decoder thread (None is
        returned); another codec is handed to a standard aiortc buffer, as aiortc would.
        """
        if self._closed:
            return False, None
        if self._fallback is not None or not self._is_opus(packet.payload_type):
            if self._fallback is None:
                self._fallback = JitterBuffer(capacity=AIORTC_AUDIO_CAPACITY,
                                              prefetch=AIORTC_AUDIO_PREFETCH)
            return self._fallback.add(packet)
        core = self.core
        idle = core.next_due() is None
        data = bytes(getattr(packet, "_data", packet.payload))
        core.push(packet.sequence_number, packet.timestamp, data, self._now(),
                  packet_samples(data, core.settings.clock_rate))
        if self._timers:  # a real-time clock: one loop callback per slot, no task
            if self._timer is None:
                self._arm()
        elif self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="livetalk-adaptive-playout")
        elif idle and self._wake is not None and core.next_due() is not None:
            self._wake.set()
        return False, None

    # ---------------------------------------------------------------- lifecycle
    async def aclose(self) -> None:
        """Stop playing (idempotent); the playout task ends with the track anyway."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._decoder.close()

    # ---------------------------------------------------------------- playout task
    def _arm(self) -> None:
        """Schedule the next slot's callback on the event loop (MediaClock: real time)."""
        due = self.core.next_due()
        if due is None or self._closed:
            self._timer = None  # idle: the next packet re-arms
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, due - self._now()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        if self._track_ended():
            self._closed = True
            self._decoder.close()
            return
        core = self.core
        due = core.next_due()
        if due is None:
            return
        now = self._now()
        if now < due:
            self._arm()
            return
        if not core.has_next() and now - due > _LATE_S and self._io_turns < _IO_TURNS:
            # woken late with the packet missing: it may be waiting in the socket behind us;
            # let the loop read it before concealing
            self._io_turns += 1
            self._timer = asyncio.get_running_loop().call_soon(self._on_timer)
            return
        self._io_turns = 0
        slot = core.pull(now)
        if slot is not None:
            self._play(slot)
        self._arm()

    async def _run(self) -> None:
        """The playout loop for clocks other than MediaClock (a ManualClock in tests)."""
        clock, core, wake = self.clock, self.core, self._wake
        assert wake is not None
        track = self.receiver.track
        if track is not None:  # stop at once when the track ends (the receiver stopped)
            track.on("ended", wake.set)
        try:
            while not self._closed:
                due = core.next_due()
                if due is None:
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), _IDLE_CHECK_S)
                    if self._track_ended():
                        return
                    continue
                if self._now() < due:
                    await clock.sleep_until(due * self._speed)
                elif not core.has_next() and self._now() - due > _LATE_S:
                    # woken late with the packet missing: it may be waiting in the socket
                    # behind us; let the loop read it before concealing
                    for _ in range(_IO_TURNS):
                        await asyncio.sleep(0)
                if self._closed or self._track_ended():
                    return
                slot = core.pull(self._now())
                if slot is not None:
                    self._play(slot)
        finally:
            self._decoder.close()

    def _now(self) -> float:
        """The core's time: real seconds (media time divided by the clock's speed)."""
        return self.clock.now() / self._speed

    def _play(self, slot: Slot) -> None:
        decoder = self._decoder
        for payload in slot.skipped:
            self._decode(payload)  # keep the decoder state continuous; the audio is dropped
        samples = slot.samples * self.rate // self.core.settings.clock_rate
        if slot.kind == PACKET:
            pcm = self._decode(slot.payload)
            if pcm is None:
                pcm = decoder.conceal(samples)
        elif slot.kind == RECOVER:
            pcm = decoder.recover(slot.payload, samples)
        else:
            pcm = decoder.conceal(samples)
        if not pcm.size:
            return
        self.core.mark_quiet(int(pcm.max()) < QUIET_PEAK and int(pcm.min()) > -QUIET_PEAK)
        track = self.receiver.track
        if track is None or track.readyState != "live":
            return
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += pcm.size
        cast(Any, track)._queue.put_nowait(frame)  # the RemoteStreamTrack aiortc made

    def _decode(self, payload: bytes) -> PCM | None:
        try:
            return self._decoder.decode(payload)
        except OpusError as exc:
            self.decode_errors += 1
            log.debug("undecodable Opus packet (%s): concealed", exc)
            return None

    def _track_ended(self) -> bool:
        """True once the track ended or the receiver stopped (aiortc then drops its decoder
        thread; the track itself only ends when someone reads the end marker)."""
        track = self.receiver.track
        if track is not None and track.readyState != "live":
            return True
        receiver = self.receiver
        return bool(getattr(receiver, _STARTED_ATTR, False)) and getattr(
            receiver, _DECODER_ATTR, True) is None

    def _is_opus(self, payload_type: int) -> bool:
        codec = getattr(self.receiver, _CODECS_ATTR, {}).get(payload_type)
        return codec is None or str(codec.mimeType).lower() == "audio/opus"


class _Decoder:
    """What the playout task needs from a decoder (libopus, or PyAV with fade-and-repeat)."""

    concealment = ""

    def decode(self, payload: bytes) -> PCM:
        raise NotImplementedError

    def conceal(self, samples: int) -> PCM:
        raise NotImplementedError

    def recover(self, next_payload: bytes, samples: int) -> PCM:
        return self.conceal(samples)

    def close(self) -> None:
        """Release the decoder (idempotent)."""


class _LibopusDecoder(_Decoder):
    concealment = "libopus"

    def __init__(self, rate: int) -> None:
        self._opus = OpusDecoder(rate)

    def decode(self, payload: bytes) -> PCM:
        return self._opus.decode(payload)

    def conceal(self, samples: int) -> PCM:
        return self._opus.conceal(samples)

    def recover(self, next_payload: bytes, samples: int) -> PCM:
        try:
            return self._opus.recover(next_payload, samples)
        except OpusError:
            return self._opus.conceal(samples)

    def close(self) -> None:
        self._opus.close()


class _PyAVDecoder(_Decoder):
    """PyAV's libopus wrapper, which cannot conceal: a missing frame repeats the last one
    decoded, its gain halved at each consecutive repeat (then silence)."""

    concealment = "fade-repeat"

    def __init__(self, rate: int) -> None:
        self._codec: Any = av.CodecContext.create("libopus", "r")
        self._codec.format = "s16"
        self._codec.layout = "mono"
        self._codec.sample_rate = RTC_RATE
        self._resampler = (None if rate == RTC_RATE
                           else av.AudioResampler(format="s16", layout="mono", rate=rate))
        self._last: PCM = np.zeros(0, dtype=np.int16)
        self._gain = 1.0

    def decode(self, payload: bytes) -> PCM:
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.FFmpegError as exc:
            raise OpusError(str(exc)) from exc
        if self._resampler is not None:
            frames = [out for f in frames for out in self._resampler.resample(f)]
        pcm: PCM = (np.concatenate([f.to_ndarray()[0] for f in frames]) if frames
                    else np.zeros(0, dtype=np.int16))
        self._last, self._gain = pcm, 1.0
        return pcm

    def conceal(self, samples: int) -> PCM:
        self._gain *= 0.5
        if self._last.size != samples or self._gain < 1 / 64:
            return np.zeros(samples, dtype=np.int16)
        return (self._last.astype(np.float32) * self._gain).astype(np.int16)


def install_server_playout(pc: RTCPeerConnection, *, clock: Clock, rate: int,
                           speed: float = 1.0) -> list[AdaptiveReceiver]:
    """The receive buffer of livetalk's local server, for one call's peer connection.

    In real time (``speed`` 1) the adaptive buffer, never holding more than
    :data:`COMMIT_SAFE_MEDIA_MS` of media: a livetalk client with local VAD (or push-to-talk)
    sends ``input_audio_buffer.commit`` 250 ms of media after the turn's last frame, counting
    on the server to have decoded that frame by then. Faster than real time it keeps aiortc's
    own buffer: every millisecond the event loop is late costs ``speed`` ms of media, which a
    buffer on a clock must conceal, while aiortc's waits for each packet in sequence, so that
    an accelerated run (tests, batch feeding) hears every frame exactly as sent.

    Returns:
        The adaptive receivers installed (none faster than real time).
    """
    if isinstance(speed, bool) or not speed > 0:
        raise ConfigError(f"speed must be a number > 0, got {speed!r}")
    if speed > 1:
        return []
    return install_adaptive_playout(
        pc, clock=clock, rate=rate,
        settings=JitterBufferSettings(max_delay_ms=COMMIT_SAFE_MEDIA_MS / speed))


def install_adaptive_playout(pc: RTCPeerConnection, *, settings: JitterBufferSettings | None = None,
                             clock: Clock | None = None, rate: int = RTC_RATE
                             ) -> list[AdaptiveReceiver]:
    """Give every audio receiver of ``pc`` livetalk's adaptive jitter buffer.

    Call it after ``addTrack``/``addTransceiver`` and before media flows (before the offer,
    or right after ``setRemoteDescription`` when answering). Arguments as for
    :class:`AdaptiveReceiver`; receivers that already have one are left alone.

    Returns:
        The adaptive receivers of ``pc`` (also found later with :func:`adaptive_receivers`).
    """
    for receiver in pc.getReceivers():
        if _is_audio(receiver) and not isinstance(getattr(receiver, _BUFFER_ATTR, None),
                                                  AdaptiveReceiver):
            setattr(receiver, _BUFFER_ATTR,
                    AdaptiveReceiver(receiver, settings=settings, clock=clock, rate=rate))
    return adaptive_receivers(pc)


def adaptive_receivers(pc: RTCPeerConnection) -> list[AdaptiveReceiver]:
    """The :class:`AdaptiveReceiver` of each audio receiver of ``pc`` that has one."""
    found = [getattr(r, _BUFFER_ATTR, None) for r in pc.getReceivers()]
    return [buffer for buffer in found if isinstance(buffer, AdaptiveReceiver)]
