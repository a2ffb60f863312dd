"""The device-query half of a stand-in ``sounddevice`` module, shared by the device tests.

Subclass :class:`FakeDeviceTable` and add ``InputStream`` / ``OutputStream`` to get a module
that ``livetalk.audio.devices`` accepts as ``sd=``; build its device list with :func:`device`.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any


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
