"""The event log: every event crossing the wire of a call, as JSON lines.

``connect(event_log=path_or_file)`` writes one line per event, ``{"dir": "in"|"out",
"t_ms": ms since the log opened, "event": {...}}``, flushed as it goes, so a crash keeps
everything up to it. A callable ``(direction, event_dict)`` receives the same instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["EventLog", "EventTap"]

EventTap = Callable[[str, dict[str, Any]], None]
"""Called as ``tap(direction, event)`` for each event: ``"in"`` from the server, ``"out"`` to
it. The event dict is the one on the wire: read it, do not change it."""


class EventLog:
    """Writes every event crossing the wire as ``{"dir", "t_ms", "event"}`` JSON lines.

    Args:
        target: a path (opened, and closed by :meth:`close`) or an open text file (left open).
    """

    def __init__(self, target: str | Path | IO[str]) -> None:
        self._owned = isinstance(target, str | Path)
        self._file: IO[str] = (
            open(target, "w", encoding="utf-8") if isinstance(target, str | Path) else target
        )
        self._t0 = time.monotonic()

    def __call__(self, direction: str, event: dict[str, Any]) -> None:
        t_ms = round((time.monotonic() - self._t0) * 1000, 1)
        self._file.write(json.dumps({"dir": direction, "t_ms": t_ms, "event": event}) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file if this log opened it."""
        if self._owned:
            self._file.close()
