"""The aiortc audio tracks: the only place where PCM becomes Opus or ``av.AudioFrame`` and back.

Outbound, :class:`OutboundAudioTrack` is what ``RTCPeerConnection.addTrack`` gets. aiortc's
sender never sleeps: it awaits ``recv()``, then sends at once, so pacing lives here. Frame
``k`` is due ``k`` x 20 ms of media time after the first; a frame due in the past is sent at
once (and counted as late when more than one frame period behind). When nothing is queued (or
when muted) the track sends silence, so RTP never stalls and the far end's jitter buffer keeps
flowing.

By default the track **pre-encodes**: ``recv()`` returns one ``av.Packet`` of 20 ms mono Opus
(libopus, VoIP application) per frame, which aiortc's sender only packetizes. That skips the
two costly steps of aiortc's own audio path: its pure-Python audio-level loop over every sample
(``rtp.compute_audio_level_dbov``) and its encoder hop through the default executor. Silence,
the common case in a call, is not encoded at all: a cached silence packet is sent. After
audio, a few frames of zeros still go through the encoder (a tail) so that its look-ahead is
flushed and its state settles on silence; switching between cached silence and encoder output
then decodes like one continuous stream (no click). A mono Opus stream is legal on an
``opus/48000/2`` RTP payload: decoders output it on both channels at full level.

With ``preencode=False`` the track returns 20 ms ``av.AudioFrame``s of 48 kHz **s16 packed
stereo with both channels equal** for aiortc to encode: its encoder upmixes mono frames at
-3 dB (a measured gain of 0.68), duplicated stereo keeps the level.

Either way :attr:`OutboundAudioTrack.last_pcm` holds the 48 kHz mono PCM of the frame last
returned, and ``on_sent_audio`` gets the same audio at the API's 24 kHz (see *One resampling
each way* in the class docstring).

Inbound, :class:`RemoteAudioReader` always drains a remote track (aiortc's receive queue is
unbounded, so an undrained track grows memory), converts each frame to mono PCM at the reader's
rate (at most one resampling; none for the frames livetalk's receive jitter buffer decodes, which
are already at that rate) and hands it to its consumers: callbacks and/or sinks.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeAlias, cast

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from livetalk.audio.clock import Clock, MediaClock
from livetalk.audio.format import (
    API_RATE,
    FRAME_MS,
    PCM,
    RTC_RATE,
    check_pcm,
    check_rate,
    empty_pcm,
    ms_to_samples,
    samples_to_ms,
)
from livetalk.audio.playout import PlayoutBuffer
from livetalk.audio.resample import Resampler
from livetalk.audio.sinks import Sink
from livetalk.audio.sources import Source
from livetalk.errors import AudioFormatError

__all__ = ["AudioConsumer", "OutboundAudioTrack", "OutboundTrackStatistics", "RemoteAudioReader"]

logger = logging.getLogger(__name__)

FRAME_SAMPLES = ms_to_samples(FRAME_MS, RTC_RATE)
"""Samples per channel in one outbound frame (960)."""
_FRAME_S = FRAME_MS / 1000
_TIME_BASE = fractions.Fraction(1, RTC_RATE)
_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_SILENCE.flags.writeable = False

DEFAULT_BITRATE = 64_000
"""Opus target bitrate of a pre-encoding track, in bit/s (VBR: speech averages about half).
Below about 48 kbit/s libopus codes mono speech in SILK or hybrid mode, which keeps the sound
but not the waveform (a fractional delay, less correlation with what was sent)."""
TAIL_FRAMES = 3
"""Frames of zeros encoded after audio before cached silence takes over: they flush the
encoder's look-ahead and settle its state, so that the switch does not click."""
_PRIME_FRAMES = 3
_SETTLED_FRAMES = 2
"""Silent frames in a row, each viewed as exact zeros, after which the sent-audio view's
filter holds only zeros (its history is far shorter than a frame)."""

AudioConsumer: TypeAlias = Callable[[PCM], None] | Sink
"""What :class:`RemoteAudioReader` feeds: a callback taking PCM, or a sink."""


@dataclass(frozen=True, slots=True)
class OutboundTrackStatistics:
    """How an :class:`OutboundAudioTrack` has paced its frames and what it queues, at one
    moment (the attributes of the same names on the track, plus the queue's figures).

    Attributes:
        frames: frames returned by ``recv()``.
        late_frames: frames sent more than one frame period after they were due.
        max_lateness_ms: the worst lateness of a frame, in media milliseconds.
        silence_frames: frames that carried no queued audio (nothing queued, or muted).
        encoded_frames: frames run through the track's Opus encoder.
        queued_ms: audio queued and not yet sent.
        played_ms: queued audio sent so far.
        dropped_ms: audio dropped because the queue was full (``max_buffer_ms``).
        cleared_ms: audio dropped by ``clear()``.
    """

    frames: int
    late_frames: int
    max_lateness_ms: float
    silence_frames: int
    encoded_frames: int
    queued_ms: float
    played_ms: float
    dropped_ms: float
    cleared_ms: float


class OutboundAudioTrack(MediaStreamTrack):
    """A paced 48 kHz audio track fed with PCM at any rate.

    Feed it with :meth:`enqueue` (non-blocking) or :meth:`play` (a whole source, with
    backpressure); drop what is queued with :meth:`clear`; follow playback with
    :attr:`played_ms` or ``on_frame_sent``; record what was sent with ``on_sent_audio``. Give
    it to ``RTCPeerConnection.addTrack``: aiortc then calls :meth:`recv` for each 20 ms frame.

    **One resampling each way.** The queue holds 48 kHz PCM, the encoder's rate. PCM given at
    another rate goes through one stateful :class:`~livetalk.audio.resample.Resampler` on its
    way in (one per input rate, so each input stream stays continuous); 48 kHz PCM is queued
    as it is, untouched. The sent-audio view handed to ``on_sent_audio`` (24 kHz by default:
    what a call keeps for ``Turn.audio`` and feeds to local VAD) is made from the frames as
    they leave, by one more stateful ``Resampler`` (48 kHz to ``sent_audio_rate``) that runs
    over the whole outbound stream, silence included. It is made from the frames, not kept
    from the PCM given to :meth:`enqueue`, because only the frames say what the far end hears
    and when: muting, the fade of :meth:`clear`, audio dropped when the queue overflows and
    the silence between utterances all shape them, and stream time counted in frames is the
    server's input time. A second queue at 24 kHz beside the first would have to repeat each
    of those rules. The resampler compensates its filter delay, so a sample's place in the
    view is its place in the stream (the view ends a few samples behind the last frame: 16 at
    24 kHz, under a millisecond). Silence is nearly free: once the view's filter has settled
    on zeros, a silent frame's view is a cached block of zeros.

    Args:
        clock: the media clock that paces frames; a real-time :class:`MediaClock` if None.
        max_buffer_ms: most audio queued; beyond it the oldest is dropped (counted in
            :attr:`OutboundTrackStatistics.dropped_ms`).
        on_frame_sent: called with :attr:`played_ms` after each frame that carried queued audio
            (to emit transcript deltas as the audio plays).
        preencode: True (the default) to return mono Opus ``av.Packet``s encoded here, with
            cached silence; False to return stereo ``av.AudioFrame``s for aiortc to encode.
        bitrate: the Opus target bitrate in bit/s when pre-encoding (6000 to 510000).
        on_sent_audio: called after every frame (silence included) with its audio at
            ``sent_audio_rate``, in order; also settable later as the attribute.
        sent_audio_rate: the rate of the audio handed to ``on_sent_audio``, in Hz.

    Raises:
        AudioFormatError: a bitrate out of libopus's range, or a bad ``sent_audio_rate``.
    """

    kind = "audio"

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        max_buffer_ms: float = 30_000,
        on_frame_sent: Callable[[float], None] | None = None,
        preencode: bool = True,
        bitrate: int = DEFAULT_BITRATE,
        on_sent_audio: Callable[[PCM], None] | None = None,
        sent_audio_rate: int = API_RATE,
    ) -> None:
        super().__init__()
        if not 6000 <= bitrate <= 510_000:
            raise AudioFormatError(f"the Opus bitrate must be 6000..510000 bit/s, got {bitrate}")
        self.clock: Clock = clock if clock is not None else MediaClock()
        self.on_frame_sent = on_frame_sent
        self.on_sent_audio = on_sent_audio
        """Called after each frame :meth:`recv` returns with that frame's audio at
        :attr:`sent_audio_rate` (see the class docstring); None to skip the view."""
        self.sent_audio_rate = check_rate(sent_audio_rate, "sent_audio_rate")
        """The rate of the audio handed to ``on_sent_audio``, in Hz."""
        self._view = Resampler(RTC_RATE, self.sent_audio_rate)
        view_samples, rest = divmod(FRAME_SAMPLES * self.sent_audio_rate, RTC_RATE)
        # a silent frame's view, once the filter has settled on zeros (whole sample counts only)
        self._view_zeros = None if rest else np.zeros(view_samples, dtype=np.int16)
        if self._view_zeros is not None:
            self._view_zeros.flags.writeable = False
        self._view_quiet = 0  # consecutive silent frames whose view came out all zeros
        self.bitrate = bitrate
        self._buffer = PlayoutBuffer(RTC_RATE, capacity_ms=max_buffer_ms, prebuffer_ms=0)
        self._resamplers: dict[int, Resampler] = {}
        self._scratch = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._stereo = np.zeros((1, 2 * FRAME_SAMPLES), dtype=np.int16)
        self._encoder: Any = None
        self._silence_packet = b""
        self._tail = 0
        if preencode:
            self._encoder = _opus_encoder(bitrate)
            for _ in range(_PRIME_FRAMES):  # a settled encoder, and its silence packet
                self._silence_packet = bytes(self._encode(_SILENCE))
        self._start: float | None = None
        self._muted = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.last_pcm: PCM = _SILENCE
        """The 48 kHz mono PCM of the frame :meth:`recv` returned last, as sent (zeros for
        silence and while muted): a new array for each frame with audio, a shared read-only
        one for silence. Read it right after ``recv()``; ``on_sent_audio`` gets the same audio
        at :attr:`sent_audio_rate`."""
        self.frames = 0
        """Frames returned by :meth:`recv`."""
        self.silence_frames = 0
        """Frames that carried no queued audio (nothing queued, or muted)."""
        self.encoded_frames = 0
        """Frames :meth:`recv` ran through the track's Opus encoder: the frames with audio, plus
        a tail of :data:`TAIL_FRAMES` frames of zeros after each stretch of audio. Cached
        silence packets are not counted (0 without pre-encoding)."""
        self.late_frames = 0
        """Frames sent more than one frame period (20 ms of media time) after they were due."""
        self.max_lateness_ms = 0.0
        """Worst lateness of a frame, in media milliseconds."""
        self.samples_sent = 0
        """Queued 48 kHz samples consumed by sent frames (muted ones included)."""

    @property
    def preencode(self) -> bool:
        """True when :meth:`recv` returns Opus packets encoded by the track."""
        return self._encoder is not None

    # -- input side ------------------------------------------------------------------------

    def enqueue(self, pcm: PCM, rate: int) -> None:
        """Queue PCM for sending; returns at once.

        Successive calls at one rate are one continuous stream (resampled statefully). Call
        :meth:`flush_input` at the end of an utterance to push out the resampler's last
        samples.

        Args:
            pcm: 1-D int16 samples.
            rate: their sample rate in Hz.

        Raises:
            AudioFormatError: ``pcm`` is not 1-D int16, or ``rate`` is not a positive integer.
        """
        resampler = self._resamplers.get(rate)
        if resampler is None:
            resampler = self._resamplers[rate] = Resampler(check_rate(rate), RTC_RATE)
        self._buffer.write(resampler.process(check_pcm(pcm)))

    def flush_input(self) -> None:
        """End the input stream: queue what the resamplers still hold (a few samples)."""
        for resampler in self._resamplers.values():
            self._buffer.write(resampler.flush())
        self._buffer.mark_end()

    async def play(self, source: Source, *, high_water_ms: float = 200) -> None:
        """Send a whole source, then close it.

        Waits while more than ``high_water_ms`` is queued, so a fast source (a file) is paced
        by the track. On a clock faster than real time (``speed`` N) the mark is N times
        higher: it is the margin of real time the queue has against an event loop that is
        late to refill it, and a queue that runs dry sends silence in the middle of the
        source (an accelerated run at 10x had words split and the stream stretched by 8 %).
        Returns once the source is exhausted and queued (use :meth:`wait_drained` to wait
        until it was sent), or when the track stops. Cancelling is safe (the source is
        closed); to interrupt playback, cancel this and call :meth:`clear`.
        """
        high = ms_to_samples(high_water_ms * max(1.0, self.clock.speed), RTC_RATE)
        rate = source.rate
        try:
            async for chunk in source:
                if self.readyState != "live":
                    return
                self.enqueue(chunk, rate)
                if self._buffer.buffered > high:
                    await self._wait_until_queued_at_most(high)
            self.flush_input()
        finally:
            await source.aclose()

    def clear(self, fade_ms: float = 5) -> float:
        """Drop the queued audio, fading out over the next ``fade_ms`` instead of clicking.

        Returns:
            Milliseconds of audio dropped.
        """
        dropped = self._buffer.clear(fade_ms)
        self._resamplers.clear()
        self._wake_waiters()
        return dropped

    async def wait_drained(self) -> None:
        """Wait until everything queued was sent (or the track stopped)."""
        await self._wait_until_queued_at_most(0)

    @property
    def queued_ms(self) -> float:
        """Audio queued and not yet sent, in milliseconds."""
        return self._buffer.buffered_ms

    @property
    def played_ms(self) -> float:
        """Queued audio sent so far, in milliseconds (the played position)."""
        return samples_to_ms(self.samples_sent, RTC_RATE)

    def mute(self) -> None:
        """Send silence instead of the queued audio (which keeps being consumed in time)."""
        self._muted = True

    def unmute(self) -> None:
        """Send the queued audio again."""
        self._muted = False

    @property
    def muted(self) -> bool:
        """True while muted."""
        return self._muted

    def statistics(self) -> OutboundTrackStatistics:
        """The pacing counters and the queue's figures now."""
        buffer = self._buffer
        return OutboundTrackStatistics(
            frames=self.frames,
            late_frames=self.late_frames,
            max_lateness_ms=self.max_lateness_ms,
            silence_frames=self.silence_frames,
            encoded_frames=self.encoded_frames,
            queued_ms=buffer.buffered_ms,
            played_ms=self.played_ms,
            dropped_ms=samples_to_ms(buffer.dropped_samples, RTC_RATE),
            cleared_ms=samples_to_ms(buffer.cleared_samples, RTC_RATE),
        )

    # -- output side (aiortc) --------------------------------------------------------------

    async def recv(self) -> av.Packet[Any] | av.AudioFrame:
        """Return the next 20 ms frame when it is due (called by aiortc's sender).

        Returns:
            With pre-encoding, an ``av.Packet`` of mono Opus (``pts`` in samples, ``time_base``
            1/48000); otherwise an ``av.AudioFrame`` of s16 packed stereo. Either way
            :attr:`last_pcm` then holds the frame's PCM.

        Raises:
            MediaStreamError: the track was stopped.
        """
        if self.readyState != "live":
            raise MediaStreamError
        clock = self.clock
        if self._start is None:
            self._start = clock.now()
        index = self.frames
        due = self._start + index * _FRAME_S
        now = clock.now()
        if now < due:
            await clock.sleep_until(due)
            if self.readyState != "live":
                raise MediaStreamError
        else:
            lateness_ms = (now - due) * 1000
            if lateness_ms > self.max_lateness_ms:
                self.max_lateness_ms = lateness_ms
            if lateness_ms > FRAME_MS:
                self.late_frames += 1

        got = self._buffer.read_into(self._scratch)
        pcm = self._scratch.copy() if got and not self._muted else _SILENCE
        self.last_pcm = pcm
        out = self._packet(pcm) if self._encoder is not None else self._frame(pcm)
        out.pts = index * FRAME_SAMPLES
        out.time_base = _TIME_BASE
        self.frames = index + 1

        if got:
            self.samples_sent += got
            if self._waiters:
                self._wake_waiters()
        if pcm is _SILENCE:
            self.silence_frames += 1
        elif self.on_frame_sent is not None:
            self.on_frame_sent(self.played_ms)
        if self.on_sent_audio is not None:
            self.on_sent_audio(self._sent_view(pcm))
        return out

    def stop(self) -> None:
        """End the track: ``recv()`` raises MediaStreamError, waiters in ``play()`` return."""
        super().stop()
        self._wake_waiters()

    # -- internals -------------------------------------------------------------------------

    def _sent_view(self, pcm: PCM) -> PCM:
        """The frame's audio at :attr:`sent_audio_rate`, from the one stateful view resampler.

        A silent frame is not run through the filter once two silent frames in a row came out
        as exact zeros: the filter then holds nothing but zeros, so skipping a block of zeros
        leaves it as it would have been and the view as it would have come out.
        """
        zeros = self._view_zeros
        silent = pcm is _SILENCE
        if silent and zeros is not None and self._view_quiet >= _SETTLED_FRAMES:
            return zeros
        view = self._view.process(pcm)
        if silent and zeros is not None and view.size == zeros.size and not view.any():
            self._view_quiet += 1
        else:
            self._view_quiet = 0
        return view

    def _packet(self, pcm: PCM) -> av.Packet[Any]:
        """The Opus packet for one frame: encoded, a tail of encoded zeros, or cached silence."""
        if pcm is not _SILENCE:
            self._tail = TAIL_FRAMES
        elif self._tail:
            self._tail -= 1
        else:
            return av.Packet(self._silence_packet)
        self.encoded_frames += 1
        return self._encode(pcm)

    def _encode(self, pcm: PCM) -> av.Packet[Any]:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RTC_RATE
        packets = self._encoder.encode(frame)
        if len(packets) != 1:  # libopus encodes each full frame at once: never seen otherwise
            raise RuntimeError(f"libopus returned {len(packets)} packets for one frame")
        return cast("av.Packet[Any]", packets[0])

    def _frame(self, pcm: PCM) -> av.AudioFrame:
        """The stereo frame for aiortc's encoder: ``pcm`` on both channels."""
        pairs = self._stereo.reshape(-1, 2)
        pairs[:, 0] = pcm
        pairs[:, 1] = pcm
        frame = av.AudioFrame.from_ndarray(self._stereo, format="s16", layout="stereo")
        frame.sample_rate = RTC_RATE
        return frame

    async def _wait_until_queued_at_most(self, samples: int) -> None:
        if self._buffer.buffered <= samples or self.readyState != "live":
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (samples, fut)
        self._waiters.append(entry)
        try:
            await fut
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _wake_waiters(self) -> None:
        buffered = self._buffer.buffered
        live = self.readyState == "live"
        keep = []
        for samples, fut in self._waiters:
            if fut.done():
                continue
            if buffered <= samples or not live:
                fut.set_result(None)
            else:
                keep.append((samples, fut))
        self._waiters = keep



def _opus_encoder(bitrate: int) -> Any:
    """A libopus encoder for 20 ms frames of 48 kHz mono s16, VoIP application."""
    codec = cast(Any, av.CodecContext.create("libopus", "w"))
    codec.bit_rate = bitrate
    codec.sample_rate = RTC_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.time_base = _TIME_BASE
    codec.options = {"application": "voip"}
    return codec


class RemoteAudioReader:
    """Drains a remote audio track and feeds PCM at ``rate`` to its consumers.

    Each received frame (whatever its format, layout and rate) is converted to mono s16 at
    ``rate`` by one stateful PyAV converter, then passed to every consumer in order: callbacks
    are called, sinks are awaited. Frames already in that form pass through untouched (PyAV
    detects it on the first frame): livetalk's adaptive receive jitter buffer
    (:mod:`livetalk.transport.jitter`) decodes straight to mono at the reader's rate, so model
    audio is not resampled between the decoder and the consumers. aiortc's own decoder
    delivers 48 kHz s16 packed stereo, downmixed and resampled here once. A consumer that
    raises is logged and removed (counted in :attr:`consumer_errors`); the track keeps being
    drained even with no consumer at all. Reading ends when the track ends (MediaStreamError).

    Use ``start()`` / ``await stop()``, or ``async with RemoteAudioReader(track) as reader:``.

    Args:
        track: the remote track (anything with ``async recv()`` returning ``av.AudioFrame``).
        rate: sample rate of the PCM handed to consumers, in Hz.
        on_audio: a first consumer (a callback or a sink), if any.

    Raises:
        AudioFormatError: a bad rate, or a sink whose rate differs from ``rate``.
    """

    def __init__(
        self,
        track: MediaStreamTrack,
        *,
        rate: int = API_RATE,
        on_audio: AudioConsumer | None = None,
    ) -> None:
        self.track = track
        self.rate = check_rate(rate)
        self._consumers: list[tuple[AudioConsumer, bool]] = []
        self._converter: av.AudioResampler | None = None
        self._task: asyncio.Task[None] | None = None
        self.frames = 0
        """Frames received."""
        self.received_ms = 0.0
        """Audio received, in milliseconds."""
        self.consumer_errors = 0
        """Consumers removed because they raised."""
        if on_audio is not None:
            self.add_consumer(on_audio)

    def add_consumer(self, consumer: AudioConsumer) -> None:
        """Start feeding ``consumer`` (a callable taking PCM, or a sink at ``rate``).

        Raises:
            AudioFormatError: a sink whose rate differs from the reader's.
            TypeError: neither a sink nor callable.
        """
        is_sink = isinstance(consumer, Sink)
        if is_sink:
            if consumer.rate != self.rate:  # type: ignore[union-attr]
                raise AudioFormatError(
                    f"sink rate {consumer.rate} Hz differs from the reader's {self.rate} Hz"  # type: ignore[union-attr]
                )
        elif not callable(consumer):
            raise TypeError(f"a consumer is a callable or a sink, got {type(consumer).__name__}")
        self._consumers.append((consumer, is_sink))

    def remove_consumer(self, consumer: AudioConsumer) -> None:
        """Stop feeding ``consumer`` (compared with ``==``; no error if it is not registered)."""
        self._consumers = [(c, s) for c, s in self._consumers if c != consumer]

    @property
    def running(self) -> bool:
        """True while the reading task runs."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start draining the track in a task (idempotent while running)."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"livetalk-remote-audio-{self.track.id}"
        )

    async def stop(self) -> None:
        """Stop draining and wait for the task to finish (consumers are not closed)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def wait_ended(self) -> None:
        """Wait until the track ends (returns at once if the reader is not running)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        recv = self.track.recv
        while True:
            try:
                frame = await recv()
            except MediaStreamError:
                break
            if not isinstance(frame, av.AudioFrame):
                raise TypeError(
                    f"expected av.AudioFrame from the track, got {type(frame).__name__}"
                )
            self.frames += 1
            self.received_ms += frame.samples * 1000 / frame.sample_rate
            await self._dispatch(self._convert(frame))
        if self._converter is not None:
            frames = self._converter.resample(None)
            self._converter = None
            if frames:
                await self._dispatch(np.concatenate([f.to_ndarray()[0] for f in frames]))

    def _convert(self, frame: av.AudioFrame) -> PCM:
        if self._converter is None:
            self._converter = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
        out = self._converter.resample(frame)
        if len(out) == 1:
            return cast(PCM, out[0].to_ndarray()[0])
        if not out:
            return empty_pcm()
        return np.concatenate([f.to_ndarray()[0] for f in out])

    async def _dispatch(self, pcm: PCM) -> None:
        if not pcm.size:
            return
        for consumer, is_sink in self._consumers:
            try:
                if is_sink:
                    await consumer.write(pcm)  # type: ignore[union-attr]
                else:
                    consumer(pcm)  # type: ignore[operator]
            except Exception:
                logger.exception("audio consumer %r failed; removing it", consumer)
                self.consumer_errors += 1
                self.remove_consumer(consumer)
