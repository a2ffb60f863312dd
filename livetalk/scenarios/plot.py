"""A PNG of the latency distributions of a batch (needs the ``plot`` extra: matplotlib).

:func:`plot_latencies` draws one box plot per metric (transcript, first audio, first audio
heard, reply done), with every measured turn as a dot over its box and the p50/p95 in the
label. It uses matplotlib's object API with the Agg canvas, so it needs no display and does
not touch pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from livetalk._extras import missing_extra
from livetalk.errors import ConfigError
from livetalk.scenarios.report import LATENCY_METRICS, latency_values, percentile
from livetalk.scenarios.runner import ScenarioResult

__all__ = ["plot_latencies"]

_LABELS = {
    "transcript": "transcript",
    "first_audio": "first audio\n(event)",
    "first_audio_heard": "first audio\n(heard)",
    "reply_done": "reply done",
}



def plot_latencies(results: Sequence[ScenarioResult], path: str | Path, *,
                   title: str | None = None) -> Path:
    """Draw the latency distributions of ``results`` into a PNG at ``path``.

    Metrics without any measured value are left out.

    Returns:
        The path written.

    Raises:
        MissingExtraError: matplotlib (the ``plot`` extra) is missing.
        ConfigError: no turn has any measured latency.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise missing_extra("plot", "plot_latencies()", ["matplotlib"]) from None
    values = latency_values(results)
    metrics = [m for m in LATENCY_METRICS if values[m]]
    if not metrics:
        raise ConfigError("no turn has a measured latency to plot")
    fig = Figure(figsize=(2.2 * len(metrics) + 2, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    data = [values[m] for m in metrics]
    ax.boxplot(data, showfliers=False)
    rng = np.random.default_rng(0)
    for i, series in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(series)), series, s=10, alpha=0.6,
                   color="tab:blue")
    ax.set_xticks(range(1, len(metrics) + 1))
    ax.set_xticklabels([
        f"{_LABELS[m]}\np50 {percentile(values[m], 50):.0f} p95 {percentile(values[m], 95):.0f}"
        f"\nn={len(values[m])}" for m in metrics
    ])
    ax.set_ylabel("ms after end of user speech")
    turns = sum(len(r.turns) for r in results)
    ax.set_title(title or f"livetalk latency: {len(results)} scenarios, {turns} turns")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    target = Path(path)
    fig.savefig(target, format="png")
    return target
