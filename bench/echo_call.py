"""End to end: ``livetalk talk`` over a real WebRTC call to the local server, with a simulated
room between the call's playout and its microphone.

The sound card is :class:`tests.fake_sounddevice.RoomSoundDevice`: the speaker's output goes
through a :class:`~bench.rooms.EchoPath` (soft clipping, the room, the device delay) into the
microphone, with the user and background noise. A scripted :class:`User` (on the device's
clock) says a phrase, waits for the assistant's reply to finish, says the next one; on some
replies it barges in one second into the reply instead. The server runs its own VAD; every
``input_audio_buffer.speech_started`` is sorted into:

- a *true* trigger: while the user speaks (or within half a second after);
- a *false* one: anything else, i.e. the server heard the assistant's echo (or the noise).

Each barge-in is *detected* when a trigger comes within ``BARGE_IN_GOAL_MS`` of the user
starting; its delay is measured on the device's clock. So is every other utterance's (the
user speaking into silence): the same pipeline's latency without any echo to get past, the
reference for the barge-in delays. A *self-interruption* is a reply cut short (cancelled)
without the user barging in: the server took the assistant's echo for the user.
"""

from __future__ import annotations

import asyncio
import io
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.rooms import EchoPath, Setup, acoustics, pink_noise
from livetalk.audio.echo import EchoMode
from livetalk.audio.format import rms_dbfs
from livetalk.audio.resample import resample
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from livetalk.server.tts import EspeakSynthesizer
from livetalk.talk import talk
from tests.fake_sounddevice import RoomSoundDevice

__all__ = ["BARGE_IN_GOAL_MS", "CallResult", "User", "run_call", "user_phrases"]

DEVICE_RATE = 48000
TICK_MS = 20
BARGE_IN_GOAL_MS = 400.0
NEAR_DBFS = -28.0
SNR_DB = 20.0
PHRASES = ("hello can you hear me", "what is the weather like today", "thank you goodbye")
NEAR_VOICE = "en-us+f3"
KEY = "sk-local-echo-bench"


def user_phrases(voice: str = NEAR_VOICE) -> list[np.ndarray]:
    """The phrases the server's ears know, in the user's voice, at the device rate and at the
    user's level (:data:`NEAR_DBFS`, before the room)."""
    synth = EspeakSynthesizer(voice)
    out = []
    for text in PHRASES:
        pcm, rate = synth.synthesize(text)
        loud = np.flatnonzero(np.abs(pcm) > 300)  # trim the voice's leading/trailing silence
        pcm = pcm[loud[0] : loud[-1] + 1]
        x = resample(pcm, rate, DEVICE_RATE).astype(np.float64)
        x *= 10 ** ((NEAR_DBFS - rms_dbfs(pcm)) / 20)
        out.append(x)
    return out


@dataclass
class User:
    """The scripted user, run on the sound card's thread each 20 ms tick.

    Args:
        phrases: what to say, in turn.
        replies: how many replies to wait for before stopping.
        barge_every: barge in on every n-th reply (0: never).
        barge_after_ms: how far into a reply to barge in.
    """

    phrases: list[np.ndarray]
    replies: int
    barge_every: int = 4
    barge_after_ms: float = 1000
    audible_dbfs: float = -45.0
    state: str = "start"
    heard_replies: int = 0
    reply_start: int = 0
    last_audible: int = 0
    said: int = 0
    barge_ins: list[int] = field(default_factory=list)
    """Ticks at which the user barged in."""
    reply_starts: list[int] = field(default_factory=list)
    """Ticks at which each reply started playing."""
    utterances: list[tuple[int, int]] = field(default_factory=list)
    """``(start tick, end tick)`` of everything said."""
    done: bool = False

    def _say(self, sd: RoomSoundDevice) -> int:
        pcm = self.phrases[self.said % len(self.phrases)]
        self.said += 1
        start = sd.ticks
        self.utterances.append((start, start + math.ceil(pcm.size / sd.tick)))
        sd.say(pcm)
        return start

    def __call__(self, sd: RoomSoundDevice, played: np.ndarray) -> None:
        tick = sd.ticks
        audible = rms_dbfs(played) > self.audible_dbfs
        if audible:
            self.last_audible = tick
        if self.state == "start" and tick >= 50:
            self._say(sd)
            self.state = "wait_reply"
        elif self.state == "wait_reply" and audible and tick > self.utterances[-1][1]:
            self.heard_replies += 1
            self.reply_start = tick
            self.reply_starts.append(tick)
            barge = self.barge_every and self.heard_replies % self.barge_every == 0
            self.state = "barge" if barge and self.heard_replies < self.replies else "in_reply"
        elif self.state == "in_reply" and tick - self.last_audible >= 40:
            if self.heard_replies >= self.replies:
                self.state, self.done = "done", True
            else:
                self._say(sd)
                self.state = "wait_reply"
        elif self.state == "barge" and tick - self.reply_start >= self.barge_after_ms / TICK_MS:
            self.barge_ins.append(self._say(sd))
            self.state = "after_barge"
        elif (self.state == "after_barge" and tick > self.utterances[-1][1]
              and tick - self.last_audible >= 15):
            self.state = "wait_reply"


@dataclass
class CallResult:
    """What one call measured (see the module docstring)."""

    setup: str
    mode: str
    replies: int
    user_turns: int
    triggers: int
    false_triggers: int
    false_during_reply: int
    barge_ins: int
    barge_ins_detected: int
    barge_in_delays_ms: list[float]
    seconds: float
    erle_db: float | None
    timed_out: bool
    replies_cut: int = 0
    """Replies cut short (cancelled), by the user or not."""
    self_interruptions: int = 0
    """Replies cut short (cancelled) without the user barging in."""
    heard_ms: list[float | None] = field(default_factory=list)
    """For each utterance: ms from its start to the first trigger while it lasts (or in the
    half second after), None if the server never heard it."""
    barged: list[bool] = field(default_factory=list)
    """For each utterance: whether it was a barge-in."""
    user_texts: list[str] = field(default_factory=list)
    """The transcripts of the user turns, in order."""
    timeline: dict[str, list[float]] = field(default_factory=dict)
    """Media seconds of the ``triggers``, ``false``, ``reply_starts``, ``said`` (utterance
    starts) and ``barge_ins``."""

    @property
    def alone_heard_ms(self) -> list[float | None]:
        """``heard_ms`` of the utterances said into silence (no reply playing)."""
        return [d for d, b in zip(self.heard_ms, self.barged, strict=True) if not b]

    @property
    def barge_in_heard_ms(self) -> list[float | None]:
        """``heard_ms`` of the barge-ins (None: not heard at all)."""
        return [d for d, b in zip(self.heard_ms, self.barged, strict=True) if b]


async def run_call(make_server: Any, setup: Setup | None, mode: EchoMode | None, *,
                   replies: int, barge_every: int = 4, speed: float = 2.0,
                   timeout_s: float = 300.0, phrases: list[np.ndarray] | None = None,
                   barge_after_ms: float = 1000, seed: int = 0) -> CallResult:
    """One conversation through ``setup`` (None: headphones, no echo at all) with ``mode``.

    Args:
        make_server: a callable returning the local server's async context manager
            (``livetalk.server.serve`` with shared ears and voice).
        setup: the room, or None for no echo path.
        mode: the echo mode (None: talk's default).
        replies: replies to wait for.
        barge_every: barge in on every n-th reply.
        speed: media clock speed (the server runs at the same ``realtime_factor``).
        timeout_s: wall-clock bound for the call.
        phrases: the user's phrases (default :func:`user_phrases`).
        barge_after_ms: how far into a reply the user barges in (by the sound card's clock).
        seed: the noise seed.
    """
    from livetalk.call import Call

    phrases = phrases if phrases is not None else user_phrases()
    user = User(phrases, replies, barge_every=barge_every, barge_after_ms=barge_after_ms)
    echo = EchoPath(setup, DEVICE_RATE, DEVICE_RATE * TICK_MS // 1000) if setup else None
    latency = setup.device_delay_ms / 2 if setup else 10.0
    sd = RoomSoundDevice(
        rate=DEVICE_RATE, speed=speed, echo=echo.process if echo else None,
        user_ir=acoustics(setup, DEVICE_RATE).user_rir if setup else None,
        noise=pink_noise(10 * DEVICE_RATE, DEVICE_RATE, NEAR_DBFS - SNR_DB, seed=seed),
        output_latency_ms=latency, input_latency_ms=latency, on_tick=user,
        output_name="Built-in Speakers" if setup else "Headphones")
    triggers: list[int] = []

    def tap(direction: str, event: dict[str, Any]) -> None:
        if direction == "in" and event.get("type") == "input_audio_buffer.speech_started":
            triggers.append(sd.ticks)

    Call.global_taps.append(tap)
    started = time.monotonic()
    timed_out = False
    out = io.StringIO()
    try:
        async with make_server(port=0, realtime_factor=speed) as server:
            stop = asyncio.Event()
            task = asyncio.create_task(talk(
                base_url=server.base_url, api_key=KEY, echo=mode, sd=sd, out=out, stop=stop,
                speed=speed, session=SessionConfig(
                    transcription=Transcription(model="gpt-4o-mini-transcribe"),
                    turn_detection=ServerVAD(silence_duration_ms=500))))
            deadline = started + timeout_s
            while not user.done and not task.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            timed_out = not user.done
            stop.set()
            summary = await task
            if task.done() and not user.done:
                print(out.getvalue())
    finally:
        Call.global_taps.remove(tap)
    tail = 500 // TICK_MS
    false = [t for t in triggers
             if not any(a <= t <= b + tail for a, b in user.utterances)]
    played = np.concatenate(sd.played) if sd.played else np.zeros(0, np.int16)
    block = sd.tick

    def reply_playing(t: int) -> bool:
        seg = played[max(0, t - 25) * block : t * block]
        return seg.size > 0 and rms_dbfs(seg) > user.audible_dbfs

    delays = []
    for onset in user.barge_ins:
        hits = [t for t in triggers if onset <= t <= onset + BARGE_IN_GOAL_MS / TICK_MS]
        if hits:
            delays.append((hits[0] - onset) * TICK_MS)
    heard: list[float | None] = []
    for a, b in user.utterances:
        hits = [t for t in triggers if a <= t <= b + tail]
        heard.append(float((hits[0] - a) * TICK_MS) if hits else None)
    barged = [a in user.barge_ins for a, _ in user.utterances]
    replies_cut = sum(1 for t in summary.turns if t.role == "assistant"
                      and t.status == "cancelled")
    return CallResult(
        setup=setup.name if setup else "headphones (no echo)",
        mode=summary.echo.value, replies=user.heard_replies, user_turns=summary.user_turns,
        triggers=len(triggers), false_triggers=len(false),
        false_during_reply=sum(1 for t in false if reply_playing(t)),
        barge_ins=len(user.barge_ins), barge_ins_detected=len(delays),
        barge_in_delays_ms=delays, seconds=round(time.monotonic() - started, 1),
        erle_db=summary.echo_erle_db, timed_out=timed_out,
        replies_cut=replies_cut, self_interruptions=max(0, replies_cut - sum(
            1 for d, b in zip(heard, barged, strict=True) if b and d is not None)),
        heard_ms=heard, barged=barged,
        user_texts=[t.text for t in summary.turns if t.role == "user"],
        timeline={name: [round(t * TICK_MS / 1000, 2) for t in ticks] for name, ticks in (
            ("triggers", triggers), ("false", false), ("reply_starts", user.reply_starts),
            ("said", [a for a, _ in user.utterances]), ("barge_ins", user.barge_ins))})
