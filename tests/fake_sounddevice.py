"""Stand-in ``sounddevice`` modules, shared by the device tests, the docs runner and the
echo benchmark.

:class:`FakeDeviceTable` is the device-query half: subclass it and add ``InputStream`` /
``OutputStream`` to get a module that ``livetalk.audio.devices`` accepts as ``sd=``; build its
device list with :func:`device`. :class:`FakeSoundDevice` is a whole one: a microphone that
plays given audio (16 kHz) at N times real time from a thread, optionally mixed with what the
speaker played (a simulated acoustic echo), and a speaker that keeps what it played.
:func:`install` puts one in ``sys.modules["sounddevice"]`` for code that imports it itself.
:class:`RoomSoundDevice` is a duplex sound card on one clock with a simulated room between
its speaker and its microphone.
"""

from __future__ import annotations

import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import numpy as np

from livetalk.audio.resample import resample

DEVICE_RATE = 48000
"""The rate of the fake devices."""


class FakePortAudioError(Exception):
    """Stands in for ``sounddevice.PortAudioError``."""


def device(index: int, name: str, *, inputs: int, outputs: int,
           rate: float = 48000.0) -> dict[str, Any]:
    """One entry of the device list, shaped like ``sounddevice.query_devices()``'s."""
    return {"index": index, "name": name, "hostapi": 0, "max_input_channels": inputs,
            "max_output_channels": outputs, "default_samplerate": rate}


def mic_and_speakers(output_name: str = "speakers") -> list[dict[str, Any]]:
    """A mono microphone (index 0) and a stereo output (index 1), both at 48 kHz."""
    return [device(0, "mic", inputs=1, outputs=0), device(1, output_name, inputs=0, outputs=2)]


class FakeDeviceTable:
    """Device listing, lookup and settings checks over ``devices``, on one ALSA host API.

    Args:
        devices: The device list (see :func:`device`).
        default: The default (input, output) device indexes; -1 for none.
        rates: The sample rates every device accepts; others raise PaErrorCode -9997.
    """

    PortAudioError = FakePortAudioError

    def __init__(self, devices: list[dict[str, Any]], *, default: tuple[int, int],
                 rates: Iterable[int]) -> None:
        self.devices = devices
        self.default = SimpleNamespace(device=list(default))
        self.rates = set(rates)

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        if device is None and kind is None:
            return list(self.devices)
        if device is None:
            device = self.default.device[0 if kind == "input" else 1]
        for d in self.devices:
            if device in (d["index"], d["name"]):
                return d
        raise FakePortAudioError(f"Error querying device {device}")

    def query_hostapis(self) -> list[dict[str, Any]]:
        return [{"name": "ALSA"}]

    def _check(self, device: Any, kind: str, samplerate: int, **_: Any) -> None:
        info = self.query_devices(device, kind)
        if not info[f"max_{kind}_channels"]:
            raise ValueError(f"No {kind} device matching {device!r}")
        if samplerate not in self.rates:
            raise FakePortAudioError(
                "Error opening stream: Invalid sample rate [PaErrorCode -9997]"
            )

    def check_input_settings(self, device: Any = None, **kw: Any) -> None:
        self._check(device, "input", **kw)

    def check_output_settings(self, device: Any = None, **kw: Any) -> None:
        self._check(device, "output", **kw)


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


def install(sd: FakeSoundDevice | None = None) -> FakeSoundDevice:
    """Make ``import sounddevice`` return ``sd`` (a new :class:`FakeSoundDevice` by default)."""
    sd = sd if sd is not None else FakeSoundDevice()
    sys.modules["sounddevice"] = sd  # type: ignore[assignment]
    return sd


# -- a duplex sound card with a simulated room between its speaker and its microphone ---------


class RoomStream:
    """One direction of :class:`RoomSoundDevice`: started, stopped and paced by the device."""

    def __init__(self, sd: RoomSoundDevice, kind: str, samplerate: int, callback: Any,
                 blocksize: int | None = None, **_: Any) -> None:
        if samplerate != sd.rate:
            raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")
        self.sd, self.kind, self.callback = sd, kind, callback
        self.blocksize = blocksize or sd.tick
        self.latency = (sd.output_latency_ms if kind == "output" else sd.input_latency_ms) / 1000
        self.active = False

    def start(self) -> None:
        self.sd._attach(self)

    def stop(self) -> None:
        self.sd._detach(self)

    def close(self) -> None:
        self.sd._detach(self)


class RoomSoundDevice(FakeDeviceTable):
    """A microphone and a speaker on one clock, with a room between them.

    One thread drives both streams in 20 ms ticks, paced at ``speed`` times real time: each
    tick the output callback fills a block, the room turns it into echo (``echo``, e.g.
    ``bench.rooms.EchoPath(...).process``, which also holds the device delay), and the
    microphone hears that echo plus the user (what :meth:`say` queued, through ``user_ir``)
    plus ``noise``; the input callback gets it in its block size. ``on_tick(device, played)``
    runs on that thread after each tick (a scripted user: it may call :meth:`say`).

    Args:
        rate: the one rate both devices accept.
        speed: the pace (2.0 = twice real time).
        echo: the speaker-to-microphone path, called with each tick's played block.
        user_ir: the user-to-microphone impulse response (None: straight in).
        noise: background noise looped under everything (float samples).
        output_latency_ms, input_latency_ms: what the streams report as ``latency``.
        on_tick: the scripted user.
        output_name: the speaker's device name.
    """

    def __init__(self, *, rate: int = 48000, speed: float = 1.0,
                 echo: Callable[[np.ndarray], np.ndarray] | None = None,
                 user_ir: np.ndarray | None = None, noise: np.ndarray | None = None,
                 output_latency_ms: float = 10.0, input_latency_ms: float = 10.0,
                 on_tick: Callable[[RoomSoundDevice, np.ndarray], None] | None = None,
                 output_name: str = "speakers") -> None:
        devices = [device(0, "mic", inputs=1, outputs=0, rate=rate),
                   device(1, output_name, inputs=0, outputs=2, rate=rate)]
        super().__init__(devices, default=(0, 1), rates=[rate])
        self.rate, self.speed, self.tick = rate, speed, rate // 50
        self.echo, self.user_ir, self.noise, self.on_tick = echo, user_ir, noise, on_tick
        self.output_latency_ms, self.input_latency_ms = output_latency_ms, input_latency_ms
        self.ticks = 0
        """Ticks run so far (the device clock, in units of 20 ms)."""
        self.played: list[np.ndarray] = []
        self.heard: list[np.ndarray] = []
        self.said: list[tuple[int, int]] = []
        """``(first tick, samples)`` of each utterance :meth:`say` queued."""
        self._near = np.zeros(0)
        self._streams: list[RoomStream] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._mic_block = np.zeros(0)

    def InputStream(self, **kwargs: Any) -> RoomStream:  # noqa: N802 - sounddevice's name
        return RoomStream(self, "input", **kwargs)

    def OutputStream(self, **kwargs: Any) -> RoomStream:  # noqa: N802 - sounddevice's name
        return RoomStream(self, "output", **kwargs)

    def say(self, pcm: np.ndarray) -> None:
        """The user starts speaking ``pcm`` (at ``rate``) on the next tick."""
        x = np.asarray(pcm, dtype=np.float64)
        if self.user_ir is not None:
            from scipy.signal import oaconvolve

            x = oaconvolve(x, self.user_ir)
        with self._lock:
            self.said.append((self.ticks, int(pcm.size)))
            if self._near.size < x.size:
                self._near = np.concatenate((self._near, np.zeros(x.size - self._near.size)))
            self._near[: x.size] += x

    def _attach(self, stream: RoomStream) -> None:
        with self._lock:
            if stream not in self._streams:
                self._streams.append(stream)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="fake-room", daemon=True)
                self._thread.start()

    def _detach(self, stream: RoomStream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)
            thread = self._thread if not self._streams else None
            if thread is not None:
                self._thread = None
                self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        tick, out_status = self.tick, SimpleNamespace(output_underflow=False)
        in_status = SimpleNamespace(input_overflow=False)
        t0, n = time.monotonic(), 0
        while not self._stop.is_set():
            with self._lock:
                streams = list(self._streams)
            played = np.zeros(tick, dtype=np.int16)
            for s in streams:
                if s.kind == "output":
                    out = np.zeros((tick, 1), dtype=np.int16)
                    s.callback(out, tick, None, out_status)
                    played = out[:, 0].copy()
            heard = self.echo(played) if self.echo is not None else np.zeros(tick)
            with self._lock:
                near, self._near = self._near[:tick], self._near[tick:]
                self.ticks += 1
            heard = heard.copy()
            heard[: near.size] += near
            if self.noise is not None:
                i = (n * tick) % (self.noise.size - tick)
                heard += self.noise[i : i + tick]
            self.played.append(played)
            self.heard.append(heard)
            for s in streams:
                if s.kind == "input":
                    self._mic_block = np.concatenate((self._mic_block, heard))
                    while self._mic_block.size >= s.blocksize:
                        block, self._mic_block = (self._mic_block[: s.blocksize],
                                                  self._mic_block[s.blocksize :])
                        pcm = np.clip(np.rint(block), -32768, 32767).astype(np.int16)
                        s.callback(pcm.reshape(-1, 1), s.blocksize, None, in_status)
            if self.on_tick is not None:
                self.on_tick(self, played)
            n += 1
            self._stop.wait(max(0.0, t0 + n * tick / self.rate / self.speed - time.monotonic()))
