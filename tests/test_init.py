"""The public surface: every exported name resolves, the lazy table matches what type checkers
see, every name the docs import exists, every exception lives in the one tree, figures are
read in one style (``statistics()`` returning a frozen dataclass), and the rates and the
default model are written once."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import itertools
import pkgutil
import re
import subprocess
import sys
import textwrap
import tokenize
import typing
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


def _classes() -> list[type]:
    """Every class defined in the package's modules (each once, where it is defined)."""
    found = []
    for name in _modules():
        if name in OPTIONAL:
            continue
        for value in vars(importlib.import_module(name)).values():
            if inspect.isclass(value) and value.__module__ == name:
                found.append(value)
    return found


def _statistics_type(cls: type) -> object:
    """What ``cls.statistics`` is annotated to return."""
    method = inspect.getattr_static(cls, "statistics")
    assert inspect.isfunction(method), f"{cls.__qualname__}.statistics is not a method"
    return typing.get_type_hints(method)["return"]


def _documented(cls: type) -> set[str]:
    """The fields of a dataclass (and of its bases) that have a doc: an ``Attributes:`` entry
    of the class docstring, or a docstring right after the field."""
    names = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        names |= set(re.findall(r"^\s*(\w+):", inspect.getdoc(klass) or "", re.MULTILINE))
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        assert isinstance(body, ast.ClassDef)
        for field, after in itertools.pairwise(body.body):
            if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)):
                names.add(field.target.id)
    return names


def test_no_class_has_a_stats_method() -> None:
    """Figures are read with ``statistics()`` (a frozen dataclass), never a ``stats()`` dict."""
    offenders = [f"{cls.__module__}.{cls.__qualname__}" for cls in _classes()
                 if "stats" in vars(cls)]
    assert not offenders, f"use statistics() -> a frozen dataclass: {offenders}"


def test_every_statistics_method_returns_a_frozen_documented_dataclass() -> None:
    checked = []
    for cls in _classes():
        if "statistics" not in vars(cls):
            continue
        returned = _statistics_type(cls)
        where = f"{cls.__module__}.{cls.__qualname__}.statistics"
        assert isinstance(returned, type) and dataclasses.is_dataclass(returned), where
        assert returned.__dataclass_params__.frozen, f"{where}: {returned.__name__} is mutable"  # type: ignore[attr-defined]
        assert returned.__name__.endswith("Statistics"), where
        undocumented = {f.name for f in dataclasses.fields(returned)} - _documented(returned)
        assert not undocumented, f"{returned.__name__}: fields without a doc: {undocumented}"
        checked.append(where)
    assert len(checked) >= 10, checked  # the walk found the classes (see the brief's list)


def test_statistics_types_are_exported_with_their_classes() -> None:
    """A module that exports a class with ``statistics()`` exports what it returns too."""
    missing = []
    for name in _modules():
        if name in OPTIONAL:
            continue
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            value = getattr(module, attr)
            if inspect.isclass(value) and hasattr(value, "statistics"):
                returned = _statistics_type(value)
                assert isinstance(returned, type)
                if getattr(module, returned.__name__, None) is not returned or (
                        returned.__name__ not in module.__all__):
                    missing.append(f"{name}: {returned.__name__} (of {attr})")
    assert not missing, missing


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


# where each value may be written in the code (docstrings and comments do not count)
WRITTEN_ONCE = {
    "24000": {"protocol/session.py",  # PCM_RATE
              "transport/opus.py"},  # OPUS_RATES, the rates libopus decodes to
    "48000": {"audio/format.py",  # RTC_RATE
              "transport/opus.py", "audio/vad.py"},  # the rates libopus and webrtcvad take
    "'gpt-realtime-2.1'": {"protocol/session.py",  # DEFAULT_MODEL
                           "scenarios/pricing.py"},  # its price
}


def test_the_rates_and_the_default_model_are_written_once() -> None:
    """Code uses PCM_RATE (API_RATE), RTC_RATE and DEFAULT_MODEL, not their values."""
    found: dict[str, set[str]] = {value: set() for value in WRITTEN_ONCE}
    for path in sorted(PACKAGE.rglob("*.py")):
        with path.open("rb") as source:
            for token in tokenize.tokenize(source.readline):
                text = token.string.replace("_", "") if token.type == tokenize.NUMBER else (
                    token.string.replace('"', "'") if token.type == tokenize.STRING else "")
                if text in found:
                    found[text].add(str(path.relative_to(PACKAGE)))
    assert found == WRITTEN_ONCE
