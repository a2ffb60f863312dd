"""Scenarios per minute: one process, ``--processes``, and Ray with two workers; Ray's overhead.

``python -m bench.scenarios_scale [--scenarios 24] [--rounds 2] [--speed 4]`` runs the same
batch of one-turn scenarios (a ``say`` turn checked by ``transcript_contains``) against
livetalk's local server, four calls at once in every mode, alternating the modes each round:

- **one process**: ``run_scenarios(concurrency=4)`` with an in-process local server (what
  ``livetalk script --local --concurrency 4`` does);
- **processes**: ``run_in_processes(processes=2, concurrency=2)`` against one local server in
  the driver (``--local --processes 2 --concurrency 2``);
- **ray**: ``RayRun(concurrency=2, local=True)`` on a :class:`LocalRayCluster` with 2 CPUs,
  one CPU per task so that two workers run at once (``--ray ADDRESS --local --concurrency
  2``), each task with its own local server.

Ray's overhead per scenario is its wall time minus the one-process wall time, per scenario,
in the same round; the bench also times a no-op Ray task (submit to result) and joining the
cluster. A second part measures the CPU one live scenario call costs (client alone against a
separate ``livetalk serve`` process, and client plus in-process server) at speed 1 and at the
bench speed: the figures behind ``CPU_PER_CALL`` and ``CPU_PER_LOCAL_CALL`` of
:mod:`livetalk.scenarios.cluster`. Results go to ``bench/results/scenarios_scale.json``.

Everything runs on 127.0.0.1; the machine is shared, so read the ratios of one round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import machine
from livetalk.scenarios import Scenario, run_in_processes, run_scenarios, scenario_from_dict
from livetalk.testing.raycluster import LocalRayCluster

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "scenarios_scale.json"
PHRASES = ["please book a table for two", "can we sit outside tonight",
           "actually make it three", "what is the weather like today", "thank you goodbye"]
KEY = "sk-bench-local"
CALLS_AT_ONCE = 4


def batch(count: int) -> list[Scenario]:
    """``count`` one-turn scenarios cycling through :data:`PHRASES`."""
    return [scenario_from_dict({"name": f"s{i:03d}", "turns": [
        {"say": PHRASES[i % len(PHRASES)],
         "expect": {"transcript_contains": PHRASES[i % len(PHRASES)]}}]})
        for i in range(count)]


def _summary(mode: str, wall: float, results: list[Any]) -> dict[str, Any]:
    return {"mode": mode, "wall_s": round(wall, 2), "scenarios": len(results),
            "passed": sum(r.passed for r in results),
            "per_minute": round(len(results) * 60 / wall, 1),
            "scenario_s_median": round(statistics.median(r.duration_s for r in results), 2)}


async def one_process(scenarios: list[Scenario], speed: float) -> dict[str, Any]:
    from livetalk.server import serve

    async with serve(port=0, phrases=PHRASES, realtime_factor=speed) as server:
        start = time.monotonic()
        results = await run_scenarios(scenarios, concurrency=CALLS_AT_ONCE,
                                      base_url=server.base_url, api_key=KEY, speed=speed)
        return _summary("one process", time.monotonic() - start, results)


async def processes(scenarios: list[Scenario], speed: float) -> dict[str, Any]:
    from livetalk.server import serve

    async with serve(port=0, phrases=PHRASES, realtime_factor=speed) as server:
        start = time.monotonic()
        results = await run_in_processes(scenarios, processes=2,
                                         concurrency=CALLS_AT_ONCE // 2,
                                         base_url=server.base_url, api_key=KEY, speed=speed)
        return _summary("processes (2 x 2)", time.monotonic() - start, results)


async def on_ray(scenarios: list[Scenario], speed: float, address: str) -> dict[str, Any]:
    from livetalk.scenarios.cluster import RayRun

    run = RayRun(scenarios, address=address, concurrency=CALLS_AT_ONCE // 2, local=True,
                 speed=speed, num_cpus=1.0)
    start = time.monotonic()
    results = await run.run()  # joining the cluster is part of the cost
    return _summary("ray (2 workers x 2)", time.monotonic() - start, results)


def ray_noop(address: str, tasks: int = 40) -> dict[str, float]:
    """Joining the cluster, and a no-op task's submit-to-result time (sequential)."""
    import ray

    start = time.monotonic()
    ray.init(address=address, log_to_driver=False)
    joined = time.monotonic() - start

    @ray.remote(num_cpus=0.1)
    def noop() -> int:
        return 0

    ray.get(noop.remote())  # a worker is up
    times = []
    for _ in range(tasks):
        t = time.monotonic()
        ray.get(noop.remote())
        times.append(time.monotonic() - t)
    ray.shutdown()
    return {"join_s": round(joined, 2),
            "noop_task_ms_median": round(statistics.median(times) * 1000, 1)}


# ---------------------------------------------------------------------- CPU per call
def _cpu_run(code: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=600, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


_CPU_CODE = """
import asyncio, json, resource, time
from bench.scenarios_scale import KEY, PHRASES, batch
from livetalk.scenarios import run_scenarios
speed, count, url = {speed!r}, {count!r}, {url!r}
async def main():
    scenarios = batch(count)
    async def go(base_url):
        await run_scenarios(scenarios[:1], base_url=base_url, api_key=KEY, speed=speed)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        results = await run_scenarios(scenarios, concurrency=2, base_url=base_url,
                                      api_key=KEY, speed=speed)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        call_s = sum(r.duration_s for r in results)
        hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")]
        return {{"cpu_per_call": round(cpu / call_s, 3), "passed": sum(r.passed for r in results),
                "scenarios": len(results), "max_rss_mb": round(int(hwm[0].split()[1]) / 1024)}}
    if url:
        return await go(url)
    from livetalk.server import serve
    async with serve(port=0, phrases=PHRASES, realtime_factor=speed) as server:
        return await go(server.base_url)
print(json.dumps(asyncio.run(main())))
"""


def cpu_per_call(speed: float, count: int) -> dict[str, Any]:
    """CPUs per live call: client alone (server in another process), client + server."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(PHRASES) + "\n")
        phrases = f.name
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "livetalk", "serve", "--port", str(port),
                               "--phrases", phrases, "--realtime-factor", str(speed)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(4)
        client = _cpu_run(_CPU_CODE.format(speed=speed, count=count,
                                           url=f"http://127.0.0.1:{port}/v1"))
    finally:
        server.terminate()
        server.wait(30)
        os.unlink(phrases)
    both = _cpu_run(_CPU_CODE.format(speed=speed, count=count, url=""))
    return {"speed": speed, "client": client, "client_and_server": both}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    info = machine()
    scenarios = batch(args.scenarios)
    rounds: list[list[dict[str, Any]]] = []
    with LocalRayCluster(num_cpus=2) as cluster:
        os.environ.update(cluster.driver_env)
        noop = ray_noop(cluster.address)
        for n in range(args.rounds):
            row = [await one_process(scenarios, args.speed),
                   await processes(scenarios, args.speed),
                   await on_ray(scenarios, args.speed, cluster.address)]
            base = row[0]["wall_s"] / row[0]["scenarios"]
            for entry in row:
                entry["extra_s_per_scenario"] = round(entry["wall_s"] / entry["scenarios"]
                                                      - base, 3)
            rounds.append(row)
            print(f"round {n + 1}: " + "; ".join(
                f"{e['mode']}: {e['per_minute']}/min ({e['passed']}/{e['scenarios']} passed)"
                for e in row), flush=True)
    cpu = [cpu_per_call(1.0, 6), cpu_per_call(args.speed, 8)]
    info["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return {"machine": info, "speed": args.speed, "calls_at_once": CALLS_AT_ONCE,
            "ray": noop, "rounds": rounds, "cpu_per_call": cpu}


def render(data: dict[str, Any]) -> str:
    """The markdown tables of docs/researchers.md."""
    lines = ["| mode | scenarios per minute | passed | extra wall s per scenario vs one "
             "process |", "|---|---|---|---|"]
    for row in data["rounds"]:
        for e in row:
            lines.append(f"| {e['mode']} | {e['per_minute']} | {e['passed']}/{e['scenarios']} "
                         f"| {e['extra_s_per_scenario']:+.2f} |")
    lines += ["", f"Ray: joining the cluster {data['ray']['join_s']} s, a no-op task "
              f"{data['ray']['noop_task_ms_median']} ms from submit to result.", "",
              "| speed | client CPUs per live call | client + local server | peak RSS "
              "(client + server) |", "|---|---|---|---|"]
    for c in data["cpu_per_call"]:
        lines.append(f"| {c['speed']:g} | {c['client']['cpu_per_call']} | "
                     f"{c['client_and_server']['cpu_per_call']} | "
                     f"{c['client_and_server']['max_rss_mb']} MB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the bench, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--speed", type=float, default=4.0)
    args = parser.parse_args(argv)
    data = asyncio.run(main_async(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(render(data))
    print(f"machine load average {data['machine']['load_avg']} -> "
          f"{data['machine']['load_avg_end']}; results: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
