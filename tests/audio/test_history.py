from __future__ import annotations

import numpy as np
import pytest

from livetalk.audio.history import AudioHistory


def test_slices_by_stream_time_across_wraparound() -> None:
    h = AudioHistory(1000, 1.0)  # 1000 samples retained
    stream = np.arange(2500, dtype=np.int16)
    for i in range(0, 2500, 300):
        h.write(stream[i:i + 300])
    assert h.end_ms == pytest.approx(2500)
    np.testing.assert_array_equal(h.slice_ms(1600, 2400), stream[1600:2400])
    np.testing.assert_array_equal(h.slice_ms(1400, 2600), stream[1500:2500])  # clipped
    assert h.slice_ms(100, 400).size == 0  # forgotten


def test_write_larger_than_capacity_keeps_the_tail() -> None:
    h = AudioHistory(1000, 0.5)
    stream = np.arange(1234, dtype=np.int16)
    h.write(stream)
    np.testing.assert_array_equal(h.slice_ms(0, 2000), stream[-500:])
    h.write(stream[:10])
    np.testing.assert_array_equal(h.slice_ms(1234, 1244), stream[:10])
