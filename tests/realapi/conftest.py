"""The real-API smoke suite: selected by ``make test-realapi``, skipped without a key.

Every test here gets the ``realapi`` marker; ``make test`` and ``make test-fast`` deselect it.
Without ``OPENAI_API_KEY`` the whole directory is skipped. Events are still validated against
the official SDK's types by the autouse fixture of ``tests/conftest.py``.

Knobs (environment):
    OPENAI_API_KEY              a standard key (required)
    OPENAI_BASE_URL             default https://api.openai.com/v1
    LIVETALK_REALAPI_MODEL      the realtime model (default gpt-realtime-2.1-mini)
    LIVETALK_REALAPI_TRANSCRIBE the input transcription model (default gpt-4o-mini-transcribe)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = "gpt-realtime-2.1-mini"
DEFAULT_TRANSCRIBE = "gpt-4o-mini-transcribe"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="the real-API suite needs OPENAI_API_KEY")
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.realapi)
            if not os.environ.get("OPENAI_API_KEY"):
                item.add_marker(skip)


@pytest.fixture
def model() -> str:
    return os.environ.get("LIVETALK_REALAPI_MODEL") or DEFAULT_MODEL


@pytest.fixture
def transcribe_model() -> str:
    return os.environ.get("LIVETALK_REALAPI_TRANSCRIBE") or DEFAULT_TRANSCRIBE
