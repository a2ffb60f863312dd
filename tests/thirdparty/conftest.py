"""Shared by the third-party client tests: the bundled recording as a client sends it."""

from __future__ import annotations

import av
import numpy as np
import pytest

from livetalk.audio.resample import resample
from livetalk.protocol.session import PCM_RATE
from tests.conftest import DATA

FIRST_TURN_S = 3.6
"""0.5 s of silence, "hello can you hear me", 1.5 s of silence: the first turn of demo.wav."""


@pytest.fixture(scope="session")
def first_turn() -> np.ndarray:
    """The first turn of ``livetalk/data/demo.wav`` as 24 kHz PCM16 mono (the API's PCM)."""
    with av.open(str(DATA / "demo.wav")) as container:
        rate = container.streams.audio[0].rate
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return resample(pcm.astype(np.int16), rate, PCM_RATE)[: int(FIRST_TURN_S * PCM_RATE)]


def realtime_url(base_url: str, query: str) -> str:
    """The WebSocket URL of ``GET /v1/realtime?<query>`` on a server at ``base_url``."""
    return base_url.replace("http", "ws", 1) + "/realtime?" + query
