"""``livetalk devices``, with a stand-in sound card and without PortAudio or sounddevice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from livetalk.cli import build_parser, devices as devices_command
from livetalk.cli._runtime import Runtime
from livetalk.errors import AudioDeviceError
from tests.fake_sounddevice import FakeSoundDevice

ROOT = Path(__file__).resolve().parents[2]


async def test_lists_the_devices(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["devices"])
    assert await devices_command.main(args, Runtime(), sd=FakeSoundDevice()) == 0
    assert capsys.readouterr().out.splitlines() == [
        "  0  mic (ALSA)  in 1, out 0, 48000 Hz  [default input]",
        "  1  speakers (ALSA)  in 0, out 2, 48000 Hz  [default output]",
    ]
    with pytest.raises(AudioDeviceError, match="no audio devices found"):
        await devices_command.main(args, Runtime(), sd=FakeSoundDevice(devices=False))


_WITHOUT = """
import importlib.abc, sys

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "sounddevice":
            if sys.argv[1] == "portaudio":
                raise OSError("PortAudio library not found")
            raise ModuleNotFoundError("No module named 'sounddevice'", name="sounddevice")
        return None

sys.modules.pop("sounddevice", None)
sys.meta_path.insert(0, Missing())
from livetalk.cli import main
print(main(["devices"]), main(["talk", "--api-key", "sk-x", "--base-url", "http://127.0.0.1:9/v1"]))
"""


@pytest.mark.parametrize(
    ("missing", "status", "needle"),
    [("portaudio", 7, "PortAudio library not found"),
     ("package", 2, "needs the 'devices' extra")],
)
def test_without_portaudio_or_sounddevice_one_line_each(missing: str, status: int,
                                                        needle: str) -> None:
    done = subprocess.run([sys.executable, "-c", _WITHOUT, missing], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.stdout.split() == [str(status), str(status)], done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert all(line.startswith("livetalk: error: ") and needle in line for line in lines)
