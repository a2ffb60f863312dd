"""The client side of the CPU and capacity stages, run as its own pinned process.

``python -m bench.load_client --impl livetalk --calls 10 --seconds 10 --url URL --cpu 0``
opens ``--calls`` calls to a tone peer (:mod:`bench.echo_peer`), streams a tone on each for
``--seconds`` (two-way audio: the peer sends its tone back), and prints one JSON object:
process CPU seconds over the window (all threads: ``resource.getrusage``), CPU per call-second,
the send lateness of every paced frame (p50/p99/max, histogram, share over 20 ms), event-loop
lag, and the audio received per call. Pinning happens first, so every thread inherits it.
With ``--server-pid`` it also reads that process's CPU time (``/proc/PID/stat``, Linux) over
the same window: the far end's cost per call-second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from typing import Any

import numpy as np

import livetalk
from bench.raw_client import RawClient
from bench.signals import lateness_histogram, lateness_ms, percentile, tone

__all__ = ["run_load"]

API_KEY = "sk-bench-local"
_WARMUP_S = 1.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (all its threads), from ``/proc``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _loop_lag(samples: list[float]) -> None:
    while True:
        t = time.monotonic()
        await asyncio.sleep(0.01)
        samples.append((time.monotonic() - t - 0.01) * 1000)


async def run_load(impl: str, url: str, calls: int, seconds: float,
                   server_pid: int | None = None) -> dict[str, Any]:
    """Run the load and return the figures (see the module docstring)."""
    feed_s = seconds + _WARMUP_S + 2
    sends: list[list[tuple[int, float]]] = []
    opened: list[Any] = []
    try:
        for _ in range(calls):
            if impl == "livetalk":
                call = await livetalk.connect(base_url=url, api_key=API_KEY)
                track = call.outbound_track
                log: list[tuple[int, float]] = []
                track.on_frame_sent = (
                    lambda _ms, t=track, log=log: log.append((t.frames - 1, time.monotonic())))
                call.send_audio(tone(feed_s, 24000), 24000)
                sends.append(log)
            else:
                call = await RawClient.connect(url, API_KEY)
                call.track.enqueue(tone(feed_s, 48000))
                sends.append(call.track.sent)
            opened.append(call)
        lag: list[float] = []
        lag_task = asyncio.ensure_future(_loop_lag(lag))
        await asyncio.sleep(_WARMUP_S)
        received0 = [_received_ms(c) for c in opened]
        server0 = _process_cpu_s(server_pid) if server_pid is not None else 0.0
        start, cpu0 = time.monotonic(), _cpu_s()
        await asyncio.sleep(seconds)
        end, cpu = time.monotonic(), _cpu_s() - cpu0
        server = _process_cpu_s(server_pid) - server0 if server_pid is not None else None
        received = [_received_ms(c) - r for c, r in zip(opened, received0, strict=True)]
        lag_task.cancel()
    finally:
        for call in opened:
            await (call.close() if impl == "livetalk" else call.close(url, API_KEY))
    late = np.concatenate([
        lateness_ms(log)[[start <= t <= end for _, t in log]] for log in sends if log])
    result: dict[str, Any] = {
        "impl": impl, "calls": calls, "seconds": round(end - start, 3),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_call_s": round(cpu * 1000 / (calls * (end - start)), 2),
        "core_share": round(cpu / (end - start), 3),
        "frames": int(late.size),
        "late_p50_ms": round(percentile(late, 50), 2),
        "late_p99_ms": round(percentile(late, 99), 2),
        "late_max_ms": round(float(late.max()) if late.size else 0.0, 2),
        "late_over_20ms": round(float(np.mean(late > 20)) if late.size else 0.0, 4),
        "histogram_ms": lateness_histogram(late),
        "loop_lag_p99_ms": round(percentile(lag, 99), 2),
        "received_share": round(float(np.median(received)) / ((end - start) * 1000), 3),
        "pinned_cpus": sorted(os.sched_getaffinity(0)),
    }
    if server is not None:
        result["server_cpu_ms_per_call_s"] = round(server * 1000 / (calls * (end - start)), 2)
    return result


def _received_ms(call: Any) -> float:
    if isinstance(call, RawClient):
        return call.frames_received * 20.0
    reader = call._transport.reader
    return float(reader.received_ms) if reader is not None else 0.0


def main() -> None:
    """Parse the command line, pin, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=("livetalk", "raw"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="also measure this process's CPU over the window")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(json.dumps(asyncio.run(
        run_load(args.impl, args.url, args.calls, args.seconds, args.server_pid))))


if __name__ == "__main__":
    main()
