"""The documentation runs: every code block of README.md and docs/*.md is executed.

Each page's blocks run in order, in one driver process (``tests/docs_driver.py``), in a
scratch folder that mirrors the repository (so ``livetalk/data/demo.wav`` and
``examples/...`` resolve) and also holds ``question.wav`` (a spoken question) and
``phrases.txt`` (its phrase list). ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` point at a
local server the test starts, so blocks written for the real API run offline. The
conventions (directives, skip reasons, ports) are documented in ``docs/contributing.md``;
this file enforces them.

It also checks that every page is reachable from README.md by links, and that every dotted
``livetalk...`` name written in backticks resolves.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shutil
import socket
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KEY = "sk-livetalk-docs"

RUN = {"python": "python", "py": "python", "sh": "sh", "bash": "sh", "shell": "sh"}
"""Fence languages that are executed; any other fence (none, text, json, yaml) is shown only."""

SKIP_REASONS = {
    "interactive": "waits for a person: a microphone conversation or a browser page",
    "runs-the-suite": "runs the test suite, which runs this very check",
    "installs": "installs packages; tests/test_packaging.py installs the built wheel instead",
    "long": "takes minutes (benchmarks); their figures are in docs/performance.md",
    "external": "needs a program livetalk does not install (a language-model server)",
    "cluster": "needs a Ray cluster; tests/scenarios/test_cluster.py runs on a throwaway one",
    "real-api": "talks to the real OpenAI API (billable, and unreachable from the test machine)",
}
"""The only reasons a block may be skipped for (``<!-- docs-test: skip REASON: why -->``)."""

DIRECTIVES = ("skip", "setup", "fake-devices", "pytest")
"""The first word of every ``<!-- docs-test: ... -->`` comment."""

DEFAULT_PORT = "8765"
"""Shell blocks use this port; each page gets a free one in its place."""

_FENCE = re.compile(r"^```(\S*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)-->", re.DOTALL)


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    directive: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str | None:
        return RUN.get(self.lang)

    @property
    def skip(self) -> str | None:
        """The skip reason keyword, if the block is skipped."""
        match = re.match(r"skip\s+([\w-]+)\s*:\s*\S", self.directive)
        if self.directive.startswith("skip"):
            assert match, f"{self.where}: write '<!-- docs-test: skip REASON: why -->'"
            return match.group(1)
        return None

    @property
    def setup(self) -> str:
        """Code run before the block, unseen by readers (``<!-- docs-test: setup ... -->``)."""
        if self.directive.startswith("setup"):
            return self.directive.removeprefix("setup").strip("\n") + "\n"
        return ""


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` with the directive comment right above each."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        directive = ""
        above = "\n".join(lines[max(0, start - 40):start]).rstrip()
        if above.endswith("-->"):
            comment = above[above.rfind("<!--"):]
            matched = _DIRECTIVE.fullmatch(comment)
            if matched:
                directive = matched.group(1).strip()
        found.append(Block(page, start + 1, fence.group(1), "\n".join(body) + "\n", directive))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scratch(tmp: Path) -> Path:
    """A folder mirroring the repository's top level, plus question.wav and phrases.txt."""
    for entry in ROOT.iterdir():
        if entry.name not in (".git",):
            (tmp / entry.name).symlink_to(entry)
    with wave.open(str(ROOT / "livetalk" / "data" / "demo.wav")) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    question = pcm[: int(rate * 3.6)]  # 0.5 s of silence, "hello can you hear me", silence
    with wave.open(str(tmp / "question.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(question.tobytes())
    shutil.copy(ROOT / "livetalk" / "data" / "demo_phrases.txt", tmp / "phrases.txt")
    return tmp


def _phrases() -> list[str]:
    from livetalk.scenarios import scenario_phrases
    from livetalk.server.asr import load_phrases

    return [*load_phrases(ROOT / "livetalk" / "data" / "demo_phrases.txt"),
            *scenario_phrases([str(ROOT / "examples" / "scenarios")])]


def _runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.kind is not None and b.skip is None]


# ---------------------------------------------------------------------- the conventions
def test_directives_are_well_formed() -> None:
    for page in PAGES:
        for block in blocks(page):
            skip = block.skip
            if skip is not None:
                assert skip in SKIP_REASONS, f"{block.where}: unknown skip reason {skip!r}"
                assert block.kind is not None, f"{block.where}: only run blocks are skipped"
            elif block.directive:
                assert block.directive.split()[0] in DIRECTIVES, block.where
            if block.kind == "sh" and skip != "installs":
                # running it would install into the checkout's own environment
                assert not re.search(r"\bpip install\b", block.code), (
                    f"{block.where}: a pip install block needs `docs-test: skip installs`")
    contributing = (ROOT / "docs" / "contributing.md").read_text()
    for reason in SKIP_REASONS:
        assert f"`{reason}`" in contributing, f"docs/contributing.md must explain {reason!r}"


def test_the_parser_finds_blocks_and_directives(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("text\n\n<!-- docs-test: skip long: minutes -->\n```sh\nmake bench\n```\n"
                    "```python\nprint(1)\n```\n```json\n{}\n```\n"
                    "<!-- docs-test: setup\nx = 1\n-->\n```python\nprint(x)\n```\n")
    found = blocks(page)
    assert [(b.lang, b.skip, b.setup) for b in found] == [
        ("sh", "long", ""), ("python", None, ""), ("json", None, ""),
        ("python", None, "x = 1\n")]


def test_every_page_is_reachable_from_the_readme() -> None:
    seen, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
            linked = (page.parent / target).resolve()
            assert linked.exists(), f"{page.relative_to(ROOT)} links to a missing {target}"
            todo.append(linked)
    assert set(PAGES) <= seen, [str(p.relative_to(ROOT)) for p in set(PAGES) - seen]


def test_dotted_livetalk_names_in_the_docs_resolve() -> None:
    """Names such as `livetalk.data.DEMO_WAV` (logger names, written after the word
    "logger", are not Python names)."""
    for page in PAGES:
        text = re.sub(r"logger `[\w.]+`", "", page.read_text())
        for name in sorted(set(re.findall(r"`(livetalk(?:\.\w+)+)", text))):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    obj: object = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                for attr in parts[cut:]:
                    assert hasattr(obj, attr), f"{page.name}: `{name}` does not resolve"
                    obj = getattr(obj, attr)
                break


# ---------------------------------------------------------------------- running the blocks
@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
async def test_the_code_blocks_run(page: Path, make_server, tmp_path: Path) -> None:
    runnable = _runnable(page)
    if not runnable:
        pytest.skip(f"{page.name} has no code to run")
    port = str(_free_port())
    payload = [{"where": b.where, "kind": b.kind, "code": b.code.replace(DEFAULT_PORT, port),
                "setup": b.setup.replace(DEFAULT_PORT, port),
                "fake_devices": b.directive.startswith("fake-devices"),
                "pytest": b.directive.startswith("pytest")} for b in runnable]
    tests = [item for item in payload if item["pytest"]]
    if tests:
        tests[-1]["pytest_run"] = True
    work = _scratch(tmp_path)
    # pocketsphinx told the phrases, as `livetalk script --local` hears: exact words to check
    async with make_server(port=0, phrases=_phrases(), transcriber=None,
                           asr="pocketsphinx") as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY,
               "PYTHONPATH": str(ROOT),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.docs_driver", cwd=work, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(json.dumps(payload).encode()),
                                              600)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    report = out.decode(errors="replace")[-3000:] + err.decode(errors="replace")[-6000:]
    assert proc.returncode == 0, report
    assert [x.split()[1] for x in out.decode().splitlines() if x.startswith("ok ")] == [
        b.where for b in runnable]
