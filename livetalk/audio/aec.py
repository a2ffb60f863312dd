"""Acoustic echo cancellation (``EchoMode.AEC``) with WebRTC's audio processing module.

:class:`AcousticEchoCanceller` is an :class:`~livetalk.audio.echo.EchoControl` like the others
(``on_playback``, ``process``, ``on_clear``), but instead of silencing the microphone it
subtracts the speaker's echo from it, so the user can talk over the assistant while the
assistant never hears itself. The canceller is WebRTC's audio processing module (AEC3, noise
suppression, high-pass filter), the one browsers run behind ``getUserMedia``, as shipped in the
``livekit`` wheel (the optional extra ``[aec]``).

Alignment. The module expects, for each 10 ms microphone frame, the 10 ms of speaker output
whose echo can be in it. The far-end reference is kept on the microphone's timeline (one
position per microphone sample processed, like :class:`~livetalk.audio.echo.PlaybackTimeline`):

- each chunk given to :meth:`AcousticEchoCanceller.on_playback` is resampled once to the
  microphone rate and queued right after the previous one (the speaker plays without gaps);
- its position is corrected with ``queued_ms`` (what was still queued ahead of the device):
  the microphone timeline lags real time by whatever was captured but not yet processed, so
  each measurement places the chunk *no later* than it really plays. The latest of the
  measurements over the last ``align_window_ms`` is kept (a change is applied only when it
  exceeds ``align_step_ms``): an underrun (the speaker played silence, so everything after it
  plays later) or clock drift between the devices moves the reference with the real speaker;
- the device latency (output plus input, as PortAudio reports them:
  :meth:`AcousticEchoCanceller.set_device_latency`) is added, so the reference meets its echo;
- what is left (the acoustic path, the scheduling slack, up to a few hundred ms) is found by
  AEC3's own delay estimator. The reference must never come after its echo, which is why
  every estimate above errs early.

Frames are exactly 10 ms at the microphone rate (any rate that is a multiple of 100 Hz); chunks
of other sizes are buffered, which delays the output by the remainder (none for the 100 ms
chunks of :class:`~livetalk.audio.devices.MicrophoneSource`).
"""

from __future__ import annotations

import collections
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from livetalk.audio.echo import EchoControl, EchoMode, EchoStatistics
from livetalk.audio.format import API_RATE, PCM, check_pcm, ms_to_samples, samples_to_ms
from livetalk.audio.resample import Resampler
from livetalk.errors import AudioFormatError, ConfigError

__all__ = ["AEC_MISSING", "AcousticEchoCanceller", "EchoCancellerStatistics", "aec_available"]

AEC_MISSING = (
    "echo mode 'aec' needs the WebRTC audio processing module from the livekit package: "
    "install it with `pip install 'livetalk[aec]'` (or use --echo half-duplex)"
)
_FRAMES_PER_SECOND = 100
"""The module works on 10 ms frames."""
_METER_TIME_CONSTANT_S = 1.0
"""Smoothing of the echo meters (:attr:`AcousticEchoCanceller.erle_db`)."""
_RING_SECONDS = 8
"""How far ahead of the microphone the reference can be queued."""
_REFERENCE_LEAD_MS = 40.0
"""How far ahead of its echo the reference is placed (at most the device latency). AEC3
cancels badly when its reference comes less than about a frame before the echo (residual
20 dB louder, measured with the echo 0-3 ms after the reference) and equally well anywhere
from 10 to 200 ms before: the lead keeps an over-reported device latency from pushing the
reference late."""
_FLOOR_SMOOTH_S = 0.05
"""Smoothing of the output power before the noise floor follows it."""
_FLOOR_RISE_DB_PER_S = 1.0
"""How fast the noise floor may rise (it falls at once): speech between replies barely moves
it, a room that really got noisier is followed within seconds."""


@dataclass(frozen=True, slots=True)
class EchoCancellerStatistics(EchoStatistics):
    """An :class:`AcousticEchoCanceller`'s figures: those of every echo control plus its
    meters and its alignment, at one moment.

    Attributes:
        erle_db: echo return loss enhancement (see
            :attr:`AcousticEchoCanceller.erle_db`); None before any audible playback.
        erl_db: echo return loss (see :attr:`AcousticEchoCanceller.erl_db`); None before
            any audible playback.
        device_latency_ms: the output plus input latency the reference is delayed by.
        offset_ms: how far the reference was moved to follow the real speaker queue.
        realignments: times that offset changed (underruns, drift).
    """

    erle_db: float | None
    erl_db: float | None
    device_latency_ms: float
    offset_ms: float
    realignments: int


def _import_rtc() -> Any:
    """``livekit.rtc``, or ConfigError naming the extra."""
    try:
        from livekit import rtc
    except ImportError as exc:
        raise ConfigError(AEC_MISSING) from exc
    return rtc


def aec_available() -> bool:
    """True when the ``[aec]`` extra (the livekit package) is installed."""
    import importlib.util

    try:
        return importlib.util.find_spec("livekit.rtc") is not None
    except ImportError:
        return False


class _Ring:
    """Reference samples by absolute position on the microphone timeline.

    Positions never written read as zeros (the speaker was silent); positions behind the read
    point are gone.
    """

    def __init__(self, capacity: int) -> None:
        self._buf = np.zeros(capacity, dtype=np.int16)
        self._cap = capacity
        self.end = 0
        """One past the last position written (or zeroed)."""
        self.read_pos = 0
        """Where the next read starts: everything before it is gone."""

    def write(self, start: int, pcm: PCM) -> None:
        """Put ``pcm`` at ``[start, start + len)``; parts behind the read point are dropped."""
        if start < self.read_pos:
            pcm = pcm[self.read_pos - start :]
            start = self.read_pos
        limit = self.read_pos + self._cap
        if start + pcm.size > limit:
            pcm = pcm[: max(0, limit - start)]
        if pcm.size == 0:
            return
        if start > self.end:
            self._fill(self.end, start, None)
        self._fill(start, start + pcm.size, pcm)
        self.end = max(self.end, start + pcm.size)

    def cut(self, position: int) -> None:
        """Forget everything written at or after ``position`` (it was never played)."""
        position = max(position, self.read_pos)
        if position < self.end:
            self._fill(position, self.end, None)
            self.end = position

    def shift(self, delta: int) -> None:
        """Move the reference not read yet by ``delta`` positions (later if positive).

        Moving it later uncovers ``delta`` positions at the read point: they get the samples
        that preceded the queued reference (read already, so placed too early: the speaker
        plays them now). Moving it earlier drops the first ``-delta`` queued samples.
        """
        old_end = self.end
        n = old_end - (self.read_pos - delta)  # samples from the source start to the end
        if delta == 0 or n > self._cap:
            return
        if n > 0:
            data = np.empty(n, dtype=np.int16)
            i = (self.read_pos - delta) % self._cap
            first = min(n, self._cap - i)
            data[:first] = self._buf[i : i + first]
            data[first:] = self._buf[: n - first]
            self._fill(self.read_pos, self.read_pos + n, data)
        self.end = self.read_pos + max(n, 0)
        if self.end < old_end:
            self._fill(self.end, old_end, None)

    def read(self, out: np.ndarray) -> None:
        """Fill ``out`` with the next ``out.size`` positions and move the read point past them."""
        start, stop = self.read_pos, self.read_pos + out.size
        have = min(stop, self.end) - start
        if have > 0:
            i = start % self._cap
            first = min(have, self._cap - i)
            out[:first] = self._buf[i : i + first]
            out[first:have] = self._buf[: have - first]
            out[max(have, 0) :] = 0
        else:
            out[:] = 0
        self.read_pos = stop
        if self.end < stop:
            self.end = stop

    def _fill(self, start: int, stop: int, pcm: PCM | None) -> None:
        n = stop - start
        i = start % self._cap
        first = min(n, self._cap - i)
        if pcm is None:
            self._buf[i : i + first] = 0
            self._buf[: n - first] = 0
        else:
            self._buf[i : i + first] = pcm[:first]
            self._buf[: n - first] = pcm[first:]


class _NoiseFloor:
    """The noise floor of the output, as a mean square: the output's power smoothed over
    :data:`_FLOOR_SMOOTH_S`, followed down at once and up by at most
    :data:`_FLOOR_RISE_DB_PER_S`. A plain average would take in the user's speech between
    replies, and comfort noise at that level sounds like speech to a voice detector.

    Frames of digital silence (a muted device) are left out.
    """

    _alpha = math.exp(-1 / (_FLOOR_SMOOTH_S * _FRAMES_PER_SECOND))
    _rise = 10 ** (_FLOOR_RISE_DB_PER_S / 10 / _FRAMES_PER_SECOND)

    def __init__(self) -> None:
        self.power = 0.0
        """The floor (0 until the first frame of sound)."""
        self._smoothed = 0.0

    def update(self, power: float) -> None:
        """Take one 10 ms frame's mean square."""
        if power < 1.0:
            return
        a = self._alpha
        self._smoothed = power if not self._smoothed else a * self._smoothed + (1 - a) * power
        if not self.power or self._smoothed < self.power:
            self.power = self._smoothed
        else:
            self.power = min(self._smoothed, self.power * self._rise)


class AcousticEchoCanceller(EchoControl):
    """Remove the speaker's echo from the microphone with WebRTC's AEC3.

    Use it like the other echo controls: every chunk handed to the speaker goes to
    :meth:`on_playback` (with ``queued_ms`` when known), every microphone chunk through
    :meth:`process`, and :meth:`on_clear` when local playout is cleared. Call
    :meth:`set_device_latency` once the devices are open. Not thread-safe: use it from one
    thread (the event loop).

    Args:
        rate: the microphone chunks' sample rate in Hz (a multiple of 100).
        playback_rate: the speaker chunks' sample rate in Hz (resampled once to ``rate``).
        device_latency_ms: output plus input latency of the sound devices.
        noise_suppression: run the module's noise suppressor too (as browsers do).
        high_pass_filter: remove DC and rumble below ~80 Hz.
        auto_gain_control: let the module adjust the microphone level.
        warmup_ms: until the canceller has heard this much audible playback it has not
            converged yet, so the microphone is muted while the speaker plays (as
            :class:`~livetalk.audio.echo.HalfDuplex` does, with a ``tail_ms`` of
            ``warmup_tail_ms``): the first words of the first reply cannot leak out. AEC3
            suppresses hard at first and then relaxes, leaking residual bursts for a while
            (measured 0.9-1.4 s into the first reply); 2 s of playback covers that in every
            simulated room (docs/audio.md). Muted frames carry comfort noise at the noise
            floor the output has between replies (not its average, which holds the user's
            speech), so the far end's voice detector sees neither a voice nor the floor
            dropping and coming back.
        warmup_tail_ms: how long the muting lasts after audible playback during warm-up.
        align_window_ms: how long each alignment measurement is remembered.
        align_step_ms: the smallest correction of the reference's position that is applied.
        audible_dbfs: playback at or below this level counts as silence (for ``playing``
            and the meters).

    Raises:
        ConfigError: the ``[aec]`` extra is not installed, or a negative duration.
        AudioFormatError: a rate is not a positive integer or ``rate`` is not a multiple of
            100 Hz.
    """

    mode = EchoMode.AEC

    def __init__(
        self,
        rate: int = API_RATE,
        playback_rate: int = API_RATE,
        *,
        device_latency_ms: float = 0.0,
        noise_suppression: bool = True,
        high_pass_filter: bool = True,
        auto_gain_control: bool = False,
        warmup_ms: float = 2000,
        warmup_tail_ms: float = 300,
        align_window_ms: float = 2000,
        align_step_ms: float = 8,
        audible_dbfs: float = -50.0,
    ) -> None:
        rtc = _import_rtc()
        super().__init__(rate, playback_rate, audible_dbfs=audible_dbfs)
        if self.rate % _FRAMES_PER_SECOND:
            raise AudioFormatError(
                f"echo cancellation needs a rate that is a multiple of 100 Hz (10 ms frames), "
                f"got {self.rate}"
            )
        durations = (device_latency_ms, warmup_ms, warmup_tail_ms, align_window_ms, align_step_ms)
        if min(durations) < 0:
            raise ConfigError(
                "device_latency_ms, warmup_ms, warmup_tail_ms, align_window_ms and "
                f"align_step_ms must be >= 0, got {', '.join(map(str, durations))}"
            )
        self._frame = self.rate // _FRAMES_PER_SECOND
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=noise_suppression,
            high_pass_filter=high_pass_filter,
            auto_gain_control=auto_gain_control,
        )
        # two reusable 10 ms frames whose buffers numpy writes and reads in place
        self._mic_bytes = bytearray(2 * self._frame)
        self._ref_bytes = bytearray(2 * self._frame)
        self._mic_frame = rtc.AudioFrame(self._mic_bytes, self.rate, 1, self._frame)
        self._ref_frame = rtc.AudioFrame(self._ref_bytes, self.rate, 1, self._frame)
        self._mic_view = np.frombuffer(self._mic_bytes, dtype=np.int16)
        self._ref_view = np.frombuffer(self._ref_bytes, dtype=np.int16)

        self._resampler = Resampler(self.timeline.playback_rate, self.rate)
        self._ring = _Ring(_RING_SECONDS * self.rate)
        self._delay = ms_to_samples(device_latency_ms, self.rate)
        self._lead = ms_to_samples(_REFERENCE_LEAD_MS, self.rate)
        self._window = ms_to_samples(align_window_ms, self.rate)
        self._step = ms_to_samples(align_step_ms, self.rate)
        self._model_end = 0  # where the reference ends, before the offset and the delay
        self._offset: int | None = None  # real placement minus model, from queued_ms
        self._measures: collections.deque[tuple[int, int]] = collections.deque()
        self._pending: PCM = np.empty(0, dtype=np.int16)  # microphone samples short of a frame
        self._ready: collections.deque[PCM] = collections.deque()  # processed, not returned
        self._ready_samples = 0
        self._warmup_frames = math.ceil(warmup_ms / 10)
        self._warmup_tail = math.ceil(warmup_tail_ms / 10)
        self._audible_frames = 0  # frames with audible reference seen so far
        self._since_audible = self._warmup_tail  # frames since the last audible reference
        self._floor = _NoiseFloor()  # the output's noise floor between replies (comfort noise)
        self._noise = np.random.default_rng(0)
        self.realignments = 0
        """Times the reference was moved to follow the real speaker (underruns, drift)."""
        # meters: smoothed powers over frames with audible reference
        self._alpha = math.exp(-1 / (_METER_TIME_CONSTANT_S * _FRAMES_PER_SECOND))
        self._audible_power = float(self._frame) * (32768.0**2) * 10 ** (audible_dbfs / 10)
        self._p_ref = 0.0
        self._p_mic = 0.0
        self._p_out = 0.0

    # ------------------------------------------------------------------ configuration
    @property
    def device_latency_ms(self) -> float:
        """The output plus input latency the reference is delayed by."""
        return samples_to_ms(self._delay, self.rate)

    def set_device_latency(self, ms: float) -> None:
        """Set the output plus input latency of the devices (applies to playback from now on).

        Raises:
            ConfigError: ``ms`` is negative.
        """
        if ms < 0:
            raise ConfigError(f"device latency must be >= 0 ms, got {ms}")
        self._delay = ms_to_samples(ms, self.rate)

    def _placement(self) -> int:
        """Where the reference goes relative to where the speaker plays it: the device
        latency, less the lead (:data:`_REFERENCE_LEAD_MS`, at most the latency)."""
        return self._delay - min(self._delay, self._lead)

    # ------------------------------------------------------------------ the speaker side
    def on_playback(self, pcm: PCM, *, queued_ms: float | None = None) -> None:
        """Queue what was handed to the speaker as the echo reference.

        Args:
            pcm: the chunk, at the playback rate, exactly as written to the speaker.
            queued_ms: the audio queued ahead of the device after the write (e.g.
                ``SpeakerSink.buffer.buffered_ms``); keeps the reference with the real
                speaker through underruns and drift.

        Raises:
            AudioFormatError: ``pcm`` is not a 1-D int16 array.
        """
        super().on_playback(pcm, queued_ms=queued_ms)
        ref = self._resampler.process(pcm)
        playhead = self.timeline.playhead
        offset = self._offset or 0
        if self._model_end + offset < playhead:  # the speaker ran dry: it starts anew now
            self._model_end = playhead - offset
        self._model_end += ref.size
        if queued_ms is not None:
            offset = self._align(playhead, playhead + ms_to_samples(queued_ms, self.rate))
        self._ring.write(self._model_end - ref.size + offset + self._placement(), ref)

    def _align(self, playhead: int, measured_end: int) -> int:
        """Fold one measurement of where the chunk really ends into the offset; return it."""
        # the largest measurement of the window: a monotonic deque (each later measurement
        # evicts the smaller ones before it, which can never be the largest again)
        measures = self._measures
        measure = measured_end - self._model_end
        while measures and measures[-1][1] <= measure:
            measures.pop()
        measures.append((playhead, measure))
        while measures[0][0] < playhead - self._window:
            measures.popleft()
        latest = measures[0][1]
        if self._offset is None or abs(latest - self._offset) >= self._step:
            if self._offset is not None:
                self.realignments += 1
                # the speaker plays the queued reference contiguously: all of it moves
                self._ring.shift(latest - self._offset)
            self._offset = latest
        return self._offset

    def on_clear(self, fade_ms: float = 5) -> None:
        """Local playout was cleared: the queued reference beyond ``fade_ms`` never plays."""
        super().on_clear(fade_ms)
        cut = self.timeline.playhead + ms_to_samples(fade_ms, self.rate)
        self._ring.cut(cut + self._placement())
        self._model_end = min(self._model_end, cut - (self._offset or 0))
        self._resampler.flush()

    # ------------------------------------------------------------------ the microphone side
    def process(self, pcm: PCM) -> PCM:
        """Return the microphone chunk with the speaker's echo removed (same length).

        Raises:
            AudioFormatError: ``pcm`` is not a 1-D int16 array.
        """
        check_pcm(pcm)
        data = np.concatenate((self._pending, pcm)) if self._pending.size else pcm
        frame = self._frame
        full = data.size - data.size % frame
        for i in range(0, full, frame):
            self._ready.append(self._process_frame(data[i : i + frame]))
            self._ready_samples += frame
        self._pending = data[full:].copy() if full < data.size else data[:0]
        self.timeline.advance(pcm.size)
        self.processed_samples += pcm.size
        return self._take(pcm.size)

    def _process_frame(self, mic: PCM) -> PCM:
        ref = self._ref_view
        self._ring.read(ref)
        self._apm.process_reverse_stream(self._ref_frame)
        self._mic_view[:] = mic
        self._apm.process_stream(self._mic_frame)
        out = self._mic_view.copy()
        p_ref = float(np.dot(ref, ref.astype(np.float64)))
        audible = p_ref > self._audible_power
        if audible:
            self._audible_frames += 1
            self._since_audible = 0
        else:
            self._since_audible += 1
        if self._since_audible >= self._warmup_tail:
            self._floor.update(float(np.dot(out, out.astype(np.float64))) / out.size)
        elif self._audible_frames <= self._warmup_frames:
            # still converging: mute while the speaker plays, keeping the noise floor
            self.silenced_samples += out.size
            noise = self._noise.normal(0.0, math.sqrt(self._floor.power), out.size)
            out = np.clip(np.rint(noise), -32768, 32767).astype(np.int16)
        if audible:
            a = self._alpha
            self._p_ref = a * self._p_ref + (1 - a) * p_ref
            self._p_mic = a * self._p_mic + (1 - a) * float(np.dot(mic, mic.astype(np.float64)))
            self._p_out = a * self._p_out + (1 - a) * float(np.dot(out, out.astype(np.float64)))
        return out

    def _take(self, n: int) -> PCM:
        """The next ``n`` processed samples (zeros first while the buffer fills)."""
        parts: list[PCM] = []
        short = n - self._ready_samples
        if short > 0:
            parts.append(np.zeros(short, dtype=np.int16))
            n -= short
        while n > 0:
            head = self._ready[0]
            if head.size <= n:
                parts.append(self._ready.popleft())
                n -= head.size
                self._ready_samples -= head.size
            else:
                parts.append(head[:n])
                self._ready[0] = head[n:]
                self._ready_samples -= n
                n = 0
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int16)

    # ------------------------------------------------------------------ meters
    @property
    def converged(self) -> bool:
        """The warm-up is over: the canceller has heard ``warmup_ms`` of playback."""
        return self._audible_frames > self._warmup_frames

    @property
    def erle_db(self) -> float | None:
        """Echo return loss enhancement: microphone over output power while the speaker
        plays, smoothed over about a second (None before any audible playback).

        It also falls while the user talks over the assistant (their voice is kept).
        """
        if self._p_out <= 0 or self._p_mic <= 0:
            return None if self._p_ref == 0 else math.inf
        return 10 * math.log10(self._p_mic / self._p_out)

    @property
    def erl_db(self) -> float | None:
        """Echo return loss: speaker reference over microphone power while the speaker plays
        (how loud the room's echo is; None before any audible playback)."""
        if self._p_ref <= 0:
            return None
        if self._p_mic <= 0:
            return math.inf
        return 10 * math.log10(self._p_ref / self._p_mic)

    def _keep_mask(self, pcm: PCM, start: int) -> np.ndarray | None:  # pragma: no cover
        return None  # process() is overridden: nothing is silenced

    def statistics(self) -> EchoCancellerStatistics:
        """The counters of every echo control plus the meters and the alignment, now."""
        return EchoCancellerStatistics(
            **asdict(super().statistics()),
            erle_db=self.erle_db,
            erl_db=self.erl_db,
            device_latency_ms=self.device_latency_ms,
            offset_ms=samples_to_ms(self._offset or 0, self.rate),
            realignments=self.realignments,
        )
