"""``livetalk talk`` and call recording over real loopback WebRTC against the local server.

The sound card is a stand-in sounddevice module (``sd=``): its input stream plays the bundled
demo recording from a thread at N times real time, optionally mixed with what its output
stream played (a simulated acoustic echo); its output stream pulls from the speaker callback
at the same pace and keeps what was played. The media path (Opus, RTP, ICE, DTLS) is real.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import livetalk
from livetalk.audio.echo import EchoMode
from livetalk.audio.format import rms_dbfs
from livetalk.audio.resample import resample
from livetalk.audio.sources import ArraySource, SilenceSource, concat
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from livetalk.recording import Recorder
from livetalk.talk import LiveTranscript, talk as run_conversation
from tests.conftest import DATA
from tests.fake_sounddevice import DEVICE_RATE, FakeSoundDevice

pytestmark = pytest.mark.slow

KEY = "sk-test-talk"
PHRASES = ["hello can you hear me", "what is the weather like today", "thank you goodbye"]


# -- the demo recording, split into its phrases -------------------------------------------------


def demo_phrases() -> list[np.ndarray]:
    """The three spoken phrases of demo.wav (16 kHz), each with 100 ms of its silence around."""
    with wave.open(str(DATA / "demo.wav")) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    frame = 320  # 20 ms
    voiced = [rms_dbfs(audio[i : i + frame]) > -45 for i in range(0, audio.size, frame)]
    phrases, start, quiet = [], None, 0
    for k, v in enumerate(voiced):
        if v:
            start = k if start is None else start
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet == 25:  # 500 ms of silence ends a phrase
                end = k - quiet + 1
                phrases.append(audio[max(0, (start - 5) * frame) : (end + 5) * frame])
                start = None
    assert len(phrases) == 3, len(phrases)
    return phrases


def spoken(phrases: list[np.ndarray], gaps_s: list[float], gains: list[float]) -> np.ndarray:
    """The phrases at 16 kHz with the given silence before each and gain applied."""
    parts = []
    for phrase, gap, gain in zip(phrases, gaps_s, gains, strict=True):
        parts.append(np.zeros(int(16000 * gap), dtype=np.int16))
        parts.append(np.clip(phrase.astype(np.float64) * gain, -32768, 32767).astype(np.int16))
    return np.concatenate(parts)


def audible_ms(audio: np.ndarray, rate: int, floor_dbfs: float = -45) -> float:
    frame = rate // 50
    frames = [audio[i : i + frame] for i in range(0, audio.size - frame + 1, frame)]
    return 20.0 * sum(1 for f in frames if rms_dbfs(f) > floor_dbfs)


async def converse(server: Any, sd: FakeSoundDevice, echo: EchoMode, *, until: Any,
                   speed: float, timeout: float = 25) -> tuple[Any, str]:
    """Run talk() until ``until(out_text)`` holds (then a short settle), return the summary."""
    out = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.create_task(run_conversation(
        base_url=server.base_url, api_key=KEY, echo=echo, sd=sd, out=out, stop=stop,
        speed=speed,
        session=SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                              turn_detection=ServerVAD(silence_duration_ms=500)),
    ))
    deadline = time.monotonic() + timeout
    while not until(out.getvalue()) and not task.done():
        assert time.monotonic() < deadline, out.getvalue()
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    stop.set()
    summary = await task
    return summary, out.getvalue()


# -- talk() --------------------------------------------------------------------------------------


async def test_talk_half_duplex_on_speakers_with_echo(make_server) -> None:
    phrases = demo_phrases()[:2]
    speed = 2.0
    mic = spoken(phrases, [0.5, 5.0], [1.0, 1.0])
    sd = FakeSoundDevice(mic, speed=speed, echo_gain=0.5)
    async with make_server(port=0, realtime_factor=speed) as server:
        summary, out = await converse(
            server, sd, EchoMode.HALF_DUPLEX, speed=speed,
            until=lambda text: text.count("assistant: You said") == 2,
        )
    lines = out.splitlines()
    assert lines[0].startswith("tip: on speakers your microphone is muted")
    assert lines[1].startswith("connected (rtc_")
    committed = [line.strip() for line in lines[2:-1]]
    expected = []
    for phrase in PHRASES[:2]:
        expected += [f"user: {phrase}", f"assistant: You said: {phrase}."]
    assert committed == expected  # the echo of the replies never became a user turn
    assert "\r" not in out  # not a terminal: no in-place redraws
    assert lines[-1].startswith("ended after") and "2 user turns and 2 assistant turns" in lines[-1]
    assert summary.user_turns == 2 and summary.assistant_turns == 2
    assert summary.usage.total_tokens > 0 and summary.barge_ins == 0
    assert summary.echo is EchoMode.HALF_DUPLEX
    # the replies reached the speaker...
    played = audible_ms(sd.played_audio(), DEVICE_RATE)
    assert played > 2500
    # ...and the microphone was silenced while they played (plus the tail), not much more
    assert 0.9 * played <= summary.mic_silenced_ms <= played + 2 * 200 + 1500
    # the echo really was in the microphone signal
    mic_signal = np.clip(np.concatenate(sd.mic_blocks), -32768, 32767).astype(np.int16)
    speech_only = audible_ms(resample(mic, 16000, DEVICE_RATE), DEVICE_RATE)
    assert audible_ms(mic_signal, DEVICE_RATE) > speech_only + 0.5 * played


async def test_talk_gate_lets_a_loud_user_interrupt(make_server) -> None:
    phrases = demo_phrases()
    speed = 2.0
    # the second phrase starts 1.2 s after the first ends, while the reply plays, 12 dB louder
    mic = spoken(phrases[:2], [0.5, 1.2], [1.0, 4.0])
    sd = FakeSoundDevice(mic, speed=speed, echo_gain=0.1, output_name="Built-in Speakers")
    async with make_server(port=0, realtime_factor=speed) as server:
        summary, out = await converse(
            server, sd, EchoMode.GATE, speed=speed,
            until=lambda text: text.count("assistant: You said") >= 1
            and "user: what is the weather like today" in text,
        )
    assert out.startswith("tip: on speakers, speak up to interrupt")
    assert summary.barge_ins >= 1
    first_reply = next(t for t in summary.turns if t.role == "assistant")
    assert first_reply.status == "cancelled"
    assert [t.text for t in summary.turns if t.role == "user"][:2] == PHRASES[:2]


async def test_cancelling_talk_prints_the_summary_and_stops_the_devices(server) -> None:
    sd = FakeSoundDevice(spoken(demo_phrases()[:1], [0.5], [1.0]))
    out = io.StringIO()
    task = asyncio.create_task(run_conversation(
        base_url=server.base_url, api_key=KEY, echo="off", sd=sd, out=out))
    deadline = time.monotonic() + 20
    while "connected (" not in out.getvalue():
        assert time.monotonic() < deadline and not task.done(), out.getvalue()
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    task.cancel()  # what Ctrl-C does under asyncio.run
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the cancellation was swallowed")
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("ended after") and "(echo off)" in last
    assert not [t for t in threading.enumerate() if t.name.startswith("fake-")]
    assert sd.mic_blocks and len(sd.played) > 0


def test_live_transcript_redraws_in_place() -> None:
    out = io.StringIO()
    display = LiveTranscript(out, live=True, width=30)
    display.delta("item_a", "assistant", "You said: hello")
    display.delta("item_a", "assistant", " can you hear me")
    turn = SimpleNamespace(item_id="item_a", role="assistant", status="completed",
                           text="You said: hello can you hear me.")
    display.turn(turn)  # type: ignore[arg-type]
    text = out.getvalue()
    redraws = text.split("\r\x1b[K")
    assert redraws[1] == "assistant> You said: hello"
    assert redraws[2] == "… said: hello can you hear me"  # the tail, in 29 columns
    assert len(redraws[2]) == 29
    assert text.endswith("\r\x1b[Kassistant: You said: hello can you hear me.\n")


def test_live_transcript_shows_the_echo_meter_before_the_live_line() -> None:
    out = io.StringIO()
    display = LiveTranscript(out, live=True, width=80)
    display.status("echo -31 dB")
    display.delta("item_a", "user", "hello")
    display.status("echo -33 dB")
    redraws = out.getvalue().split("\r\x1b[K")
    assert redraws[1:] == ["[echo -31 dB]", "[echo -31 dB]      user> hello",
                           "[echo -33 dB]      user> hello"]
    quiet = io.StringIO()
    LiveTranscript(quiet, live=False).status("echo -31 dB")  # not a terminal: nothing
    assert quiet.getvalue() == ""


async def test_talk_with_aec_in_a_simulated_room(make_server) -> None:
    """The room of bench/echo_call.py between playout and microphone: over a few replies
    the server never hears the assistant (no false trigger, no self-interruption), and the
    user's barge-in is heard, understood and cuts the reply about as fast as the same words
    said into silence earlier in the call (the pipeline's own latency, measured in the same
    conditions: see docs/performance.md for the 400 ms goal)."""
    from bench.echo_call import run_call, user_phrases
    from bench.rooms import SETUPS

    said = user_phrases()
    # "thank you goodbye" alone, "what is the weather like today" alone, then "thank you
    # goodbye" again over the second reply (2 s long), 0.7 s into it: past the canceller's
    # 2 s warm-up, and early enough that a barge-in heard late on a loaded machine (up to
    # 1 s was seen) still finds the reply playing
    result = await run_call(make_server, SETUPS[2], EchoMode.AEC, replies=3, barge_every=2,
                            speed=1.0, timeout_s=100, phrases=[said[2], said[1]],
                            barge_after_ms=700)
    assert not result.timed_out, result
    assert result.mode == "aec" and result.replies == 3
    assert result.barged == [False, False, True]
    alone, barge_in = result.heard_ms[0], result.heard_ms[2]
    assert alone is not None and barge_in is not None, result.timeline
    assert barge_in <= alone + 250, result.heard_ms
    assert result.replies_cut >= 1  # the reply it talked over
    assert result.erle_db is not None and result.erle_db > 10
    assert result.user_texts[:2] == [PHRASES[2], PHRASES[1]]
    if result.false_triggers or result.self_interruptions:
        # 1 run in 4 here: a residual burst of the reply reaches the server's VAD
        pytest.xfail(f"open (issue 15): the server heard the assistant "
                     f"({result.false_triggers} false triggers, {result.self_interruptions} "
                     f"self-interruptions): {result.timeline}")
    if result.user_texts[2:] != [PHRASES[2]]:
        # seen in about half the runs: the barge-in is heard (above) but not understood. AEC3
        # attenuates the user 7-18 dB during the first half second of double talk (measured
        # offline, docs/audio.md): the server gets "... goodbye" without "thank you", which
        # Whisper hears as "Goodbye" and pocketsphinx, held to its phrase list, as nothing
        pytest.xfail(f"open (issue 15): the barge-in's transcript is {result.user_texts[2:]!r}; "
                     "the echo canceller attenuates the first half second of the user's "
                     "words over the reply")


def test_headphones_hint_choice() -> None:
    from livetalk.talk import headphones_hint

    assert "wear headphones" in (headphones_hint(EchoMode.OFF, "default") or "")
    assert headphones_hint(EchoMode.OFF, "USB Headset") is None
    assert headphones_hint(EchoMode.HALF_DUPLEX, "Sony WH-1000XM4 Headphones") is None
    assert "muted" in (headphones_hint(EchoMode.HALF_DUPLEX, "default") or "")
    assert headphones_hint(EchoMode.AEC, "default") is None  # nothing to advise


# -- recording ------------------------------------------------------------------------------------


async def test_recorded_call_holds_user_audio_and_reply(make_server, synthesizer,
                                                        tmp_path: Path) -> None:
    speed = 4.0
    phrase = resample(demo_phrases()[0], 16000, 24000)
    async with make_server(port=0, realtime_factor=speed) as server, livetalk.connect(
        base_url=server.base_url, api_key=KEY, speed=speed,
        session=SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                              turn_detection=ServerVAD(silence_duration_ms=500)),
    ) as call:
        async with Recorder(call, user_path=tmp_path / "user.wav",
                            assistant_path=tmp_path / "assistant.ogg") as rec:
            fed = concat(ArraySource(phrase, 24000), SilenceSource(1.5))
            await call.stream(rec.tee(fed))
            turns = await call.wait_for_turns(2, timeout=30)
            await call.wait_until_quiet(timeout=20)
            await asyncio.sleep(0.3)
    assert [t.text for t in turns] == [PHRASES[0], f"You said: {PHRASES[0]}."]
    with wave.open(str(tmp_path / "user.wav")) as w:
        user = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert w.getframerate() == 24000
    assert np.array_equal(user, np.concatenate([phrase, np.zeros(36000, dtype=np.int16)]))
    import av

    with av.open(str(tmp_path / "assistant.ogg")) as container:
        rate = container.streams.audio[0].rate
        reply = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    if reply.dtype != np.int16:
        reply = np.clip(reply * 32768, -32768, 32767).astype(np.int16)
    voice, voice_rate = synthesizer.synthesize(f"You said: {PHRASES[0]}.")
    expected = audible_ms(voice, voice_rate)
    assert expected * 0.75 <= audible_ms(reply, rate) <= expected * 1.25


# -- no device ------------------------------------------------------------------------------------
