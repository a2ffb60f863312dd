"""Turns completed, and how late, as RTP packet loss grows (0, 2, 5 and 10 % both ways).

``python -m bench.loss [--quick]`` starts ``livetalk serve --fault rtp-loss=F --fault
rtp-loss-sent=F`` for each loss rate F (the server drops that share of the audio packets it
receives before decoding, and of those it sends), feeds a multi-turn recording in real time
through one call with server VAD, and counts the user turns transcribed right and the replies
completed. Latencies are measured as in :mod:`bench.vad_paths` (from the true end of each
phrase). It prints a table and writes ``bench/results/loss.json``; :func:`run` is the entry
point for ``bench.run_all``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.report import machine
from bench.vad_paths import (
    GAP_S,
    PathResult,
    ServerProcess,
    measure_call,
    recording,
    summarize,
    write,
)
from tests.speech_helpers import DEMO_PHRASES, FIVE_PHRASES

__all__ = ["LOSS_RATES", "render", "run"]

LOSS_RATES = (0.0, 0.02, 0.05, 0.10)


def render(rates: dict[str, dict[str, Any]]) -> str:
    """One row per loss rate: turns right, replies, median/p90 latencies in ms."""
    lines = [f"{'loss':>5}  {'user turns ok':>13}  {'replies':>7}  "
             f"{'to transcript (median/p90)':>27}  {'to reply audio (median/p90)':>28}"]
    for rate, s in rates.items():
        t, r = s["transcript_ms"], s["reply_ms"]
        transcript = f"{t['median']:.0f} / {t['p90']:.0f}" if t["n"] else "-"
        reply = f"{r['median']:.0f} / {r['p90']:.0f}" if r["n"] else "-"
        lines.append(f"{rate:>5}  {s['correct']:>6}/{s['turns']:<6}  "
                     f"{s['replies_completed']:>3}/{s['turns']:<3}  {transcript:>27}  "
                     f"{reply:>28}")
    return "\n".join(lines)


async def run(quick: bool) -> dict[str, Any]:
    """Measure every loss rate; returns the JSON-ready result.

    Quick: the demo's three phrases once per rate (about 2 min). Full: five phrases twice
    per rate (about 6 min).
    """
    phrases = DEMO_PHRASES if quick else FIVE_PHRASES
    turns, said = recording(phrases, repeats=1 if quick else 2)
    t0 = time.monotonic()
    runs: dict[str, PathResult] = {}
    for rate in LOSS_RATES:
        faults = [f"rtp-loss={rate}", f"rtp-loss-sent={rate}"] if rate else []
        async with ServerProcess(phrases, faults=faults) as server:
            runs[f"{rate:.0%}"] = await measure_call(server.base_url, turns, said,
                                                     path=f"loss {rate:.0%}")
    return {
        "machine": {**machine(), "quick": quick, "duration_s": round(time.monotonic() - t0, 1)},
        "settings": {"loss_rates": list(LOSS_RATES), "both_ways": True, "gap_s": GAP_S,
                     "phrases": len(said), "vad": "server"},
        "rates": {rate: summarize([r]) for rate, r in runs.items()},
        "runs": {rate: r.to_json() for rate, r in runs.items()},
    }


def main() -> None:
    """Parse ``--quick``, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the demo's three phrases once")
    args = parser.parse_args()
    result = asyncio.run(run(args.quick))
    print(render(result["rates"]))
    print(f"written to {write('loss', result)}")


if __name__ == "__main__":
    main()
