"""Runs the code blocks of one documentation page, in order: ``python -m tests.docs_driver``.

Reads a JSON list of blocks on stdin (``tests/test_docs.py`` extracts them; the conventions
are in ``docs/contributing.md``) and runs them in the current folder:

- Python blocks share one namespace, like cells of a notebook. A block may use ``await`` at
  top level; all such blocks run on one event loop, so objects made by one (a call) work in
  the next. A block may also call ``asyncio.run()`` itself.
- Shell blocks run with ``bash -euo pipefail``. A ``livetalk serve`` line runs in the
  background (as if in a second terminal) and the block goes on once its port accepts
  connections; background jobs are stopped when the block ends.
- ``fake_devices``: ``import sounddevice`` gives the stand-in sound card of
  ``tests/fake_sounddevice.py`` (a silent microphone and a speaker, at 48 kHz).

Prints ``ok WHERE`` per block; on the first failure, the block's location and error on
stderr, and exits 1.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any

SHELL_PRELUDE = """\
set -euo pipefail
trap 'jobs -p | xargs -r kill 2>/dev/null; wait 2>/dev/null || true' EXIT
_docs_wait_port() {
  for _ in $(seq 600); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "docs runner: nothing listens on port $1 after 60 s" >&2
  return 1
}
"""

_SERVE = re.compile(r"^\s*livetalk serve\b")
_PORT = re.compile(r"--port[ =](\d+)")


def shell_script(code: str) -> str:
    """The block as a script: servers in the background, waited for."""
    lines = [SHELL_PRELUDE]
    for line in code.splitlines():
        command = line.split(" #", 1)[0].rstrip()
        if _SERVE.match(command):
            if not command.endswith("&"):
                command += " &"
            lines.append(command)
            port = _PORT.search(command)
            if port is not None:
                lines.append(f"_docs_wait_port {port.group(1)}")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def fake_devices_folder() -> Path:
    """A folder whose ``sounddevice`` module is the stand-in sound card."""
    folder = Path("_fake_devices")
    folder.mkdir(exist_ok=True)
    (folder / "sounddevice.py").write_text(textwrap.dedent("""\
        import sys
        from tests.fake_sounddevice import install
        install()  # replaces this module in sys.modules
        """))
    return folder.resolve()


def run_python(code: str, where: str, namespace: dict[str, Any],
               loop: asyncio.AbstractEventLoop) -> None:
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # noqa: S307 - the documentation's own code
    if inspect.iscoroutine(result):
        loop.run_until_complete(result)


def main() -> int:
    blocks = json.load(sys.stdin)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    installed = False
    try:
        for block in blocks:
            where = block["where"]
            try:
                if block["kind"] == "python":
                    if block.get("fake_devices") and not installed:
                        from tests.fake_sounddevice import install

                        install()
                        installed = True
                    for code in (block.get("setup") or "", block["code"]):
                        if code:
                            run_python(code, where, namespace, loop)
                else:
                    env = dict(os.environ)
                    if block.get("fake_devices"):
                        env["PYTHONPATH"] = os.pathsep.join(
                            [str(fake_devices_folder()), env.get("PYTHONPATH", "")])
                    script = shell_script((block.get("setup") or "") + block["code"])
                    done = subprocess.run(["bash", "-c", script], env=env, timeout=240,
                                          capture_output=True, text=True)
                    sys.stdout.write(done.stdout)
                    if done.returncode != 0:
                        raise RuntimeError(f"exit status {done.returncode}\n{done.stderr}")
            except BaseException:
                print(f"FAILED {where}", file=sys.stderr)
                traceback.print_exc()
                return 1
            print(f"ok {where}", flush=True)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
