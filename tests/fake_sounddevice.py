"""A stand-in ``sounddevice`` module, shared by the device tests and the docs runner.

:class:`FakeDeviceTable` is the device-query half: subclass it and add ``InputStream`` /
``OutputStream`` to get a module that ``livetalk.audio.devices`` accepts as ``sd=``; build its
device list with :func:`device`. :class:`FakeSoundDevice` is a whole one: a microphone that
plays given audio (16 kHz) at N times real time from a thread, optionally mixed with what the
speaker played (a simulated acoustic echo), and a speaker that keeps what it played.
:func:`install` puts one in ``sys.modules["sounddevice"]`` for code that imports it itself.
"""

from __future__ import annotations

import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
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
