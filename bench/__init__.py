"""livetalk's benchmarks: ``make bench`` (``python -m bench.run_all``).

Each stage compares livetalk with a minimal raw-aiortc client (:mod:`bench.raw_client`) in the
same run, alternating the two, and reports medians and ratios. The building blocks live in
:mod:`bench.signals` (chirps, detection, lateness), :mod:`bench.echo_peer` (an aiortc answerer
that echoes audio or sends a pre-encoded tone), :mod:`bench.stages` (one measurement each) and
:mod:`bench.load_client` (the pinned subprocess of the CPU and capacity stages);
:mod:`bench.report` renders the table, ``bench/results/latest.json`` and
``docs/performance.md``.
"""
