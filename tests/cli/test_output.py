"""What the commands print: error lines in the command line's words, JSONL, readable text."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from livetalk import errors
from livetalk.cli._output import CallSummary, HumanPrinter, JsonlPrinter, Output, error_line
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import ExitStatus
from livetalk.transport.signaling import resolve_api_key


def test_library_parameters_read_as_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(errors.MissingAPIKeyError) as info:
        resolve_api_key(None)
    assert "api_key=" in str(info.value)  # the library names its parameter
    line = error_line(info.value)
    assert line.startswith("livetalk: error: no API key: pass --api-key,")
    assert "api_key=" not in line
    device = errors.AudioDeviceError(
        "no usable audio input device (the default: gone): connect a microphone or pass "
        "another input_device= (list_devices() shows them)")
    assert error_line(device).endswith(
        "pass another --input-device ('livetalk devices' shows them)")


def test_error_line_is_one_line() -> None:
    assert error_line(errors.ConfigError("two\nlines")) == "livetalk: error: two lines"
    assert error_line(errors.ConfigError()) == "livetalk: error: ConfigError"


def _printed(printer_type: Any, **kw: Any) -> str:
    stream = io.StringIO()
    printer = printer_type(Output(None, stream), **kw)
    printer.connected("rtc_1", 61.2, "webrtc")
    for delta in ("hello ", "there"):
        printer.delta("user", "item_1", delta)
    printer.turn("user", "item_1", "hello there", "completed")
    printer.delta("assistant", "item_2", "You said")
    printer.turn("assistant", "item_2", "You said", "cancelled")
    printer.closed(CallSummary(call_id="rtc_1", user_turns=1, assistant_turns=1,
                               connect_ms=61.2, usage={"total_tokens": 1}))
    return stream.getvalue()


def test_jsonl_lines_end_with_call_closed() -> None:
    lines = [json.loads(line) for line in _printed(JsonlPrinter).splitlines()]
    assert [x["type"] for x in lines] == [
        "call.connected", "transcript.delta", "transcript.delta", "turn", "transcript.delta",
        "turn", "call.closed"]
    assert lines[0] == {"type": "call.connected", "call_id": "rtc_1", "connect_ms": 61.2,
                        "transport": "webrtc"}
    assert lines[-1]["error"] is None and lines[-1]["usage"] == {"total_tokens": 1}


def test_human_output_shows_each_utterance_once() -> None:
    assert _printed(HumanPrinter, live=False).splitlines() == [
        "connected: call rtc_1 in 61 ms",
        "     user: hello there",
        "assistant: You said [cancelled]",
        "closed: 1 user turn and 1 assistant turn, 1 token",
    ]


def test_human_output_on_a_terminal_redraws_deltas_in_place() -> None:
    text = _printed(HumanPrinter, live=True)
    assert "\r\x1b[K     user> hello there" in text
    assert text.count("     user: hello there\n") == 1


def test_a_websocket_session_without_a_call_id() -> None:
    stream = io.StringIO()
    HumanPrinter(Output(None, stream), live=False).connected(None, 12.0, "websocket")
    assert stream.getvalue() == "connected: a WebSocket session in 12 ms\n"


def test_closing_lines_after_an_error_and_an_interrupt() -> None:
    failed = CallSummary(user_turns=2, error=errors.ConnectError("ICE failed"))
    assert failed.to_dict()["error"] == {"type": "ConnectError", "message": "ICE failed",
                                         "exit_status": 4}
    stopped = CallSummary(stopped="interrupted by SIGTERM",
                          stopped_status=ExitStatus.TERMINATED)
    assert stopped.to_dict()["error"] == {"type": "Interrupted",
                                          "message": "interrupted by SIGTERM",
                                          "exit_status": 143}
    stream = io.StringIO()
    HumanPrinter(Output(None, stream), live=False).closed(failed)
    assert stream.getvalue() == (
        "closed after an error: 2 user turns and 0 assistant turns, 0 tokens\n")


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_stops_the_command_quietly() -> None:
    async def command(runtime: Runtime) -> ExitStatus:
        out = Output(runtime, _ClosedPipe())
        out.write("first line\n")
        assert out.broken
        await asyncio.sleep(30)  # cancelled by the closed pipe
        return ExitStatus.OK

    from livetalk.cli._runtime import run

    assert run(command) is ExitStatus.BROKEN_PIPE
