"""livetalk._extras: the table of extras matches pyproject.toml, and the error it raises."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

from livetalk import MissingExtraError
from livetalk._extras import EXTRAS, install_hint, require

PYPROJECT = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
DECLARED = PYPROJECT["project"]["optional-dependencies"]


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_extra_of_pyproject_is_in_the_table() -> None:
    assert set(EXTRAS) == set(DECLARED) - {"dev"}


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_module_comes_from_a_distribution_of_its_extra(extra: str) -> None:
    # the dev environment installs every extra, so each module is found and its owner known
    owners = importlib.metadata.packages_distributions()
    declared = {_distribution(r) for r in DECLARED[extra]}
    for module in EXTRAS[extra]:
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        assert dists & declared, f"{module} (from {dists}) is not in the '{extra}' extra {declared}"


def test_require_names_the_extra_and_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)  # as if PyYAML were missing
    with pytest.raises(MissingExtraError) as info:
        require("scenarios", "YAML scenarios")
    assert info.value.extra == "scenarios"
    assert str(info.value) == (
        f"YAML scenarios needs the 'scenarios' extra (yaml not installed): "
        f"{install_hint('scenarios')}")
    assert isinstance(info.value, ImportError)


def test_require_passes_when_installed() -> None:
    require("websocket", "the WebSocket transport")  # installed in the dev environment
