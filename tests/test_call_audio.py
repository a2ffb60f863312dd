"""A spoken file round-trips through a real call and comes back correlated with what was sent.

The far end is the benchmarks' aiortc echo answerer (:class:`bench.echo_peer.EchoPeer`): it
returns every frame it decodes, so what comes back has been through Opus twice, two jitter
buffers and livetalk's resampling both ways.

Opus in VoIP mode codes speech with SILK, which keeps the spectrum but not the exact
waveform: the aligned waveform correlation measured 0.90 on this recording (deterministic on
loopback), while the 20 ms magnitude spectrogram correlates at 0.998. The test asserts both,
the waveform one with a margin for codec changes.

livetalk's adaptive receive jitter buffer may stretch the timeline by a concealed frame when a
packet comes late (an underrun) and shorten it by a quiet frame when its delay shrinks, so the
comparison is made per half-second segment, each aligned on its own near the overall lag.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import livetalk
from bench.echo_peer import EchoPeer
from livetalk.audio.sources import ArraySource, FileSource, SilenceSource, concat
from tests.conftest import DATA

pytestmark = pytest.mark.slow

KEY = "sk-test-roundtrip"
RATE = 24000
SPEED = 4.0
"""Media clock speed: the echo peer returns frames as fast as they come."""


async def _read_file(path: object) -> np.ndarray:
    chunks = [chunk async for chunk in FileSource(path, rate=RATE)]  # type: ignore[arg-type]
    return np.concatenate(chunks)


def _align(sent: np.ndarray, got: np.ndarray) -> tuple[int, float, float]:
    """Lag of ``sent`` inside ``got`` by FFT cross-correlation, then the normalized
    correlation and the RMS level ratio (got / sent) over the aligned span."""
    x, y = sent.astype(np.float64), got.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(x.size + y.size)))
    xcorr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    lag = int(np.argmax(xcorr[: y.size]))
    span = min(x.size, y.size - lag)
    a, b = x[:span], y[lag:lag + span]
    corr = float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
    level = float(np.sqrt(np.mean(b * b) / np.mean(a * a)))
    return lag, corr, level


def _spectrogram_correlation(a: np.ndarray, b: np.ndarray, frame: int = 480) -> float:
    """Correlation of the magnitude spectrograms (20 ms Hann frames) of two aligned signals."""
    n = min(a.size, b.size) // frame * frame
    window = np.hanning(frame)
    mags = [np.abs(np.fft.rfft(x[:n].astype(np.float64).reshape(-1, frame) * window, axis=1))
            for x in (a, b)]
    return float(np.corrcoef(mags[0].ravel(), mags[1].ravel())[0, 1])


def _segment_scores(sent: np.ndarray, got: np.ndarray, lag: int, *, seconds: float = 0.5,
                    slack_s: float = 0.1) -> list[tuple[float, float]]:
    """(waveform, spectrogram) correlation of each speech segment of ``sent``, each aligned
    within ``slack_s`` of ``lag`` in ``got``."""
    size, slack = round(seconds * RATE), round(slack_s * RATE)
    out = []
    for start in range(0, sent.size - size + 1, size):
        segment = sent[start:start + size]
        if np.sqrt(np.mean(segment.astype(np.float64) ** 2)) < 300:  # silence: nothing to match
            continue
        lo = max(0, lag + start - slack)
        window = got[lo:lag + start + size + slack]
        if window.size < size:
            continue
        shift, corr, _ = _align(segment, window)
        match = window[shift:shift + size]
        out.append((corr, _spectrogram_correlation(segment, match)))
    return out


async def test_spoken_file_comes_back_correlated_and_at_the_same_level() -> None:
    sent = await _read_file(DATA / "demo.wav")
    received: list[np.ndarray] = []
    async with EchoPeer(mode="echo") as peer, livetalk.connect(
            base_url=peer.base_url, api_key=KEY, speed=SPEED) as call:

        async def collect() -> None:
            async for chunk in call.audio_chunks():
                received.append(chunk)

        collector = asyncio.ensure_future(collect())
        await asyncio.sleep(0)  # subscribed before the first frame is sent
        await call.stream(concat(ArraySource(sent, RATE), SilenceSource(1.0)))
        await call.close()
        await collector
    got = np.concatenate(received)
    assert got.size > sent.size  # the whole recording came back, with the silence around it
    lag, _, level = _align(sent, got)
    segments = _segment_scores(sent, got, lag)
    assert len(segments) >= 8  # the three phrases, half a second at a time
    corrs = sorted(c for c, _ in segments)
    assert np.median(corrs) >= 0.85, corrs
    assert corrs[len(corrs) // 10] >= 0.6, corrs  # 90 % of the speech matches closely
    assert np.median([spec for _, spec in segments]) >= 0.95
    assert 0.8 <= level <= 1.25, level
    # controls: misaligned by 50 ms, or another signal altogether, it no longer matches
    shifted = got[lag + 1200:lag + 1200 + sent.size]
    assert _spectrogram_correlation(sent, shifted) < 0.8
    assert _align(sent[::-1].copy(), got)[1] < 0.5
