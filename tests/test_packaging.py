"""The release: the sdist and wheel build cleanly and pass ``twine check``; the wheel installs
into a fresh virtual environment with no extras, where everything that needs an extra says
so in one line; with the ``server`` extra, ``livetalk serve`` answers ``livetalk run``.

One environment per test session, bounded: dependencies come from ``build/wheelhouse``
(filled from the package index the first time, then reused with ``--no-index``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import livetalk

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / "build" / "wheelhouse"
NO_KEY_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PYTHON"))}


def _run(*cmd: str | Path, timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, env=NO_KEY_ENV, **kw)  # type: ignore[call-overload]


@dataclass
class Dist:
    folder: Path
    log: str

    @property
    def wheel(self) -> Path:
        return next(self.folder.glob("livetalk-*.whl"))

    @property
    def sdist(self) -> Path:
        return next(self.folder.glob("livetalk-*.tar.gz"))


@dataclass
class Venv:
    path: Path
    wheel: Path
    extras: set[str] = field(default_factory=set)

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def install(self, extra: str | None = None) -> None:
        """Install the wheel (with ``extra``) from the wheelhouse, filling it if needed."""
        requirement = f"{self.wheel}[{extra}]" if extra else str(self.wheel)
        pip = [sys.executable, "-m", "pip", "--python", self.bin("python")]
        offline = _run(*pip, "install", "-q", "--no-index", "--find-links", WHEELHOUSE,
                       requirement)
        if offline.returncode != 0:
            WHEELHOUSE.mkdir(parents=True, exist_ok=True)
            filled = _run(sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", WHEELHOUSE,
                          requirement, timeout=900)
            assert filled.returncode == 0, filled.stderr[-3000:]
            for own in WHEELHOUSE.glob("livetalk-*.whl"):
                own.unlink()
            offline = _run(*pip, "install", "-q", "--no-index", "--find-links", WHEELHOUSE,
                           requirement)
        assert offline.returncode == 0, offline.stderr[-3000:]
        if extra:
            self.extras.add(extra)

    def livetalk(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run(self.bin("livetalk"), *args, timeout=timeout, cwd=self.path)

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return _run(self.bin("python"), "-c", code, cwd=self.path)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    folder = tmp_path_factory.mktemp("dist")
    built = _run(sys.executable, "-m", "build", "--outdir", folder, ROOT, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    return Dist(folder, built.stdout + built.stderr)


@pytest.fixture(scope="module")
def venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    path = tmp_path_factory.mktemp("venv")
    made = _run(sys.executable, "-m", "venv", "--without-pip", "--clear", path)
    assert made.returncode == 0, made.stderr
    env = Venv(path, dist.wheel)
    env.install()
    return env


def test_sdist_and_wheel_build_cleanly_and_pass_twine_check(dist: Dist) -> None:
    assert not re.search(r"deprecat", dist.log, flags=re.IGNORECASE), [
        line for line in dist.log.splitlines() if "eprecat" in line][:5]
    version = livetalk.__version__
    assert dist.wheel.name == f"livetalk-{version}-py3-none-any.whl"
    assert dist.sdist.name == f"livetalk-{version}.tar.gz"
    checked = _run(sys.executable, "-m", "twine", "check", "--strict", dist.wheel, dist.sdist)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        meta = wheel.read(f"livetalk-{version}.dist-info/METADATA").decode()
    for needed in ("livetalk/py.typed", "livetalk/data/demo.wav",
                   "livetalk/data/demo_phrases.txt", "livetalk/cli/__init__.py",
                   f"livetalk-{version}.dist-info/licenses/LICENSE"):
        assert needed in names
    assert not any(n.startswith(("tests/", "bench/", "examples/")) for n in names)
    assert "License-Expression: MIT" in meta and f"Version: {version}\n" in meta
    assert "Provides-Extra: server" in meta


def test_the_version_is_written_once() -> None:
    from importlib.metadata import version

    assert version("livetalk") == livetalk.__version__
    sources = [p for p in (ROOT / "livetalk").rglob("*.py")
               if livetalk.__version__ in p.read_text()]
    assert sources == [ROOT / "livetalk" / "__init__.py"]
    assert "version =" not in (ROOT / "pyproject.toml").read_text().split("[project]")[1].split(
        "[")[0]


# each command that needs an extra, and the extra it names
NEEDS_AN_EXTRA = [
    (["serve", "--port", "0"], "server"),
    (["demo", "--out", "d.wav"], "server"),
    (["run", "{wav}", "--vad", "local", "--api-key", "sk-x"], "vad"),
    (["run", "{wav}", "--transport", "websocket", "--api-key", "sk-x"], "websocket"),
    (["script", "spoken.json", "--local"], "server"),
    (["script", "spoken.json", "--api-key", "sk-x"], "server"),
    (["script", "recorded.yaml", "--api-key", "sk-x"], "scenarios"),
    (["script", "recorded.json", "--api-key", "sk-x", "--plot", "p.png"], "plot"),
    (["devices"], "devices"),
    (["talk", "--api-key", "sk-x"], "devices"),
]

IMPORTS_NEEDING_AN_EXTRA = [
    ("import livetalk.server", "server"),
    ("from livetalk.audio.vad import TurnDetector; TurnDetector(16000)", "vad"),
    ("from livetalk.audio.devices import list_devices; list_devices()", "devices"),
]


def test_a_base_install_works_and_names_each_missing_extra(venv: Venv) -> None:
    assert not venv.extras, "run the base-install checks before an extra is installed"
    shown = venv.python("import livetalk, livetalk.data, livetalk.scenarios; "
                        "print(livetalk.__version__, livetalk.data.DEMO_WAV.is_file())")
    assert shown.stdout.split() == [livetalk.__version__, "True"], shown.stderr
    assert venv.livetalk("--version").stdout.strip() == f"livetalk {livetalk.__version__}"
    listing = venv.livetalk("--help")
    assert listing.returncode == 0 and "serve" in listing.stdout and "script" in listing.stdout
    wav = venv.python("import livetalk.data; print(livetalk.data.DEMO_WAV)").stdout.strip()
    (venv.path / "spoken.json").write_text(json.dumps({"turns": [{"say": "hello"}]}))
    recorded = {"turns": [{"audio": wav, "text": "hello can you hear me"}]}
    (venv.path / "recorded.json").write_text(json.dumps(recorded))
    (venv.path / "recorded.yaml").write_text(json.dumps(recorded))  # JSON is YAML too
    for args, extra in NEEDS_AN_EXTRA:
        done = venv.livetalk(*(a.format(wav=wav) for a in args))
        assert done.returncode == 2, (args, done.stderr)
        line = done.stderr.strip()
        assert "\n" not in line and "Traceback" not in line, (args, done.stderr)
        assert f"pip install 'livetalk[{extra}]'" in line, (args, line)
    for code, extra in IMPORTS_NEEDING_AN_EXTRA:
        done = venv.python(code)
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("livetalk.errors.MissingExtraError: "), (code, done.stderr)
        assert f"pip install 'livetalk[{extra}]'" in last


def test_with_the_server_extra_serve_answers_run(venv: Venv) -> None:
    venv.install("server")
    paths = dict(line.split("=", 1) for line in venv.python(
        "import runpy; runpy.run_module('livetalk.data', run_name='__main__')").stdout.split())
    assert Path(paths["DEMO_WAV"]).is_relative_to(venv.path)  # the installed copy
    server = subprocess.Popen(
        [venv.bin("livetalk"), "serve", "--port", "0", "--realtime-factor", "3",
         "--phrases", paths["DEMO_PHRASES"]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=NO_KEY_ENV)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        base_url = line.removeprefix("listening on ").strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url), line
        done = venv.livetalk("run", paths["DEMO_WAV"], "--base-url", base_url, "--api-key",
                             "sk-x", "--jsonl", "--speed", "3")
        assert done.returncode == 0, done.stderr
        lines = [json.loads(x) for x in done.stdout.splitlines()]
        assert [x["text"] for x in lines if x["type"] == "turn" and x["role"] == "user"] == [
            "hello can you hear me", "what is the weather like today", "thank you goodbye"]
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_make_demo_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    planned = _run("make", "-n", "demo", cwd=tmp_path, timeout=30)
    assert planned.returncode == 0, planned.stderr
    installs = [line for line in planned.stdout.splitlines() if "pip install" in line
                and "-e " in line]
    assert len(installs) == 1 and installs[0].endswith('-e ".[server,asr]"'), installs
    assert "[dev]" not in planned.stdout
