"""The pytest plugin, exercised the way users use it: a tiny test suite run by pytester."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import pytest

from livetalk.testing import assert_scenario_passed, assert_turns, run_scenario, speech

pytestmark = pytest.mark.slow

HELLO = "hello can you hear me"
BOOK = "please book a table for two"


@pytest.fixture
def livetalk_server_options():
    return {"phrases": [HELLO, BOOK], "realtime_factor": 4}


@pytest.mark.asyncio
async def test_call_gives_turns(livetalk_call, livetalk_server):
    assert livetalk_call.call_id in livetalk_server.calls
    await livetalk_call.stream(speech(HELLO, silence_after_s=0.2))
    turns = await livetalk_call.wait_for_turns(2, timeout=30)
    assert_turns(turns, [("user", HELLO), ("assistant", "you said " + HELLO)])


@pytest.mark.asyncio
async def test_scenario_passes(livetalk_server):
    result = await run_scenario(
        {"turns": [{"say": BOOK, "expect": {"reply_contains": "table for two"}}]},
        livetalk_server)
    assert_scenario_passed(result)
    assert result.speed == 4


@pytest.mark.asyncio
async def test_scenario_fails_with_a_readable_message(livetalk_server):
    result = await run_scenario(
        {"turns": [{"say": BOOK, "expect": {"transcript_contains": "banana"}}]},
        livetalk_server)
    with pytest.raises(AssertionError) as info:
        assert_scenario_passed(result)
    assert "transcript_contains expected ['banana']" in str(info.value)
    assert BOOK in str(info.value)


def test_assert_turns_explains_a_mismatch():
    class T:
        role, text = "user", "hello there"

    with pytest.raises(AssertionError, match="expected 2 turns, got 1"):
        assert_turns([T()], [("user", "hello"), ("assistant", "")])
'''


def _plugin_args() -> list[str]:
    """Load the plugin by module name unless its pytest11 entry point is installed."""
    names = {ep.name for ep in metadata.entry_points(group="pytest11")}
    return [] if "livetalk" in names else ["-p", "livetalk.testing.pytest_plugin"]


def test_user_suite_runs_offline_with_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = strict\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_voice=USER_TESTS)
    result = pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)


def test_plugin_import_is_light(pytester: pytest.Pytester) -> None:
    script = pytester.makepyfile(check=(
        "import sys\n"
        "import livetalk.testing.pytest_plugin\n"
        "heavy = [m for m in ('aiortc', 'av', 'numpy', 'aiohttp', 'livetalk.server')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"))
    result = pytester.run(sys.executable, str(script))
    assert result.ret == 0
    result.stdout.fnmatch_lines(["HEAVY []"])
