"""livetalk: live voice with OpenAI's Realtime API over WebRTC, from Python.

Quick start::

    import livetalk

    async with livetalk.connect(base_url=srv.base_url, api_key="sk-local") as call:
        await call.stream(livetalk.FileSource("question.wav"))
        async for turn in call.turns():
            print(turn.role, turn.text)

The names below are imported lazily, so ``import livetalk`` stays cheap, and importing the
sans-I/O core (``livetalk.protocol``) pulls in no asyncio, aiortc, av or numpy. Every name in
``__all__`` is importable from here (a test checks it against what type checkers see).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Call": "livetalk.call",
    "connect": "livetalk.connecting",
    "Reply": "livetalk.routing",
    "CallNotice": "livetalk.reconnect",
    "Reconnect": "livetalk.reconnect",
    "LocalVAD": "livetalk.localvad",
    "batch_turns": "livetalk.localvad",
    "SqliteTurnLog": "livetalk.turnlog",
    "TurnLog": "livetalk.turnlog",
    "ClientSecret": "livetalk.transport.signaling",
    "mint_client_secret": "livetalk.transport.signaling",
    "FunctionTool": "livetalk.protocol.session",
    "NoiseReduction": "livetalk.protocol.session",
    "Reasoning": "livetalk.protocol.session",
    "ReasoningEffort": "livetalk.protocol.session",
    "SemanticVAD": "livetalk.protocol.session",
    "ServerVAD": "livetalk.protocol.session",
    "SessionConfig": "livetalk.protocol.session",
    "Transcription": "livetalk.protocol.session",
    "TranscriptionDelay": "livetalk.protocol.session",
    "Voice": "livetalk.protocol.session",
    "FunctionCallDone": "livetalk.protocol.conversation",
    "ResponseFinished": "livetalk.protocol.conversation",
    "Role": "livetalk.protocol.conversation",
    "TranscriptDelta": "livetalk.protocol.conversation",
    "Turn": "livetalk.protocol.conversation",
    "TurnStatus": "livetalk.protocol.conversation",
    "Usage": "livetalk.protocol.events",
    "ArraySource": "livetalk.audio.sources",
    "FileSource": "livetalk.audio.sources",
    "SilenceSource": "livetalk.audio.sources",
    "concat": "livetalk.audio.sources",
    "BufferSink": "livetalk.audio.sinks",
    "NullSink": "livetalk.audio.sinks",
    "WavSink": "livetalk.audio.sinks",
    "APIStatusError": "livetalk.errors",
    "AudioDeviceError": "livetalk.errors",
    "OpusError": "livetalk.errors",
    "AudioError": "livetalk.errors",
    "AudioFileError": "livetalk.errors",
    "AudioFormatError": "livetalk.errors",
    "AuthenticationError": "livetalk.errors",
    "BadRequestError": "livetalk.errors",
    "CallClosedError": "livetalk.errors",
    "ConfigError": "livetalk.errors",
    "ConnectError": "livetalk.errors",
    "ConnectTimeout": "livetalk.errors",
    "EventParseError": "livetalk.errors",
    "InvalidEventError": "livetalk.errors",
    "LivetalkError": "livetalk.errors",
    "LocalProtocolError": "livetalk.errors",
    "MissingAPIKeyError": "livetalk.errors",
    "MissingExtraError": "livetalk.errors",
    "NotFoundError": "livetalk.errors",
    "ProtocolError": "livetalk.errors",
    "RateLimitError": "livetalk.errors",
    "RemoteProtocolError": "livetalk.errors",
    "RequestTimeout": "livetalk.errors",
    "ResponseFailedError": "livetalk.errors",
    "ServerError": "livetalk.errors",
    "SessionConfigError": "livetalk.errors",
    "SignalingError": "livetalk.errors",
    "Timeout": "livetalk.errors",
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
    )
    from livetalk.connecting import (
        connect as connect,
    )
    from livetalk.errors import (
        APIStatusError as APIStatusError,
        AudioDeviceError as AudioDeviceError,
        AudioError as AudioError,
        AudioFileError as AudioFileError,
        AudioFormatError as AudioFormatError,
        AuthenticationError as AuthenticationError,
        BadRequestError as BadRequestError,
        CallClosedError as CallClosedError,
        ConfigError as ConfigError,
        ConnectError as ConnectError,
        ConnectTimeout as ConnectTimeout,
        EventParseError as EventParseError,
        InvalidEventError as InvalidEventError,
        LivetalkError as LivetalkError,
        LocalProtocolError as LocalProtocolError,
        MissingAPIKeyError as MissingAPIKeyError,
        MissingExtraError as MissingExtraError,
        NotFoundError as NotFoundError,
        OpusError as OpusError,
        ProtocolError as ProtocolError,
        RateLimitError as RateLimitError,
        RemoteProtocolError as RemoteProtocolError,
        RequestTimeout as RequestTimeout,
        ResponseFailedError as ResponseFailedError,
        ServerError as ServerError,
        SessionConfigError as SessionConfigError,
        SignalingError as SignalingError,
        Timeout as Timeout,
    )
    from livetalk.localvad import (
        LocalVAD as LocalVAD,
        batch_turns as batch_turns,
    )
    from livetalk.protocol.conversation import (
        FunctionCallDone as FunctionCallDone,
        ResponseFinished as ResponseFinished,
        Role as Role,
        TranscriptDelta as TranscriptDelta,
        Turn as Turn,
        TurnStatus as TurnStatus,
    )
    from livetalk.protocol.events import (
        Usage as Usage,
    )
    from livetalk.protocol.session import (
        FunctionTool as FunctionTool,
        NoiseReduction as NoiseReduction,
        Reasoning as Reasoning,
        ReasoningEffort as ReasoningEffort,
        SemanticVAD as SemanticVAD,
        ServerVAD as ServerVAD,
        SessionConfig as SessionConfig,
        Transcription as Transcription,
        TranscriptionDelay as TranscriptionDelay,
        Voice as Voice,
    )
    from livetalk.reconnect import (
        CallNotice as CallNotice,
        Reconnect as Reconnect,
    )
    from livetalk.routing import (
        Reply as Reply,
    )
    from livetalk.transport.signaling import (
        ClientSecret as ClientSecret,
        mint_client_secret as mint_client_secret,
    )
    from livetalk.turnlog import (
        SqliteTurnLog as SqliteTurnLog,
        TurnLog as TurnLog,
    )
