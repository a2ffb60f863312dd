"""The sans-I/O Realtime protocol core (standard library only).

- :mod:`~livetalk.protocol.events`: typed client and server events (GA names).
- :mod:`~livetalk.protocol.wire`: JSON parsing and serialization, beta-name aliases.
- :mod:`~livetalk.protocol.session`: the GA session object: one validator for client and
  server, and the typed configuration.
- :mod:`~livetalk.protocol.conversation`: turns assembled from events, in conversation order.

Nothing here does I/O, so it runs the same under asyncio, threads or a test.
"""

from __future__ import annotations

from livetalk.protocol.conversation import (
    Conversation,
    FunctionCallDone,
    ResponseFinished,
    Role,
    TranscriptDelta,
    Turn,
    TurnStatus,
    Update,
)
from livetalk.protocol.events import (
    CLIENT_EVENTS,
    SERVER_EVENTS,
    ClientEvent,
    Event,
    InvalidEventError,
    ServerEvent,
    UnknownEvent,
    Usage,
)
from livetalk.protocol.session import (
    UNSET,
    AudioFormat,
    Eagerness,
    FunctionTool,
    Include,
    Modality,
    NoiseReduction,
    Reasoning,
    ReasoningEffort,
    SemanticVAD,
    ServerVAD,
    SessionConfig,
    ToolChoice,
    Transcription,
    TranscriptionDelay,
    Unset,
    Voice,
    validate_session,
)
from livetalk.protocol.wire import (
    BETA_ALIASES,
    EventParseError,
    new_event_id,
    parse_client_event,
    parse_server_event,
    serialize,
)

__all__ = [
    "BETA_ALIASES",
    "CLIENT_EVENTS",
    "SERVER_EVENTS",
    "UNSET",
    "AudioFormat",
    "ClientEvent",
    "Conversation",
    "Eagerness",
    "Event",
    "EventParseError",
    "FunctionCallDone",
    "FunctionTool",
    "Include",
    "InvalidEventError",
    "Modality",
    "NoiseReduction",
    "Reasoning",
    "ReasoningEffort",
    "ResponseFinished",
    "Role",
    "SemanticVAD",
    "ServerEvent",
    "ServerVAD",
    "SessionConfig",
    "ToolChoice",
    "TranscriptDelta",
    "Transcription",
    "TranscriptionDelay",
    "Turn",
    "TurnStatus",
    "UnknownEvent",
    "Unset",
    "Update",
    "Usage",
    "Voice",
    "new_event_id",
    "parse_client_event",
    "parse_server_event",
    "serialize",
    "validate_session",
]
