"""Small text helpers shared by the library's and the command line's messages."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, noun: str) -> str:
    """``1 user turn``, ``2 user turns``, ``0 tokens``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
