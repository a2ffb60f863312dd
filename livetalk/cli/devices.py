"""``livetalk devices``: list the sound cards' inputs and outputs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from livetalk.cli._args import HelpFormatter
from livetalk.cli._output import Output
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import ExitStatus
from livetalk.errors import AudioDeviceError

if TYPE_CHECKING:
    from livetalk.audio.devices import DeviceInfo

__all__ = ["add_parser", "describe", "main"]

NO_DEVICES = (
    "no audio devices found: connect a microphone and speakers or headphones, and check that "
    "your user may use them (e.g. the 'audio' group on Linux)"
)

DESCRIPTION = """\
List the audio input and output devices PortAudio sees, one per line: index, name, host
API, channels, default rate, and which are the system's defaults. Pass an index or a name
to 'livetalk talk --input-device / --output-device'. Needs the 'devices' extra and the
PortAudio library (apt install libportaudio2, brew install portaudio).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``devices`` to the sub-commands."""
    p = sub.add_parser("devices", help="list audio input and output devices",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.set_defaults(command=main)


def describe(dev: DeviceInfo) -> str:
    """One device as its line of the listing."""
    roles = [r for r, on in (("default input", dev.is_default_input),
                             ("default output", dev.is_default_output)) if on]
    marks = f"  [{', '.join(roles)}]" if roles else ""
    return (f"{dev.index:>3}  {dev.name} ({dev.hostapi})  in {dev.max_input_channels}, "
            f"out {dev.max_output_channels}, {dev.default_samplerate:.0f} Hz{marks}")


async def main(args: argparse.Namespace, runtime: Runtime, *, sd: object = None) -> ExitStatus:
    """Run ``livetalk devices``; ``sd`` stands in for the sounddevice module in tests."""
    from livetalk.audio.devices import list_devices

    devices = list_devices(sd=sd)
    if not devices:
        raise AudioDeviceError(NO_DEVICES)
    out = Output(runtime)
    for dev in devices:
        out.write(describe(dev) + "\n")
    return ExitStatus.OK
