"""Expectation checks, the JSON report, the progress line and the plot."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from livetalk.protocol.events import Usage
from livetalk.scenarios import (
    ScenarioResult,
    TurnResult,
    build_report,
    check_expectations,
    percentile,
    plot_latencies,
    scenario_from_dict,
    write_report,
)
from livetalk.scenarios.report import Progress


def _turn(index: int = 0, **kw: object) -> TurnResult:
    base: dict[str, object] = dict(
        label="say: hi", user_transcript="please book a table", reply_text="You said: table.",
        reply_status="completed", transcript_ms=100.0, first_audio_ms=300.0,
        first_audio_heard_ms=350.0, reply_done_ms=900.0,
        usage=Usage(input_tokens=10, output_tokens=20, total_tokens=30), cost_usd=0.5)
    base.update(kw)
    return TurnResult(index, **base)  # type: ignore[arg-type]


def _result(name: str, *turns: TurnResult, cost: float | None = 1.0) -> ScenarioResult:
    usage = Usage(input_tokens=10 * len(turns), output_tokens=20 * len(turns),
                  total_tokens=30 * len(turns))
    return ScenarioResult(name=name, path=f"{name}.yaml", turns=turns, call_id="rtc_x",
                          model="gpt-realtime", connect_ms=50.0, duration_s=2.0, usage=usage,
                          cost_usd=cost, speed=4.0)


def test_expectations_hold_and_fail() -> None:
    scenario = scenario_from_dict({"turns": [{"say": "hi", "expect": {
        "transcript_contains": ["Book", "TABLE!"], "transcript_not_contains": "chair",
        "reply_contains": "banana", "reply_not_contains": "table",
        "reply_status": "cancelled", "max_first_audio_ms": 500, "max_reply_done_ms": 800,
    }}]})
    results = check_expectations(_turn(), scenario.turns[0])
    assert [(r.key, r.passed) for r in results] == [
        ("transcript_contains", True), ("transcript_not_contains", True),
        ("reply_contains", False), ("reply_not_contains", False),
        ("reply_status", False), ("max_first_audio_ms", True), ("max_reply_done_ms", False),
    ]
    assert results[-1].actual == 900.0
    missing = check_expectations(_turn(user_transcript=None, first_audio_ms=None),
                                 scenario.turns[0])
    assert not missing[0].passed and not missing[1].passed  # no transcript: both fail
    assert not missing[5].passed


def test_turn_and_scenario_pass_only_without_failures() -> None:
    ok = _turn()
    assert ok.passed and ok.failures == []
    timed_out = _turn(1, error="no reply was created within 30 s")
    assert not timed_out.passed
    assert timed_out.failures == ["turn 1 (say: hi): no reply was created within 30 s"]
    assert _result("a", ok).passed
    assert not _result("b", ok, timed_out).passed
    assert not ScenarioResult("c", None, (), error="refused", error_kind="ConnectError").passed


def test_percentile() -> None:
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 0.0], 100) == 10.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_report_content(tmp_path: Path) -> None:
    results = [_result("a", _turn(0), _turn(1, first_audio_ms=None, first_audio_heard_ms=None)),
               _result("b", _turn(0, reply_status="cancelled", transcript_ms=300.0))]
    report = build_report(results, base_url="http://127.0.0.1:1/v1", extra={"note": 1})
    assert report["passed"] is True and report["note"] == 1
    assert (report["scenarios_total"], report["scenarios_passed"]) == (2, 2)
    assert (report["turns_total"], report["turns_passed"]) == (3, 3)
    assert report["latency_ms"]["transcript"] == {"count": 3, "mean": 166.7, "p50": 100.0,
                                                  "p90": 260.0, "p95": 280.0, "max": 300.0}
    assert report["latency_ms"]["first_audio"]["count"] == 2
    assert report["usage"]["total_tokens"] == 90
    assert report["cost_usd"] == 2.0
    assert report["speed"] == 4.0
    assert report["prices"]["gpt-realtime"]["audio_output"] == 64.0
    assert [s["name"] for s in report["scenarios"]] == ["a", "b"]
    turn = report["scenarios"][0]["turns"][1]
    assert turn["timings_ms"] == {"transcript": 100.0, "first_audio": None,
                                  "first_audio_heard": None, "reply_done": 900.0}
    path = write_report(report, tmp_path / "r.json")
    assert json.loads(path.read_text()) == report
    unpriced = build_report([_result("a", _turn(), cost=None)])
    assert unpriced["cost_usd"] is None
    assert build_report([])["passed"] is False


def test_progress_lines_without_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(2, stream=stream, width=4)
    progress.update(_result("a", _turn()))
    progress.update(_result("b", _turn(error="lost")))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[==  ] 1 of 2 done: 1 passed, 0 failed, ")
    assert lines[0].endswith("| a ok")
    assert lines[1].startswith("[====] 2 of 2 done: 1 passed, 1 failed, ")
    assert lines[1].endswith("| b FAILED")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = [_result("a", _turn(0), _turn(1, reply_done_ms=1500.0))]
    path = plot_latencies(results, tmp_path / "latency.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no turn has a measured latency"):
        plot_latencies([_result("empty")], tmp_path / "none.png")
