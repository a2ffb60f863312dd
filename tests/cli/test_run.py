"""``livetalk run`` and ``livetalk demo`` as subprocesses against the local server: the JSONL
stream, inputs checked before connecting, signals, a closed stdout, exit statuses."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import wave
from pathlib import Path
from typing import Any

import pytest

from livetalk.cli import ExitStatus
from tests.conftest import DATA

pytestmark = pytest.mark.slow

KEY = "sk-test-cli"
DEMO = str(DATA / "demo.wav")
ENV = {**os.environ, "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}


async def livetalk(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``python -m livetalk ARGS``; return (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livetalk", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=ENV)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jsonl(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def assert_valid_wav(path: Path) -> float:
    """The header agrees with the data; returns the duration in seconds."""
    with wave.open(str(path)) as w:
        frames, rate, width = w.getnframes(), w.getframerate(), w.getsampwidth()
    assert path.stat().st_size == 44 + frames * width
    return frames / rate


async def test_run_jsonl_shows_words_replies_and_turns(make_server, tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    async with make_server(port=0, realtime_factor=3.0) as server:
        code, out, err = await livetalk(
            "run", DEMO, "--base-url", server.base_url, "--api-key", KEY, "--jsonl",
            "--speed", "3", "--events-log", str(log), "--save-reply", str(tmp_path / "r.wav"))
    assert code == 0, err
    lines = jsonl(out)
    assert lines[0]["type"] == "call.connected" and lines[0]["call_id"].startswith("rtc_")
    assert lines[0]["transport"] == "webrtc"
    assert lines[-1]["type"] == "call.closed" and lines[-1]["error"] is None
    assert lines[-1]["user_turns"] == 3 and lines[-1]["assistant_turns"] == 3
    turns = [x for x in lines if x["type"] == "turn"]
    assert [t["text"] for t in turns if t["role"] == "user"] == [
        "hello can you hear me", "what is the weather like today", "thank you goodbye"]
    assert all(t["status"] == "completed" for t in turns)
    deltas = [x for x in lines if x["type"] == "transcript.delta"]
    assert {d["role"] for d in deltas} == {"user", "assistant"}
    assert "Traceback" not in err
    events = jsonl(log.read_text())
    assert {e["dir"] for e in events} <= {"in", "out"}  # the session went in the offer
    assert events[0]["event"]["type"] == "session.created"
    assert all(isinstance(e["t_ms"], float | int) for e in events)
    assert assert_valid_wav(tmp_path / "r.wav") > 1.0
    assert KEY not in log.read_text()


async def test_run_human_output_prints_each_utterance_once(make_server) -> None:
    async with make_server(port=0, realtime_factor=3.0) as server:
        code, out, err = await livetalk("run", DEMO, "--base-url", server.base_url,
                                        "--api-key", KEY, "--speed", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("connected: call rtc_")
    assert lines.count("     user: what is the weather like today") == 1
    assert sum("what is the weather like today" in line for line in lines) == 2  # + the echo
    assert lines[-1].startswith("closed: 3 user turns and 3 assistant turns, ")


async def test_run_over_websocket_says_so(make_server) -> None:
    async with make_server(port=0, realtime_factor=3.0) as server:
        code, out, err = await livetalk("run", DEMO, "--base-url", server.base_url,
                                        "--api-key", KEY, "--speed", "3", "--transport",
                                        "websocket")
    assert code == 0, err
    assert out.splitlines()[0].startswith("connected: a WebSocket session in ")
    assert "None" not in out


async def test_run_batch_path(server) -> None:
    code, out, err = await livetalk("run", DEMO, "--base-url", server.base_url, "--api-key", KEY,
                                    "--jsonl", "--vad", "batch")
    assert code == 0, err
    lines = jsonl(out)
    assert [t["text"] for t in lines if t["type"] == "turn"] == [
        "hello can you hear me", "what is the weather like today", "thank you goodbye"]
    assert lines[-1]["type"] == "call.closed" and lines[-1]["user_turns"] == 3


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    renamed = tmp / "notes.wav"
    renamed.write_text("these are my notes, not audio\n" * 40)
    empty = tmp / "empty.wav"
    empty.write_bytes(b"")
    not_a_folder = tmp / "plain-file"
    not_a_folder.write_text("x")
    return [
        ([str(renamed)], "notes.wav"),
        ([str(empty)], "empty.wav"),
        (["/nonexistent/file.wav"], "no such file"),
        ([DEMO, "--save-reply", str(tmp / "missing-dir" / "r.wav")], "missing-dir"),
        ([DEMO, "--save-reply", str(tmp / "reply.xyz")], "reply.xyz"),
        ([DEMO, "--save-reply", str(not_a_folder / "r.wav")], "plain-file"),
        ([DEMO, "--events-log", str(tmp / "missing-dir" / "e.jsonl")], "missing-dir"),
    ]


async def test_bad_input_is_found_before_connecting(tmp_path: Path) -> None:
    # nothing listens at base_url: had the command tried to connect, it would exit 4
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    for args, needle in _bad_inputs(tmp_path):
        code, out, err = await livetalk("run", *args, "--base-url", base_url, "--api-key", KEY,
                                        "--jsonl")
        assert code == ExitStatus.USAGE, (args, err)
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
        closed = jsonl(out)[-1]
        assert closed["type"] == "call.closed" and closed["call_id"] is None
        assert closed["error"]["exit_status"] == ExitStatus.USAGE
    assert not (tmp_path / "reply.xyz").exists()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["run", DEMO, "--speed", "-1"], ExitStatus.USAGE, "--speed"),
        (["frobnicate"], ExitStatus.USAGE, "invalid choice"),
        (["run", DEMO], ExitStatus.AUTH, "--api-key"),
        (["mint"], ExitStatus.AUTH, "--api-key"),
    ],
)
async def test_bad_arguments_give_one_line_and_exit_status(args, code, needle) -> None:
    rc, out, err = await livetalk(*args)
    assert rc == code, err
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


async def test_failures_end_the_jsonl_stream_with_call_closed(make_server) -> None:
    async with make_server(port=0, api_key="sk-the-only-key") as server:
        rc, out, err = await livetalk("run", DEMO, "--base-url", server.base_url,
                                      "--api-key", "sk-wrong-key", "--jsonl")
    assert rc == ExitStatus.AUTH and "401" in err and "sk-wrong-key" not in err + out
    closed = jsonl(out)[-1]
    assert closed["type"] == "call.closed"
    assert closed["error"]["type"] == "AuthenticationError" and closed["error"]["exit_status"] == 3
    rc, out, err = await livetalk("run", DEMO, "--base-url", f"http://127.0.0.1:{free_port()}/v1",
                                  "--api-key", KEY, "--connect-timeout", "5", "--jsonl")
    assert rc == ExitStatus.CONNECT and "could not reach" in err and "Traceback" not in err
    assert jsonl(out)[-1]["error"]["exit_status"] == ExitStatus.CONNECT


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, ExitStatus.TERMINATED),
                                                (signal.SIGINT, ExitStatus.INTERRUPTED)])
async def test_a_signal_finalises_the_recording_and_keeps_the_turns(
    make_server, tmp_path: Path, signum: signal.Signals, status: ExitStatus
) -> None:
    reply = tmp_path / "reply.wav"
    async with make_server(port=0) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "livetalk", "run", DEMO, "--base-url", server.base_url,
            "--api-key", KEY, "--jsonl", "--save-reply", str(reply),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV)
        assert proc.stdout is not None and proc.stderr is not None
        try:
            seen = []
            while not any(x["type"] == "turn" and x["role"] == "assistant" for x in seen):
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                assert line, "the run ended before the first reply"
                seen.append(json.loads(line))
            proc.send_signal(signum)  # mid-call: two more questions are still to come
            rest, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == status, err.decode()
    closed = jsonl(rest.decode())[-1]
    assert closed["type"] == "call.closed"
    assert closed["user_turns"] >= 1 and closed["assistant_turns"] >= 1
    assert closed["error"] == {"type": "Interrupted", "message": f"interrupted by {signum.name}",
                               "exit_status": status}
    assert "Traceback" not in err.decode()
    assert assert_valid_wav(reply) > 0.5  # the header matches the audio written


async def test_a_closed_stdout_stops_the_run_quietly(make_server, tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    async with make_server(port=0) as server:
        script = (f'set -o pipefail; "{sys.executable}" -m livetalk run "{DEMO}" '
                  f'--base-url {server.base_url} --api-key {KEY} --jsonl --events-log "{log}" '
                  '| head -1')
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=ENV)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == ExitStatus.BROKEN_PIPE, err.decode()
    assert err.decode() == ""
    assert json.loads(out)["type"] == "call.connected"
    # it stopped at the first write after `head` left: long before the third question
    done = [e for e in jsonl(log.read_text())
            if e["event"]["type"] == "conversation.item.input_audio_transcription.completed"]
    assert len(done) < 3


async def test_demo_runs_offline(tmp_path: Path) -> None:
    code, out, err = await livetalk("demo", "--speed", "3", "--out", str(tmp_path / "d.wav"))
    assert code == 0, err
    lines = out.splitlines()
    # the demo hears with Whisper when it is installed: compare words, not case or punctuation
    heard = ["".join(re.findall(r"[a-z']+", line.lower())) for line in lines]
    assert "userwhatistheweatherliketoday" in heard
    assert "assistantyousaidthankyougoodbye" in heard
    assert lines[-1] == f"saved the assistant's spoken replies to {tmp_path / 'd.wav'}"
    assert assert_valid_wav(tmp_path / "d.wav") > 1.0
