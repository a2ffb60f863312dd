"""Helpers for test suites that exercise voice flows against livetalk's local server.

With livetalk installed, pytest loads :mod:`livetalk.testing.pytest_plugin`, which provides
the fixtures ``livetalk_server_options``, ``livetalk_server``, ``livetalk_session`` and
``livetalk_call``. This module holds what the tests call::

    from livetalk.testing import assert_scenario_passed, assert_turns, run_scenario, speech

    async def test_booking(livetalk_server):
        result = await run_scenario("scenarios/booking.yaml", livetalk_server)
        assert_scenario_passed(result)

    async def test_greeting(livetalk_call):
        await livetalk_call.stream(speech("hello can you hear me"))
        turns = await livetalk_call.wait_for_turns(2, timeout=30)
        assert_turns(turns, [("user", "hello"), ("assistant", "you said")])

See ``docs/test-harnesses.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the scenario machinery (numpy, PyAV) is imported when first used
    from livetalk.scenarios.runner import ScenarioResult
    from livetalk.scenarios.schema import Scenario
    from livetalk.server.asr import AsrChoice
    from livetalk.testing.memory import (
        MemoryOutput as MemoryOutput,
        MemoryTransport as MemoryTransport,
        memory_session as memory_session,
    )

__all__ = [
    "TEST_API_KEY",
    "MemoryOutput",
    "MemoryTransport",
    "assert_scenario_passed",
    "assert_turns",
    "memory_session",
    "run_scenario",
    "shared_synthesizer",
    "shared_transcriber",
    "speech",
]

_MEMORY = ("MemoryOutput", "MemoryTransport", "memory_session")


def __getattr__(name: str) -> Any:  # the in-memory transport needs numpy: loaded on use
    if name in _MEMORY:
        from livetalk.testing import memory

        return getattr(memory, name)
    raise AttributeError(f"module 'livetalk.testing' has no attribute {name!r}")


TEST_API_KEY = "sk-livetalk-test"
"""The key the fixtures use; the local server accepts any ``sk-`` key by default."""


@functools.cache
def shared_synthesizer() -> Any:
    """One eSpeak NG synthesizer for the whole test session (it caches utterances)."""
    from livetalk.server.tts import EspeakSynthesizer

    return EspeakSynthesizer()


@functools.cache
def shared_transcriber(phrases: tuple[str, ...] | None = None, *,
                       asr: AsrChoice = "auto") -> Any:
    """One recogniser per phrase list and choice, kept for the test session.

    ``asr="auto"``: Whisper when the ``asr`` extra is installed (the phrases, if any, as hot
    words; every instance shares one loaded model), else pocketsphinx, which recognises only
    the phrases. ``asr="pocketsphinx"`` with phrases recognises exactly those sentences.
    The ``livetalk_server`` fixture reuses it across tests that use the same phrases.
    """
    from livetalk.server.asr import make_transcriber

    return make_transcriber(asr, phrases=list(phrases) if phrases is not None else None)


def speech(text: str, *, silence_after_s: float = 0.0) -> Any:
    """A source speaking ``text`` (eSpeak NG, 24 kHz), optionally followed by silence.

    Feed it to ``call.stream()``. With the ``asr`` extra the local server recognises free
    text; its pocketsphinx fallback recognises ``text`` only when it is in the phrase list
    (``livetalk_server_options`` ``{"phrases": [...]}``).
    """
    from livetalk.audio.format import API_RATE
    from livetalk.audio.resample import resample
    from livetalk.audio.sources import ArraySource, SilenceSource, concat

    pcm, rate = shared_synthesizer().synthesize(text)
    source = ArraySource(resample(pcm, rate, API_RATE), API_RATE)
    if silence_after_s > 0:
        return concat(source, SilenceSource(silence_after_s, rate=API_RATE))
    return source


async def run_scenario(
    scenario: Scenario | Mapping[str, Any] | str | Path,
    server: Any,
    *,
    speed: float | None = None,
    **options: Any,
) -> ScenarioResult:
    """Run a scenario against a server and return its result.

    Args:
        scenario: a :class:`~livetalk.scenarios.Scenario`, a file path, or a mapping with the
            file's content.
        server: a running ``LocalServer`` (the ``livetalk_server`` fixture), or a base URL.
        speed: media speed; default the server's ``realtime_factor`` (1 for a URL).
        **options: passed to :func:`livetalk.scenarios.run_scenario` (``api_key``,
            ``prices``, ``event_log``...).

    Returns:
        The :class:`~livetalk.scenarios.ScenarioResult`; check it with
        :func:`assert_scenario_passed`.
    """
    from livetalk.scenarios.runner import run_scenario as run
    from livetalk.scenarios.schema import Scenario, load_scenario, scenario_from_dict

    if isinstance(scenario, str | Path):
        scenario = load_scenario(scenario)
    elif not isinstance(scenario, Scenario):
        scenario = scenario_from_dict(scenario)
    if isinstance(server, str):
        base_url, factor = server, 1.0
    else:
        base_url, factor = server.base_url, server.realtime_factor
    options.setdefault("api_key", TEST_API_KEY)
    options.setdefault("synthesizer", shared_synthesizer())
    return await run(scenario, base_url=base_url, speed=speed or factor, **options)


def assert_scenario_passed(result: ScenarioResult) -> None:
    """Fail with one line per failed expectation (and the transcripts) unless it passed."""
    if result.passed:
        return
    lines = [f"scenario {result.name!r} failed:", *(f"  {f}" for f in result.failures)]
    for turn in result.turns:
        lines.append(f"  turn {turn.index}: user={turn.user_transcript!r} "
                     f"reply={turn.reply_text!r} ({turn.reply_status})")
    raise AssertionError("\n".join(lines))


def assert_turns(turns: Sequence[Any], expected: Sequence[tuple[str, str]]) -> None:
    """Check turns in order: each ``(role, text)`` pair must match the turn's role and be
    contained in its text (compared after :func:`~livetalk.scenarios.normalize_text`).

    Args:
        turns: :class:`~livetalk.Turn` objects (``call.wait_for_turns(...)``).
        expected: one ``(role, text)`` per turn; ``""`` accepts any text.
    """
    from livetalk.scenarios.schema import normalize_text

    actual = [(str(t.role), t.text) for t in turns]
    problems = []
    if len(actual) != len(expected):
        problems.append(f"expected {len(expected)} turns, got {len(actual)}")
    for i, ((role, text), (want_role, want_text)) in enumerate(zip(actual, expected,
                                                                   strict=False)):
        if role != want_role or normalize_text(want_text) not in normalize_text(text):
            problems.append(f"turn {i}: expected {want_role} containing {want_text!r}, "
                            f"got {role} {text!r}")
    if problems:
        listing = "\n".join(f"  {role}: {text!r}" for role, text in actual)
        raise AssertionError("\n".join(problems) + "\nturns:\n" + listing)
