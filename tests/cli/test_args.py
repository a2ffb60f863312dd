"""The parser: help text and defaults for every command and option; argument types."""

from __future__ import annotations

import argparse

import pytest

from livetalk.cli import COMMANDS, build_parser
from livetalk.cli._args import HelpFormatter, device, port, positive, positive_int


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_module_is_registered_once() -> None:
    names = list(_subparsers())
    assert names == ["serve", "run", "demo", "talk", "devices", "script", "mint"]
    assert len(COMMANDS) == len(names)


@pytest.mark.parametrize("name", ["serve", "run", "demo", "talk", "devices", "script", "mint"])
def test_every_command_and_option_has_help_with_its_default(name: str) -> None:
    parser = build_parser()
    sub = _subparsers()[name]
    listing = parser.format_help()
    assert name in listing  # listed with its one-line help
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert any(c.dest == name and c.help for c in action._choices_actions)
    assert sub.description and len(sub.description) > 80
    text = "".join(sub.format_help().split())  # wrapping may break at hyphens
    for act in sub._actions:
        if isinstance(act, argparse._HelpAction):
            continue
        assert act.help, f"livetalk {name} {act.option_strings or act.dest}: no help"
        informative = act.default not in (None, False, [], argparse.SUPPRESS)
        if act.option_strings and informative:
            shown = f"(default:{act.default})".replace(" ", "") in text
            assert shown or "default" in act.help, (name, act.option_strings)


def test_defaults_are_shown_only_when_informative() -> None:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--speed", type=float, default=1.5, help="media speed")
    parser.add_argument("--name", help="a name (default: none)")
    parser.add_argument("--flag", action="store_true", help="a flag")
    parser.add_argument("--other", help="no default to show")
    text = " ".join(parser.format_help().split())
    assert "media speed (default: 1.5)" in text
    assert "a name (default: none)" in text and "(default: None)" not in text
    assert "(default: False)" not in text


def test_argument_types() -> None:
    assert positive("0.5") == 0.5 and positive_int("3") == 3 and port("0") == 0
    for bad in ("0", "-1", "nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive(bad)
    for bad in ("0", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    for bad in ("65536", "-1", "http"):
        with pytest.raises(argparse.ArgumentTypeError):
            port(bad)
    assert device("3") == 3 and device("USB Headset") == "USB Headset"


def test_parse_errors_are_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", "x.wav", "--speed", "-1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--speed" in err and "livetalk run --help" in err
