"""``livetalk script``: run scenario files, print a summary, write a report and a plot.

Register it in ``livetalk.cli.build_parser`` with ``add_script_parser(sub)`` and dispatch
``"script"`` to ``run_script``. Exit status: 0 when every scenario passed, 1 when an
expectation failed or a turn could not be measured, 2 for a bad scenario, price file or
option, and the ``livetalk.cli`` codes (3 auth, 4 connect, 5 timeout, 6 API) when no scenario
could run at all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

from livetalk import cli, errors

__all__ = ["EXIT_FAILED", "add_script_parser", "run_script"]

EXIT_FAILED = 1
"""Some expectation failed or some turn could not be measured (the same value as
``livetalk.cli.EXIT_INTERNAL``)."""


def add_script_parser(subparsers: Any) -> None:
    """Add the ``script`` command to the ``livetalk`` sub-command parsers.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "script", help="run scripted scenarios (YAML/JSON) and report timings, usage, cost",
        description="Run scenario files (or folders of them), each in its own call.")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO",
                   help="scenario files (.yaml, .yml, .json) or folders of them")
    p.add_argument("--base-url", help="API base URL (default OPENAI_BASE_URL or the API)")
    p.add_argument("--api-key", help="API key or ek_ secret (default OPENAI_API_KEY)")
    p.add_argument("--local", action="store_true",
                   help="run against an in-process local server that knows the say: texts "
                        "(with --ray: one in every task, on its node)")
    p.add_argument("--concurrency", type=cli._positive_int, default=1,
                   help="calls at once per process (default 1)")
    p.add_argument("--processes", type=cli._positive_int, default=1,
                   help="worker processes, each with its own event loop (default 1)")
    p.add_argument("--speed", type=cli._positive, default=1.0,
                   help="media speed (local server only; --local matches the server to it)")
    p.add_argument("--report", help="write the JSON report to this file")
    p.add_argument("--plot", help="draw the latency distribution to this PNG (needs matplotlib)")
    p.add_argument("--prices", help="price table (JSON/YAML) overriding the built-in one")
    p.add_argument("--connect-timeout", type=cli._positive, default=15.0)
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run batches of --concurrency scenarios as Ray tasks on the cluster at "
                        "ADDRESS (auto, host:port, ray://host:port) or, without one, on a new "
                        "local Ray instance bound to 127.0.0.1 (needs livetalk[ray]; put it "
                        "after the scenarios, or write --ray=ADDRESS)")
    p.add_argument("--max-calls", type=cli._positive_int,
                   help="at most this many calls live at once across the whole run")
    p.add_argument("--calls-per-minute", type=cli._positive_int,
                   help="at most this many calls started per minute across the whole run")
    p.add_argument("--dry-run", action="store_true",
                   help="print the scenarios, estimated audio minutes and dollars; run nothing")


def _error_code(kind: str | None) -> int:
    from livetalk.scenarios.cluster import CLUSTER_ERROR_KINDS

    if kind in CLUSTER_ERROR_KINDS:
        return EXIT_FAILED
    exc_class = getattr(errors, kind or "", None)
    if not isinstance(exc_class, type):
        return cli.EXIT_API
    if issubclass(exc_class, errors.AuthenticationError):
        return cli.EXIT_AUTH
    if issubclass(exc_class, errors.ConnectTimeout):
        return cli.EXIT_TIMEOUT
    if issubclass(exc_class, errors.ConfigError):
        return cli.EXIT_USAGE
    if issubclass(exc_class, errors.APIStatusError | errors.CallClosedError):
        return cli.EXIT_API
    if issubclass(exc_class, errors.SignalingError | errors.ConnectError):
        return cli.EXIT_CONNECT
    return cli.EXIT_API


def _summary(results: list[Any], out: TextIO) -> None:
    for result in results:
        if result.passed:
            out.write(f"PASS {result.name} ({len(result.turns)} turns, "
                      f"{result.duration_s:.1f} s)\n")
        else:
            out.write(f"FAIL {result.name}\n")
            for line in result.failures:
                out.write(f"     {line}\n")
    passed = sum(r.passed for r in results)
    out.write(f"{passed}/{len(results)} scenarios passed\n")


async def run_script(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run the ``script`` command; returns the exit status.

    Args:
        args: the parsed options of :func:`add_script_parser`.
        out: where the summary goes (default stdout); progress goes to stderr.
    """
    from livetalk.scenarios.pricing import DEFAULT_PRICES, load_prices
    from livetalk.scenarios.report import Progress
    from livetalk.scenarios.runner import run_in_processes, run_scenarios
    from livetalk.scenarios.schema import load_scenarios, scenario_phrases

    stream = out if out is not None else sys.stdout
    try:
        scenarios = load_scenarios(args.scenarios)
        prices = load_prices(args.prices) if args.prices else dict(DEFAULT_PRICES)
        if args.plot:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise errors.ConfigError(
                    "--plot needs matplotlib: pip install 'livetalk[plot]'") from None
    except errors.ConfigError as exc:
        print(f"livetalk: error: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE

    from livetalk.scenarios.limits import CallLimits

    limits = CallLimits(args.max_calls, args.calls_per_minute)
    if args.dry_run:
        return _dry_run(args, scenarios, prices, limits, stream)
    if args.ray and args.processes > 1:
        print("livetalk: error: --ray and --processes exclude each other (Ray spreads the "
              "batches)", file=sys.stderr)
        return cli.EXIT_USAGE
    if limits.active and args.processes > 1:
        print("livetalk: error: --max-calls and --calls-per-minute are shared by one process "
              "or by a Ray cluster, not by --processes; use --ray", file=sys.stderr)
        return cli.EXIT_USAGE

    progress = None if args.no_progress else Progress(len(scenarios))
    options: dict[str, Any] = {"speed": args.speed, "prices": prices,
                               "connect_timeout": args.connect_timeout}
    on_result = progress.update if progress is not None else None

    async def run(base_url: str | None, api_key: str | None) -> list[Any]:
        opts = {**options, "base_url": base_url, "api_key": api_key}
        if args.processes > 1:
            return await run_in_processes(scenarios, processes=args.processes,
                                          concurrency=args.concurrency, on_result=on_result,
                                          **opts)
        if limits.active:
            from livetalk.scenarios.limits import LocalLimiter

            opts["limiter"] = LocalLimiter(limits)
        return await run_scenarios(scenarios, concurrency=args.concurrency,
                                   on_result=on_result, **opts)

    base_url = args.base_url
    if args.ray:
        from livetalk.scenarios.cluster import RayRun

        try:
            ray_run = RayRun(scenarios, address=None if args.ray == "local" else args.ray,
                             concurrency=args.concurrency, local=args.local, base_url=base_url,
                             api_key=args.api_key, limits=limits, on_result=on_result,
                             **options)
            results = await ray_run.run()
        except errors.ConfigError as exc:  # RayUnavailable, an unreadable recording
            print(f"livetalk: error: {exc}", file=sys.stderr)
            return cli.EXIT_USAGE
        except asyncio.CancelledError:  # Ctrl-C: every scenario is accounted for by now
            partial = [r for r in ray_run.results if r is not None]
            _write_outputs(args, partial, base_url, prices, stream)
            print("livetalk: interrupted: the report holds the scenarios that finished",
                  file=sys.stderr)
            raise
    elif args.local:
        from livetalk.scenarios.cluster import LOCAL_API_KEY
        from livetalk.server import serve

        phrases = scenario_phrases(scenarios) or None
        async with serve(port=0, phrases=phrases, realtime_factor=args.speed) as server:
            base_url = server.base_url
            results = await run(base_url, args.api_key or LOCAL_API_KEY)
    else:
        results = await run(base_url, args.api_key)

    report = _write_outputs(args, results, base_url, prices, stream)
    if results and all(r.error is not None and not r.turns for r in results):
        return _error_code(results[0].error_kind)
    return cli.EXIT_OK if report["passed"] else EXIT_FAILED


def _write_outputs(args: argparse.Namespace, results: list[Any], base_url: str | None,
                   prices: Any, stream: TextIO) -> dict[str, Any]:
    """Print the summary, write the report (and the plot); returns the report."""
    from livetalk.scenarios.report import build_report, write_report

    _summary(results, stream)
    report = build_report(results, base_url=base_url, prices=prices, extra={
        "options": {"concurrency": args.concurrency, "processes": args.processes,
                    "local": args.local, "ray": args.ray, "max_calls": args.max_calls,
                    "calls_per_minute": args.calls_per_minute}})
    if args.report:
        write_report(report, args.report)
        stream.write(f"report: {args.report}\n")
    if args.plot and any(r.turns for r in results):
        from livetalk.scenarios.plot import plot_latencies

        try:
            plot_latencies(results, args.plot)
        except errors.ConfigError as exc:
            print(f"livetalk: warning: no plot: {exc}", file=sys.stderr)
        else:
            stream.write(f"plot: {args.plot}\n")
    return report


def _dry_run(args: argparse.Namespace, scenarios: list[Any], prices: Any, limits: Any,
             stream: TextIO) -> int:
    """``--dry-run``: the estimate and the plan; nothing is run."""
    from livetalk.scenarios.cluster import task_resources
    from livetalk.scenarios.estimate import estimate_batch

    try:
        estimate = estimate_batch(scenarios, prices=prices)
    except Exception as exc:  # av.error.FFmpegError: a recording that cannot be probed
        print(f"livetalk: error: cannot estimate: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    for line in estimate.lines():
        stream.write(line + "\n")
    tasks = -(-len(scenarios) // args.concurrency)
    if args.ray:
        where = "a new local Ray instance" if args.ray == "local" else f"Ray at {args.ray}"
        res = task_resources(args.concurrency, args.speed, args.local)
        plan = (f"plan: {tasks} Ray task{'s' if tasks != 1 else ''} on {where}, up to "
                f"{args.concurrency} calls each, "
                f"each asking {res['num_cpus']:g} CPUs and {res['memory'] / 2**20:.0f} MiB")
    elif args.processes > 1:
        plan = (f"plan: {args.processes} processes, {args.concurrency} calls at once in "
                "each")
    else:
        plan = f"plan: one process, {args.concurrency} calls at once"
    caps = [f"{limits.max_concurrent} calls at once"] if limits.max_concurrent else []
    caps += [f"{limits.per_minute} calls per minute"] if limits.per_minute else []
    plan += "; " + (" and ".join(caps) if caps else "no cap") + " across the run"
    plan += "; against local servers" if args.local else ""
    stream.write(plan + "\n")
    return cli.EXIT_OK
