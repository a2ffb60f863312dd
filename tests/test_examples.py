"""The examples run as documented (offline: they start the local server themselves)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from livetalk.server.asr import normalize_phrase

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


async def _run(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, script, *args, cwd=EXAMPLES, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def test_run_file_example(tmp_path: Path) -> None:
    out = await _run("run_file.py", "--save-reply", str(tmp_path / "reply.wav"))
    heard = normalize_phrase(out)  # Whisper's ears (asr extra) add casing and punctuation
    assert "user what is the weather like today" in heard
    assert "assistant you said thank you goodbye" in heard
    assert (tmp_path / "reply.wav").stat().st_size > 10_000


async def test_route_turns_example_speaks_the_agents_answers() -> None:
    out = await _run("route_turns.py")
    lines = out.splitlines()
    assistant = [line for line in lines if line.startswith("assistant: ")]
    assert "assistant: It is sunny in the local server's world.  [completed]" in assistant
    assert "assistant: Goodbye, and thanks for calling.  [completed]" in assistant
    users = [line for line in lines if line.startswith("user: ")]
    assert len(users) == 3 and len(assistant) == 3  # every question answered, none lost


async def test_tools_example() -> None:
    out = await _run("tools.py")
    assert '"forecast": "sunny"' in out


@pytest.mark.parametrize("script", ["run_file.py", "route_turns.py", "tools.py", "ray_batch.py"])
def test_examples_document_how_to_run_them(script: str) -> None:
    text = (EXAMPLES / script).read_text()
    assert f"python examples/{script}" in text
