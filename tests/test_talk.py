"""``livetalk talk`` and call recording over real loopback WebRTC against the local server.

The sound card is a stand-in sounddevice module (``sd=``): its input stream plays the bundled
demo recording from a thread at N times real time, optionally mixed with what its output
stream played (a simulated acoustic echo); its output stream pulls from the speaker callback
at the same pace and keeps what was played. The media path (Opus, RTP, ICE, DTLS) is real.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import threading
import time
import wave
from abc import ABC, abstractmethod
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
from livetalk.talk import (
    LiveTranscript,
    add_devices_parser,
    add_talk_parser,
    run_devices,
    run_talk,
    talk as run_conversation,
)
from tests.conftest import DATA
from tests.fake_sounddevice import FakeDeviceTable, mic_and_speakers

pytestmark = pytest.mark.slow

KEY = "sk-test-talk"
PHRASES = ["hello can you hear me", "what is the weather like today", "thank you goodbye"]
DEVICE_RATE = 48000


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


# -- a stand-in sounddevice module ---------------------------------------------------------------


class FakeStreamThread(ABC):
    """A stream whose ``_run`` loop runs on its own thread between start() and stop()."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def close(self) -> None:
        self._stop.set()

    @abstractmethod
    def _run(self) -> None:
        """The stream's loop; returns once ``self._stop`` is set."""


class FakeInput(FakeStreamThread):
    """An input stream that plays ``audio`` (then silence) from a thread, in blocks."""

    def __init__(self, sd: FakeSoundDevice, samplerate: int, blocksize: int, callback: Any,
                 **_: Any) -> None:
        super().__init__("fake-mic")
        self.sd, self.rate, self.block, self.callback = sd, samplerate, blocksize, callback
        self.audio = resample(sd.mic_audio, 16000, samplerate)

    def _run(self) -> None:
        status = SimpleNamespace(input_overflow=False)
        t0, pos = time.monotonic(), 0
        while not self._stop.is_set():
            block = np.zeros(self.block, dtype=np.int32)
            piece = self.audio[pos : pos + self.block]
            block[: piece.size] = piece
            block += self.sd.take_echo(self.block)
            self.sd.mic_blocks.append(block.copy())
            indata = np.clip(block, -32768, 32767).astype(np.int16).reshape(-1, 1)
            self.callback(indata, self.block, None, status)
            pos += self.block
            self._stop.wait(max(0.0, t0 + pos / self.rate / self.sd.speed - time.monotonic()))


class FakeOutput(FakeStreamThread):
    """An output stream that pulls 20 ms blocks from the callback and keeps what it got."""

    def __init__(self, sd: FakeSoundDevice, samplerate: int, callback: Any, **_: Any) -> None:
        super().__init__("fake-speaker")
        self.sd, self.rate, self.callback = sd, samplerate, callback

    def _run(self) -> None:
        status = SimpleNamespace(output_underflow=False)
        frames = self.rate // 50
        t0, pos = time.monotonic(), 0
        while not self._stop.is_set():
            outdata = np.zeros((frames, 1), dtype=np.int16)
            self.callback(outdata, frames, None, status)
            self.sd.add_played(outdata[:, 0].copy())
            pos += frames
            self._stop.wait(max(0.0, t0 + pos / self.rate / self.sd.speed - time.monotonic()))


class FakeSoundDevice(FakeDeviceTable):
    """One microphone and one speaker at 48 kHz; the room echoes ``echo_gain`` of the speaker
    into the microphone."""

    def __init__(self, mic_audio: np.ndarray | None = None, *, speed: float = 1.0,
                 echo_gain: float = 0.0, devices: bool = True, output_name: str = "speakers"):
        super().__init__(mic_and_speakers(output_name) if devices else [],
                         default=(0, 1) if devices else (-1, -1), rates=[DEVICE_RATE])
        self.mic_audio = mic_audio if mic_audio is not None else np.zeros(0, dtype=np.int16)
        self.speed = speed
        self.echo_gain = echo_gain
        self.played: list[np.ndarray] = []
        self.mic_blocks: list[np.ndarray] = []
        self._echo: list[np.ndarray] = []
        self._lock = threading.Lock()

    def add_played(self, block: np.ndarray) -> None:
        with self._lock:
            self.played.append(block)
            if self.echo_gain:
                self._echo.append((block * self.echo_gain).astype(np.int32))

    def take_echo(self, n: int) -> np.ndarray:
        with self._lock:
            pending = np.concatenate(self._echo) if self._echo else np.zeros(0, dtype=np.int32)
            self._echo = [pending[n:]] if pending.size > n else []
        out = np.zeros(n, dtype=np.int32)
        out[: min(n, pending.size)] = pending[:n]
        return out

    def played_audio(self) -> np.ndarray:
        with self._lock:
            return np.concatenate(self.played) if self.played else np.zeros(0, np.int16)

    def InputStream(self, **kwargs: Any) -> FakeInput:  # noqa: N802 - sounddevice's name
        return FakeInput(self, **kwargs)

    def OutputStream(self, **kwargs: Any) -> FakeOutput:  # noqa: N802 - sounddevice's name
        return FakeOutput(self, **kwargs)


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
    assert lines[-1].startswith("ended after") and "2 user and 2 assistant turns" in lines[-1]
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


@pytest.mark.xfail(reason="open: the local server's VAD still fires about 0.5 s into a reply "
                   "(1-2 false triggers in 3 replies, also during warm-up muting), see issue 15",
                   strict=False)
async def test_talk_with_aec_in_a_simulated_room(make_server) -> None:
    """The room of bench/echo_call.py between playout and microphone: over a few replies
    the server never hears the assistant (no false trigger, no self-interruption) and the
    user's barge-in is heard within the goal."""
    from bench.echo_call import BARGE_IN_GOAL_MS, run_call
    from bench.rooms import SETUPS

    result = await run_call(make_server, SETUPS[2], EchoMode.AEC, replies=3, barge_every=2,
                            speed=1.0, timeout_s=100)
    assert not result.timed_out, result
    assert result.mode == "aec" and result.replies == 3
    assert result.false_triggers == 0, result.timeline
    assert result.barge_ins == 1 and result.barge_ins_detected == 1, result.timeline
    assert 0 <= result.barge_in_delays_ms[0] <= BARGE_IN_GOAL_MS
    assert result.erle_db is not None and result.erle_db > 10


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


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="livetalk")
    sub = parser.add_subparsers(dest="command", required=True)
    add_talk_parser(sub)
    add_devices_parser(sub)
    return parser.parse_args(argv)


def test_talk_parser() -> None:
    args = _parse("talk", "--input-device", "3", "--output-device", "USB Audio", "--echo", "gate")
    assert (args.input_device, args.output_device, args.echo) == (3, "USB Audio", "gate")
    default = _parse("talk")
    assert default.echo is None and not default.headphones  # talk() picks: aec, else half-duplex
    assert _parse("talk", "--headphones", "--echo", "aec").headphones


async def test_talk_without_a_device_exits_7() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await run_talk(_parse("talk", "--api-key", KEY), sd=FakeSoundDevice(devices=False),
                          out=out, err=err)
    assert code == 7
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and "no usable audio input device" in lines[0]
    assert "connect a microphone" in lines[0] and out.getvalue() == ""


def test_devices_lists_and_handles_no_device() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_devices(_parse("devices"), sd=FakeSoundDevice(), out=out, err=err) == 0
    assert out.getvalue().splitlines() == [
        "  0  mic (ALSA)  in 1, out 0, 48000 Hz  [default input]",
        "  1  speakers (ALSA)  in 0, out 2, 48000 Hz  [default output]",
    ]
    out, err = io.StringIO(), io.StringIO()
    assert run_devices(_parse("devices"), sd=FakeSoundDevice(devices=False), out=out,
                       err=err) == 7
    assert err.getvalue().count("\n") == 1 and "no audio devices found" in err.getvalue()


_NO_PORTAUDIO = """
import asyncio, argparse, importlib.abc, sys

class NoPortAudio(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None

sys.modules.pop("sounddevice", None)
sys.meta_path.insert(0, NoPortAudio())
from livetalk import talk
args = argparse.Namespace(base_url=None, api_key="sk-x", model=None, input_device=None,
                          output_device=None, echo="half-duplex")
codes = [talk.run_devices(args), asyncio.run(talk.run_talk(args))]
print(codes)
"""


def test_missing_portaudio_exits_7_with_one_line_each() -> None:
    done = subprocess.run([sys.executable, "-c", _NO_PORTAUDIO], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "[7, 7]", done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert all(line.startswith("livetalk: error: PortAudio library not found") for line in lines)
    assert all("apt install libportaudio2" in line for line in lines)
