"""Tests for livetalk.audio.aec on synthetic echo paths (no devices, no clock).

The far end is espeak-ng speech; the echo path is a delay plus a decaying random impulse
response; the microphone adds the near end (another voice) and a little noise. The
canceller runs on 100 ms microphone chunks with 20 ms playback chunks in between, the way
``livetalk talk`` feeds it.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.rooms import power, spectral_correlation
from livetalk.audio.aec import AcousticEchoCanceller
from livetalk.audio.echo import EchoMode, default_echo_mode, make_echo_control
from livetalk.audio.resample import resample
from livetalk.errors import AudioFormatError, ConfigError

RATE = 24000
TICK = RATE // 50  # a playback chunk
CHUNK = RATE // 10  # a microphone chunk


def speech(synthesizer, text: str) -> np.ndarray:
    pcm, rate = synthesizer.synthesize(text)
    return resample(pcm, rate, RATE)


def echo_path(delay_ms: float, gain: float = 0.5, seed: int = 1) -> np.ndarray:
    """A delay, a direct path and 120 ms of exponentially decaying reflections."""
    rng = np.random.default_rng(seed)
    tail = int(0.12 * RATE)
    ir = np.zeros(int(delay_ms * RATE / 1000) + tail)
    start = ir.size - tail
    ir[start] = gain
    ir[start + 1 :] = rng.standard_normal(tail - 1) * gain * 0.15 * np.exp(
        -np.arange(tail - 1) / (0.03 * RATE))
    return ir


def feed(control, far: np.ndarray, mic: np.ndarray, *, queued_ms=None, gaps=()):
    """Feed ``far`` as 20 ms playback chunks and ``mic`` as 100 ms chunks, interleaved.

    ``queued_ms(k)`` gives the queue reported with playback chunk k (None: not reported);
    ``gaps`` lists chunk indexes before which playback paused one chunk (an underrun).
    """
    out = []
    k = 0
    for i in range(0, mic.size, CHUNK):
        for _ in range(5):
            if k < far.size // TICK:
                control.on_playback(far[k * TICK : (k + 1) * TICK],
                                    queued_ms=None if queued_ms is None else queued_ms(k))
                k += 1
        out.append(control.process(mic[i : i + CHUNK]))
    return np.concatenate(out)


def scene(synthesizer, *, delay_ms: float = 40, near: bool = True, seed: int = 0):
    """Far-end speech for 8 s with the user alone at 8.5-10 s and over the far end at 5-6.5 s."""
    far = np.concatenate([speech(synthesizer, "Here is the forecast for the week. Monday is "
                                 "sunny and warm, Tuesday brings some rain in the morning, and "
                                 "the weekend looks dry."), np.zeros(RATE * 4, np.int16)])
    far = far[: RATE * 11]
    echo = np.convolve(far.astype(np.float64), echo_path(delay_ms))[: far.size]
    near_sig = np.zeros(far.size)
    if near:
        user = speech(EspeakVoice.get(), "hello can you hear me").astype(np.float64) * 0.7
        near_sig[int(8.5 * RATE) : int(8.5 * RATE) + user.size] += user
        near_sig[5 * RATE : 5 * RATE + user.size] += user
    noise = np.random.default_rng(seed).normal(0, 30, far.size)
    mic = np.clip(np.rint(echo + near_sig + noise), -32768, 32767).astype(np.int16)
    return far, echo, near_sig, mic


class EspeakVoice:
    """The near end's voice, built once."""

    _synth = None

    @classmethod
    def get(cls):
        if cls._synth is None:
            from livetalk.server.tts import EspeakSynthesizer

            cls._synth = EspeakSynthesizer("en-us+f3")
        return cls._synth


def kept(out: np.ndarray, near: np.ndarray, a: int, b: int) -> float:
    """How much of the near end survives in ``out[a:b]``, allowing for the module's delay."""
    return max(spectral_correlation(out[a + lag : b + lag], near[a:b], RATE)
               for lag in range(0, int(0.03 * RATE), RATE // 1000))


def erle(mic: np.ndarray, out: np.ndarray, start_s: float, end_s: float) -> float:
    a, b = int(start_s * RATE), int(end_s * RATE)
    return 10 * math.log10(power(mic[a:b]) / max(power(out[a:b]), 1e-9))


# -- cancelling ------------------------------------------------------------------------------


def test_removes_the_echo_and_keeps_the_user(synthesizer) -> None:
    far, echo, near, mic = scene(synthesizer)
    control = make_echo_control("aec", RATE, RATE, device_latency_ms=0)
    assert isinstance(control, AcousticEchoCanceller) and control.mode is EchoMode.AEC
    out = feed(control, far, mic, queued_ms=lambda k: 20.0)
    assert out.size == mic.size
    # far end only, after the first second: the echo is mostly gone
    assert erle(mic, out, 1.5, 4.5) > 20
    assert control.converged and control.erle_db is not None and control.erle_db > 10
    assert control.erl_db is not None and math.isfinite(control.erl_db)
    # the user alone comes through intact (the module delays it by ~15 ms: magnitudes only)
    a, b = int(8.5 * RATE), int(10 * RATE)
    assert kept(out, near, a, b) > 0.9
    assert abs(10 * math.log10(power(out[a:b]) / power(mic[a:b]))) < 3
    # over the far end the user survives at least as well as in the raw microphone signal
    a, b = 5 * RATE, int(6.3 * RATE)
    assert kept(out, near, a, b) >= spectral_correlation(mic[a:b], near[a:b], RATE) - 0.05


def test_warm_up_mutes_the_first_playback_with_comfort_noise(synthesizer) -> None:
    far, echo, near, mic = scene(synthesizer, near=False)
    control = AcousticEchoCanceller(RATE, RATE, warmup_ms=500, warmup_tail_ms=100)
    silence = np.random.default_rng(3).normal(0, 30, CHUNK * 5).astype(np.int16)
    for i in range(0, silence.size, CHUNK):  # the room's noise before the first reply
        control.process(silence[i : i + CHUNK])
    out = feed(control, far, mic)
    onset = np.flatnonzero(np.abs(far) > 300)[0]
    first = out[onset : onset + RATE // 4]
    assert 0 < power(first) < 4 * power(silence)  # noise-like, not the echo, not zeros
    assert control.silenced_samples >= int(0.5 * RATE)
    assert erle(mic, out, 1.5, 4.5) > 20  # and then it cancels


def test_comfort_noise_stays_at_the_noise_floor_after_the_user_spoke(synthesizer) -> None:
    """The user speaks just before the first reply: the muted warm-up must not carry the
    level of their speech (a voice detector would hear a voice), only the room's floor."""
    far, echo, _, _ = scene(synthesizer, near=False)
    control = AcousticEchoCanceller(RATE, RATE)
    rng = np.random.default_rng(3)
    user = speech(EspeakVoice.get(), "what is the weather like today").astype(np.float64)
    before = np.concatenate([np.zeros(RATE // 2), user, np.zeros(RATE // 2)])
    before = np.clip(np.rint(before + rng.normal(0, 30, before.size)), -32768, 32767)
    before = before.astype(np.int16)
    quiet = []
    for i in range(0, before.size - CHUNK + 1, CHUNK):
        out = control.process(before[i : i + CHUNK])
        if i >= before.size - RATE // 2:
            quiet.append(out)  # the output's floor after the user stopped
    mic = np.clip(np.rint(echo + rng.normal(0, 30, far.size)), -32768, 32767).astype(np.int16)
    out = feed(control, far, mic)
    onset = np.flatnonzero(np.abs(far) > 300)[0]
    muted = out[onset : onset + RATE // 2]
    assert control.silenced_samples >= RATE // 2
    floor = power(np.concatenate(quiet))
    assert 0.5 * floor < power(muted) < 2 * floor  # within 3 dB of the floor
    assert power(muted) < 1e-3 * power(user)  # 30 dB under the user's speech


def test_reference_comes_ahead_of_its_echo_when_the_latency_is_over_reported(
        synthesizer) -> None:
    """The devices report 60 ms but the echo comes after 55: a reference placed by the
    reported latency would come after its echo, which AEC3 cannot model (about 24 dB of
    ERLE instead of 55 here); the reference is placed ahead of it instead."""
    far, _, _, _ = scene(synthesizer, near=False)
    echo = np.convolve(far.astype(np.float64), echo_path(55))[: far.size]
    mic = np.clip(np.rint(echo + np.random.default_rng(5).normal(0, 30, far.size)),
                  -32768, 32767).astype(np.int16)
    control = AcousticEchoCanceller(RATE, RATE, device_latency_ms=60, warmup_ms=0)
    # chunk k plays exactly when the microphone timeline reaches its end
    out = feed(control, far, mic, queued_ms=lambda k: 20.0 * (k + 1) - 100.0 * (k // 5))
    assert control.statistics().offset_ms == pytest.approx(0, abs=1)
    assert erle(mic, out, 2.0, 4.5) > 35 and erle(mic, out, 5.0, 7.5) > 35


def test_a_realignment_moves_the_queued_reference_too(synthesizer) -> None:
    """A late measurement (the speaker restarted after an underrun later than the model
    assumed) moves the reference later: what was queued moves with it, with no hole of
    silence while the speaker plays on."""
    far, _, _, _ = scene(synthesizer, near=False)
    control = AcousticEchoCanceller(RATE, RATE, align_window_ms=500)
    for k in range(10):  # 200 ms queued at once, measured as playing right away
        control.on_playback(far[k * TICK : (k + 1) * TICK], queued_ms=20.0 * (k + 1))
    control.process(np.zeros(CHUNK, np.int16))  # 100 ms of it played (the model says)
    # the next chunk ends 60 ms later than the model has it: 100 + 180 = 220 + 60
    control.on_playback(far[10 * TICK : 11 * TICK], queued_ms=180.0)
    assert control.realignments == 1 and control.statistics().offset_ms == pytest.approx(60)
    ref = np.zeros(ms(180), np.int16)
    control._ring.read(ref)
    # the last 60 ms read (too early) come again, then the rest follows without a gap
    assert np.array_equal(ref, far[ms(40) : ms(220)])


def test_the_offset_is_the_latest_placement_seen_within_the_window(synthesizer) -> None:
    """One late report holds the reference back for ``align_window_ms`` (the speaker's queue
    is the latest measured), then the offset falls back to what the newer reports say."""
    far, _, _, _ = scene(synthesizer, near=False)
    control = AcousticEchoCanceller(RATE, RATE, align_window_ms=500)
    offsets = []
    for k in range(60):  # 1.2 s: one chunk queued and one played per 20 ms
        late = 60.0 if k == 5 else 0.0
        control.on_playback(far[k * TICK : (k + 1) * TICK], queued_ms=20.0 + late)
        control.process(np.zeros(TICK, np.int16))
        offsets.append(control.statistics().offset_ms)
    assert offsets[:5] == [0.0] * 5
    assert offsets[5:30] == [pytest.approx(60)] * 25  # within 500 ms of the late report
    assert offsets[32:] == [0.0] * 28  # forgotten once it is older than the window
    assert control.realignments == 2


def ms(x: float) -> int:
    return int(x * RATE / 1000)


def test_reference_follows_the_speaker_through_an_underrun(synthesizer) -> None:
    """Playback paused for 120 ms at 3 s (the buffer ran dry): everything after it plays
    later, which the reported queue shows; the canceller moves its reference along."""
    far, _, _, _ = scene(synthesizer, near=False)
    gap = int(0.12 * RATE)
    at = 3 * RATE
    played = np.concatenate([far[:at], np.zeros(gap, np.int16), far[at:]])[: far.size]
    echo = np.convolve(played.astype(np.float64), echo_path(30))[: far.size]
    mic = np.clip(np.rint(echo), -32768, 32767).astype(np.int16)
    control = AcousticEchoCanceller(RATE, RATE)
    out = feed(control, far, mic,
               queued_ms=lambda k: 20.0 + (120.0 if k * TICK >= at else 0.0))
    assert control.realignments >= 1
    assert control.statistics().offset_ms >= 100
    assert erle(mic, out, 4.5, 7.0) > 20


def test_clear_drops_the_queued_reference(synthesizer) -> None:
    far, _, _, _ = scene(synthesizer, near=False)
    control = AcousticEchoCanceller(RATE, RATE)
    control.on_playback(far[: RATE], queued_ms=1000)  # a second queued at once
    control.process(np.zeros(CHUNK, np.int16))
    assert control.playing
    control.on_clear(fade_ms=0)  # barge-in after 100 ms: the rest never plays
    assert not control.playing
    ref = np.zeros(CHUNK, np.int16)
    control.process(np.zeros(CHUNK, np.int16))
    # the reference read for the next 100 ms is silent
    control._ring.read(ref)
    assert not ref.any()
    # playback written after the clear starts at the playhead, not after the dropped second
    control.on_playback(far[RATE : RATE + TICK], queued_ms=20)
    assert control.timeline.written_end - control.timeline.playhead <= TICK + 120


def test_chunks_of_any_size_keep_their_length() -> None:
    control = AcousticEchoCanceller(16000, 24000)
    sizes = [160, 333, 1600, 7, 1000]
    outs = [control.process(np.full(n, 1000, np.int16)) for n in sizes]
    assert [o.size for o in outs] == sizes
    assert control.statistics().processed_ms == pytest.approx(sum(sizes) / 16)


def test_bad_rates_shapes_and_options_are_typed_errors() -> None:
    with pytest.raises(AudioFormatError, match="multiple of 100"):
        AcousticEchoCanceller(22050)
    with pytest.raises(AudioFormatError):
        AcousticEchoCanceller(0)
    control = AcousticEchoCanceller()
    with pytest.raises(AudioFormatError):
        control.process(np.zeros(240, np.float32))  # type: ignore[arg-type]
    with pytest.raises(AudioFormatError):
        control.process(np.zeros((240, 2), np.int16))
    with pytest.raises(AudioFormatError):
        control.on_playback(np.zeros(240, np.int32))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        control.set_device_latency(-5)
    with pytest.raises(ConfigError):
        AcousticEchoCanceller(warmup_ms=-1)
    with pytest.raises(ConfigError, match="bad option"):
        make_echo_control("aec", margin_db=3)
    control.set_device_latency(75)
    assert control.device_latency_ms == pytest.approx(75)


def test_default_mode() -> None:
    assert default_echo_mode(headphones=True) is EchoMode.OFF
    assert default_echo_mode(headphones=False) is EchoMode.AEC  # the dev extra has livekit
    assert [m.value for m in EchoMode] == ["off", "half-duplex", "gate", "aec"]


_NO_LIVEKIT = """
import importlib.abc, sys

class NoLivekit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "livekit" or name.startswith("livekit."):
            raise ImportError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoLivekit())
from livetalk.audio.echo import default_echo_mode, make_echo_control
from livetalk.errors import ConfigError
print(default_echo_mode(False).value)
try:
    make_echo_control("aec")
except ConfigError as exc:
    print(exc)
"""


def test_missing_extra_is_one_clear_line() -> None:
    done = subprocess.run([sys.executable, "-c", _NO_LIVEKIT], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    lines = done.stdout.splitlines()
    assert lines[0] == "half-duplex", done.stderr
    assert len(lines) == 2 and "pip install 'livetalk[aec]'" in lines[1]
    assert "Traceback" not in done.stderr
