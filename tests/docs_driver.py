"""Runs the code blocks of one documentation page, in order: ``python -m tests.docs_driver``.

Reads a JSON list of blocks on stdin (``tests/test_docs.py`` extracts them; the conventions
are in ``docs/contributing.md``) and runs them in the current folder:

- Python blocks share one namespace, like cells of a notebook. A block may use ``await`` at
  top level; all such blocks run on one event loop, so objects made by one (a call) work in
  the next. A block may also call ``asyncio.run()`` itself.
- Shell blocks run with ``bash -eu``. A ``livetalk serve`` line starts a server
  in the background (as if in a second terminal) that lives until the page ends; the block
  goes on once it prints its "listening on" line. A later block starting a server on the
  same port reuses it.
- ``pytest``: Python blocks that are test code are gathered into one test module per page,
  which pytest runs at the last of them (it must collect tests, and they must pass).
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
import shlex
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any

SHELL_PRELUDE = "set -eu\n"

_SERVE = re.compile(r"^\s*livetalk serve\b")
_PORT = re.compile(r"--port[ =](\d+)")


class Page:
    """What lives as long as the page: its namespace, event loop and background servers."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.loop = asyncio.new_event_loop()
        self.servers: dict[str, subprocess.Popen[bytes]] = {}
        self.fake_devices_installed = False
        self.test_module: list[str] = []

    def close(self) -> None:
        for server in self.servers.values():
            server.terminate()
        for server in self.servers.values():
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start_server(self, command: str, env: dict[str, str]) -> None:
        """Start a ``livetalk serve`` line in the background; wait until it listens."""
        port = _PORT.search(command)
        key = port.group(1) if port else command
        if key in self.servers:  # started by an earlier block of the page
            return
        argv = shlex.split(command.rstrip("& "))
        server = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
        self.servers[key] = server
        assert server.stdout is not None
        line = server.stdout.readline().decode()  # "listening on ..." once it listens
        if not line.startswith("listening on "):
            raise RuntimeError(f"{command!r} did not start: {line!r}")

    def run_shell(self, code: str, env: dict[str, str]) -> None:
        """Run a shell block; ``livetalk serve`` lines go to the background."""
        chunk: list[str] = []
        for line in [*code.splitlines(), None]:
            command = None if line is None else line.split(" #", 1)[0].rstrip()
            if command is not None and not _SERVE.match(command):
                chunk.append(line or "")
                continue
            if any(c.strip() for c in chunk):
                done = subprocess.run(["bash", "-c", SHELL_PRELUDE + "\n".join(chunk)],
                                      env=env, timeout=240, capture_output=True, text=True)
                sys.stdout.write(done.stdout)
                if done.returncode != 0:
                    raise RuntimeError(f"exit status {done.returncode}\n{done.stderr}")
            chunk = []
            if command is not None:
                self.start_server(command, env)


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


def run_pytest(source: str) -> None:
    """Run ``source`` as a test module with pytest; raise unless tests ran and passed."""
    Path("test_docs_page.py").write_text(source)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_docs_page.py"], capture_output=True, text=True, timeout=300)
    sys.stdout.write(done.stdout[-2000:])
    if done.returncode != 0:
        raise RuntimeError(f"pytest exit status {done.returncode}\n{done.stdout[-4000:]}")


def main() -> int:
    blocks = json.load(sys.stdin)
    page = Page()
    try:
        for block in blocks:
            where = block["where"]
            try:
                if block["kind"] == "python" and block.get("pytest"):
                    page.test_module += [block.get("setup") or "", block["code"]]
                    if block.get("pytest_run"):
                        run_pytest("\n".join(page.test_module))
                elif block["kind"] == "python":
                    if block.get("fake_devices") and not page.fake_devices_installed:
                        from tests.fake_sounddevice import install

                        install()
                        page.fake_devices_installed = True
                    for code in (block.get("setup") or "", block["code"]):
                        if code:
                            run_python(code, where, page.namespace, page.loop)
                else:
                    env = dict(os.environ)
                    if block.get("fake_devices"):
                        env["PYTHONPATH"] = os.pathsep.join(
                            [str(fake_devices_folder()), env.get("PYTHONPATH", "")])
                    page.run_shell((block.get("setup") or "") + block["code"], env)
            except BaseException:
                print(f"FAILED {where}", file=sys.stderr)
                traceback.print_exc()
                return 1
            print(f"ok {where}", flush=True)
    finally:
        page.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
