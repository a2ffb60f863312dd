"""Turn detection on webrtcvad: finds where speech starts and stops in a PCM stream.

:class:`TurnDetector` is sans-I/O: feed it int16 mono chunks of any size with
:meth:`~TurnDetector.feed` and it returns the :class:`SpeechStarted` and :class:`SpeechStopped`
events those samples complete. It serves the local server's ``server_vad`` and the client's
local-VAD fallback. :func:`speech_span` finds the speech in a whole recording, to trim a
committed buffer before a recogniser that copes badly with long silences.

Theory of operation
-------------------
webrtcvad classifies frames of 10, 20 or 30 ms as voiced or not, at 8, 16, 32 or 48 kHz. Other
rates that are a multiple of 8 kHz (24 kHz, the Realtime API's rate) are low-pass filtered and
decimated to the largest of those that divides them, with a stateful FIR filter (no
resampler latency beyond 1 ms).

A frame counts as voiced only if webrtcvad says so *and* its energy is at least ``margin_db``
above the noise floor (the energy gate). The floor is the minimum, over the last 2 s, of the
frame energy smoothed by a running median over 90 ms; frames of digital silence (all zeros)
before the first sound are left out of it, so it starts at the first sound's level; later ones
count as 0 dB. The gate exists because webrtcvad learns its noise model from the signal and can lock
onto noise: after digital silence (a call's track idles on zeros until the file or microphone
starts, or is muted) a noise onset whose first frame is quieter than the rest (the onset lands
inside a frame, or Opus ramps it in) makes webrtcvad call the noise speech for seconds, which
started a false turn at the noise onset and merged it with the first phrase. Before a floor
exists (the first 90 ms of sound) no frame counts.

The verdicts then go through windowed rules, which held up where "N consecutive frames" rules
failed in noise (``docs/platform-notes.md``, webrtcvad):

* start: at least ``start_ratio`` of the frames in the last ``start_window_ms`` are voiced
  (and they add up to ``min_speech_ms``), and none of them lies in the first
  ``ignore_first_ms`` of sound (counted from the first non-zero sample, so leading digital
  silence does not use it up). The onset is the first voiced frame of that window, taken back
  over earlier voiced frames separated by gaps of at most 240 ms ("what | time is it": a stop
  closure sinks below the gate); the turn starts there, less ``prefix_padding_ms``.
* end: at most ``end_ratio`` of the frames in the last ``silence_duration_ms`` are voiced. The
  turn ends where speech was last dense (the last voiced frame of a window that would satisfy
  the start rule), carried on over up to 90 ms of frames that webrtcvad alone still calls
  voiced (a final consonant below the noise), so ``end_ms`` marks the end of speech, not the
  moment it was detected (which is about ``silence_duration_ms`` later).

Measured (espeak-ng phrases, white noise, 30 ms frames; onset = ``start_ms`` +
``prefix_padding_ms`` minus the audible onset, end = ``end_ms`` minus the audible end):

* five phrases (gaps 1.2-2 s) with noise from the first sample, 10 seeds, modes 2 and 3:
  10 dB 10/10 both before and after the gate (onset -24..+95 ms, end +6..+123 ms with it);
  5 dB 5/5 seeds with the gate, 0/5 without; clean 1/1 both. With 10 ms frames (5 seeds,
  modes 2 and 3) 10/10 with the gate, 7/10 without; 20 ms frames 10/10 both.
* the three-phrase recording of ``tests/test_localvad.py`` after 0 to
  1000 ms of digital silence (7 offsets, 3 seeds), through Opus (server path, mode 2) and
  through the sent-audio tap (local path, mode 3): at 10 dB, without the gate 7/21 and 13/21
  (a false turn from the noise onset whenever the onset is not frame-aligned); with it 21/21
  and 21/21, onset -16..+95 ms, end +3..+123 ms; clean 7/7 both. Dropping 2-5 % of the Opus
  frames, or bursts of 10, changes no turn count (lost frames only compress time).
* Known limit: a sudden rise of the noise level (+6 dB) starts a false turn until the floor
  catches up (2 s), with or without the gate.

Every time is media time in milliseconds from the first sample fed, computed from sample
counts, never from the wall clock: feeding faster or slower than real time gives the same
events, and so does feeding the same samples in chunks of other sizes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from livetalk._extras import require
from livetalk.audio.format import PCM, check_pcm, check_rate, empty_pcm
from livetalk.errors import ConfigError

__all__ = ["SpeechStarted", "SpeechStopped", "TurnDetector", "VadEvent", "speech_span"]

_VAD_RATES = (48000, 32000, 16000, 8000)
_FRAME_MS = (10, 20, 30)
_FIR_TAPS_PER_FACTOR = 16
_FIR_CUTOFF = 0.9
"""Low-pass cutoff as a fraction of the decimated signal's Nyquist frequency."""
_FLOOR_WINDOW_MS = 2000
"""The noise floor is the minimum smoothed frame energy over this much recent sound."""
_FLOOR_SMOOTH_MS = 90
"""Span of the running median that smooths the frame energy before the floor's minimum."""
_SILENT_POWER = 1.0
"""Mean square (int16 units) below which a frame is digital silence, not sound."""
_ONSET_GAP_MS = 240
"""Longest gap between voiced frames that the onset is taken back across."""
_END_TAIL_MS = 90
"""Longest run of webrtcvad-only voiced frames that the end carries on over."""


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began.

    Attributes:
        start_ms: where the turn's audio starts, in ms of stream time: the onset of speech less
            the prefix padding, never before 0 or before the end of the previous turn.
    """

    start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """Speech ended; the turn is complete.

    Equality compares ``end_ms`` only: compare ``audio`` with numpy.

    Attributes:
        end_ms: where speech ended, in ms of stream time.
        audio: the turn's samples at the detector's input rate, from the matching
            :attr:`SpeechStarted.start_ms` (prefix padding included) to ``end_ms``.
    """

    end_ms: int
    audio: PCM = field(compare=False, repr=False)


VadEvent = SpeechStarted | SpeechStopped
"""The events a :class:`TurnDetector` returns."""


class TurnDetector:
    """Finds turns (speech between silences) in a mono int16 PCM stream.

    Feed samples with :meth:`feed` and act on the events it returns; call :meth:`force_end` to
    close a turn early (push-to-talk commit) and :meth:`reset` to drop the turn in progress.

    Args:
        rate: input sample rate in Hz: 8, 16, 32 or 48 kHz, or another multiple of 8 kHz
            (24 kHz is decimated to 8 kHz, 96 kHz to 48 kHz).
        aggressiveness: webrtcvad mode, 0 (calls most things speech) to 3 (strictest). In noise
            only 2 and 3 let turns end.
        frame_ms: webrtcvad frame length: 10, 20 or 30.
        prefix_padding_ms: audio kept before the onset of speech.
        silence_duration_ms: length of the window whose (near) silence ends a turn.
        start_window_ms: length of the window that must be mostly voiced to start a turn.
        start_ratio: fraction of voiced frames in the start window that starts a turn.
        end_ratio: fraction of voiced frames in the silence window at or below which a turn ends.
        ignore_first_ms: time from the first non-zero sample during which no turn can start
            (speech that begins inside it still gets its onset once it carries on past it).
            The energy gate already covers webrtcvad's adaptation, so 0 by default.
        min_speech_ms: voiced time the start window must hold, on top of ``start_ratio``.
        margin_db: how far above the noise floor a frame's energy must be to count as voiced
            (0 lets webrtcvad alone decide; 3 dB passed every measured case, 6 dB too).

    Raises:
        ConfigError: an unsupported rate or frame length, or a value out of range.
        MissingExtraError: webrtcvad is not installed (the ``vad`` extra).
    """

    def __init__(
        self,
        rate: int,
        *,
        aggressiveness: int = 3,
        frame_ms: int = 30,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 700,
        start_window_ms: int = 300,
        start_ratio: float = 0.6,
        end_ratio: float = 0.15,
        ignore_first_ms: int = 0,
        min_speech_ms: int = 100,
        margin_db: float = 3.0,
    ) -> None:
        require("vad", "local turn detection (TurnDetector)")
        import webrtcvad  # in the 'vad' and 'server' extras

        try:
            self.rate = check_rate(rate)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        vad_rate = next((r for r in _VAD_RATES if self.rate % r == 0), None)
        if vad_rate is None:
            raise ConfigError(
                f"TurnDetector needs a rate that is a multiple of 8000 Hz, got {rate}; "
                "resample first (livetalk.audio.resample)"
            )
        if aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(f"aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")
        if frame_ms not in _FRAME_MS:
            raise ConfigError(f"frame_ms must be 10, 20 or 30, got {frame_ms!r}")
        for name, value in (
            ("prefix_padding_ms", prefix_padding_ms),
            ("ignore_first_ms", ignore_first_ms),
            ("min_speech_ms", min_speech_ms),
        ):
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        for name, value in (
            ("silence_duration_ms", silence_duration_ms),
            ("start_window_ms", start_window_ms),
        ):
            if value < frame_ms:
                raise ConfigError(f"{name} must be at least frame_ms ({frame_ms}), got {value}")
        if not 0.0 <= margin_db <= 40.0:
            raise ConfigError(f"margin_db must be from 0 to 40, got {margin_db}")
        if not 0.0 < start_ratio <= 1.0:
            raise ConfigError(f"start_ratio must be in (0, 1], got {start_ratio}")
        if not 0.0 <= end_ratio < start_ratio:
            raise ConfigError(f"end_ratio must be in [0, start_ratio), got {end_ratio}")
        if min_speech_ms > start_window_ms:
            raise ConfigError(
                f"min_speech_ms ({min_speech_ms}) cannot exceed start_window_ms ({start_window_ms})"
            )

        self.aggressiveness = aggressiveness
        self.frame_ms = frame_ms
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.start_window_ms = start_window_ms
        self.start_ratio = start_ratio
        self.end_ratio = end_ratio
        self.ignore_first_ms = ignore_first_ms
        self.min_speech_ms = min_speech_ms
        self.margin_db = margin_db

        self._vad = webrtcvad.Vad(aggressiveness)
        self._vad_rate = vad_rate
        self._factor = self.rate // vad_rate
        self._fir = _lowpass(self._factor)
        self._frame_len = vad_rate * frame_ms // 1000
        self._start_frames = math.ceil(start_window_ms / frame_ms)
        self._end_frames = math.ceil(silence_duration_ms / frame_ms)
        self._start_needed = max(
            math.ceil(start_ratio * self._start_frames - 1e-9),
            math.ceil(min_speech_ms / frame_ms),
        )
        self._end_allowed = math.floor(end_ratio * self._end_frames + 1e-9)
        self._ignore_frames = math.ceil(ignore_first_ms / frame_ms)
        self._onset_gap = _ONSET_GAP_MS // frame_ms
        self._end_tail = _END_TAIL_MS // frame_ms
        history = max(self._start_frames, self._end_frames)
        # the onset may be taken back across the whole flag history
        self._keep_ms = prefix_padding_ms + (history + 1) * frame_ms
        self._first_eligible: int | None = None  # the first frame that may start a turn
        self._recent_db: deque[float] = deque(maxlen=_FLOOR_SMOOTH_MS // frame_ms)
        self._smoothed_db: deque[float] = deque(maxlen=max(1, _FLOOR_WINDOW_MS // frame_ms))
        self._fed = 0
        self._audio = _SampleBuffer()
        self._fir_history = np.zeros(self._fir.size - 1, dtype=np.float64)
        self._phase = 0  # index in the next input chunk of the next decimated sample
        self._pending = empty_pcm()  # decimated samples not yet making a whole frame
        self._frames = 0  # frames classified so far
        self._flags: deque[bool] = deque(maxlen=history)  # gated verdicts
        self._raw: deque[bool] = deque(maxlen=history + self._end_tail)  # webrtcvad's alone
        self._in_speech = False
        self._onset_frame = 0
        self._turn_start_ms = 0
        self._speech_end_ms = 0
        self._last_end_ms = 0

    @classmethod
    def from_threshold(cls, rate: int, threshold: float = 0.5, **kwargs: Any) -> TurnDetector:
        """Build a detector from the Realtime API's ``server_vad`` threshold.

        The API's threshold (0 to 1, default 0.5; higher needs louder speech) maps to the
        webrtcvad mode ``min(3, int(threshold * 4))``: [0, 0.25) -> 0, [0.25, 0.5) -> 1,
        [0.5, 0.75) -> 2, [0.75, 1] -> 3, and to the energy gate's ``margin_db = 6 *
        threshold``. The API's default thus gives mode 2, the most lenient mode that still lets
        turns end in noise, and the default 3 dB margin.

        Args:
            rate: input sample rate in Hz.
            threshold: the ``turn_detection.threshold``, 0 to 1.
            **kwargs: any other :class:`TurnDetector` argument except ``aggressiveness`` and
            ``margin_db``.

        Raises:
            ConfigError: ``threshold`` outside [0, 1], or an invalid argument.
        """
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ConfigError(f"threshold must be a number from 0 to 1, got {threshold!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be from 0 to 1, got {threshold}")
        for name in ("aggressiveness", "margin_db"):
            if name in kwargs:
                raise ConfigError(f"pass either threshold or {name}, not both")
        return cls(
            rate, aggressiveness=min(3, int(threshold * 4)), margin_db=6.0 * threshold, **kwargs
        )

    @property
    def in_speech(self) -> bool:
        """True between a :class:`SpeechStarted` and its :class:`SpeechStopped`."""
        return self._in_speech

    @property
    def stream_ms(self) -> int:
        """Media time fed so far, in whole milliseconds."""
        return self._fed * 1000 // self.rate

    def reset(self) -> None:
        """Drop the turn in progress (without an event) and the audio held for it.

        The media clock keeps running, so later events stay in the same time base; the next
        turn needs fresh evidence (a full start window of speech). The noise floor is kept.
        """
        self._in_speech = False
        self._flags.clear()
        self._raw.clear()
        self._last_end_ms = self.stream_ms
        self._audio.discard_before(self._fed)

    def force_end(self) -> SpeechStopped | None:
        """End the turn in progress now, as a push-to-talk commit does.

        Returns:
            A :class:`SpeechStopped` whose audio runs from the turn's start to everything fed so
            far (``end_ms`` is :attr:`stream_ms`), or None if no turn is in progress.
        """
        if not self._in_speech:
            return None
        return self._stop(self.stream_ms, self._fed)

    # ------------------------------------------------------------------ feeding
    def feed(self, pcm: PCM) -> list[VadEvent]:
        """Take the next samples of the stream.

        Args:
            pcm: 1-D int16 mono samples at :attr:`rate`, any length.

        Returns:
            The events completed by these samples, in stream order (often empty).

        Raises:
            AudioFormatError: ``pcm`` is not a 1-D int16 array.
        """
        check_pcm(pcm)
        if pcm.size == 0:
            return []
        self._audio.append(pcm, self._fed)
        self._fed += pcm.size
        frames = np.concatenate((self._pending, self._decimate(pcm)))
        n_frames = frames.size // self._frame_len
        self._pending = frames[n_frames * self._frame_len:]
        events: list[VadEvent] = []
        for k in range(n_frames):
            chunk = frames[k * self._frame_len:(k + 1) * self._frame_len]
            power = float(np.mean(np.square(chunk, dtype=np.float64)))
            loud = self._above_floor(power)
            # webrtcvad's verdict, less its hangover over digital silence
            raw = self._vad.is_speech(chunk.tobytes(), self._vad_rate) and power >= _SILENT_POWER
            event = self._on_frame(raw, raw and loud)
            if event is not None:
                events.append(event)
        if not self._in_speech:
            keep_from = (self._frames * self.frame_ms - self._keep_ms) * self.rate // 1000
            self._audio.discard_before(keep_from)
        return events

    def _decimate(self, pcm: PCM) -> PCM:
        if self._factor == 1:
            return pcm
        x = np.concatenate((self._fir_history, pcm.astype(np.float64)))
        self._fir_history = x[-(self._fir.size - 1):]
        out = np.convolve(x, self._fir, mode="valid")[self._phase::self._factor]
        self._phase = (self._phase - pcm.size) % self._factor
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def _above_floor(self, power: float) -> bool:
        """Take one frame's mean square into the noise floor; True if it is loud enough."""
        if self._first_eligible is None:
            if power < _SILENT_POWER:  # leading digital silence: nothing to learn yet
                return False
            self._first_eligible = self._frames + self._ignore_frames
        level_db = 10.0 * math.log10(max(power, _SILENT_POWER))
        recent = self._recent_db
        recent.append(level_db)
        if len(recent) < (recent.maxlen or 1):
            return False
        self._smoothed_db.append(sorted(recent)[len(recent) // 2])
        return level_db >= min(self._smoothed_db) + self.margin_db

    def _on_frame(self, raw: bool, voiced: bool) -> VadEvent | None:
        k = self._frames
        self._frames += 1
        self._flags.append(voiced)
        self._raw.append(raw)
        if self._in_speech:
            return self._on_speech_frame(k)
        if not voiced or self._first_eligible is None:
            return None
        window = list(self._flags)[-self._start_frames:]
        first = k - len(window) + 1
        eligible = [i for i, v in enumerate(window) if v and first + i >= self._first_eligible]
        if len(eligible) < self._start_needed:
            return None
        self._in_speech = True
        # take the onset back across short gaps (a stop closure, a quiet consonant)
        flags = list(self._flags)
        base = k - len(flags) + 1
        onset = first + eligible[0] - base
        i = onset - 1
        while i >= 0 and onset - i - 1 <= self._onset_gap:
            if flags[i]:
                onset = i
            i -= 1
        self._onset_frame = base + onset
        onset_ms = self._onset_frame * self.frame_ms
        self._speech_end_ms = (k + 1) * self.frame_ms
        self._turn_start_ms = max(0, self._last_end_ms, onset_ms - self.prefix_padding_ms)
        return SpeechStarted(self._turn_start_ms)

    def _on_speech_frame(self, k: int) -> SpeechStopped | None:
        flags = list(self._flags)
        start_window = flags[-self._start_frames:]
        if sum(start_window) >= self._start_needed:
            last_voiced = len(start_window) - 1 - start_window[::-1].index(True)
            end_frame = k - len(start_window) + 1 + last_voiced
            self._speech_end_ms = max(self._speech_end_ms, (end_frame + 1) * self.frame_ms)
        if k - self._onset_frame + 1 < self._end_frames:
            return None
        if sum(flags[-self._end_frames:]) > self._end_allowed:
            return None
        end_ms = self._end_ms()
        return self._stop(end_ms, end_ms * self.rate // 1000)

    def _end_ms(self) -> int:
        """Where the turn in progress ends if its speech is over: the last voiced frame, carried
        on over what webrtcvad alone still calls speech (a final consonant below the gate) for
        at most ``_END_TAIL_MS``."""
        raw = list(self._raw)
        # the first frame after the speech, as an index into raw
        i = len(raw) - self._frames + self._speech_end_ms // self.frame_ms
        tail = 0
        while tail < self._end_tail and 0 <= i + tail < len(raw) and raw[i + tail]:
            tail += 1
        return self._speech_end_ms + tail * self.frame_ms

    @property
    def silent_ms(self) -> int:
        """How long the turn in progress has been quiet (since its last voiced frame), in ms
        of media time; 0 outside a turn."""
        return self._frames * self.frame_ms - self._speech_end_ms if self._in_speech else 0

    @property
    def end_settled(self) -> bool:
        """True in a turn that has been quiet long enough (``_END_TAIL_MS``) for its end to be
        known: if it stops without more speech, :meth:`peek_end` is its event."""
        return self._in_speech and self.silent_ms > _END_TAIL_MS

    def peek_end(self) -> SpeechStopped | None:
        """The :class:`SpeechStopped` that will end the turn in progress if no more speech
        comes, without ending it (None outside a turn).

        Once :attr:`end_settled`, if the turn stops without new speech its event has this
        ``end_ms`` and this audio: a server can start recognising the turn from here, before
        the silence that ends it has run its course.
        """
        if not self._in_speech:
            return None
        end_ms = self._end_ms()
        start = self._turn_start_ms * self.rate // 1000
        return SpeechStopped(end_ms, self._audio.slice(start, end_ms * self.rate // 1000))

    def _stop(self, end_ms: int, end: int) -> SpeechStopped:
        start = self._turn_start_ms * self.rate // 1000
        audio = self._audio.slice(start, end)
        self._in_speech = False
        self._flags.clear()  # the next turn needs a start window of its own
        self._raw.clear()
        self._last_end_ms = end_ms
        self._audio.discard_before(end)
        return SpeechStopped(end_ms, audio)

    def __repr__(self) -> str:
        return (
            f"TurnDetector({self.rate}, aggressiveness={self.aggressiveness}, "
            f"frame_ms={self.frame_ms}, silence_duration_ms={self.silence_duration_ms}, "
            f"margin_db={self.margin_db})"
        )


def speech_span(pcm: PCM, rate: int, **kwargs: Any) -> tuple[int, int] | None:
    """Find where the speech of a whole recording starts and ends.

    Use it to trim a committed audio buffer (silence or noise before and after the turn)
    before handing it to a recogniser that copes badly with long non-speech stretches.

    Args:
        pcm: 1-D int16 mono samples.
        rate: their sample rate in Hz (a multiple of 8 kHz, as for :class:`TurnDetector`).
        **kwargs: any other :class:`TurnDetector` argument.

    Returns:
        ``(start, end)`` sample indexes: from the first turn's start (prefix padding included)
        to the last turn's end (the end of ``pcm`` if speech is still going on there), or None
        if no turn was found.

    Raises:
        AudioFormatError: ``pcm`` is not a 1-D int16 array.
        ConfigError: an unsupported rate or an invalid argument.
    """
    detector = TurnDetector(rate, **kwargs)
    events = detector.feed(pcm)
    first = next((e for e in events if isinstance(e, SpeechStarted)), None)
    if first is None:
        return None
    start = first.start_ms * rate // 1000
    if detector.in_speech:
        return start, pcm.size
    last = [e for e in events if isinstance(e, SpeechStopped)][-1]
    return start, last.end_ms * rate // 1000


def _lowpass(factor: int) -> npt.NDArray[np.float64]:
    """A windowed-sinc low-pass FIR for decimation by ``factor`` (unity gain at DC)."""
    if factor == 1:
        return np.ones(1)
    taps = _FIR_TAPS_PER_FACTOR * factor + 1
    n = np.arange(taps) - (taps - 1) / 2
    cutoff = _FIR_CUTOFF / factor  # in units of the input's Nyquist frequency
    h = cutoff * np.sinc(cutoff * n) * np.hamming(taps)
    taps_out: npt.NDArray[np.float64] = h / h.sum()
    return taps_out


class _SampleBuffer:
    """Growable int16 store addressed by absolute sample index, trimmed from the front.

    Trimming only moves a start offset; the kept samples move to the front of the array when
    an append would otherwise need to grow it, so each sample is copied O(1) times on average.
    """

    __slots__ = ("_base", "_buf", "_head", "_len")

    def __init__(self) -> None:
        self._buf = np.empty(0, dtype=np.int16)
        self._head = 0  # position in _buf of the first sample held
        self._base = 0  # absolute index of that sample
        self._len = 0

    def append(self, pcm: PCM, at: int) -> None:
        """Store ``pcm`` whose first sample has absolute index ``at`` (right after the last)."""
        if self._len == 0:
            self._head, self._base = 0, at
        if self._head + self._len + pcm.size > self._buf.size:
            kept = self._buf[self._head:self._head + self._len]
            need = self._len + pcm.size
            if need * 2 > self._buf.size:
                grown = np.empty(max(need * 2, 4096), dtype=np.int16)
                grown[:self._len] = kept
                self._buf = grown
            else:
                self._buf[:self._len] = kept.copy()
            self._head = 0
        end = self._head + self._len
        self._buf[end:end + pcm.size] = pcm
        self._len += pcm.size

    def discard_before(self, index: int) -> None:
        """Forget samples with an absolute index below ``index``."""
        drop = min(max(0, index - self._base), self._len)
        self._head += drop
        self._base += drop
        self._len -= drop

    def slice(self, start: int, end: int) -> PCM:
        """A copy of the samples with absolute indexes in ``[start, end)`` still held."""
        lo = min(max(0, start - self._base), self._len)
        hi = min(max(lo, end - self._base), self._len)
        return self._buf[self._head + lo:self._head + hi].copy()
