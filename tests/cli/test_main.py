"""The livetalk CLI end to end: `run --jsonl`, `serve`, exit statuses, no tracebacks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from livetalk import cli
from tests.conftest import DATA

pytestmark = pytest.mark.slow

KEY = "sk-test-cli"
DEMO = str(DATA / "demo.wav")


async def _livetalk(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    env = {**os.environ, "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livetalk", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_run_jsonl_shows_words_replies_and_turns(make_server, tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    async with make_server(port=0, realtime_factor=3.0) as server:
        code, out, err = await _livetalk(
            "run", DEMO, "--base-url", server.base_url, "--api-key", KEY, "--jsonl",
            "--speed", "3", "--events-log", str(log), "--save-reply", str(tmp_path / "r.wav"))
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["type"] == "call.connected" and lines[0]["call_id"].startswith("rtc_")
    assert lines[-1]["type"] == "call.closed"
    assert lines[-1]["user_turns"] == 3 and lines[-1]["assistant_turns"] == 3
    turns = [x for x in lines if x["type"] == "turn"]
    assert [t["text"] for t in turns if t["role"] == "user"] == [
        "hello can you hear me", "what is the weather like today", "thank you goodbye"]
    assert all(t["status"] in ("completed", "cancelled") for t in turns)  # cut if it overlaps
    deltas = [x for x in lines if x["type"] == "transcript.delta"]
    assert {d["role"] for d in deltas} == {"user", "assistant"}
    assert "Traceback" not in err
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["dir"] for e in events} <= {"in", "out"}  # the session went in the offer
    assert events[0]["event"]["type"] == "session.created"
    assert all(isinstance(e["t_ms"], float | int) for e in events)
    assert (tmp_path / "r.wav").stat().st_size > 44
    assert KEY not in log.read_text()


async def test_run_batch_path(server) -> None:
    code, out, err = await _livetalk("run", DEMO, "--base-url", server.base_url, "--api-key", KEY,
                                     "--jsonl", "--vad", "batch")
    assert code == 0, err
    turns = [json.loads(x) for x in out.splitlines() if '"turn"' in x]
    assert [t["text"] for t in turns] == [
        "hello can you hear me", "what is the weather like today", "thank you goodbye"]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["run", "/nonexistent/file.wav", "--api-key", KEY], cli.EXIT_USAGE, "file.wav"),
        (["run", DEMO, "--speed", "-1"], cli.EXIT_USAGE, "--speed"),
        (["frobnicate"], cli.EXIT_USAGE, "invalid choice"),
        (["run", DEMO], cli.EXIT_AUTH, "OPENAI_API_KEY"),
    ],
)
async def test_bad_input_gives_one_line_and_exit_status(args, code, needle) -> None:
    rc, out, err = await _livetalk(*args)
    assert rc == code, err
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


async def test_refused_key_and_unreachable_server(make_server) -> None:
    async with make_server(port=0, api_key="sk-the-only-key") as server:
        rc, _, err = await _livetalk("run", DEMO, "--base-url", server.base_url,
                                     "--api-key", "sk-wrong-key")
    assert rc == cli.EXIT_AUTH and "401" in err and "sk-wrong-key" not in err
    rc, _, err = await _livetalk("run", DEMO, "--base-url", f"http://127.0.0.1:{_free_port()}/v1",
                                 "--api-key", KEY, "--connect-timeout", "5")
    assert rc == cli.EXIT_CONNECT and "could not reach" in err and "Traceback" not in err


async def test_serve_prints_its_url_and_stops_on_sigterm() -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livetalk", "serve", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == f"listening on http://127.0.0.1:{port}/v1"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
