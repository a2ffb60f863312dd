"""livetalk: live voice with OpenAI's Realtime API over WebRTC, from Python.

Quick start::

    import livetalk

    async with livetalk.connect(base_url=srv.base_url, api_key="sk-local") as call:
        await call.stream(livetalk.FileSource("question.wav"))
        async for turn in call.turns():
            print(turn.role, turn.text)

The names below are imported lazily, so ``import livetalk`` stays cheap, and importing the
sans-I/O core (``livetalk.protocol``) pulls in no asyncio, aiortc, av or numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    # the call
    "Call": "livetalk.call",
    "connect": "livetalk.call",
    "mint_client_secret": "livetalk.transport.signaling",
    "ClientSecret": "livetalk.transport.signaling",
    # configuration and turns
    "SessionConfig": "livetalk.protocol.session",
    "ServerVAD": "livetalk.protocol.session",
    "SemanticVAD": "livetalk.protocol.session",
    "Transcription": "livetalk.protocol.session",
    "FunctionTool": "livetalk.protocol.session",
    "Turn": "livetalk.protocol.conversation",
    "TranscriptDelta": "livetalk.protocol.conversation",
    "Usage": "livetalk.protocol.events",
    # audio
    "ArraySource": "livetalk.audio.sources",
    "FileSource": "livetalk.audio.sources",
    "SilenceSource": "livetalk.audio.sources",
    "concat": "livetalk.audio.sources",
    "WavSink": "livetalk.audio.sinks",
    "BufferSink": "livetalk.audio.sinks",
    "NullSink": "livetalk.audio.sinks",
    # errors
    "LivetalkError": "livetalk.errors",
    "ConfigError": "livetalk.errors",
    "MissingAPIKeyError": "livetalk.errors",
    "MissingExtraError": "livetalk.errors",
    "AudioError": "livetalk.errors",
    "AudioFormatError": "livetalk.errors",
    "AudioFileError": "livetalk.errors",
    "AudioDeviceError": "livetalk.errors",
    "ProtocolError": "livetalk.errors",
    "SignalingError": "livetalk.errors",
    "APIStatusError": "livetalk.errors",
    "AuthenticationError": "livetalk.errors",
    "NotFoundError": "livetalk.errors",
    "RateLimitError": "livetalk.errors",
    "ConnectError": "livetalk.errors",
    "ConnectTimeout": "livetalk.errors",
    "ServerErrorEvent": "livetalk.errors",
    "CallClosedError": "livetalk.errors",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'livetalk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from livetalk.audio.sinks import (
        BufferSink as BufferSink,
        NullSink as NullSink,
        WavSink as WavSink,
    )
    from livetalk.audio.sources import (
        ArraySource as ArraySource,
        FileSource as FileSource,
        SilenceSource as SilenceSource,
        concat as concat,
    )
    from livetalk.call import (
        Call as Call,
        connect as connect,
    )
    from livetalk.errors import *  # noqa: F403
    from livetalk.protocol.conversation import (
        TranscriptDelta as TranscriptDelta,
        Turn as Turn,
    )
    from livetalk.protocol.events import (
        Usage as Usage,
    )
    from livetalk.protocol.session import (
        FunctionTool as FunctionTool,
        SemanticVAD as SemanticVAD,
        ServerVAD as ServerVAD,
        SessionConfig as SessionConfig,
        Transcription as Transcription,
    )
    from livetalk.transport.signaling import (
        ClientSecret as ClientSecret,
        mint_client_secret as mint_client_secret,
    )
