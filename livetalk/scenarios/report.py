"""The JSON report of a batch of scenarios, and a progress line for the terminal.

:func:`build_report` turns :class:`~livetalk.scenarios.runner.ScenarioResult` objects into one
JSON-ready dict::

    {
      "livetalk_version": "X.Y.Z", "created_at": "2025-...Z",
      "base_url": "http://127.0.0.1:8765/v1", "speed": 1.0,
      "passed": false, "scenarios_total": 2, "scenarios_passed": 1, "turns_total": 5,
      "turns_passed": 4,
      "latency_ms": {"transcript": {"count", "mean", "p50", "p90", "p95", "max"},
                     "first_audio": {...}, "first_audio_heard": {...}, "reply_done": {...}},
      "usage": {...wire usage object, summed...}, "cost_usd": 0.0123,
      "prices": {"gpt-realtime": {"text_input": 4.0, ...}, ...},
      "scenarios": [ScenarioResult.to_dict(), ...]
    }

Write it with :func:`write_report`. The report never holds an API key.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from livetalk.protocol.events import Usage
from livetalk.scenarios.pricing import DEFAULT_PRICES, PriceTable
from livetalk.scenarios.runner import ScenarioResult

__all__ = ["LATENCY_METRICS", "Progress", "build_report", "latency_values", "percentile",
           "write_report"]

LATENCY_METRICS = ("transcript", "first_audio", "first_audio_heard", "reply_done")
"""The per-turn timings, in ms from the end of the user's speech."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated.

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside 0-100.
    """
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be from 0 to 100, got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_values(results: Sequence[ScenarioResult]) -> dict[str, list[float]]:
    """Every measured value of each metric of :data:`LATENCY_METRICS`, over all turns."""
    out: dict[str, list[float]] = {m: [] for m in LATENCY_METRICS}
    for result in results:
        for turn in result.turns:
            for metric in LATENCY_METRICS:
                value = getattr(turn, f"{metric}_ms")
                if value is not None:
                    out[metric].append(value)
    return out


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p95": None, "max": None}
    return {"count": len(values), "mean": round(sum(values) / len(values), 1),
            **{f"p{q}": round(percentile(values, q), 1) for q in (50, 90, 95)},
            "max": round(max(values), 1)}


def build_report(
    results: Sequence[ScenarioResult],
    *,
    base_url: str | None = None,
    prices: PriceTable = DEFAULT_PRICES,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-ready report of a batch (see the module docstring for its fields).

    Args:
        results: from :func:`~livetalk.scenarios.run_scenarios` (or several runs).
        base_url: where the calls went (recorded as is; pass no credentials in it).
        prices: the price table used for the costs (recorded for reproducibility).
        extra: more top-level fields (for instance the command's options).
    """
    import livetalk

    usage = sum((r.usage for r in results), Usage())
    costs = [r.cost_usd for r in results if r.cost_usd is not None]
    turns = [t for r in results for t in r.turns]
    speeds = sorted({r.speed for r in results})
    report: dict[str, Any] = {
        "livetalk_version": livetalk.__version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "base_url": base_url,
        "speed": speeds[0] if len(speeds) == 1 else speeds,
        "passed": bool(results) and all(r.passed for r in results),
        "scenarios_total": len(results),
        "scenarios_passed": sum(r.passed for r in results),
        "turns_total": len(turns),
        "turns_passed": sum(t.passed for t in turns),
        "latency_ms": {m: _stats(v) for m, v in latency_values(results).items()},
        "usage": usage.to_dict(),
        "cost_usd": round(sum(costs), 6) if len(costs) == len(results) else None,
        "prices": {model: p.to_dict() for model, p in prices.items()},
        "scenarios": [r.to_dict() for r in results],
    }
    if extra:
        report.update(extra)
    return report


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as indented JSON; returns the path."""
    target = Path(path)
    target.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return target


class Progress:
    """A one-line progress display on stderr, updated as scenarios finish.

    On a terminal the line is redrawn in place (``[=====     ] 5 of 10 done: 4 passed, 1
    failed``); when
    the stream is not a terminal (CI logs), one line is printed per finished scenario.

    Args:
        total: how many scenarios will run.
        stream: where to write (default stderr).
        width: characters of the bar.
    """

    def __init__(self, total: int, *, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self.failed = 0
        self._t0 = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, result: ScenarioResult) -> None:
        """Count a finished scenario and redraw."""
        self.done += 1
        self.failed += not result.passed
        filled = round(self.width * self.done / max(self.total, 1))
        bar = "=" * filled + " " * (self.width - filled)
        mark = "ok" if result.passed else "FAILED"
        line = (f"[{bar}] {self.done} of {self.total} done: {self.done - self.failed} passed, "
                f"{self.failed} failed, {time.monotonic() - self._t0:.1f} s | {result.name} "
                f"{mark}")
        if self._tty:
            self.stream.write("\r\x1b[2K" + line)
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
