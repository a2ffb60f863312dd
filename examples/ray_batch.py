"""Run scenario batches as Ray tasks (a local Ray cluster, or an existing one).

Ray is not a livetalk dependency: ``pip install ray`` first. Each task runs a batch of
scenarios in its own event loop with ``concurrency`` calls at once and returns the results;
the driver writes one report. One live call costs about 8 % of a core, so give each task
``num_cpus = concurrency * 0.1`` or so, and keep ``concurrency`` around 10 per task.

    python examples/ray_batch.py examples/scenarios --base-url http://127.0.0.1:8765/v1 \\
        --api-key sk-local --concurrency 4 --report ray-report.json

Scenario files must be readable on every node (same paths) and every node must reach the
base URL. Against the local server, start ``livetalk serve`` with ``--phrases`` listing the
scenarios' ``say:`` texts and ``--host`` an address the nodes can reach.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import ray

from livetalk.scenarios import (
    ScenarioResult,
    build_report,
    load_scenarios,
    run_scenarios,
    write_report,
)


@ray.remote
def run_batch(paths: list[str], concurrency: int, options: dict[str, Any]) -> list[ScenarioResult]:
    """One Ray task: load the scenarios on the worker and run them in one event loop."""
    return asyncio.run(run_scenarios(load_scenarios(paths), concurrency=concurrency, **options))


def main() -> None:
    """Split the scenarios into batches of ``--concurrency``, one Ray task each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+")
    parser.add_argument("--base-url")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--report", default="ray-report.json")
    args = parser.parse_args()

    paths = [str(s.path) for s in load_scenarios(args.scenarios)]  # validate up front
    batches = [paths[i:i + args.concurrency] for i in range(0, len(paths), args.concurrency)]
    options = {"base_url": args.base_url, "api_key": args.api_key, "speed": args.speed}
    ray.init()
    task = run_batch.options(num_cpus=max(0.1, 0.1 * args.concurrency))
    futures = [task.remote(batch, args.concurrency, options) for batch in batches]
    results = [r for batch in ray.get(futures) for r in batch]
    write_report(build_report(results, base_url=args.base_url), args.report)
    passed = sum(r.passed for r in results)
    print(f"{passed}/{len(results)} scenarios passed; report: {args.report}")


if __name__ == "__main__":
    main()
