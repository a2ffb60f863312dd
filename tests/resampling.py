"""A spy on every sample-rate conversion livetalk makes, for tests that count them.

All of livetalk's resampling runs through PyAV's ``av.AudioResampler`` (FFmpeg's swresample):
:class:`~livetalk.audio.resample.Resampler` wraps one, ``FileSource`` and
``RemoteAudioReader`` use one directly. :func:`spy_on_resampling` replaces the constructor
with one that returns the real resampler behind a thin recorder, so a test can see which
conversions ran, on which resampler, how often. Nothing is faked: every call goes to the real
PyAV object and its output is returned unchanged.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import av
import pytest


class ResamplingLog:
    """The rate conversions seen: which resamplers changed a rate, and how many calls each."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[int, int, int]] = Counter()  # (resampler id, in, out) -> calls
        self.samples: Counter[tuple[int, int]] = Counter()  # (in, out) -> input samples

    def record(self, resampler: int, frame: av.AudioFrame, out_rate: int) -> None:
        if frame.sample_rate != out_rate and frame.samples:
            self.calls[(resampler, frame.sample_rate, out_rate)] += 1
            self.samples[(frame.sample_rate, out_rate)] += frame.samples

    @property
    def conversions(self) -> list[tuple[int, int]]:
        """``(in_rate, out_rate)`` of each resampler that changed a rate, sorted."""
        return sorted((i, o) for _, i, o in self.calls)

    def calls_of(self, in_rate: int, out_rate: int) -> int:
        """How many chunks were converted from ``in_rate`` to ``out_rate``, all resamplers."""
        return sum(n for (_, i, o), n in self.calls.items() if (i, o) == (in_rate, out_rate))


class _Recorder:
    """The real ``av.AudioResampler``, reporting each rate-changing call to the log."""

    def __init__(self, real: Any, log: ResamplingLog) -> None:
        self._real = real
        self._log = log

    def resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        if frame is not None:
            self._log.record(id(self), frame, self._real.rate or frame.sample_rate)
        out: list[av.AudioFrame] = self._real.resample(frame)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def spy_on_resampling(monkeypatch: pytest.MonkeyPatch) -> ResamplingLog:
    """Record every rate conversion made through ``av.AudioResampler`` until the test ends."""
    log = ResamplingLog()
    real = av.AudioResampler

    def make(*args: Any, **kwargs: Any) -> _Recorder:
        return _Recorder(real(*args, **kwargs), log)

    monkeypatch.setattr(av, "AudioResampler", make)
    return log
