"""Scenario bundles: recordings travel as bytes and come back as files elsewhere."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from livetalk.scenarios import ScenarioError, TurnKind, load_scenario
from livetalk.scenarios.bundle import ScenarioBundle


def _scenario_with_recording(folder: Path) -> Path:
    (folder / "audio").mkdir()
    (folder / "audio" / "ask.wav").write_bytes(b"RIFF-not-really-audio")
    path = folder / "s.json"
    path.write_text(json.dumps({"turns": [{"audio": "audio/ask.wav", "text": "hello there"},
                                          {"pause_ms": 200}, {"say": "goodbye"}]}))
    return path


def test_bundle_carries_the_recording_bytes_and_survives_the_files(tmp_path: Path) -> None:
    path = _scenario_with_recording(tmp_path)
    bundle = ScenarioBundle.pack(load_scenario(path))
    assert bundle.audio == ((0, "ask.wav", b"RIFF-not-really-audio"),)
    assert bundle.nbytes == len(b"RIFF-not-really-audio")
    shipped: ScenarioBundle = pickle.loads(pickle.dumps(bundle))
    (tmp_path / "audio" / "ask.wav").unlink()  # the "other node" has no such file

    with shipped.unpacked() as scenario:
        audio = scenario.turns[0].audio
        assert audio is not None and audio.read_bytes() == b"RIFF-not-really-audio"
        assert audio.name == "ask.wav" and audio.parent.parent != tmp_path / "audio"
        assert scenario.turns[0].describe() == "audio: ask.wav"
        assert scenario.path == path  # the report still names the driver's file
        assert [t.kind for t in scenario.turns] == [TurnKind.AUDIO, TurnKind.PAUSE,
                                                    TurnKind.SAY]
        folder = audio.parent.parent
    assert not folder.exists()


def test_bundle_without_recordings_is_the_scenario_itself(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"turns": [{"say": "hello there"}]}))
    scenario = load_scenario(path)
    bundle = ScenarioBundle.pack(scenario)
    assert bundle.audio == () and bundle.nbytes == 0
    with bundle.unpacked() as same:
        assert same is scenario


def test_unreadable_recording_names_file_and_turn(tmp_path: Path) -> None:
    path = _scenario_with_recording(tmp_path)
    scenario = load_scenario(path)
    (tmp_path / "audio" / "ask.wav").unlink()
    with pytest.raises(ScenarioError, match=r"turns\[0\]\.audio: cannot read the recording"):
        ScenarioBundle.pack(scenario)
