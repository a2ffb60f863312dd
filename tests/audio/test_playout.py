"""Tests for livetalk.audio.playout.PlayoutBuffer."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from livetalk.audio.playout import PlayoutBuffer, PlayoutStatistics
from livetalk.errors import AudioFormatError

RATE = 1000  # 1 sample per ms keeps the arithmetic readable


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int16)


def test_prebuffer_then_play_in_order() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=100, prebuffer_ms=30)
    buf.write(ramp(1, 20))
    assert buf.read(10).tolist() == [0] * 10  # still prebuffering
    assert not buf.playing and buf.underruns == 0
    buf.write(ramp(21, 20))
    assert buf.read(25).tolist() == list(range(1, 26))
    assert buf.playing
    assert buf.buffered == 15 and buf.buffered_ms == 15.0


def test_underrun_pads_with_zeros_counts_and_rebuffers() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=100, prebuffer_ms=10)
    buf.write(ramp(1, 15))
    out = buf.read(20)
    assert out.tolist() == list(range(1, 16)) + [0] * 5
    assert buf.underruns == 1 and not buf.playing
    buf.write(ramp(1, 5))  # below the prebuffer again: silence, no new underrun
    assert buf.read(5).tolist() == [0] * 5
    assert buf.underruns == 1


def test_idle_reads_are_not_underruns() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=100, prebuffer_ms=0)
    for _ in range(5):
        assert buf.read(10).tolist() == [0] * 10
    assert buf.underruns == 0


def test_mark_end_plays_short_tail_without_underrun() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=100, prebuffer_ms=50)
    buf.write(ramp(1, 8))
    buf.mark_end()
    assert buf.read(10).tolist() == list(range(1, 9)) + [0, 0]
    assert buf.underruns == 0
    buf.write(ramp(1, 8))  # a new stream prebuffers again
    assert buf.read(10).tolist() == [0] * 10


def test_overrun_drops_oldest() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=50, prebuffer_ms=0)
    buf.write(ramp(1, 40))
    buf.write(ramp(41, 20))
    assert buf.overruns == 1 and buf.dropped_samples == 10
    assert buf.read(50).tolist() == list(range(11, 61))


def test_write_larger_than_capacity_keeps_newest() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=10, prebuffer_ms=0)
    buf.write(ramp(1, 5))
    buf.write(ramp(100, 25))
    assert buf.dropped_samples == 20
    assert buf.read(10).tolist() == list(range(115, 125))


def test_wraparound_and_growth_preserve_order() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=20_000, prebuffer_ms=0)
    expected = []
    produced = 0
    rng = np.random.default_rng(1)
    got = []
    for _ in range(300):
        n = int(rng.integers(1, 200))
        chunk = (np.arange(produced, produced + n) % 30000).astype(np.int16)
        produced += n
        expected.append(chunk)
        buf.write(chunk)
        k = int(rng.integers(1, 150))
        k = min(k, buf.buffered)
        got.append(buf.read(k))
    got.append(buf.read(buf.buffered))
    assert np.concatenate(got).tolist() == np.concatenate(expected).tolist()
    assert buf.overruns == 0 and buf.underruns == 0


def test_small_ring_wraps_at_capacity() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=7, prebuffer_ms=0)
    out = []
    for i in range(10):
        buf.write(ramp(i * 5, 5))
        out.append(buf.read(5))
    assert np.concatenate(out).tolist() == list(range(50))


def test_read_into_strided_view() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=100, prebuffer_ms=0)
    buf.write(ramp(1, 3))
    pairs = np.full((5, 2), 9, dtype=np.int16)
    assert buf.read_into(pairs[:, 0]) == 3
    assert pairs[:, 0].tolist() == [1, 2, 3, 0, 0]
    assert pairs[:, 1].tolist() == [9] * 5


def test_clear_fades_then_drops() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=1000, prebuffer_ms=0)
    buf.write(np.full(100, 10000, dtype=np.int16))
    dropped_ms = buf.clear(fade_ms=4)
    assert dropped_ms == 96.0
    assert buf.cleared_samples == 96
    tail = buf.read(6).tolist()
    assert tail[:4] == [8000, 6000, 4000, 2000]  # ramp 4/5 .. 1/5
    assert tail[4:] == [0, 0]
    assert buf.underruns == 0  # the end of a clear is not an underrun


def test_clear_fade_across_wrap() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=10, prebuffer_ms=0)
    buf.write(np.full(8, 1000, dtype=np.int16))
    buf.read(8)
    buf.write(np.full(6, 1000, dtype=np.int16))  # wraps around the 10-sample ring
    assert buf.clear(fade_ms=4) == 2.0
    assert buf.read(4).tolist() == [800, 600, 400, 200]


def test_clear_empty_and_zero_fade() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=100, prebuffer_ms=0)
    assert buf.clear() == 0.0
    buf.write(ramp(1, 10))
    assert buf.clear(fade_ms=0) == 10.0
    assert buf.buffered == 0


def test_statistics() -> None:
    buf = PlayoutBuffer(24000, capacity_ms=100, prebuffer_ms=20)
    buf.write(np.zeros(2400, dtype=np.int16))
    buf.read(480)
    buf.write(np.zeros(2400, dtype=np.int16))  # 80 + 100 ms into 100 ms: 80 ms dropped
    assert buf.clear(fade_ms=0) == 100.0
    buf.read(10)  # ran dry while playing
    assert buf.statistics() == PlayoutStatistics(
        buffered_ms=0.0, capacity_ms=100.0, playing=False, overruns=1, dropped_samples=1920,
        underruns=1, cleared_samples=2400, written_samples=4800, played_samples=480)


def test_validation() -> None:
    with pytest.raises(AudioFormatError):
        PlayoutBuffer(RATE, capacity_ms=0)
    with pytest.raises(AudioFormatError, match="prebuffer"):
        PlayoutBuffer(RATE, capacity_ms=10, prebuffer_ms=20)
    with pytest.raises(AudioFormatError, match="int16"):
        PlayoutBuffer(RATE).write(np.zeros(3, dtype=np.float64))


def test_concurrent_reader_thread_sees_ordered_stream() -> None:
    buf = PlayoutBuffer(RATE, capacity_ms=100_000, prebuffer_ms=0)
    total = 20_000
    received: list[np.ndarray] = []
    done = threading.Event()

    def reader() -> None:
        count = 0
        while count < total:
            out = np.empty(64, dtype=np.int16)
            k = buf.read_into(out)
            received.append(out[:k])
            count += k
        done.set()

    thread = threading.Thread(target=reader)
    thread.start()
    for start in range(0, total, 100):
        buf.write((np.arange(start, start + 100) % 30000).astype(np.int16))
    thread.join(timeout=30)
    assert done.is_set()
    assert np.concatenate(received).tolist() == (np.arange(total) % 30000).tolist()
