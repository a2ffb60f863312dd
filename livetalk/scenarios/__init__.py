"""Scripted sessions: scenario files in, transcripts, latencies, token usage and cost out.

Load a scenario (YAML or JSON), run it in a call, read the result::

    from livetalk.scenarios import load_scenario, run_scenario

    scenario = load_scenario("booking.yaml")
    result = await run_scenario(scenario, base_url=srv.base_url, api_key="sk-local")
    assert result.passed, "\\n".join(result.failures)

Many at once: :func:`run_scenarios` (one event loop) or :func:`run_in_processes`; a JSON
report with :func:`build_report` / :func:`write_report`; a latency PNG with
:func:`plot_latencies` (``plot`` extra). From the shell: ``livetalk script``. See
``docs/researchers.md``.
"""

from __future__ import annotations

from livetalk.scenarios.plot import plot_latencies
from livetalk.scenarios.pricing import (
    DEFAULT_PRICES,
    TRANSCRIPTION_PRICES,
    ModelPrices,
    PriceTable,
    PriceTableError,
    TranscriptionPrices,
    estimate_cost,
    estimate_transcription_cost,
    load_prices,
)
from livetalk.scenarios.report import Progress, build_report, percentile, write_report
from livetalk.scenarios.runner import (
    ExpectationResult,
    ScenarioResult,
    TurnResult,
    check_expectations,
    run_in_processes,
    run_scenario,
    run_scenarios,
)
from livetalk.scenarios.schema import (
    EXPECTATION_KEYS,
    Expectation,
    Scenario,
    ScenarioError,
    ScenarioTurn,
    TurnKind,
    load_scenario,
    load_scenarios,
    normalize_text,
    scenario_from_dict,
    scenario_phrases,
)

__all__ = [
    "DEFAULT_PRICES",
    "EXPECTATION_KEYS",
    "Expectation",
    "ExpectationResult",
    "ModelPrices",
    "PriceTable",
    "PriceTableError",
    "Progress",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "ScenarioTurn",
    "TRANSCRIPTION_PRICES",
    "TranscriptionPrices",
    "TurnKind",
    "TurnResult",
    "build_report",
    "check_expectations",
    "estimate_cost",
    "estimate_transcription_cost",
    "load_prices",
    "load_scenario",
    "load_scenarios",
    "normalize_text",
    "percentile",
    "plot_latencies",
    "run_in_processes",
    "run_scenario",
    "run_scenarios",
    "scenario_from_dict",
    "scenario_phrases",
    "write_report",
]
