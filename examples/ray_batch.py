"""Run scenario files as Ray tasks from Python, with local servers on the workers.

Offline (a local server in every task, on 127.0.0.1 of its node), on a new local Ray
instance or on an existing cluster::

    pip install "livetalk[server,scenarios,ray]"
    python examples/ray_batch.py examples/scenarios/booking.yaml --speed 4
    python examples/ray_batch.py examples/scenarios --address 10.0.0.5:6379 --report r.json

Against the Realtime API instead (OPENAI_API_KEY travels with the tasks), capped at 20
calls at once and 100 started per minute across the whole cluster::

    python examples/ray_batch.py examples/scenarios --api --max-calls 20 --per-minute 100

The command line does the same: ``livetalk script examples/scenarios --ray --local``. Every
scenario comes back exactly once: a worker that dies, a task that raises or a node that
cannot connect turns its scenarios into errors with the reason, in the same report.
"""

from __future__ import annotations

import argparse
import asyncio

from livetalk.scenarios import build_report, load_scenarios, write_report
from livetalk.scenarios.cluster import run_on_ray
from livetalk.scenarios.estimate import estimate_batch
from livetalk.scenarios.limits import CallLimits


async def main() -> int:
    """Estimate, run on Ray, print a line per scenario, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+", help="scenario files or folders")
    parser.add_argument("--address", help="Ray cluster (default: a new local instance)")
    parser.add_argument("--api", action="store_true", help="the Realtime API, not local servers")
    parser.add_argument("--concurrency", type=int, default=2, help="calls per task")
    parser.add_argument("--speed", type=float, default=1.0, help="media speed (local only)")
    parser.add_argument("--max-calls", type=int, help="calls at once, cluster-wide")
    parser.add_argument("--per-minute", type=int, help="calls started per minute, cluster-wide")
    parser.add_argument("--report", help="write the JSON report here")
    args = parser.parse_args()

    scenarios = load_scenarios(args.scenarios)
    print(estimate_batch(scenarios).lines()[-1])  # what the API would bill, before running
    results = await run_on_ray(
        scenarios, address=args.address, concurrency=args.concurrency, local=not args.api,
        speed=args.speed if not args.api else 1.0,
        limits=CallLimits(args.max_calls, args.per_minute),
        on_result=lambda r: print(f"{'PASS' if r.passed else 'FAIL'} {r.name}", flush=True))
    if args.report:
        write_report(build_report(results, extra={"options": {"ray": args.address}}),
                     args.report)
    passed = sum(r.passed for r in results)
    print(f"{passed}/{len(results)} scenarios passed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
