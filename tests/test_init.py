"""The public surface: every exported name resolves, the lazy table matches what type checkers
see, every name the docs import exists, and every exception lives in the one tree."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import livetalk
import livetalk.errors as errors

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "livetalk"
# modules that need an optional dependency that a dev install always has
OPTIONAL = {"livetalk.scenarios.plot"}


def _modules() -> list[str]:
    names = ["livetalk"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="livetalk."):
        if not info.name.endswith("__main__"):  # importing it runs the command line
            names.append(info.name)
    return sorted(names)


def test_every_exported_name_resolves() -> None:
    for name in livetalk.__all__:
        assert getattr(livetalk, name) is not None, name
    with pytest.raises(AttributeError):
        livetalk.not_a_thing  # noqa: B018


def test_the_lazy_table_matches_what_type_checkers_see() -> None:
    """``__all__`` (the lazy table) and the TYPE_CHECKING imports name the same things, from
    the same modules: a name type-checks exactly when it exists at run time."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    checked: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), "only explicit imports, no star"
                for alias in stmt.names:
                    assert alias.name != "*"
                    checked[alias.asname or alias.name] = str(stmt.module)
    lazy = dict(livetalk._LAZY)  # type: ignore[attr-defined]
    assert checked == lazy
    assert sorted([*lazy, "__version__"]) == livetalk.__all__


def test_names_the_docs_import_from_livetalk_exist() -> None:
    grouped = re.compile(r"from (livetalk[\w.]*) import \(([\w,\s]+)\)")
    single = re.compile(r"from (livetalk[\w.]*) import ([\w, ]+)$", re.MULTILINE)
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for doc in docs:
        text = doc.read_text()
        for module, names in [*grouped.findall(text), *single.findall(text)]:
            mod = importlib.import_module(module)
            for name in (n.strip() for n in names.replace("\n", " ").split(",")):
                if name and not hasattr(mod, name):
                    missing.append(f"{doc.name}: {module}.{name}")
    assert not missing, missing


def test_every_exception_class_is_in_the_tree_of_errors_py() -> None:
    """No module defines an exception of its own: errors.py holds them all, every one a
    LivetalkError, and each appears in the tree drawn in its docstring."""
    outside, strays = [], []
    for name in _modules():
        if name in OPTIONAL:
            continue
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and (
                    value.__module__ == name):
                if name != "livetalk.errors":
                    outside.append(f"{name}.{attr}")
                elif not issubclass(value, errors.LivetalkError):
                    strays.append(attr)
    assert not outside, f"exceptions defined outside livetalk.errors: {outside}"
    assert not strays
    drawn = errors.__doc__ or ""
    for attr in errors.__all__:
        value = getattr(errors, attr)
        if inspect.isclass(value):
            assert re.search(rf"\b{attr}\b", drawn), f"{attr} is not drawn in the tree"


def test_timeouts_are_livetalk_errors_and_timeout_errors() -> None:
    for cls in (errors.Timeout, errors.ConnectTimeout, errors.RequestTimeout):
        assert issubclass(cls, errors.LivetalkError) and issubclass(cls, TimeoutError)


def test_importing_livetalk_is_cheap_and_needs_no_portaudio() -> None:
    code = ("import sys, livetalk; import livetalk.protocol; "
            "heavy = [m for m in ('aiortc', 'av', 'numpy', 'sounddevice', 'asyncio') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
