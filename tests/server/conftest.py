"""Fixtures of the server tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from livetalk.server import LocalServer


@pytest.fixture
async def client(transcriber: Any, synthesizer: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """The server's app on aiohttp's test server (its calls are closed afterwards)."""
    srv = LocalServer(transcriber=transcriber, synthesizer=synthesizer)
    async with TestClient(TestServer(srv.app)) as test_client:
        test_client.local_server = srv  # type: ignore[attr-defined]
        yield test_client
    await srv.stop()
