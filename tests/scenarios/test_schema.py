"""Scenario files: loading, the session mapping, and errors naming file, turn and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from livetalk.errors import ConfigError
from livetalk.protocol.session import DEFAULT_TRANSCRIPTION_MODEL, UNSET, SemanticVAD, ServerVAD
from livetalk.scenarios import (
    ScenarioError,
    TurnKind,
    load_scenario,
    load_scenarios,
    normalize_text,
    scenario_from_dict,
    scenario_phrases,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"

BOOKING = """\
session: {instructions: "You are a booking assistant.", turn_detection: server_vad}
turns:
  - audio: recordings/ask_weather.wav
    text: what is the weather like today
  - say: "please book a table for two"
    expect: {transcript_contains: "table", reply_contains: "table"}
  - pause_ms: 1500
  - say: "actually make it three"
    barge_in_after_ms: 800
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "ask_weather.wav").write_bytes(b"RIFF")
    return tmp_path


def test_the_issue_example_loads(folder: Path) -> None:
    path = folder / "booking.yaml"
    path.write_text(BOOKING)
    scenario = load_scenario(path)
    assert scenario.name == "booking" and scenario.path == path
    assert [t.kind for t in scenario.turns] == [TurnKind.AUDIO, TurnKind.SAY, TurnKind.PAUSE,
                                                TurnKind.SAY]
    audio, book, pause, three = scenario.turns
    assert audio.audio == folder / "recordings" / "ask_weather.wav"
    assert [(e.key, e.value) for e in book.expect] == [("transcript_contains", ["table"]),
                                                      ("reply_contains", ["table"])]
    assert pause.pause_ms == 1500 and not pause.spoken
    assert three.barge_in_after_ms == 800 and book.barge_in_after_ms is None
    assert scenario.phrases == ["what is the weather like today", "please book a table for two",
                                "actually make it three"]
    session = scenario.session
    assert session.instructions == "You are a booking assistant."
    assert session.turn_detection == ServerVAD()
    assert session.transcription is not UNSET and session.transcription is not None
    assert session.transcription.model == DEFAULT_TRANSCRIPTION_MODEL  # on by default
    assert not scenario.manual_turns


@pytest.mark.parametrize(("session", "turn_detection", "transcription"), [
    ({"turn_detection": "semantic_vad"}, SemanticVAD(), DEFAULT_TRANSCRIPTION_MODEL),
    ({"turn_detection": {"type": "server_vad", "silence_duration_ms": 700}},
     ServerVAD(silence_duration_ms=700), DEFAULT_TRANSCRIPTION_MODEL),
    ({"turn_detection": "none", "transcription": False}, None, None),
    ({"transcription": "whisper-1"}, ServerVAD(), "whisper-1"),
    ({"transcription": {"language": "en"}}, ServerVAD(), DEFAULT_TRANSCRIPTION_MODEL),
])
def test_session_mapping(session: dict[str, Any], turn_detection: Any,
                         transcription: str | None) -> None:
    scenario = scenario_from_dict({"session": session, "turns": [{"say": "hi"}]})
    assert scenario.session.turn_detection == turn_detection
    assert scenario.manual_turns == (turn_detection is None)
    got = scenario.session.transcription
    assert (got.model if got else None) == transcription


def test_json_file_and_folders(folder: Path) -> None:
    (folder / "b.json").write_text(json.dumps({"name": "second", "turns": [{"say": "two"}]}))
    (folder / "a.yml").write_text("turns: [{say: one}]\n")
    (folder / "notes.txt").write_text("not a scenario")
    scenarios = load_scenarios([folder])
    assert [s.name for s in scenarios] == ["a", "second"]
    assert scenario_phrases([*scenarios, folder / "a.yml"]) == ["one", "two"]
    assert scenario_phrases([folder]) == ["one", "two"]  # a folder, as for load_scenarios


def test_the_shipped_examples_are_valid_on_a_fresh_clone() -> None:
    scenarios = load_scenarios([EXAMPLES])  # their recordings are in the repository
    assert [s.name for s in scenarios] == ["booking", "push-to-talk", "weather-recorded"]
    recorded = [t.audio for s in scenarios for t in s.turns if t.audio is not None]
    assert recorded and all(path.is_file() for path in recorded)


@pytest.mark.parametrize(("data", "turn", "field", "words"), [
    ({"turns": []}, None, "turns", "non-empty list"),
    ({"turns": [{"pause_ms": 10}]}, None, "turns", "at least one spoken turn"),
    ({"turn": [{"say": "hi"}]}, None, "turn", "unknown field"),
    ({"turns": [{"say": "hi"}], "reply_timeout_s": 0}, None, "reply_timeout_s", "> 0"),
    ({"turns": [{"say": "hi"}], "session": {"voice": 5}}, None, "session", "voice"),
    ({"turns": [{"say": "hi"}], "session": {"turn_detection": "push"}}, None,
     "session.turn_detection", "server_vad, semantic_vad, none"),
    ({"turns": [{"say": "hi"}], "session": {"temperature": 1}}, None, "session.temperature",
     "unknown field"),
    ({"turns": [{"say": "hi"}, {"say": "a", "pause_ms": 5}]}, 1, None, "exactly one"),
    ({"turns": [{"say": "hi"}, {}]}, 1, None, "found none"),
    ({"turns": [{"say": "  "}]}, 0, "say", "non-empty text"),
    ({"turns": [{"say": "hi", "expect": {"reply_has": "x"}}]}, 0, "expect.reply_has",
     "unknown expectation"),
    ({"turns": [{"say": "hi", "expect": {"reply_contains": []}}]}, 0, "expect.reply_contains",
     "non-empty string"),
    ({"turns": [{"say": "hi", "expect": {"reply_status": "done"}}]}, 0, "expect.reply_status",
     "completed, cancelled"),
    ({"turns": [{"say": "hi", "expect": {"max_first_audio_ms": -1}}]}, 0,
     "expect.max_first_audio_ms", "> 0"),
    ({"turns": [{"say": "hi", "barge_in_after_ms": 100}]}, 0, "barge_in_after_ms",
     "spoken turn"),
    ({"turns": [{"pause_ms": 5}, {"say": "b", "barge_in_after_ms": 1}]}, 1,
     "barge_in_after_ms", "earlier spoken turn"),
    ({"turns": [{"say": "hi"}, {"pause_ms": -5}]}, 1, "pause_ms", ">= 0"),
    ({"turns": [{"say": "hi"}, {"pause_ms": 5, "expect": {}}]}, 1, "expect", "spoken turns"),
    ({"turns": [{"say": "hi", "text": "hi"}]}, 0, "text", "only audio turns"),
    ({"turns": [{"say": "hi"}, {"audio": "missing.wav"}]}, 1, "audio", "no such audio file"),
    ({"turns": [{"say": "hi", "wait": 1}]}, 0, "wait", "unknown field"),
])
def test_errors_name_file_turn_and_field(tmp_path: Path, data: dict[str, Any],
                                         turn: int | None, field: str | None,
                                         words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert isinstance(err, ConfigError)
    assert (err.path, err.turn, err.field) == (path, turn, field)
    message = str(err)
    assert message.startswith(f"{path}: ")
    if turn is not None:
        assert f"turns[{turn}]" in message
    if field is not None:
        assert field in message
    assert words in message


def test_syntax_errors_give_the_line(tmp_path: Path) -> None:
    yaml_file = tmp_path / "bad.yaml"
    yaml_file.write_text("turns:\n  - say: hi\n   - say: [oops\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: invalid YAML at line 3"):
        load_scenario(yaml_file)
    json_file = tmp_path / "bad.json"
    json_file.write_text('{"turns": [}')
    with pytest.raises(ScenarioError, match=r"bad\.json: invalid JSON at line 1, column 12"):
        load_scenario(json_file)
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nothing.yaml")
    with pytest.raises(ScenarioError, match="a scenario must be a mapping"):
        scenario_from_dict(["say: hi"])


def test_normalize_text() -> None:
    assert normalize_text("You said: Table, for TWO!") == "you said table for two"
    assert normalize_text("  it's  ok ") == "it's ok"
