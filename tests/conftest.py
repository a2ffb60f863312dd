"""Shared fixtures: the official SDK's event validators, the local server, speech audio."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter

DATA = Path(__file__).resolve().parent.parent / "livetalk" / "data"


class EventValidator:
    """Validates wire events with openai-python's GA types; records every failure."""

    def __init__(self) -> None:
        from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

        self.server = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])
        self.client = TypeAdapter(Annotated[RealtimeClientEvent, Field(discriminator="type")])
        self.failures: list[str] = []
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, direction: str, event: dict[str, Any]) -> None:
        adapter = self.server if direction == "in" else self.client
        with self._lock:
            self.seen.append((direction, event))
        try:
            adapter.validate_python(event)
        except Exception as exc:  # pydantic.ValidationError
            with self._lock:
                self.failures.append(f"{direction} {event.get('type')}: {exc}")

    def types(self, direction: str = "in") -> list[str]:
        return [e["type"] for d, e in self.seen if d == direction]

    def assert_valid(self) -> None:
        assert self.seen, "no event was validated"
        assert not self.failures, "\n".join(self.failures[:5])


@pytest.fixture(autouse=True)
def every_event_is_validated() -> Iterator[EventValidator]:
    """Every event any Call of any test sends or receives must validate against the SDK."""
    from livetalk.call import Call

    tap = EventValidator()
    Call.global_taps.append(tap)
    try:
        yield tap
    finally:
        Call.global_taps.remove(tap)
    assert not tap.failures, "events that do not validate:\n" + "\n".join(tap.failures[:5])


@pytest.fixture
def validator() -> EventValidator:
    """Pass as ``event_log=validator`` to connect(); call ``assert_valid()`` at the end."""
    return EventValidator()


@pytest.fixture(scope="session")
def demo_phrases() -> list[str]:
    from livetalk.server.asr import load_phrases

    return load_phrases(str(DATA / "demo_phrases.txt"))


@pytest.fixture(scope="session")
def transcriber(demo_phrases: list[str]) -> Any:
    from livetalk.server.asr import PocketSphinxTranscriber

    return PocketSphinxTranscriber(phrases=demo_phrases)


@pytest.fixture(scope="session")
def whisper() -> Any:
    """The open-vocabulary recogniser (the bundled Whisper tiny.en), loaded once per session."""
    from livetalk.server.whisper import WhisperTranscriber

    return WhisperTranscriber()


@pytest.fixture(scope="session")
def synthesizer() -> Any:
    from livetalk.server.tts import EspeakSynthesizer

    return EspeakSynthesizer()


@pytest.fixture
def make_server(transcriber: Any, synthesizer: Any) -> Callable[..., Any]:
    """Factory for an in-process LocalServer sharing the session's ears and voice."""
    from livetalk.server import serve

    def factory(**kwargs: Any) -> Any:
        kwargs.setdefault("transcriber", transcriber)
        kwargs.setdefault("synthesizer", synthesizer)
        return serve(**kwargs)

    return factory


@pytest.fixture
async def server(make_server: Callable[..., Any]) -> AsyncIterator[Any]:
    async with make_server(port=0) as srv:
        yield srv
