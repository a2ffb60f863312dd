"""Tests for livetalk.audio.echo on synthetic signals (no devices, no clock)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livetalk.audio.echo import (
    EchoMode,
    EnergyGate,
    HalfDuplex,
    Passthrough,
    PlaybackTimeline,
    make_echo_control,
)
from livetalk.audio.format import rms_dbfs
from livetalk.errors import AudioFormatError, ConfigError

RATE = 24000
CHUNK = 2400  # 100 ms


def tone(ms: float, dbfs: float, *, freq: float = 440.0, rate: int = RATE) -> np.ndarray:
    n = int(rate * ms / 1000)
    amplitude = 32768 * math.sqrt(2) * 10 ** (dbfs / 20)
    t = np.arange(n) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(ms: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(rate * ms / 1000), dtype=np.int16)


def run(control, mic: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    return np.concatenate([control.process(mic[i : i + chunk]) for i in range(0, mic.size, chunk)])


def silenced_ms(before: np.ndarray, after: np.ndarray, rate: int = RATE) -> list[tuple[int, int]]:
    """The silenced spans (ms): where ``after`` differs from ``before``, bridging the gaps
    where ``before`` was zero anyway (a tone's zero crossings)."""
    assert (after[before != after] == 0).all()
    changed = np.flatnonzero(before != after)
    if changed.size == 0:
        return []
    spans, start, prev = [], changed[0], changed[0]
    for i in changed[1:]:
        if i != prev + 1 and (before[prev + 1 : i] != 0).any():
            spans.append((start, prev + 1))
            start = i
        prev = i
    spans.append((start, prev + 1))
    return [(round(a * 1000 / rate), round(b * 1000 / rate)) for a, b in spans]


def test_tone_helper_level() -> None:
    assert rms_dbfs(tone(100, -20)) == pytest.approx(-20, abs=0.1)


# -- timeline --------------------------------------------------------------------------------


def test_timeline_queues_then_plays() -> None:
    timeline = PlaybackTimeline()
    timeline.write(tone(300, -20))
    assert timeline.queued_ms == pytest.approx(300)
    assert timeline.playing
    assert timeline.level_db(0, CHUNK) == pytest.approx(-20, abs=0.2)
    timeline.advance(CHUNK)
    assert timeline.queued_ms == pytest.approx(200)
    timeline.advance(2 * CHUNK)
    assert not timeline.playing and timeline.queued_ms == 0
    assert timeline.level_db(3 * CHUNK, 4 * CHUNK) == -math.inf


def test_timeline_restarts_at_the_playhead_after_running_dry() -> None:
    timeline = PlaybackTimeline()
    timeline.write(tone(100, -20))
    timeline.advance(5 * CHUNK)
    timeline.write(tone(100, -20))
    assert timeline.audible()[-1] == (5 * CHUNK, 6 * CHUNK)


def test_timeline_converts_playback_rate() -> None:
    timeline = PlaybackTimeline(rate=16000, playback_rate=48000)
    for _ in range(7):
        timeline.write(tone(20, -20, rate=48000))
    assert timeline.written_end == 7 * 320


def test_timeline_rejects_float_audio() -> None:
    with pytest.raises(AudioFormatError):
        PlaybackTimeline().write(np.zeros(10, dtype=np.float32))  # type: ignore[arg-type]


# -- half duplex -----------------------------------------------------------------------------


def test_half_duplex_mutes_during_playback_and_tail() -> None:
    control = HalfDuplex(tail_ms=200)
    control.on_playback(tone(300, -20))
    for _ in range(5):
        control.on_playback(silence(100))  # the remote track keeps sending silence
    mic = np.full(10 * CHUNK, 1000, dtype=np.int16)
    out = run(control, mic)
    assert silenced_ms(mic, out) == [(0, 500)]
    assert (out[: 5 * CHUNK] == 0).all() and (out[5 * CHUNK :] == 1000).all()
    stats = control.statistics()
    assert (stats.mode, stats.playing) == (EchoMode.HALF_DUPLEX, False)
    assert stats.silenced_ms == pytest.approx(500)
    assert stats.processed_ms == pytest.approx(1000)


def test_half_duplex_ignores_silent_playback_and_returns_the_same_array() -> None:
    control = HalfDuplex()
    control.on_playback(silence(500))
    chunk = np.full(CHUNK, 5, dtype=np.int16)
    assert control.process(chunk) is chunk
    assert control.silenced_samples == 0 and not control.playing


def test_half_duplex_follows_playback_arriving_later() -> None:
    control = HalfDuplex(tail_ms=100)
    mic = np.full(10 * CHUNK, 300, dtype=np.int16)
    out = [control.process(mic[:CHUNK]), control.process(mic[CHUNK : 2 * CHUNK])]
    control.on_playback(tone(250, -30))  # the reply starts at 200 ms
    out += [control.process(mic[i : i + CHUNK]) for i in range(2 * CHUNK, mic.size, CHUNK)]
    assert silenced_ms(mic, np.concatenate(out)) == [(200, 550)]


def test_half_duplex_clear_ends_muting_early() -> None:
    control = HalfDuplex(tail_ms=200)
    control.on_playback(tone(1000, -20))
    mic = np.full(8 * CHUNK, 1000, dtype=np.int16)
    first = control.process(mic[:CHUNK])
    control.on_clear(fade_ms=0)  # barge-in after 100 ms
    assert not control.playing
    out = np.concatenate([first, run(control, mic[CHUNK:])])
    assert silenced_ms(mic, out) == [(0, 300)]


def test_half_duplex_with_different_rates() -> None:
    control = HalfDuplex(16000, 24000, tail_ms=200)
    control.on_playback(tone(300, -20))
    mic = np.full(16000, 7, dtype=np.int16)
    out = run(control, mic, chunk=1600)
    assert silenced_ms(mic, out, rate=16000) == [(0, 500)]


def test_half_duplex_removes_a_simulated_echo() -> None:
    reply = tone(600, -18)
    echo = np.concatenate([silence(40), (reply // 10).astype(np.int16), silence(960)])
    control = HalfDuplex(tail_ms=200)
    control.on_playback(reply)
    out = run(control, echo)
    assert rms_dbfs(echo) > -45
    assert rms_dbfs(out) == -math.inf


def test_half_duplex_rejects_negative_tail() -> None:
    with pytest.raises(ConfigError, match="tail_ms must be >= 0, got -1"):
        HalfDuplex(tail_ms=-1)


def test_energy_gate_rejects_negative_durations() -> None:
    with pytest.raises(ConfigError, match="tail_ms must be >= 0, got -1"):
        EnergyGate(tail_ms=-1)
    with pytest.raises(ConfigError, match="hold_ms must be >= 0, got -5"):
        EnergyGate(hold_ms=-5)


# -- energy gate -----------------------------------------------------------------------------


def test_gate_drops_quiet_echo_and_passes_loud_speech() -> None:
    control = EnergyGate(margin_db=6, tail_ms=100, hold_ms=100)
    control.on_playback(tone(1500, -20))
    echo = tone(1500, -32, freq=440)
    speech = np.concatenate([silence(500), tone(300, -8, freq=900), silence(700)])
    mic = (echo.astype(np.int32) + speech).clip(-32768, 32767).astype(np.int16)
    out = run(control, mic)
    # echo alone is gated; the louder speech passes, plus the hold after it
    assert silenced_ms(mic, out) == [(0, 500), (900, 1500)]
    assert control.opened_frames == 15


def test_gate_passes_everything_without_playback() -> None:
    control = EnergyGate()
    control.on_playback(silence(1000))
    mic = tone(1000, -40)
    out = run(control, mic)
    assert np.array_equal(out, mic) and control.silenced_samples == 0


def test_gate_margin_decides() -> None:
    strict = EnergyGate(margin_db=6, hold_ms=0)
    lenient = EnergyGate(margin_db=-3, hold_ms=0)
    mic = tone(200, -20, freq=700)
    for control in (strict, lenient):
        control.on_playback(tone(200, -20))
    assert rms_dbfs(run(strict, mic)) == -math.inf
    assert np.array_equal(run(lenient, mic), mic)


def test_gate_tail_covers_reverberation() -> None:
    control = EnergyGate(tail_ms=200, hold_ms=0)
    control.on_playback(tone(100, -20))
    mic = tone(500, -35)
    out = run(control, mic)
    assert silenced_ms(mic, out) == [(0, 300)]


# -- factory and passthrough -----------------------------------------------------------------


def test_passthrough_tracks_playing_but_changes_nothing() -> None:
    control = make_echo_control("off")
    assert isinstance(control, Passthrough) and control.mode is EchoMode.OFF
    control.on_playback(tone(100, -20))
    assert control.playing
    chunk = tone(100, -10)
    assert control.process(chunk) is chunk
    assert not control.playing


def test_make_echo_control_modes_and_options() -> None:
    assert isinstance(make_echo_control(EchoMode.HALF_DUPLEX), HalfDuplex)
    gate = make_echo_control("gate", 16000, margin_db=3)
    assert isinstance(gate, EnergyGate) and gate.margin_db == 3 and gate.rate == 16000
    assert [m.value for m in EchoMode] == ["off", "half-duplex", "gate", "aec"]
    with pytest.raises(ConfigError, match="off, half-duplex, gate, aec"):
        make_echo_control("loud")
    with pytest.raises(ConfigError, match="bad option"):
        make_echo_control("half-duplex", margin_db=3)


def test_timeline_resyncs_when_the_speaker_is_ahead_of_the_model() -> None:
    timeline = PlaybackTimeline(resync_ms=150)
    timeline.write(silence(400))  # arrived before the microphone started: the model queues it
    assert timeline.written_end == 4 * CHUNK
    # the speaker says only 60 ms are queued after this 20 ms chunk: move it back
    timeline.write(tone(20, -20), queued_ms=60)
    assert timeline.audible() == [(960, 1440)]
    # within the slack the chunk stays queued after the previous one (no gap, no jump)
    timeline.write(tone(20, -20), queued_ms=0)
    assert timeline.audible() == [(960, 1920)]


def test_half_duplex_uses_the_real_queue() -> None:
    control = HalfDuplex(tail_ms=0)
    control.on_playback(silence(500))
    control.on_playback(tone(100, -20), queued_ms=150)  # plays from 50 ms to 150 ms
    mic = np.full(3 * CHUNK, 9, dtype=np.int16)
    assert silenced_ms(mic, run(control, mic)) == [(50, 150)]
