"""Tests for livetalk.audio.format: conversion, validation, levels, chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livetalk.audio.format import (
    Chunker,
    check_pcm,
    check_rate,
    ms_to_samples,
    rms_dbfs,
    samples_to_ms,
    to_float32,
    to_int16_mono,
)
from livetalk.errors import AudioFormatError


def test_int16_mono_passes_through_without_copy() -> None:
    pcm = np.arange(-100, 100, dtype=np.int16)
    assert to_int16_mono(pcm) is pcm


def test_int16_stereo_is_averaged() -> None:
    stereo = np.array([[100, 300], [-4, 4], [32767, 32767]], dtype=np.int16)
    assert to_int16_mono(stereo).tolist() == [200, 0, 32767]


def test_channels_first_layout() -> None:
    planar = np.array([[100, -4], [300, 4]], dtype=np.int16)
    assert to_int16_mono(planar, channels_last=False).tolist() == [200, 0]


def test_single_channel_column_becomes_1d() -> None:
    col = np.array([[1], [2], [3]], dtype=np.int16)
    out = to_int16_mono(col)
    assert out.ndim == 1 and out.tolist() == [1, 2, 3] and out.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_scaled_and_clipped(dtype: type) -> None:
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.2], dtype=dtype)
    assert to_int16_mono(x).tolist() == [0, 16384, -16384, 32767, -32768, 32767]


def test_float_stereo_averaged() -> None:
    x = np.array([[0.5, 0.0], [-0.25, -0.25]], dtype=np.float32)
    assert to_int16_mono(x).tolist() == [8192, -8192]


def test_float_round_trip() -> None:
    pcm = np.array([0, 1, -1, 12345, -32768, 32767], dtype=np.int16)
    assert to_int16_mono(to_float32(pcm)).tolist() == pcm.tolist()


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros(4, dtype=np.int32), "int16 samples or float32/float64"),
        (np.zeros(4, dtype=np.uint8), "dtype uint8"),
        (np.zeros((2, 2, 2), dtype=np.int16), "shape"),
        (np.zeros((10, 9), dtype=np.int16), "1 to 8 channels"),
        (np.array([0.0, np.nan], dtype=np.float32), "NaN"),
        (np.array([0.0, np.inf]), "NaN or infinity"),
        (np.array([0.0, 1000.0]), "int-scaled"),
        ([1, 2, 3], "numpy array"),
    ],
)
def test_rejects_bad_input(array: object, match: str) -> None:
    with pytest.raises(AudioFormatError, match=match):
        to_int16_mono(array)


def test_channels_first_hint() -> None:
    with pytest.raises(AudioFormatError, match="channels_last=False"):
        to_int16_mono(np.zeros((2, 480), dtype=np.int16))


def test_audio_format_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        check_pcm(np.zeros((2, 2), dtype=np.int16))


def test_check_pcm() -> None:
    pcm = np.zeros(3, dtype=np.int16)
    assert check_pcm(pcm) is pcm
    with pytest.raises(AudioFormatError, match="1-D numpy int16"):
        check_pcm(np.zeros(3, dtype=np.float32))
    with pytest.raises(AudioFormatError, match="got list"):
        check_pcm([0, 1])


@pytest.mark.parametrize("rate", [0, -1, 1.5, "24000", True, None])
def test_check_rate_rejects(rate: object) -> None:
    with pytest.raises(AudioFormatError, match="positive integer"):
        check_rate(rate)


def test_check_rate_accepts_numpy_int() -> None:
    assert check_rate(np.int64(16000)) == 16000


def test_ms_samples_conversions() -> None:
    assert ms_to_samples(100, 24000) == 2400
    assert ms_to_samples(20, 48000) == 960
    assert samples_to_ms(2400, 24000) == 100.0


def test_rms_dbfs() -> None:
    assert rms_dbfs(np.full(100, 32767, dtype=np.int16)) == pytest.approx(0.0, abs=0.01)
    t = np.arange(24000) / 24000
    sine = np.rint(np.sin(2 * np.pi * 1000 * t) * 16384).astype(np.int16)
    assert rms_dbfs(sine) == pytest.approx(-9.03, abs=0.05)
    assert rms_dbfs(np.zeros(10, dtype=np.int16)) == -math.inf
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) == -math.inf


def test_chunker_aligned_input_yields_views() -> None:
    chunker = Chunker(4)
    pcm = np.arange(8, dtype=np.int16)
    chunks = chunker.push(pcm)
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(np.shares_memory(c, pcm) for c in chunks)
    assert chunker.pending == 0


def test_chunker_reblocks_uneven_input() -> None:
    chunker = Chunker(4)
    out = []
    for n in (3, 3, 1, 5, 2):
        out += chunker.push(np.full(n, n, dtype=np.int16))
    assert [c.size for c in out] == [4, 4, 4]
    assert np.concatenate(out).tolist() == [3, 3, 3, 3, 3, 3, 1, 5, 5, 5, 5, 5]
    assert chunker.flush().tolist() == [2, 2]
    assert chunker.flush().size == 0


def test_chunker_rejects_bad_size() -> None:
    with pytest.raises(AudioFormatError):
        Chunker(0)
