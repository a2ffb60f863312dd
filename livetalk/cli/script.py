"""``livetalk script``: run scenario files, print a summary, write a report and a plot."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any, TextIO

from livetalk import errors
from livetalk._extras import require
from livetalk.cli._args import (
    HelpFormatter,
    add_api_options,
    add_connect_timeout,
    check_output_path,
    positive,
    positive_int,
    require_api_key,
)
from livetalk.cli._output import Output
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import ExitStatus, status_for_class

if TYPE_CHECKING:
    from livetalk.scenarios.runner import ScenarioResult
    from livetalk.scenarios.schema import Scenario

__all__ = ["add_parser", "main"]

DESCRIPTION = """\
Play scripted conversations (YAML or JSON scenario files, or folders of them) into live
calls, each in its own call, and measure every user turn: transcript, reply, latencies,
tokens, estimated cost, and the expectations the scenario states. Inputs (scenarios, price
table, the extras they need) are checked before any call starts.

Batches can run as tasks on a Ray cluster (--ray), each with its own local server with
--local, under caps shared by the whole run (--max-calls, --calls-per-minute); --dry-run
prints the scenarios, the estimated audio minutes and dollars, and the plan.

Exit status: 0 every scenario passed; 1 an expectation failed, a turn could not be
measured, or a cluster task died; 2 a bad scenario, price file or option (nothing ran);
when no scenario could run at all, the status of its error (3 no or refused key, 4 cannot
connect, 5 timeout, 6 API).

  livetalk script examples/scenarios --local --speed 4 --report report.json
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``script`` to the sub-commands."""
    p = sub.add_parser(
        "script", help="run scripted scenarios (YAML/JSON) and report timings, usage, cost",
        description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO",
                   help="scenario files (.yaml, .yml, .json) or folders of them")
    add_api_options(p)
    p.add_argument("--local", action="store_true",
                   help="run against an in-process local server that knows the scenarios' "
                   "say: and text: phrases (needs the 'server' extra; no key needed; with "
                   "--ray: one in every task, on its node)")
    p.add_argument("--concurrency", type=positive_int, default=1, metavar="N",
                   help="calls at once per process")
    p.add_argument("--processes", type=positive_int, default=1, metavar="P",
                   help="worker processes, each with its own event loop")
    p.add_argument("--speed", type=positive, default=1.0, metavar="N",
                   help="media speed (local server only; --local matches the server to it)")
    p.add_argument("--report", metavar="FILE", help="write the JSON report to FILE")
    p.add_argument("--plot", metavar="PNG",
                   help="draw the latency distribution to PNG (needs the 'plot' extra)")
    p.add_argument("--prices", metavar="FILE",
                   help="price table (JSON/YAML) overriding the built-in one")
    add_connect_timeout(p)
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run batches of --concurrency scenarios as Ray tasks on the cluster at "
                   "ADDRESS (auto, host:port, ray://host:port) or, without one, on a new "
                   "local Ray instance bound to 127.0.0.1 (needs the 'ray' extra; put it "
                   "after the scenarios, or write --ray=ADDRESS)")
    p.add_argument("--max-calls", type=positive_int, metavar="N",
                   help="at most N calls live at once across the whole run")
    p.add_argument("--calls-per-minute", type=positive_int, metavar="N",
                   help="at most N calls started per minute across the whole run")
    p.add_argument("--dry-run", action="store_true",
                   help="print the scenarios, estimated audio minutes and dollars; run nothing")
    p.set_defaults(command=main)


def _check_inputs(args: argparse.Namespace) -> tuple[list[Scenario], dict[str, Any]]:
    """Load and check everything before a call starts; raise a ConfigError if anything is
    wrong."""
    from livetalk.scenarios.pricing import DEFAULT_PRICES, load_prices
    from livetalk.scenarios.schema import TurnKind, load_scenarios

    scenarios = load_scenarios(args.scenarios)
    prices = load_prices(args.prices) if args.prices else dict(DEFAULT_PRICES)
    check_output_path(args.report, "--report")
    check_output_path(args.plot, "--plot")
    if args.plot:
        require("plot", "--plot")
    if args.ray:
        require("ray", "--ray")
        if args.processes > 1:
            raise errors.ConfigError("--ray and --processes exclude each other (Ray spreads "
                                     "the batches)")
    elif (args.max_calls or args.calls_per_minute) and args.processes > 1:
        raise errors.ConfigError("--max-calls and --calls-per-minute are shared by one process "
                                 "or by a Ray cluster, not by --processes; use --ray")
    if args.dry_run:
        return scenarios, prices
    if args.local:
        require("server", "--local")
    elif any(t.kind is TurnKind.SAY for s in scenarios for t in s.turns):
        require("server", "say: turns (spoken by the local server's espeak-ng voice)")
    if not args.local:
        require_api_key(args)
    return scenarios, prices


def _summary(results: list[ScenarioResult], out: Output) -> None:
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


async def main(args: argparse.Namespace, runtime: Runtime) -> ExitStatus:
    """Run ``livetalk script``."""
    from livetalk.scenarios.cluster import LOCAL_API_KEY
    from livetalk.scenarios.limits import CallLimits, LocalLimiter
    from livetalk.scenarios.report import Progress
    from livetalk.scenarios.runner import run_in_processes, run_scenarios
    from livetalk.scenarios.schema import local_recogniser, scenario_phrases

    scenarios, prices = _check_inputs(args)
    out = Output(runtime)
    limits = CallLimits(args.max_calls, args.calls_per_minute)
    if args.dry_run:
        return _dry_run(args, scenarios, prices, limits, out)
    progress = None if args.no_progress else Progress(len(scenarios))
    options: dict[str, Any] = {"speed": args.speed, "prices": prices,
                               "connect_timeout": args.connect_timeout}
    on_result = progress.update if progress is not None else None

    async def run(base_url: str | None, api_key: str | None) -> list[ScenarioResult]:
        opts = {**options, "base_url": base_url, "api_key": api_key}
        if args.processes > 1:
            return await run_in_processes(scenarios, processes=args.processes,
                                          concurrency=args.concurrency, on_result=on_result,
                                          **opts)
        if limits.active:
            opts["limiter"] = LocalLimiter(limits)
        return await run_scenarios(scenarios, concurrency=args.concurrency,
                                   on_result=on_result, **opts)

    base_url = args.base_url
    if args.ray:
        from livetalk.scenarios.cluster import RayRun

        ray_run = RayRun(scenarios, address=None if args.ray == "local" else args.ray,
                         concurrency=args.concurrency, local=args.local, base_url=base_url,
                         api_key=args.api_key, limits=limits, on_result=on_result, **options)
        try:
            results = await ray_run.run()
        except asyncio.CancelledError:  # Ctrl-C: every scenario is accounted for by now
            partial = [r for r in ray_run.results if r is not None]
            _write_outputs(args, partial, base_url, prices, out)
            print("livetalk: interrupted: the report holds the scenarios that finished",
                  file=sys.stderr)
            raise
    elif args.local:
        from livetalk.server import serve

        phrases = scenario_phrases(scenarios)
        async with serve(port=0, phrases=phrases or None, asr=local_recogniser(phrases),
                         realtime_factor=args.speed) as server:
            base_url = server.base_url
            results = await run(base_url, args.api_key or LOCAL_API_KEY)
    else:
        results = await run(base_url, args.api_key)

    report = _write_outputs(args, results, base_url, prices, out)
    if results and all(r.error is not None and not r.turns for r in results):
        return _status_of_kind(results[0].error_kind)
    return ExitStatus.OK if report["passed"] else ExitStatus.FAILED


def _write_outputs(args: argparse.Namespace, results: list[ScenarioResult],
                   base_url: str | None, prices: Any, out: Output) -> dict[str, Any]:
    """Print the summary, write the report (and the plot); returns the report."""
    from livetalk.scenarios.report import build_report, write_report

    _summary(results, out)
    report = build_report(results, base_url=base_url, prices=prices, extra={
        "options": {"concurrency": args.concurrency, "processes": args.processes,
                    "local": args.local, "ray": args.ray, "max_calls": args.max_calls,
                    "calls_per_minute": args.calls_per_minute}})
    if args.report:
        write_report(report, args.report)
        out.write(f"report: {args.report}\n")
    if args.plot and any(r.turns for r in results):
        from livetalk.scenarios.plot import plot_latencies

        try:
            plot_latencies(results, args.plot)
        except errors.ConfigError as exc:
            print(f"livetalk: warning: no plot: {exc}", file=sys.stderr)
        else:
            out.write(f"plot: {args.plot}\n")
    return report


def _dry_run(args: argparse.Namespace, scenarios: list[Scenario], prices: Any, limits: Any,
             out: Output | TextIO) -> ExitStatus:
    """``--dry-run``: the estimate and the plan; nothing is run."""
    from livetalk.scenarios.cluster import task_resources
    from livetalk.scenarios.estimate import estimate_batch

    try:
        estimate = estimate_batch(scenarios, prices=prices)
    except Exception as exc:  # av.error.FFmpegError: a recording that cannot be probed
        raise errors.ConfigError(f"cannot estimate: {exc}") from exc
    for line in estimate.lines():
        out.write(line + "\n")
    tasks = -(-len(scenarios) // args.concurrency)
    if args.ray:
        where = "a new local Ray instance" if args.ray == "local" else f"Ray at {args.ray}"
        res = task_resources(args.concurrency, args.speed, args.local)
        plan = (f"plan: {tasks} Ray task{'s' if tasks != 1 else ''} on {where}, up to "
                f"{args.concurrency} calls each, "
                f"each asking {res['num_cpus']:g} CPUs and {res['memory'] / 2**20:.0f} MiB")
    elif args.processes > 1:
        plan = f"plan: {args.processes} processes, {args.concurrency} calls at once in each"
    else:
        plan = f"plan: one process, {args.concurrency} calls at once"
    caps = [f"{limits.max_concurrent} calls at once"] if limits.max_concurrent else []
    caps += [f"{limits.per_minute} calls per minute"] if limits.per_minute else []
    plan += "; " + (" and ".join(caps) if caps else "no cap") + " across the run"
    plan += "; against local servers" if args.local else ""
    out.write(plan + "\n")
    return ExitStatus.OK


def _status_of_kind(kind: str | None) -> ExitStatus:
    """The exit status of a scenario's error, known by its class name (``error_kind``)."""
    from livetalk.scenarios.cluster import CLUSTER_ERROR_KINDS

    if kind in CLUSTER_ERROR_KINDS:
        return ExitStatus.FAILED
    error_class = getattr(errors, kind or "", None)
    status = None
    if isinstance(error_class, type) and issubclass(error_class, BaseException):
        status = status_for_class(error_class)
    return status if status is not None else ExitStatus.API
