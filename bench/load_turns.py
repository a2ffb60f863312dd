"""Many concurrent talking calls: are turns lost under load?

``python -m bench.load_turns [--quick] [--calls 15] [--seconds 180]`` starts ``livetalk serve``
pinned to core 1 and a client process pinned to core 0 (``os.sched_setaffinity``; every thread
inherits it) that opens ``--calls`` calls at once, staggered by 0.4 s, each feeding a
five-phrase recording in a loop for ``--seconds`` of media with server VAD. For every call it
counts the user turns expected (phrases whose end was sent), those transcribed right, the
replies completed, and the outbound track's pacing: frames more than 20 ms late and the p99
send lateness over every frame. Both processes' CPU use is reported as a share of their core.
It prints a summary and writes ``bench/results/load_turns.json``; :func:`run` is the entry
point for ``bench.run_all``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import machine
from bench.vad_paths import GAP_S, ServerProcess, measure_call, recording, write
from tests.speech_helpers import FIVE_PHRASES

__all__ = ["run", "run_client"]

CLIENT_CPU = 0
SERVER_CPU = 1
STAGGER_S = 0.4
ROOT = Path(__file__).resolve().parent.parent


async def run_client(base_url: str, calls: int, seconds: float) -> dict[str, Any]:
    """The client side (run it pinned, in its own process): all calls, then the figures."""
    turns, said = recording(FIVE_PHRASES)
    cpu0 = _cpu_s()
    t0 = time.monotonic()

    async def one(k: int) -> Any:
        await asyncio.sleep(k * STAGGER_S)
        return await measure_call(base_url, turns, said, seconds=seconds, path=f"call {k}")

    outcomes = await asyncio.gather(*(one(k) for k in range(calls)), return_exceptions=True)
    wall = time.monotonic() - t0
    cpu = _cpu_s() - cpu0
    results = [r for r in outcomes if not isinstance(r, BaseException)]
    failures = [f"{type(r).__name__}: {r}" for r in outcomes if isinstance(r, BaseException)]
    expected = sum(len(r.turns) for r in results)
    correct = sum(sum(t.correct for t in r.turns) for r in results)
    transcribed = sum(sum(t.transcript is not None for t in r.turns) for r in results)
    replies = sum(r.replies_completed for r in results)
    lateness = np.concatenate([np.asarray(r.lateness_ms) for r in results]) if results else None
    reply_ms = [t.reply_ms for r in results for t in r.turns if t.reply_ms is not None]
    return {
        "calls": calls, "calls_failed": len(failures), "failures": failures[:5],
        "seconds": seconds, "wall_s": round(wall, 1),
        "user_turns_expected": expected, "user_turns_transcribed": transcribed,
        "user_turns_correct": correct, "lost_turns": expected - transcribed,
        "replies_completed": replies, "extra_transcripts": sum(r.extra_transcripts
                                                               for r in results),
        "late_frames": sum(r.track["late_frames"] for r in results),
        "frames": sum(r.track["frames"] for r in results),
        "lateness_p99_ms": (round(float(np.percentile(lateness, 99)), 2)
                            if lateness is not None and lateness.size else None),
        "lateness_max_ms": (round(float(lateness.max()), 2)
                            if lateness is not None and lateness.size else None),
        "reply_ms_median": round(float(np.median(reply_ms)), 1) if reply_ms else None,
        "reply_ms_p90": round(float(np.percentile(reply_ms, 90)), 1) if reply_ms else None,
        "client_core_share": round(cpu / wall, 3),
        "client_cpus": sorted(os.sched_getaffinity(0)),
        "per_call": [{"correct": sum(t.correct for t in r.turns), "expected": len(r.turns),
                      "replies": r.replies_completed, "late_frames": r.track["late_frames"],
                      "lateness_p99_ms": r.track["lateness_p99_ms"]} for r in results],
    }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(quick: bool, *, calls: int = 15, seconds: float | None = None,
              asr: str = "pocketsphinx") -> dict[str, Any]:
    """Run the load (20 s of media per call when ``quick``, else 180 s); JSON-ready result.

    ``asr`` is the server's recogniser (``livetalk serve --asr``).
    """
    seconds = seconds if seconds is not None else (20.0 if quick else 180.0)
    t0 = time.monotonic()
    async with ServerProcess(FIVE_PHRASES, cpu=SERVER_CPU, asr=asr) as server:
        server_cpu0 = server.cpu_seconds()
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.load_turns", "--role", "client", "--url",
            server.base_url, "--calls", str(calls), "--seconds", str(seconds),
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
            preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CPU}))
        out, _ = await client.communicate()
        server_cpu = server.cpu_seconds() - server_cpu0
    wall = time.monotonic() - t0
    if client.returncode != 0:
        raise RuntimeError(f"the load client failed with status {client.returncode}")
    figures = json.loads(out.decode().strip().splitlines()[-1])
    figures["server_core_share"] = round(server_cpu / figures["wall_s"], 3)
    return {
        "machine": {**machine(), "quick": quick, "duration_s": round(wall, 1)},
        "settings": {"calls": calls, "seconds": seconds, "gap_s": GAP_S, "asr": asr,
                     "client_cpu": CLIENT_CPU, "server_cpu": SERVER_CPU,
                     "stagger_s": STAGGER_S},
        "load": figures,
    }


def render(figures: dict[str, Any]) -> str:
    """A few lines summarizing the load run."""
    return "\n".join([
        f"calls {figures['calls']} ({figures['calls_failed']} failed), "
        f"{figures['seconds']:g} s of speech each",
        f"user turns: {figures['user_turns_correct']} right, "
        f"{figures['user_turns_transcribed']} transcribed of {figures['user_turns_expected']} "
        f"expected: {figures['lost_turns']} lost; replies completed {figures['replies_completed']}",
        f"reply audio after end of speech: median {figures['reply_ms_median']} ms, "
        f"p90 {figures['reply_ms_p90']} ms",
        f"client pacing: {figures['late_frames']} of {figures['frames']} frames > 20 ms late, "
        f"lateness p99 {figures['lateness_p99_ms']} ms, max {figures['lateness_max_ms']} ms",
        f"CPU: client {figures['client_core_share']:.0%} of core {CLIENT_CPU}, "
        f"server {figures['server_core_share']:.0%} of core {SERVER_CPU}",
    ])


def main() -> None:
    """Parse the command line; run the whole load, or (``--role client``) the client side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 s per call instead of 180")
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=None,
                        help="media seconds per call (default 180, or 20 with --quick)")
    parser.add_argument("--asr", choices=("pocketsphinx", "whisper"), default="pocketsphinx",
                        help="the server's recogniser (pocketsphinx: on the phrase list)")
    parser.add_argument("--role", choices=("all", "client"), default="all",
                        help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "client":
        print(json.dumps(asyncio.run(run_client(args.url, args.calls, args.seconds))))
        return
    result = asyncio.run(run(args.quick, calls=args.calls, seconds=args.seconds, asr=args.asr))
    print(render(result["load"]))
    print(f"written to {write('load_turns', result)}")


if __name__ == "__main__":
    main()
