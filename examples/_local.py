"""Shared by the examples: use the real API when OPENAI_API_KEY is set, else a local server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from livetalk.data import DEMO_PHRASES, DEMO_WAV

__all__ = ["DEMO_PHRASES", "DEMO_WAV", "endpoint"]


@contextlib.asynccontextmanager
async def endpoint(**server_options: object) -> AsyncIterator[tuple[str | None, str | None]]:
    """Yield ``(base_url, api_key)``: the environment's, or an in-process local server's."""
    if os.environ.get("OPENAI_API_KEY"):
        yield os.environ.get("OPENAI_BASE_URL"), None  # livetalk reads the environment
        return
    from livetalk.server import serve

    server_options.setdefault("phrases", str(DEMO_PHRASES))
    async with serve(port=0, **server_options) as srv:  # type: ignore[arg-type]
        print(f"(no OPENAI_API_KEY: using livetalk's local server at {srv.base_url})")
        yield srv.base_url, "sk-local-example"
