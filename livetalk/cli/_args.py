"""What every command shares: the parser class, the help format, argument types, options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn

from livetalk.cli._status import ExitStatus
from livetalk.errors import ConfigError, MissingAPIKeyError
from livetalk.protocol.session import DEFAULT_MODEL

__all__ = [
    "HelpFormatter",
    "Parser",
    "add_api_options",
    "add_connect_timeout",
    "add_model_option",
    "check_output_path",
    "device",
    "port",
    "positive",
    "positive_int",
    "require_api_key",
]


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitStatus.USAGE, f"livetalk: error: {message} (see '{self.prog} --help')\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; each option's help ends with its default.

    The default is shown when it is informative: not for flags, not when it is None (the
    help then says what happens without the option), not when the help already names it.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or action.option_strings == []
        ):
            return text
        return f"{text} (default: %(default)s)"


def positive(value: str) -> float:
    """A number > 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be > 0: {value!r}")
    return number


def positive_int(value: str) -> int:
    """An integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {value!r}")
    return number


def port(value: str) -> int:
    """A TCP port number, 0 to 65535."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value!r}")
    return number


def device(value: str) -> int | str:
    """An audio device: its index if the value is a number, else (part of) its name."""
    return int(value) if value.strip().lstrip("-").isdigit() else value


def add_api_options(p: argparse.ArgumentParser) -> None:
    """``--base-url`` and ``--api-key``."""
    p.add_argument("--base-url", metavar="URL",
                   help="API base URL (default: OPENAI_BASE_URL, else https://api.openai.com/v1)")
    p.add_argument("--api-key", metavar="KEY",
                   help="standard API key or ek_ client secret (default: OPENAI_API_KEY)")


def add_model_option(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--model``."""
    if default is None:
        p.add_argument("--model", help=f"Realtime model (default: {DEFAULT_MODEL})")
    else:
        p.add_argument("--model", default=default, help="Realtime model")


def add_connect_timeout(p: argparse.ArgumentParser) -> None:
    """``--connect-timeout``."""
    p.add_argument("--connect-timeout", type=positive, default=15.0, metavar="S",
                   help="seconds allowed for connecting")


def check_output_path(path: str | None, option: str) -> None:
    """Fail before anything starts when ``path`` (given with ``option``) cannot be created.

    Raises:
        ConfigError: the folder is missing or not a folder, or ``path`` is a folder.
    """
    if path is None:
        return
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"{option} {path}: the folder {str(folder)!r} {problem}")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {path}: no permission to write in {str(folder)!r}")


def require_api_key(args: argparse.Namespace) -> None:
    """Fail before connecting when neither ``--api-key`` nor OPENAI_API_KEY gives a key.

    Raises:
        MissingAPIKeyError: with the command line's wording.
    """
    if not (getattr(args, "api_key", None) or os.environ.get("OPENAI_API_KEY")):
        raise MissingAPIKeyError(
            "no API key: pass --api-key KEY or set OPENAI_API_KEY (a standard key, or an ek_ "
            "client secret minted by your backend)"
        )

