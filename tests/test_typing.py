"""Type checkers see livetalk where it is installed, and its sources and sinks are precise.

mypy runs in an empty folder (so only the installed package can be found, through the
editable install ``make`` creates, ``py.typed`` included) on two small user scripts: one that
records to a path and streams a path must pass ``--strict``; one that passes a number where a
sink belongs must fail, which shows the types are not ``Any``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GOOD = '''
import asyncio

import livetalk
from livetalk.audio.sinks import BufferSink, Sink


async def main() -> None:
    async with livetalk.connect() as call:
        recording: Sink = call.record_to("reply.wav")
        call.record_to(BufferSink())
        await call.stream("question.wav")
        await call.stream(livetalk.FileSource("question.wav"))
        print(recording.rate)


asyncio.run(main())
'''

BAD = '''
import livetalk


async def main() -> None:
    async with livetalk.connect() as call:
        call.record_to(42)
'''


def _mypy(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / name
    script.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir",
         str(tmp_path / ".mypy_cache"), script.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_mypy_sees_the_installed_package_and_precise_sinks(tmp_path: Path) -> None:
    good = _mypy(tmp_path, "good.py", GOOD)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = _mypy(tmp_path, "bad.py", BAD)
    assert bad.returncode == 1, bad.stdout
    assert 'Argument 1 to "record_to" of "Call" has incompatible type "int"' in bad.stdout
    assert "import-not-found" not in good.stdout + bad.stdout
