"""``livetalk script``: run scenario files, print a summary, write a report and a plot.

Register it in ``livetalk.cli.build_parser`` with ``add_script_parser(sub)`` and dispatch
``"script"`` to ``run_script``. Exit status: 0 when every scenario passed, 1 when an
expectation failed or a turn could not be measured, 2 for a bad scenario, price file or
option, and the ``livetalk.cli`` codes (3 auth, 4 connect, 5 timeout, 6 API) when no scenario
could run at all.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from livetalk import cli, errors

__all__ = ["EXIT_FAILED", "add_script_parser", "run_script"]

EXIT_FAILED = 1
"""Some expectation failed or some turn could not be measured (the same value as
``livetalk.cli.EXIT_INTERNAL``)."""
_LOCAL_KEY = "sk-livetalk-local"


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
                   help="run against an in-process local server that knows the say: texts")
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


def _error_code(kind: str | None) -> int:
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
    from livetalk.scenarios.report import Progress, build_report, write_report
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

    progress = None if args.no_progress else Progress(len(scenarios))
    options: dict[str, Any] = {"speed": args.speed, "prices": prices,
                               "connect_timeout": args.connect_timeout}

    async def run(base_url: str | None, api_key: str | None) -> list[Any]:
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
            results = await run(base_url, args.api_key or _LOCAL_KEY)
    else:
        results = await run(base_url, args.api_key)

    _summary(results, stream)
    report = build_report(results, base_url=base_url, prices=prices, extra={
        "options": {"concurrency": args.concurrency, "processes": args.processes,
                    "local": args.local}})
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
    if results and all(r.error is not None and not r.turns for r in results):
        return _error_code(results[0].error_kind)
    return cli.EXIT_OK if report["passed"] else EXIT_FAILED
