"""``livetalk script``: inputs checked before any call, the summary, the report, the plot, the
exit statuses; runs against the in-process local server (``--local``)."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from livetalk.cli import ExitStatus, build_parser, main, script as script_command
from livetalk.cli._runtime import Runtime
from livetalk.scenarios.cluster import LOCAL_API_KEY
from livetalk.server.asr import normalize_phrase

KEY = "sk-test-scenarios"
SPEED = 4.0
BOOK = "please book a table for two"
OUTSIDE = "can we sit outside tonight"


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["script", *argv])


async def _run(*argv: str) -> ExitStatus:
    return await script_command.main(_args(*argv), Runtime())


def test_parser_defaults() -> None:
    args = _args("a.yaml", "b.json")
    assert args.scenarios == ["a.yaml", "b.json"]
    assert (args.concurrency, args.processes, args.speed) == (1, 1, 1.0)
    assert (args.report, args.plot, args.prices, args.local) == (None, None, None, False)
    with pytest.raises(SystemExit):
        _args("a.yaml", "--concurrency", "0")


def test_bad_inputs_exit_2_before_any_call(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "bad.json", {"turns": [{"say": "hi", "expect": {"nope": 1}}]})
    assert main(["script", str(bad), "--api-key", KEY]) == 2
    assert "bad.json: turns[0].expect.nope: unknown expectation" in capsys.readouterr().err
    good = _write(tmp_path / "good.json", {"turns": [{"say": "hi"}]})
    prices = _write(tmp_path / "prices.json", {"gpt-realtime": {"audio_output": -1}})
    assert main(["script", str(good), "--prices", str(prices), "--api-key", KEY]) == 2
    assert "audio_output: must be a number" in capsys.readouterr().err
    assert main(["script", str(good), "--report", str(tmp_path / "no" / "r.json"),
                 "--api-key", KEY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--report" in err and "does not exist" in err


def test_a_missing_key_is_found_before_any_call(tmp_path: Path, monkeypatch: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    good = _write(tmp_path / "good.json", {"turns": [{"say": "hi"}]})
    assert main(["script", str(good)]) == ExitStatus.AUTH
    assert "--api-key" in capsys.readouterr().err


@pytest.mark.slow
async def test_writes_report_and_plot_and_exit_status(tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("matplotlib")
    good = _write(tmp_path / "good.json", {
        "turns": [{"say": BOOK, "expect": {"reply_contains": "table for two"}}]})
    bad = _write(tmp_path / "bad.json", {
        "turns": [{"say": OUTSIDE, "expect": {"transcript_contains": "indoors"}}]})
    report_path, plot_path = tmp_path / "report.json", tmp_path / "latency.png"
    assert await _run(str(good), str(bad), "--local", "--speed", str(SPEED), "--concurrency",
                      "2", "--report", str(report_path), "--plot",
                      str(plot_path)) == ExitStatus.FAILED

    out = capsys.readouterr()
    assert "PASS good" in out.out and "FAIL bad" in out.out
    assert "1/2 scenarios passed" in out.out
    assert "2 of 2 done: 1 passed, 1 failed" in out.err  # the progress line
    report = json.loads(report_path.read_text())
    assert report["passed"] is False
    assert (report["scenarios_total"], report["scenarios_passed"]) == (2, 1)
    assert (report["turns_total"], report["turns_passed"]) == (2, 1)
    assert report["speed"] == SPEED
    assert report["options"] == {"concurrency": 2, "processes": 1, "local": True, "ray": None,
                                 "max_calls": None, "calls_per_minute": None}
    assert report["latency_ms"]["reply_done"]["count"] == 2
    assert report["usage"]["output_tokens"] > 0 and report["cost_usd"] > 0
    assert "gpt-realtime" in report["prices"]
    names = [s["name"] for s in report["scenarios"]]
    assert names == ["good", "bad"]
    bad_turn = report["scenarios"][1]["turns"][0]
    assert bad_turn["index"] == 0  # the position in the scenario's turns, as in turns[0]
    # --local: Whisper ears when the asr extra is installed (with its casing and punctuation)
    heard = bad_turn["user_transcript"]
    assert normalize_phrase(heard) == OUTSIDE
    assert bad_turn["expectations"] == [{"key": "transcript_contains", "expected": ["indoors"],
                                         "actual": heard, "passed": False}]
    assert set(bad_turn["timings_ms"]) == {"transcript", "first_audio", "first_audio_heard",
                                           "reply_done"}
    assert LOCAL_API_KEY not in report_path.read_text()
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
async def test_an_unreachable_server_gives_the_connect_status(tmp_path: Path,
                                                              capsys: Any) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = _write(tmp_path / "s.json", {"turns": [{"say": BOOK}]})
    assert await _run(str(path), "--base-url", f"http://127.0.0.1:{port}/v1", "--api-key", KEY,
                      "--no-progress", "--connect-timeout", "5") == ExitStatus.CONNECT
    assert "scenario error" in capsys.readouterr().out


@pytest.mark.slow
async def test_spreads_scenarios_over_processes(tmp_path: Path, capsys: Any) -> None:
    phrases = [BOOK, OUTSIDE]
    paths = [_write(tmp_path / f"s{i}.json",
                    {"turns": [{"say": text, "expect": {"transcript_contains": text}}]})
             for i, text in enumerate(phrases)]
    report_path = tmp_path / "report.json"
    assert await _run(*map(str, paths), "--local", "--speed", str(SPEED), "--processes", "2",
                      "--no-progress", "--report", str(report_path)) == ExitStatus.OK
    out = capsys.readouterr()
    assert out.err == ""
    assert "2/2 scenarios passed" in out.out
    report = json.loads(report_path.read_text())
    assert [s["name"] for s in report["scenarios"]] == ["s0", "s1"]
    assert len({s["call_id"] for s in report["scenarios"]}) == 2
    assert report["options"]["processes"] == 2
    assert [normalize_phrase(s["turns"][0]["user_transcript"])
            for s in report["scenarios"]] == phrases
