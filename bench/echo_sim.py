"""Offline echo scenes: the four echo modes on the same simulated conversation in a room.

:func:`build_scene` lays out one conversation in a :class:`~bench.rooms.Setup`: assistant
replies (one espeak-ng voice) stream in 20 ms chunks through a real
:class:`~livetalk.audio.playout.PlayoutBuffer` (with network stalls that make it underrun) to a
speaker whose clock drifts against the microphone's; the room turns what was played into echo;
the user (another voice) speaks between replies and over one of them (double talk); pink
background noise sits 20 dB under the user's speech. The scene is a list of the calls
``livetalk talk`` would make (``on_playback(chunk, queued_ms)``, ``process(mic_chunk)``) plus
the clean components of the microphone signal.

:func:`run_mode` replays the scene through one echo control and :func:`measure` scores its
output: ERLE during assistant-only speech after the first second, convergence time, how well
the user's speech survives double talk (spectral correlation with the clean near end), CPU per
second of audio.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import oaconvolve

from bench.rooms import EchoPath, Setup, acoustics, pink_noise, power, spectral_correlation
from livetalk.audio.echo import EchoMode, make_echo_control
from livetalk.audio.format import API_RATE, PCM
from livetalk.audio.playout import PlayoutBuffer
from livetalk.audio.resample import resample
from livetalk.audio.vad import SpeechStarted, TurnDetector
from livetalk.server.tts import EspeakSynthesizer

__all__ = ["Scene", "build_scene", "measure", "run_mode"]

RATE = API_RATE
TICK = RATE // 50  # 20 ms: a network chunk, a device period
MIC_CHUNK = 5 * TICK  # 100 ms, as MicrophoneSource delivers
FAR_VOICE = "en-us"
NEAR_VOICE = "en-us+f3"
NEAR_DBFS = -28.0
"""Active level of the user's speech at the microphone."""
SNR_DB = 20.0
ERLE_CAP_DB = 60.0
CONVERGED_DB = 25.0
VAD_PADDING_MS = 300
"""The local server's default server VAD: threshold 0.5, 300 ms prefix, 500 ms silence."""

REPLIES = (
    "Sure. The forecast for today is mostly sunny, with a few clouds in the afternoon and a "
    "light breeze from the west. It should stay dry until the evening.",
    "I found three recipes that use those ingredients. The quickest one is a tomato pasta "
    "that takes about twenty minutes, and it only needs one pan.",
    "Your next meeting is at three o'clock with the design team. After that your calendar is "
    "free, so you could go for a walk before dinner.",
)
USER_LINES = ("What about tomorrow?", "Wait, wait, just tell me the fastest one please.")


@dataclass
class Scene:
    """One simulated conversation, ready to replay through any echo control.

    Attributes:
        setup: the room, distance and device delay.
        calls: ``("play", chunk, queued_ms)`` and ``("mic", chunk)`` in the order they happen.
        echo, near, noise: the clean components of the microphone signal (float samples).
        mic: what the microphone delivered (their sum, as int16).
        far_spans: ``(start, end)`` sample spans of assistant speech as heard at the mic.
        near_spans: the same for the user's speech.
        double_talk: the span where the user talks over a reply.
        underruns: times the playout buffer ran dry mid-reply.
        drift_ppm: the speaker clock's offset from the microphone's.
    """

    setup: Setup
    calls: list[tuple[Any, ...]]
    echo: npt.NDArray[np.float64]
    near: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]
    mic: PCM
    far_spans: list[tuple[int, int]]
    near_spans: list[tuple[int, int]]
    double_talk: tuple[int, int]
    underruns: int
    drift_ppm: float
    rt60_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def _speak(synth: EspeakSynthesizer, text: str) -> PCM:
    pcm, rate = synth.synthesize(text)
    return resample(pcm, rate, RATE)


def _spans(active: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], active.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def build_scene(setup: Setup, *, drift_ppm: float = 100.0, stalls_s: tuple[float, ...] = (3.0,
                21.0), stall_ms: float = 160.0, seed: int = 0) -> Scene:
    """Lay out the conversation in ``setup`` (about 30 s of audio).

    Args:
        setup: the room, distance and device delay.
        drift_ppm: how much faster the speaker's clock runs than the microphone's.
        stalls_s: when the network stalls (chunks arrive ``stall_ms`` late, then together).
        stall_ms: how long each stall lasts.
        seed: the noise seed.
    """
    far_synth, near_synth = EspeakSynthesizer(FAR_VOICE), EspeakSynthesizer(NEAR_VOICE)
    replies = [_speak(far_synth, text) for text in REPLIES]
    user = [_speak(near_synth, text) for text in USER_LINES]
    # the far-end stream (what the server sends), with the user's lines placed on mic time
    gap = int(1.0 * RATE)
    far_stream: list[PCM] = [np.zeros(int(0.5 * RATE), np.int16)]
    near_at: list[tuple[int, PCM]] = []
    pos = far_stream[0].size
    for i, reply in enumerate(replies):
        far_stream.append(reply)
        reply_start = pos
        pos += reply.size
        if i == 1:  # the user barges in 2 s into the second reply (double talk)
            near_at.append((reply_start + 2 * RATE, user[1]))
        far_stream.append(np.zeros(gap, np.int16))
        pos += gap
        if i == 0:  # the user speaks alone between the first two replies
            near_at.append((pos, user[0]))
            silence = user[0].size + gap
            far_stream.append(np.zeros(silence, np.int16))
            pos += silence
    far = np.concatenate(far_stream)
    n_ticks = far.size // TICK + 40
    total = n_ticks * TICK

    # network delivery: chunk k arrives at tick k, except during stalls
    deliveries: dict[int, list[PCM]] = {}
    stall_ticks = int(stall_ms / 20)
    for k in range(far.size // TICK):
        at = k
        for s in stalls_s:
            first = int(s * 50)
            if first <= k < first + stall_ticks:
                at = first + stall_ticks
        deliveries.setdefault(at, []).append(far[k * TICK : (k + 1) * TICK])

    buffer = PlayoutBuffer(RATE, capacity_ms=2000, prebuffer_ms=60)
    path = EchoPath(setup, RATE, TICK)
    step = 1.0 + drift_ppm * 1e-6
    played_stream = np.zeros(0)
    read_at = 0.0  # fractional position in the played stream, in speaker samples
    calls: list[tuple[Any, ...]] = []
    echo = np.zeros(total)
    out_block = np.zeros(TICK + 4, dtype=np.int16)
    underruns_before = 0
    for t in range(n_ticks):
        # the speaker plays one tick of mic time: TICK * step of its own samples
        need = int(math.floor(read_at + TICK * step)) + 2 - played_stream.size
        if need > 0:
            block = out_block[:need]
            block[:] = 0
            buffer.read_into(block)
            played_stream = np.concatenate((played_stream, block.astype(np.float64)))
        idx = read_at + np.arange(TICK) * step
        lo = np.floor(idx).astype(int)
        frac = idx - lo
        heard = played_stream[lo] * (1 - frac) + played_stream[lo + 1] * frac
        read_at += TICK * step
        drop = int(math.floor(read_at)) - 1
        if drop > 0:
            played_stream = played_stream[drop:]
            read_at -= drop
        echo[t * TICK : (t + 1) * TICK] = path.process(heard)
        for chunk in deliveries.get(t, []):
            buffer.write(chunk)
            calls.append(("play", chunk, buffer.buffered_ms))
        if (t + 1) % 5 == 0:
            calls.append(("mic", (t + 1) * TICK - MIC_CHUNK))
        if t == 0:
            underruns_before = buffer.underruns
    acoustic = acoustics(setup, RATE)
    near_dry = np.zeros(total)
    for start, pcm in near_at:
        near_dry[start : start + pcm.size] += pcm
    near = oaconvolve(near_dry, acoustic.user_rir)[:total]
    active_near = _activity(near)
    level = 10 * math.log10(max(power(near[active_near]), 1e-9) / 32768**2)
    near *= 10 ** ((NEAR_DBFS - level) / 20)
    noise = pink_noise(total, RATE, NEAR_DBFS - SNR_DB, seed=seed)
    mic = np.clip(np.rint(echo + near + noise), -32768, 32767).astype(np.int16)
    calls = [("mic", mic[c[1] : c[1] + MIC_CHUNK]) if c[0] == "mic" else c for c in calls]
    far_active = _activity(echo)
    near_spans = _spans(active_near)
    dt_start = near_at[1][0]
    double_talk = (dt_start, dt_start + near_at[1][1].size)
    return Scene(setup, calls, echo, near, noise, mic, _spans(far_active), near_spans,
                 double_talk, buffer.underruns - underruns_before, drift_ppm, acoustic.rt60_s)


def _activity(x: npt.NDArray[np.float64], floor_dbfs: float = -55.0) -> npt.NDArray[np.bool_]:
    """Per-sample mask of 20 ms frames louder than ``floor_dbfs``, bridged over 200 ms pauses."""
    frames = x.size // TICK
    levels = np.array([power(x[i * TICK : (i + 1) * TICK]) for i in range(frames)])
    on = levels > 32768**2 * 10 ** (floor_dbfs / 10)
    bridged = on.copy()
    last = -100
    for i, v in enumerate(on):
        if v:
            if 0 < i - last <= 10:
                bridged[last:i] = True
            last = i
    mask = np.zeros(x.size, dtype=bool)
    mask[: frames * TICK] = np.repeat(bridged, TICK)
    return mask


def run_mode(scene: Scene, mode: EchoMode, **options: Any) -> tuple[PCM, float, Any]:
    """Replay ``scene`` through a fresh echo control for ``mode``.

    Returns:
        The processed microphone signal, the CPU seconds spent in the control, the control.
    """
    control = make_echo_control(mode, RATE, RATE, **options)
    control.set_device_latency(scene.setup.device_delay_ms)
    out: list[PCM] = []
    cpu = 0.0
    for call in scene.calls:
        t0 = time.thread_time()
        if call[0] == "play":
            control.on_playback(call[1], queued_ms=call[2])
        else:
            out.append(control.process(call[1]))
        cpu += time.thread_time() - t0
    return np.concatenate(out), cpu, control


def _erle(scene: Scene, out: PCM, start: int, end: int, noise_floor: float) -> float:
    """ERLE over the assistant-only frames in ``[start, end)``: echo power at the mic over the
    residual echo power in the output (output power above its noise floor)."""
    echo_p = residual = 0.0
    near_free = np.ones(out.size, dtype=bool)
    for a, b in scene.near_spans:
        near_free[max(0, a - TICK * 10) : b + TICK * 10] = False
    for a, b in scene.far_spans:
        lo, hi = max(a, start), min(b, end, out.size)
        for i in range(lo, hi - TICK + 1, TICK):
            if not near_free[i : i + TICK].all():
                continue
            echo_p += power(scene.echo[i : i + TICK])
            residual += max(power(out[i : i + TICK]) - noise_floor, 0.0)
    if echo_p == 0:
        return math.nan
    if residual <= echo_p * 10 ** (-ERLE_CAP_DB / 10):
        return ERLE_CAP_DB
    return 10 * math.log10(echo_p / residual)


def processing_lag(scene: Scene, out: PCM, max_ms: float = 40) -> int:
    """How many samples the control delays the microphone (the WebRTC module holds 8-15 ms),
    from the user-only stretch: the lag that best lines the output up with the clean near end.
    """
    a, b = scene.near_spans[0]
    near = scene.near[a:b]
    best, best_lag = -math.inf, 0
    for lag in range(0, int(max_ms * RATE / 1000)):
        seg = out[a + lag : b + lag].astype(np.float64)
        if seg.size < near.size:
            break
        c = float(np.dot(seg, near))
        if c > best:
            best, best_lag = c, lag
    return best_lag


def measure(scene: Scene, out: PCM, cpu_s: float) -> dict[str, Any]:
    """Score one mode's output on ``scene`` (see the module docstring)."""
    lag = processing_lag(scene, out)
    out = np.concatenate((out[lag:], np.zeros(lag, np.int16)))
    n = out.size
    quiet = np.ones(n, dtype=bool)
    for spans in (scene.far_spans, scene.near_spans):
        for a, b in spans:
            quiet[max(0, a - RATE // 2) : b + RATE // 2] = False
    quiet[: RATE // 4] = False
    noise_floor = power(out[quiet]) if quiet.any() else 0.0
    onset = scene.far_spans[0][0]
    erle = _erle(scene, out, onset + RATE, n, noise_floor)
    convergence = math.nan
    window = RATE // 2
    for start in range(onset, onset + 6 * RATE, TICK):
        if _erle(scene, out, start, start + window, noise_floor) >= CONVERGED_DB:
            convergence = (start + window - onset) / RATE
            break
    a, b = scene.double_talk
    near = scene.near[a:b]
    dt_out = spectral_correlation(out[a:b], near, RATE)
    dt_in = spectral_correlation(scene.mic[a:b], near, RATE)
    na, nb = scene.near_spans[0]
    near_only = spectral_correlation(out[na:nb], scene.near[na:nb], RATE)
    residual_peak = -math.inf
    for fa, fb in scene.far_spans:
        for i in range(max(fa, onset + RATE), min(fb, n) - MIC_CHUNK + 1, MIC_CHUNK):
            if any(x < i + MIC_CHUNK and i < y for x, y in scene.near_spans):
                continue
            p = power(out[i : i + MIC_CHUNK])
            if p > 0:
                residual_peak = max(residual_peak, 10 * math.log10(p / 32768**2))
    false_starts, barge_in_ms = vad_check(scene, out)
    return {
        "vad_false_starts": false_starts,
        "vad_barge_in_ms": barge_in_ms,
        "erle_db": round(erle, 1),
        "convergence_s": round(convergence, 2),
        "double_talk_corr": round(dt_out, 2),
        "double_talk_corr_in": round(dt_in, 2),
        "near_only_corr": round(near_only, 2),
        "lag_ms": round(lag * 1000 / RATE, 1),
        "residual_peak_dbfs": round(residual_peak, 1),
        "cpu_ms_per_s": round(cpu_s * 1000 / (n / RATE), 2),
    }


def vad_check(scene: Scene, out: PCM) -> tuple[int, float | None]:
    """Run the local server's default server VAD over an echo control's output.

    Returns:
        The turns it starts outside the user's speech (from 100 ms before the user starts to
        500 ms after they stop): what the server would take for the user, the offline
        counterpart of the calls' false triggers; and when the first turn starts after the
        user begins talking over the reply (ms, the onset without the prefix padding; None
        if none within 1 s).
    """
    detector = TurnDetector.from_threshold(RATE, 0.5, prefix_padding_ms=VAD_PADDING_MS,
                                           silence_duration_ms=500)
    onsets: list[float] = []
    for i in range(0, out.size, MIC_CHUNK):
        for event in detector.feed(out[i : i + MIC_CHUNK]):
            if isinstance(event, SpeechStarted):
                onsets.append(event.start_ms + VAD_PADDING_MS)
    user = [(a * 1000 / RATE - 100, b * 1000 / RATE + 500) for a, b in scene.near_spans]
    false_starts = sum(not any(a <= t <= b for a, b in user) for t in onsets)
    talk_over = scene.double_talk[0] * 1000 / RATE
    barge_in = [t - talk_over for t in onsets if talk_over - 100 <= t <= talk_over + 1000]
    return false_starts, (round(barge_in[0]) if barge_in else None)
