"""Turn logs: persist each turn of a conversation once, in order, for a backend.

``connect(turn_log=TurnLog("turns.jsonl"))`` (or ``SqliteTurnLog("turns.db")``) appends every
turn the call releases. Both logs are idempotent by item id: a turn already stored is skipped,
so a host that replays a call's turns (after a reconnect, or a restart of its own process)
never stores one twice. Turns carry their conversation order (:attr:`Turn.index`, which a
reconnected call continues) and the call they happened in, so the stored order is stable.

Each record holds the turn's fields but its audio: ``index``, ``call_id``, ``item_id``,
``role``, ``status``, ``text``, ``generated_text``, ``response_id``, ``previous_item_id``,
``started_at``, ``completed_at``, ``audio_ms``, ``audio_start_ms``, ``audio_end_ms`` and
``usage`` (the token counts, or null).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from livetalk.errors import ConfigError
from livetalk.protocol.conversation import Turn

__all__ = ["SqliteTurnLog", "TurnLog", "TurnSink", "turn_record"]

_FIELDS = ("index", "call_id", "item_id", "role", "status", "text", "generated_text",
           "response_id", "previous_item_id", "started_at", "completed_at", "audio_ms",
           "audio_start_ms", "audio_end_ms")


class TurnSink(Protocol):
    """Anything that stores turns: :class:`TurnLog`, :class:`SqliteTurnLog`, your own."""

    def append(self, turn: Turn) -> bool:
        """Store ``turn`` unless a turn with its item id is stored; True if it was stored."""
        ...

    def close(self) -> None:
        """Release the file or database."""
        ...


def turn_record(turn: Turn) -> dict[str, Any]:
    """The JSON-ready record of a turn (everything but its audio)."""
    record: dict[str, Any] = {name: getattr(turn, name) for name in _FIELDS}
    record["role"] = str(turn.role)
    record["status"] = str(turn.status)
    record["usage"] = dataclasses.asdict(turn.usage) if turn.usage is not None else None
    return record


class TurnLog:
    """An append-only JSON Lines file of turns, one object per line, idempotent by item id.

    Args:
        path: the file; created if missing, read once to learn the item ids already stored.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ids: set[str] = set()
        try:
            for record in self._read():
                self._ids.add(str(record["item_id"]))
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open the turn log {self.path}: {exc}") from exc

    def append(self, turn: Turn) -> bool:
        """Write ``turn`` (flushed at once) unless its item id is already in the file."""
        if turn.item_id in self._ids:
            return False
        self._file.write(json.dumps(turn_record(turn), ensure_ascii=False) + "\n")
        self._file.flush()
        self._ids.add(turn.item_id)
        return True

    def records(self) -> list[dict[str, Any]]:
        """Every record stored, in file order."""
        self._file.flush()
        return list(self._read())

    def _read(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as file:
            for line in file:
                if line.strip():
                    yield json.loads(line)

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class SqliteTurnLog:
    """Turns in a SQLite table ``turns`` (standard library), primary key ``item_id``.

    Args:
        path: the database file (``":memory:"`` for a throwaway one).
    """

    def __init__(self, path: str | Path) -> None:
        try:
            self._db = sqlite3.connect(str(path))
            columns = ", ".join(f'"{name}"' for name in _FIELDS if name != "item_id")
            self._db.execute(
                f'CREATE TABLE IF NOT EXISTS turns ("item_id" TEXT PRIMARY KEY, {columns}, '
                '"usage" TEXT)')
            self._db.commit()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the turn database {path}: {exc}") from exc

    def append(self, turn: Turn) -> bool:
        """Insert ``turn`` unless its item id is already stored; True if inserted."""
        record = turn_record(turn)
        record["usage"] = json.dumps(record["usage"]) if record["usage"] is not None else None
        names = [*_FIELDS, "usage"]
        placeholders = ", ".join("?" for _ in names)
        quoted = ", ".join(f'"{n}"' for n in names)
        cursor = self._db.execute(
            f"INSERT OR IGNORE INTO turns ({quoted}) VALUES ({placeholders})",
            [record[n] for n in names])
        self._db.commit()
        return cursor.rowcount == 1

    def records(self) -> list[dict[str, Any]]:
        """Every stored turn, in conversation order (``index``, then insertion)."""
        self._db.row_factory = sqlite3.Row
        rows = self._db.execute('SELECT * FROM turns ORDER BY "index", rowid').fetchall()
        self._db.row_factory = None
        out = []
        for row in rows:
            record = dict(row)
            record["usage"] = json.loads(record["usage"]) if record["usage"] else None
            out.append(record)
        return out

    def close(self) -> None:
        """Close the database."""
        self._db.close()
