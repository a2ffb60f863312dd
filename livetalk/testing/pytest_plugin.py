"""pytest fixtures for livetalk: a local Realtime server and an open call to it.

Loaded automatically through the ``pytest11`` entry point when livetalk is installed (or
with ``pytest_plugins = ["livetalk.testing.pytest_plugin"]``). Importing it is cheap: the
server and aiortc are imported only when a fixture is used. The async fixtures need
pytest-asyncio (any mode) or a compatible async plugin.

Fixtures:

* ``livetalk_server_options`` - keyword arguments of ``livetalk.server.serve`` (override it
  in your ``conftest.py`` or test module; ``phrases`` biases the recogniser: Whisper's hot
  words, or the only sentences the pocketsphinx fallback knows; ``asr`` picks the
  recogniser (``"pocketsphinx"`` with ``phrases`` recognises exactly the listed sentences,
  the most repeatable choice for scripted tests); ``realtime_factor`` speeds
  up the media clock, ``brain`` chooses the replies).
* ``livetalk_server`` - a running ``LocalServer`` on 127.0.0.1 with a free port, stopped
  after the test.
* ``livetalk_session`` - the ``SessionConfig`` of ``livetalk_call`` (transcription on,
  server VAD).
* ``livetalk_call`` - an open :class:`~livetalk.Call` to ``livetalk_server``, at the
  server's speed, hung up after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

try:
    import pytest_asyncio

    _async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # another async plugin (anyio) may still run plain async fixtures
    _async_fixture = pytest.fixture

__all__ = ["livetalk_call", "livetalk_server", "livetalk_server_options", "livetalk_session"]


@pytest.fixture
def livetalk_server_options() -> dict[str, Any]:
    """Options of the local server; override this fixture to change them.

    Returns:
        Keyword arguments of ``livetalk.server.serve`` (default: none, i.e. the echo brain,
        open-vocabulary recognition and real-time media).
    """
    return {}


@_async_fixture
async def livetalk_server(livetalk_server_options: dict[str, Any]) -> AsyncIterator[Any]:
    """A running local server (``LocalServer``); read ``.base_url`` or pass it to
    ``livetalk.testing.run_scenario``."""
    from livetalk.server import serve
    from livetalk.testing import shared_synthesizer, shared_transcriber

    options = dict(livetalk_server_options)
    options.setdefault("port", 0)
    phrases = options.pop("phrases", None)
    asr = options.pop("asr", "auto")
    if "transcriber" not in options:
        if isinstance(phrases, str):
            from livetalk.server.asr import load_phrases

            phrases = load_phrases(phrases)
        options["transcriber"] = shared_transcriber(tuple(phrases) if phrases else None,
                                                    asr=asr)
    options.setdefault("synthesizer", shared_synthesizer())
    async with serve(**options) as server:
        yield server


@pytest.fixture
def livetalk_session() -> Any:
    """The session of ``livetalk_call``: input transcription on, server VAD (500 ms)."""
    from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription

    return SessionConfig(transcription=Transcription(), turn_detection=ServerVAD(
        silence_duration_ms=500))


@_async_fixture
async def livetalk_call(livetalk_server: Any, livetalk_session: Any) -> AsyncIterator[Any]:
    """An open call to ``livetalk_server`` (media at the server's ``realtime_factor``)."""
    import livetalk
    from livetalk.testing import TEST_API_KEY

    async with livetalk.connect(base_url=livetalk_server.base_url, api_key=TEST_API_KEY,
                                session=livetalk_session,
                                speed=livetalk_server.realtime_factor) as call:
        yield call
