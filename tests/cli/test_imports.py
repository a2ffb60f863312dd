"""Imports run one way: the command line imports the library, never the reverse.

A fresh interpreter imports every library module (everything in ``livetalk/`` but
``livetalk/cli/`` and ``__main__`` files) with an import hook that notes which module asks
for ``argparse`` or ``livetalk.cli``. A dependency may import argparse (aiohttp's web module
does); a livetalk library module may not, directly or through another livetalk module.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "livetalk"


def library_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1:2] == ("cli",) or parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


_PROBE = """
import importlib, json, sys

FORBIDDEN = ("argparse", "livetalk.cli")
culprits = set()

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in FORBIDDEN or name.startswith("livetalk.cli."):
            frame = sys._getframe(1)
            while frame is not None:
                module = frame.f_globals.get("__name__", "")
                if not module.startswith(("importlib", "_frozen_importlib")):
                    break
                frame = frame.f_back
            if module.startswith("livetalk") and not module.startswith("livetalk.cli"):
                culprits.add(f"{module} imports {name}")
        return None

sys.meta_path.insert(0, Watch())
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps({"culprits": sorted(culprits),
                  "cli_loaded": sorted(m for m in sys.modules if m.startswith("livetalk.cli"))}))
"""


@pytest.mark.slow  # imports the whole library in a fresh interpreter
def test_library_modules_import_neither_argparse_nor_the_cli() -> None:
    modules = library_modules()
    assert "livetalk.talk" in modules and "livetalk.scenarios.runner" in modules
    assert not any(m.startswith("livetalk.cli") for m in modules)
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(modules)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {"culprits": [], "cli_loaded": []}


def test_no_library_source_names_argparse_or_the_cli() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts[:1] or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            assert not any(n == "argparse" or n.startswith("livetalk.cli") for n in names), (
                f"{path}:{node.lineno} imports {names}")


def test_the_probe_would_catch_a_culprit(tmp_path: Path) -> None:
    bad = tmp_path / "livetalk_probe_bad.py"
    bad.write_text("import argparse\n")
    probe = _PROBE.replace('module.startswith("livetalk")', 'module.startswith("livetalk")'
                           ' or module == "livetalk_probe_bad"')
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(["livetalk_probe_bad"])],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert json.loads(done.stdout)["culprits"] == ["livetalk_probe_bad imports argparse"]
