"""Echo control for speaker playback: keep the model from hearing itself.

With speakers and an open microphone, the assistant's voice goes out of the speaker and back
into the microphone; the server's turn detection takes it for the user speaking and the model
interrupts (or answers) itself. Headphones solve this completely; these processors are for when
there are none:

- :class:`HalfDuplex` replaces the microphone audio with silence while the assistant's audio is
  playing locally, plus a short tail (``tail_ms``, 200 by default) for the room's reverberation
  and the device latency. Reliable, but the user cannot interrupt the assistant.
- :class:`EnergyGate` lets the microphone through only when its level beats the level of what
  the speaker is playing by ``margin_db``: speaking up (close to the microphone) interrupts the
  assistant, quiet echo is dropped. It depends on the room and the volume; tune ``margin_db``.
- :class:`~livetalk.audio.aec.AcousticEchoCanceller` (``EchoMode.AEC``) subtracts the echo
  with WebRTC's echo canceller (the optional extra ``[aec]``): full duplex on speakers.
- :class:`Passthrough` (``EchoMode.OFF``) changes nothing; use it with headphones.

All of them are sans-I/O and share one model of the speaker: :class:`PlaybackTimeline`. Feed every
chunk written to the speaker to :meth:`EchoControl.on_playback`, every microphone chunk through
:meth:`EchoControl.process` (which returns the chunk to send), and call
:meth:`EchoControl.on_clear` when local playout is cleared (barge-in). No clock is involved: the
microphone and the speaker run at the same real-time pace, so each microphone sample processed
means one sample's worth of playback has been played. The objects are not thread-safe; use
them from one thread (the event loop).

Build one from a mode with :func:`make_echo_control`.
"""

from __future__ import annotations

import collections
import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from livetalk.audio.format import (
    API_RATE,
    PCM,
    check_pcm,
    check_rate,
    ms_to_samples,
    rms_dbfs,
    samples_to_ms,
)
from livetalk.errors import ConfigError

__all__ = [
    "EchoControl",
    "EchoMode",
    "EchoStatistics",
    "EnergyGate",
    "HalfDuplex",
    "Passthrough",
    "PlaybackTimeline",
    "default_echo_mode",
    "make_echo_control",
]

_SEGMENT_MS = 20
"""Playback is measured in pieces of this length."""


class EchoMode(enum.Enum):
    """How the microphone is protected from the speaker's output (``livetalk talk --echo``)."""

    OFF = "off"
    """No echo control: use headphones."""
    HALF_DUPLEX = "half-duplex"
    """Mute the microphone while the assistant plays (:class:`HalfDuplex`)."""
    GATE = "gate"
    """Pass the microphone only when it is louder than the playback (:class:`EnergyGate`)."""
    AEC = "aec"
    """Cancel the echo (:class:`~livetalk.audio.aec.AcousticEchoCanceller`, extra ``[aec]``)."""


@dataclass(frozen=True, slots=True)
class EchoStatistics:
    """What an :class:`EchoControl` has done to the microphone, at one moment.

    Attributes:
        mode: the processor's echo mode.
        processed_ms: microphone audio processed.
        silenced_ms: microphone audio replaced by silence (or, for the echo canceller, by
            comfort noise during its warm-up).
        playing: the assistant's audio is playing locally, or queued to play.
    """

    mode: EchoMode
    processed_ms: float
    silenced_ms: float
    playing: bool


@dataclass(frozen=True, slots=True)
class _Segment:
    start: int
    end: int
    level_db: float


class PlaybackTimeline:
    """What the speaker plays, on a timeline measured in microphone samples.

    The playhead moves with :meth:`advance` (the microphone time that passed); what is written
    queues after what is still ahead of the playhead, or starts at the playhead when the
    speaker ran dry. Each 20 ms piece of playback keeps its level, so callers can ask how loud
    the speaker was over any stretch of time.

    Args:
        rate: the microphone's sample rate in Hz (the timeline's unit).
        playback_rate: the sample rate of the playback chunks in Hz.
        audible_dbfs: playback at or below this level counts as silence.
        keep_ms: how long past playback stays queryable behind the playhead.
        resync_ms: how far the model may run behind the real speaker queue before it is
            corrected (see :meth:`write`). The playhead moves in whole microphone chunks
            (100 ms), so it lags real time by up to a chunk plus the event loop's delay.

    Raises:
        AudioFormatError: a rate is not a positive integer.
    """

    def __init__(
        self,
        rate: int = API_RATE,
        playback_rate: int = API_RATE,
        *,
        audible_dbfs: float = -50.0,
        keep_ms: float = 1000,
        resync_ms: float = 150,
    ) -> None:
        self.rate = check_rate(rate)
        self.playback_rate = check_rate(playback_rate, "playback_rate")
        self.audible_dbfs = audible_dbfs
        self._keep = ms_to_samples(keep_ms, self.rate)
        self._resync = ms_to_samples(resync_ms, self.rate)
        self._segment = ms_to_samples(_SEGMENT_MS, self.playback_rate)
        self._segments: collections.deque[_Segment] = collections.deque()
        self._carry = 0  # playback samples x rate not yet converted to timeline samples
        self.playhead = 0
        """Microphone samples processed so far (the current playback position)."""
        self.written_end = 0
        """Where the last written playback ends on the timeline."""

    @property
    def queued_ms(self) -> float:
        """Playback written but not yet played, in milliseconds."""
        return max(0, self.written_end - self.playhead) * 1000 / self.rate

    def write(self, pcm: PCM, *, queued_ms: float | None = None) -> None:
        """Add a chunk that was handed to the speaker.

        Args:
            pcm: the chunk, at ``playback_rate``.
            queued_ms: the audio queued ahead of the device once the chunk was written (e.g.
                ``SpeakerSink.buffer.buffered_ms``). The chunk is queued after the previous
                one; when that places it more than ``resync_ms`` later than ``queued_ms``
                says, it is moved back to end ``queued_ms`` after the playhead (the speaker
                got ahead of the model: audio written before the microphone started, dropped
                audio, clock drift). Never moved forward, so no gap opens in the model.

        Raises:
            AudioFormatError: ``pcm`` is not a 1-D int16 array.
        """
        check_pcm(pcm)
        pieces = []
        for i in range(0, pcm.size, self._segment):
            piece = pcm[i : i + self._segment]
            self._carry += piece.size * self.rate
            length, self._carry = divmod(self._carry, self.playback_rate)
            pieces.append((length, rms_dbfs(piece)))
        start = max(self.written_end, self.playhead)
        if queued_ms is not None:
            end = self.playhead + ms_to_samples(queued_ms, self.rate)
            real_start = max(self.playhead, end - sum(length for length, _ in pieces))
            if start - real_start > self._resync:
                start = real_start
        for length, level in pieces:
            if length:
                self._segments.append(_Segment(start, start + length, level))
                start += length
        self.written_end = start

    def advance(self, samples: int) -> None:
        """Move the playhead by ``samples`` microphone samples and forget old playback."""
        self.playhead += samples
        horizon = self.playhead - self._keep
        segments = self._segments
        while segments and segments[0].end < horizon:
            segments.popleft()

    def clear(self, fade_ms: float = 5) -> None:
        """Drop the playback queued beyond ``fade_ms`` after the playhead (barge-in)."""
        cut = self.playhead + ms_to_samples(fade_ms, self.rate)
        segments = self._segments
        while segments and segments[-1].start >= cut:
            segments.pop()
        if segments and segments[-1].end > cut:
            last = segments.pop()
            segments.append(_Segment(last.start, cut, last.level_db))
        self.written_end = min(self.written_end, max(cut, self.playhead))
        self._carry = 0

    def level_db(self, start: int, end: int) -> float:
        """The loudest playback overlapping ``[start, end)``, in dBFS (-inf if none)."""
        level = -math.inf
        for seg in self._segments:
            if seg.start < end and seg.end > start and seg.level_db > level:
                level = seg.level_db
        return level

    def audible(self) -> list[tuple[int, int]]:
        """The ``(start, end)`` spans of audible playback still known, merged, in order."""
        floor = self.audible_dbfs
        spans: list[tuple[int, int]] = []
        for seg in self._segments:
            if seg.level_db <= floor:
                continue
            if spans and spans[-1][0] <= seg.start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], seg.end))
            else:
                spans.append((seg.start, seg.end))
        return spans

    @property
    def playing(self) -> bool:
        """Audible playback is at or ahead of the playhead (playing, or about to)."""
        floor = self.audible_dbfs
        return any(s.end > self.playhead and s.level_db > floor for s in self._segments)


class EchoControl(ABC):
    """Base of the echo processors: a :class:`PlaybackTimeline` plus ``process``.

    Args:
        rate: the microphone chunks' sample rate in Hz.
        playback_rate: the speaker chunks' sample rate in Hz.
        audible_dbfs: playback at or below this level counts as silence.
        keep_ms: how long past playback is remembered (at least the processor's tail).
    """

    mode: EchoMode

    def __init__(
        self,
        rate: int = API_RATE,
        playback_rate: int = API_RATE,
        *,
        audible_dbfs: float = -50.0,
        keep_ms: float = 1000,
    ) -> None:
        self.timeline = PlaybackTimeline(
            rate, playback_rate, audible_dbfs=audible_dbfs, keep_ms=keep_ms
        )
        self.processed_samples = 0
        """Microphone samples processed."""
        self.silenced_samples = 0
        """Microphone samples replaced by silence."""

    @property
    def rate(self) -> int:
        """The microphone's sample rate in Hz."""
        return self.timeline.rate

    @property
    def playing(self) -> bool:
        """The assistant's audio is playing locally (or queued to play)."""
        return self.timeline.playing

    def on_playback(self, pcm: PCM, *, queued_ms: float | None = None) -> None:
        """Tell the processor what was just handed to the speaker.

        Args:
            pcm: the chunk, at the playback rate.
            queued_ms: the audio queued ahead of the device after it (see
                :meth:`PlaybackTimeline.write`); pass it when known, it keeps the processor
                aligned with the real speaker.
        """
        self.timeline.write(pcm, queued_ms=queued_ms)

    def on_clear(self, fade_ms: float = 5) -> None:
        """Tell the processor that local playout was cleared (after ``fade_ms``)."""
        self.timeline.clear(fade_ms)

    def set_device_latency(self, ms: float) -> None:
        """Tell the processor the sound devices' output plus input latency.

        Only the echo canceller uses it (to line its reference up with the echo); the others
        cover the latency with their ``tail_ms``.
        """
        del ms

    def process(self, pcm: PCM) -> PCM:
        """Return the microphone chunk to send: ``pcm``, or a copy with parts silenced.

        Raises:
            AudioFormatError: ``pcm`` is not a 1-D int16 array.
        """
        check_pcm(pcm)
        start = self.timeline.playhead
        keep = self._keep_mask(pcm, start)
        self.timeline.advance(pcm.size)
        self.processed_samples += pcm.size
        if keep is None:
            return pcm
        silenced = int(pcm.size - np.count_nonzero(keep))
        if not silenced:
            return pcm
        self.silenced_samples += silenced
        out = pcm.copy()
        out[~keep] = 0
        return out

    @abstractmethod
    def _keep_mask(self, pcm: PCM, start: int) -> np.ndarray | None:
        """Which samples of ``pcm`` (starting at timeline position ``start``) to keep.

        None keeps them all.
        """

    def statistics(self) -> EchoStatistics:
        """How much microphone audio was processed and silenced so far."""
        return EchoStatistics(
            mode=self.mode,
            processed_ms=samples_to_ms(self.processed_samples, self.rate),
            silenced_ms=samples_to_ms(self.silenced_samples, self.rate),
            playing=self.playing,
        )


class Passthrough(EchoControl):
    """No echo control (``EchoMode.OFF``): the microphone passes unchanged.

    It still follows the playback, so :attr:`playing` tells whether the assistant is audible.
    """

    mode = EchoMode.OFF

    def _keep_mask(self, pcm: PCM, start: int) -> np.ndarray | None:
        return None


class _TailControl(EchoControl):
    """An echo control for which playback still counts ``tail_ms`` after it ended (the
    room's reverberation and the device's output latency)."""

    def __init__(
        self, rate: int, playback_rate: int, *, tail_ms: float, audible_dbfs: float
    ) -> None:
        if tail_ms < 0:
            raise ConfigError(f"tail_ms must be >= 0, got {tail_ms}")
        super().__init__(
            rate, playback_rate, audible_dbfs=audible_dbfs, keep_ms=max(1000, 2 * tail_ms)
        )
        self.tail = ms_to_samples(tail_ms, self.rate)
        """The tail, in microphone samples."""


class HalfDuplex(_TailControl):
    """Silence the microphone while the assistant plays, and for ``tail_ms`` after.

    Args:
        rate: the microphone chunks' sample rate in Hz.
        playback_rate: the speaker chunks' sample rate in Hz.
        tail_ms: how long the microphone stays silenced after audible playback ends (room
            reverberation and the device's output latency).
        audible_dbfs: playback at or below this level counts as silence.

    Raises:
        ConfigError: ``tail_ms`` is negative.
    """

    mode = EchoMode.HALF_DUPLEX

    def __init__(
        self,
        rate: int = API_RATE,
        playback_rate: int = API_RATE,
        *,
        tail_ms: float = 200,
        audible_dbfs: float = -50.0,
    ) -> None:
        super().__init__(rate, playback_rate, tail_ms=tail_ms, audible_dbfs=audible_dbfs)

    def _keep_mask(self, pcm: PCM, start: int) -> np.ndarray | None:
        end = start + pcm.size
        keep: np.ndarray | None = None
        for seg_start, seg_end in self.timeline.audible():
            lo, hi = max(seg_start, start), min(seg_end + self.tail, end)
            if lo < hi:
                if keep is None:
                    keep = np.ones(pcm.size, dtype=bool)
                keep[lo - start : hi - start] = False
        return keep


class EnergyGate(_TailControl):
    """Pass the microphone only when it is louder than the playback by ``margin_db``.

    The microphone is judged in 20 ms frames. A frame passes when nothing audible played during
    it or in the ``tail_ms`` before it, or when its level is at least the loudest playback level
    over that stretch plus ``margin_db``. Once a frame passes, the gate stays open for
    ``hold_ms`` so that the softer parts of the user's words are not chopped.

    Levels are digital (dBFS): the echo reaching the microphone is usually quieter than the
    playback (distance, speaker volume), so a positive margin drops it while a user speaking
    close to the microphone gets through. Lower ``margin_db`` if interrupting is too hard,
    raise it if the assistant still hears itself.

    Args:
        rate: the microphone chunks' sample rate in Hz.
        playback_rate: the speaker chunks' sample rate in Hz.
        margin_db: how much louder than the playback the microphone must be.
        tail_ms: playback this recent still counts (reverberation, output latency).
        hold_ms: how long the gate stays open after a frame passed on its level.
        audible_dbfs: playback at or below this level counts as silence.

    Raises:
        ConfigError: a negative ``tail_ms`` or ``hold_ms``.
    """

    mode = EchoMode.GATE

    def __init__(
        self,
        rate: int = API_RATE,
        playback_rate: int = API_RATE,
        *,
        margin_db: float = 6.0,
        tail_ms: float = 200,
        hold_ms: float = 150,
        audible_dbfs: float = -50.0,
    ) -> None:
        if hold_ms < 0:
            raise ConfigError(f"hold_ms must be >= 0, got {hold_ms}")
        super().__init__(rate, playback_rate, tail_ms=tail_ms, audible_dbfs=audible_dbfs)
        self.margin_db = margin_db
        self.hold = ms_to_samples(hold_ms, self.rate)
        self._frame = ms_to_samples(_SEGMENT_MS, self.rate)
        self._open_until = 0
        self.opened_frames = 0
        """Frames that passed during audible playback because they were loud enough."""

    def _keep_mask(self, pcm: PCM, start: int) -> np.ndarray | None:
        timeline = self.timeline
        keep: np.ndarray | None = None
        for i in range(0, pcm.size, self._frame):
            frame = pcm[i : i + self._frame]
            t0, t1 = start + i, start + i + frame.size
            playback_db = timeline.level_db(t0 - self.tail, t1)
            if playback_db <= timeline.audible_dbfs:
                continue
            if rms_dbfs(frame) >= playback_db + self.margin_db:
                self.opened_frames += 1
                self._open_until = t1 + self.hold
                continue
            if t0 < self._open_until:
                continue
            if keep is None:
                keep = np.ones(pcm.size, dtype=bool)
            keep[i : i + frame.size] = False
        return keep


def make_echo_control(
    mode: EchoMode | str, rate: int = API_RATE, playback_rate: int = API_RATE, **options: Any
) -> EchoControl:
    """Build the processor for ``mode`` (an :class:`EchoMode` or its value, e.g. ``"gate"``).

    Args:
        mode: the echo mode.
        rate: the microphone chunks' sample rate in Hz.
        playback_rate: the speaker chunks' sample rate in Hz.
        **options: keyword options of the processor's class (``tail_ms``, ``margin_db``...).

    Raises:
        ConfigError: an unknown mode or option, or ``"aec"`` without the ``[aec]`` extra.
    """
    try:
        chosen = EchoMode(mode)
    except ValueError:
        choices = ", ".join(m.value for m in EchoMode)
        raise ConfigError(f"echo mode must be one of {choices}, got {mode!r}") from None
    cls: Callable[..., EchoControl]
    if chosen is EchoMode.AEC:
        from livetalk.audio.aec import AcousticEchoCanceller, _import_rtc

        _import_rtc()  # the missing extra is a ConfigError of its own, not a bad option
        cls = AcousticEchoCanceller
    else:
        classes: dict[EchoMode, Callable[..., EchoControl]] = {
            EchoMode.OFF: Passthrough,
            EchoMode.HALF_DUPLEX: HalfDuplex,
            EchoMode.GATE: EnergyGate,
        }
        cls = classes[chosen]
    try:
        return cls(rate, playback_rate, **options)
    except TypeError as exc:
        raise ConfigError(f"bad option for echo mode {chosen.value!r}: {exc}") from None


def default_echo_mode(headphones: bool) -> EchoMode:
    """The echo mode to use when none is chosen (``livetalk talk`` without ``--echo``).

    Args:
        headphones: the user declared headphones (or the output device is named like them).

    Returns:
        ``OFF`` with headphones (nothing to cancel, full duplex); otherwise ``AEC`` when the
        ``[aec]`` extra is installed, else ``HALF_DUPLEX``.
    """
    if headphones:
        return EchoMode.OFF
    from livetalk.audio.aec import aec_available

    return EchoMode.AEC if aec_available() else EchoMode.HALF_DUPLEX
