"""Scenarios run over real loopback WebRTC against the local server (speed 4)."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from livetalk.scenarios import (
    TurnKind,
    load_scenario,
    run_scenario,
    scenario_from_dict,
    scenario_phrases,
)
from livetalk.scenarios.cli import EXIT_FAILED, add_script_parser, run_script
from livetalk.server.asr import normalize_phrase

pytestmark = pytest.mark.slow

KEY = "sk-test-scenarios"
SPEED = 4.0
BOOK = "please book a table for two"
OUTSIDE = "can we sit outside tonight"
THREE = "actually make it three"
PHRASES = [BOOK, OUTSIDE, THREE]

CONVERSATION = {
    "name": "booking",
    "session": {"instructions": "You are a booking assistant.", "turn_detection": "server_vad"},
    "turns": [
        {"say": BOOK, "expect": {"transcript_contains": "table", "reply_contains": "table"}},
        {"say": OUTSIDE, "expect": {"reply_contains": "banana"}},
        {"pause_ms": 300},  # sent while the reply plays: the next turn barges in
        {"say": THREE, "barge_in_after_ms": 600,
         "expect": {"transcript_contains": "three", "reply_status": "completed"}},
    ],
}


@pytest.fixture(scope="module")
def ears() -> Any:
    """A recogniser that knows the scenarios' phrases (make_server's default knows others)."""
    from livetalk.server.asr import PocketSphinxTranscriber

    return PocketSphinxTranscriber(phrases=PHRASES)


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_script_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["script", *argv])


async def test_conversation_passes_fails_and_barges_in(make_server, ears, validator) -> None:
    scenario = scenario_from_dict(CONVERSATION)
    async with make_server(port=0, transcriber=ears, realtime_factor=SPEED) as server:
        result = await run_scenario(scenario, base_url=server.base_url, api_key=KEY,
                                    speed=SPEED, event_log=validator)
    validator.assert_valid()
    assert result.error is None
    assert [t.index for t in result.turns] == [0, 1, 3]
    first, second, third = result.turns

    assert first.user_transcript == BOOK
    assert first.reply_text == f"You said: {BOOK}."
    assert first.reply_status == "completed"
    assert [e.passed for e in first.expectations] == [True, True]
    assert first.passed

    # its reply was cut off by the barge-in of the next turn; its expectation fails
    assert second.user_transcript == OUTSIDE
    assert second.reply_status == "cancelled"
    assert not second.passed
    assert second.failures == [f"turn 1 (say: {OUTSIDE}): reply_contains expected ['banana'], "
                               f"got {second.reply_text!r}"]

    assert third.user_transcript == THREE
    assert third.reply_status == "completed" and third.passed
    assert not result.passed
    assert result.call_id is not None and result.call_id.startswith("rtc_")
    assert result.model == "gpt-realtime"

    for turn in result.turns:
        assert turn.user_item_id is not None and turn.response_id is not None
        timings = (turn.transcript_ms, turn.first_audio_ms, turn.reply_done_ms)
        assert all(t is not None and t > 0 for t in timings), turn
        assert turn.first_audio_ms is not None and turn.reply_done_ms is not None
        assert turn.first_audio_ms < turn.reply_done_ms
        assert turn.first_audio_heard_ms is not None
        assert turn.first_audio_heard_ms >= turn.first_audio_ms
        assert turn.usage is not None and turn.usage.output_audio_tokens > 0
        assert turn.cost_usd is not None and turn.cost_usd > 0
    assert result.usage.input_audio_tokens == sum(t.usage.input_audio_tokens
                                                  for t in result.turns if t.usage)
    assert result.cost_usd == pytest.approx(sum(t.cost_usd or 0 for t in result.turns))
    sent = validator.types("out")
    assert "input_audio_buffer.commit" not in sent  # server VAD closed every turn
    assert validator.types("in").count("output_audio_buffer.cleared") == 1


async def test_push_to_talk_and_recorded_audio(make_server, ears, synthesizer,
                                               tmp_path) -> None:
    recording = tmp_path / "book.wav"
    pcm, rate = synthesizer.synthesize(BOOK)
    import wave

    with wave.open(str(recording), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())
    path = _write(tmp_path / "ptt.json", {
        "session": {"turn_detection": "none"},
        "turns": [{"audio": "book.wav", "text": BOOK,
                   "expect": {"transcript_contains": BOOK, "reply_status": "completed"}},
                  {"say": THREE, "expect": {"transcript_contains": "three"}}],
    })
    scenario = load_scenario(path)
    assert scenario.manual_turns and scenario.turns[0].kind is TurnKind.AUDIO
    assert scenario_phrases([path]) == [BOOK, THREE]
    async with make_server(port=0, transcriber=ears, realtime_factor=SPEED) as server:
        result = await run_scenario(scenario, base_url=server.base_url, api_key=KEY,
                                    speed=SPEED, synthesizer=synthesizer)
    assert result.passed, result.failures
    assert [t.user_transcript for t in result.turns] == [BOOK, THREE]
    assert result.turns[0].label == "audio: book.wav"


async def test_cli_writes_report_and_plot_and_exit_status(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    good = _write(tmp_path / "good.json", {
        "turns": [{"say": BOOK, "expect": {"reply_contains": "table for two"}}]})
    bad = _write(tmp_path / "bad.json", {
        "turns": [{"say": OUTSIDE, "expect": {"transcript_contains": "indoors"}}]})
    report_path, plot_path = tmp_path / "report.json", tmp_path / "latency.png"
    args = _args(str(good), str(bad), "--local", "--speed", str(SPEED), "--concurrency", "2",
                 "--report", str(report_path), "--plot", str(plot_path))
    assert await run_script(args) == EXIT_FAILED

    out = capsys.readouterr()
    assert "PASS good" in out.out and "FAIL bad" in out.out
    assert "1/2 scenarios passed" in out.out
    assert "2/2" in out.err  # the progress line
    report = json.loads(report_path.read_text())
    assert report["passed"] is False
    assert (report["scenarios_total"], report["scenarios_passed"]) == (2, 1)
    assert (report["turns_total"], report["turns_passed"]) == (2, 1)
    assert report["speed"] == SPEED
    assert report["options"] == {"concurrency": 2, "processes": 1, "local": True}
    assert report["latency_ms"]["reply_done"]["count"] == 2
    assert report["usage"]["output_tokens"] > 0 and report["cost_usd"] > 0
    assert "gpt-realtime" in report["prices"]
    names = [s["name"] for s in report["scenarios"]]
    assert names == ["good", "bad"]
    bad_turn = report["scenarios"][1]["turns"][0]
    # --local: Whisper ears when the asr extra is installed (with its casing and punctuation)
    heard = bad_turn["user_transcript"]
    assert normalize_phrase(heard) == OUTSIDE
    assert bad_turn["expectations"] == [{"key": "transcript_contains", "expected": ["indoors"],
                                         "actual": heard, "passed": False}]
    assert set(bad_turn["timings_ms"]) == {"transcript", "first_audio", "first_audio_heard",
                                           "reply_done"}
    assert "sk-livetalk-local" not in report_path.read_text()
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_unreachable_server_is_reported_not_raised(tmp_path, capsys) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = _write(tmp_path / "s.json", {"turns": [{"say": BOOK}]})
    base_url = f"http://127.0.0.1:{port}/v1"
    result = await run_scenario(load_scenario(path), base_url=base_url, api_key=KEY,
                                connect_timeout=5)
    assert not result.passed and result.turns == ()
    assert result.error_kind is not None and result.error is not None
    assert KEY not in result.error
    args = _args(str(path), "--base-url", base_url, "--api-key", KEY, "--no-progress",
                 "--connect-timeout", "5")
    assert await run_script(args) == 4  # livetalk.cli.EXIT_CONNECT
    assert "scenario error" in capsys.readouterr().out


@pytest.mark.slow
async def test_cli_spreads_scenarios_over_processes(tmp_path, capsys) -> None:
    paths = [_write(tmp_path / f"s{i}.json",
                    {"turns": [{"say": text, "expect": {"transcript_contains": text}}]})
             for i, text in enumerate(PHRASES[:2])]
    report_path = tmp_path / "report.json"
    args = _args(*map(str, paths), "--local", "--speed", str(SPEED), "--processes", "2",
                 "--no-progress", "--report", str(report_path))
    assert await run_script(args) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert "2/2 scenarios passed" in out.out
    report = json.loads(report_path.read_text())
    assert [s["name"] for s in report["scenarios"]] == ["s0", "s1"]
    assert len({s["call_id"] for s in report["scenarios"]}) == 2
    assert report["options"]["processes"] == 2
    assert [normalize_phrase(s["turns"][0]["user_transcript"])
            for s in report["scenarios"]] == PHRASES[:2]
