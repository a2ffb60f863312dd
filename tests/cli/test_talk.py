"""``livetalk talk``: its options, a missing device found before connecting, reported with
the command line's flags."""

from __future__ import annotations

import pytest

from livetalk.cli import ExitStatus, build_parser, talk as talk_command
from livetalk.cli._output import error_line
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import status_for
from livetalk.errors import AudioDeviceError
from tests.fake_sounddevice import FakeSoundDevice


def test_talk_options() -> None:
    parse = build_parser().parse_args
    args = parse(["talk", "--input-device", "3", "--output-device", "USB Audio", "--echo",
                  "gate"])
    assert (args.input_device, args.output_device, args.echo) == (3, "USB Audio", "gate")
    default = parse(["talk"])
    assert default.echo is None and not default.headphones  # talk() picks: aec, else half-duplex
    assert parse(["talk", "--headphones", "--echo", "aec"]).headphones


async def test_a_missing_microphone_is_reported_with_the_flag_to_change() -> None:
    args = build_parser().parse_args(["talk", "--api-key", "sk-x",
                                      "--base-url", "http://127.0.0.1:9/v1"])
    with pytest.raises(AudioDeviceError) as info:  # before connecting: nothing listens there
        await talk_command.main(args, Runtime(), sd=FakeSoundDevice(devices=False))
    assert "input_device=" in str(info.value)  # talk()'s parameter, in the library
    line = error_line(info.value)
    assert line.startswith("livetalk: error: no usable audio input device")
    assert "connect a microphone or pass another --input-device" in line
    assert "'livetalk devices'" in line
    assert status_for(info.value) is ExitStatus.DEVICE
