"""``livetalk script``: run scenario files, print a summary, write a report and a plot."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

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

__all__ = ["LOCAL_KEY", "add_parser", "main"]

LOCAL_KEY = "sk-livetalk-local"
"""The key presented to the in-process server of ``--local``."""

DESCRIPTION = """\
Play scripted conversations (YAML or JSON scenario files, or folders of them) into live
calls, each in its own call, and measure every user turn: transcript, reply, latencies,
tokens, estimated cost, and the expectations the scenario states. Inputs (scenarios, price
table, the extras they need) are checked before any call starts.

Exit status: 0 every scenario passed; 1 an expectation failed or a turn could not be
measured; 2 a bad scenario, price file or option (nothing ran); when no scenario could run
at all, the status of its error (3 no or refused key, 4 cannot connect, 5 timeout, 6 API).

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
                   "say: and text: phrases (needs the 'server' extra; no key needed)")
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
    from livetalk.scenarios.report import Progress, build_report, write_report
    from livetalk.scenarios.runner import run_in_processes, run_scenarios
    from livetalk.scenarios.schema import scenario_phrases

    scenarios, prices = _check_inputs(args)
    out = Output(runtime)
    progress = None if args.no_progress else Progress(len(scenarios))
    options: dict[str, Any] = {"speed": args.speed, "prices": prices,
                               "connect_timeout": args.connect_timeout}

    async def run(base_url: str | None, api_key: str | None) -> list[ScenarioResult]:
        opts = {**options, "base_url": base_url, "api_key": api_key}
        on_result = progress.update if progress is not None else None
        if args.processes > 1:
            return await run_in_processes(scenarios, processes=args.processes,
                                          concurrency=args.concurrency, on_result=on_result,
                                          **opts)
        return await run_scenarios(scenarios, concurrency=args.concurrency,
                                   on_result=on_result, **opts)

    base_url = args.base_url
    if args.local:
        from livetalk.server import serve

        phrases = scenario_phrases(scenarios) or None
        async with serve(port=0, phrases=phrases, realtime_factor=args.speed) as server:
            base_url = server.base_url
            results = await run(base_url, args.api_key or LOCAL_KEY)
    else:
        results = await run(base_url, args.api_key)

    _summary(results, out)
    report = build_report(results, base_url=base_url, prices=prices, extra={
        "options": {"concurrency": args.concurrency, "processes": args.processes,
                    "local": args.local}})
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
    if results and all(r.error is not None and not r.turns for r in results):
        return _status_of_kind(results[0].error_kind)
    return ExitStatus.OK if report["passed"] else ExitStatus.FAILED


def _status_of_kind(kind: str | None) -> ExitStatus:
    """The exit status of a scenario's error, known by its class name (``error_kind``)."""
    error_class = getattr(errors, kind or "", None)
    status = None
    if isinstance(error_class, type) and issubclass(error_class, BaseException):
        status = status_for_class(error_class)
    return status if status is not None else ExitStatus.API
