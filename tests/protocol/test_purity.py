"""The protocol core imports only the standard library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"asyncio", "aiortc", "av", "numpy", "httpx", "sounddevice", "aiohttp"}

_PROBE = """
import json, sys
import livetalk.protocol
from livetalk.protocol import conversation, events, session, wire
print(json.dumps(sorted(sys.modules)))
"""


def _imported_modules() -> set[str]:
    # -S: no site-packages at all, so a third-party import would fail outright.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-S", "-c", _PROBE], capture_output=True, text=True, env=env,
        check=False, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_protocol_imports_only_the_standard_library() -> None:
    modules = _imported_modules()
    top_level = {name.partition(".")[0] for name in modules}
    assert not top_level & FORBIDDEN
    foreign = top_level - set(sys.stdlib_module_names) - {"livetalk", "__main__"}
    assert foreign == set()
    assert "livetalk.protocol.conversation" in modules
