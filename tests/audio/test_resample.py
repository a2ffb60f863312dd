"""Tests for livetalk.audio.resample: stateful chunked resampling."""

from __future__ import annotations

import numpy as np
import pytest

from livetalk.audio.format import rms_dbfs
from livetalk.audio.resample import Resampler, resample
from livetalk.errors import AudioFormatError


def _sine(freq: float, rate: int, seconds: float, amp: float = 12000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(np.sin(2 * np.pi * freq * t) * amp).astype(np.int16)


def test_equal_rates_pass_through_without_copy() -> None:
    r = Resampler(24000, 24000)
    pcm = _sine(440, 24000, 0.1)
    assert r.passthrough
    assert r.process(pcm) is pcm
    assert r.flush().size == 0
    assert resample(pcm, 24000, 24000) is pcm


@pytest.mark.parametrize(("in_rate", "out_rate"), [(24000, 48000), (48000, 24000), (44100, 24000)])
def test_one_shot_length_and_level(in_rate: int, out_rate: int) -> None:
    pcm = _sine(440, in_rate, 1.0)
    out = resample(pcm, in_rate, out_rate)
    assert out.dtype == np.int16 and out.ndim == 1
    assert abs(out.size - out_rate) <= 2
    assert rms_dbfs(out) == pytest.approx(rms_dbfs(pcm), abs=0.2)


def test_chunked_stateful_equals_one_shot_and_beats_stateless() -> None:
    pcm = _sine(440, 24000, 1.0)
    whole = resample(pcm, 24000, 48000)

    r = Resampler(24000, 48000)
    chunks = [r.process(pcm[i : i + 2400]) for i in range(0, pcm.size, 2400)]
    chunked = np.concatenate([*chunks, r.flush()])
    assert chunked.size == whole.size
    stateful_err = np.abs(chunked.astype(np.int32) - whole).max()
    assert stateful_err <= 2

    stateless = np.concatenate(
        [resample(pcm[i : i + 2400], 24000, 48000) for i in range(0, pcm.size, 2400)]
    )
    n = min(stateless.size, whole.size)
    stateless_err = np.abs(stateless[:n].astype(np.int32) - whole[:n]).max()
    assert stateless_err > 50 * max(stateful_err, 1)


def test_flush_resets_for_a_new_stream() -> None:
    pcm = _sine(440, 24000, 0.2)
    r = Resampler(24000, 48000)
    first = np.concatenate([r.process(pcm), r.flush()])
    second = np.concatenate([r.process(pcm), r.flush()])
    assert first.tolist() == second.tolist()
    assert r.flush().size == 0


def test_empty_input() -> None:
    r = Resampler(24000, 48000)
    assert r.process(np.zeros(0, dtype=np.int16)).size == 0


def test_validation() -> None:
    with pytest.raises(AudioFormatError, match="input rate"):
        Resampler(0, 48000)
    with pytest.raises(AudioFormatError, match="int16"):
        Resampler(24000, 48000).process(np.zeros(10, dtype=np.float32))
