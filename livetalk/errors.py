"""The livetalk exception tree: every exception livetalk defines lives in this module.

Every error livetalk raises derives from :class:`LivetalkError`; errors of the libraries
underneath (httpx, aiortc, websockets, PyAV, PortAudio) are translated at the boundary and
chained with ``from``, so the original stays available as ``__cause__``::

    LivetalkError
    ├── ConfigError (also ValueError)        invalid config or arguments, caught before the wire
    │   ├── MissingAPIKeyError               no api_key given and no OPENAI_API_KEY set
    │   ├── SessionConfigError               a session object the API would refuse (.code, .param)
    │   ├── ScenarioError                    an invalid scenario file
    │   ├── PriceTableError                  an invalid price table
    │   └── RayUnavailable                   --ray: the Ray cluster cannot be used as asked
    ├── MissingExtraError (also ImportError) an optional extra is not installed
    ├── AudioError                           audio sources and sinks
    │   ├── AudioFormatError (also ValueError)  wrong dtype, shape or rate
    │   ├── AudioFileError                   unreadable or non-audio file
    │   ├── AudioDeviceError                 no PortAudio library, no such device
    │   └── OpusError                        libopus refused a packet or call (handled inside)
    ├── ProtocolError
    │   ├── LocalProtocolError               you misused the protocol
    │   │   └── InvalidEventError            an event built with a missing or mistyped field
    │   └── RemoteProtocolError              the peer sent something we cannot parse
    │       └── EventParseError              a frame that is not a valid event
    ├── SignalingError                       HTTP or the WebSocket handshake failed
    │   └── APIStatusError                   the API refused: .status, .code, .message
    │       ├── BadRequestError              400, or an unknown model / beta shape (WebSocket)
    │       ├── AuthenticationError          401 / 403, or a refused key (WebSocket close 3000)
    │       ├── NotFoundError                404
    │       └── RateLimitError               429 (.retry_after seconds or None)
    ├── ConnectError                         the call did not connect, or its connection was lost
    │   └── ConnectTimeout (also Timeout)
    ├── Timeout (also TimeoutError)          a wait ran out of time (wait_until_quiet, ...)
    │   └── RequestTimeout                   no answer to a request (update_session)
    ├── ServerError                          an ``error`` event answering one of your requests
    │   └── ResponseFailedError              a response ended ``failed``
    ├── CallClosedError                      the call ended abnormally; iterators raise it
    │   (a normal hang-up ends iterators without raising)
    ├── ServerComponentError                 the local server's ears, voice or brain failed
    │   ├── TranscriptionError
    │   ├── SynthesisError
    │   └── BrainError
    └── RayClusterError                      a test Ray cluster (livetalk.testing) did not start

No exception message ever contains an API key or an ``ek_`` secret: messages quoting the
server mask key fragments (:func:`mask_secrets`).
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "APIStatusError",
    "AudioDeviceError",
    "OpusError",
    "AudioError",
    "AudioFileError",
    "AudioFormatError",
    "AuthenticationError",
    "BadRequestError",
    "BrainError",
    "CallClosedError",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "EventParseError",
    "InvalidEventError",
    "LivetalkError",
    "LocalProtocolError",
    "MissingAPIKeyError",
    "MissingExtraError",
    "NotFoundError",
    "PriceTableError",
    "RayClusterError",
    "RayUnavailable",
    "ProtocolError",
    "RateLimitError",
    "RemoteProtocolError",
    "RequestTimeout",
    "ResponseFailedError",
    "ScenarioError",
    "ServerComponentError",
    "ServerError",
    "SessionConfigError",
    "SignalingError",
    "SynthesisError",
    "Timeout",
    "TranscriptionError",
    "mask_secrets",
]

_SECRET = re.compile(r"\b(sk|ek|rk)[-_][A-Za-z0-9_\-*.\u2026]{3,}")
_MASKED_FRAGMENT = re.compile(r"\*{2,}[.\u2026]*[A-Za-z0-9_\-]{1,12}")


def mask_secrets(text: str) -> str:
    """Replace anything shaped like an API key or client secret by ``<prefix>-***``, and the
    visible ends of keys a server already masked (``sk-...****abcd``) by ``***``."""
    text = _SECRET.sub(lambda m: f"{m.group(1)}-***", text)
    return _MASKED_FRAGMENT.sub("***", text)


class LivetalkError(Exception):
    """Root of every error livetalk raises."""


# --- configuration ---------------------------------------------------------------------------


class ConfigError(LivetalkError, ValueError):
    """An invalid configuration value or argument, detected before anything was sent."""


class MissingAPIKeyError(ConfigError):
    """No API key: pass ``api_key=`` (``--api-key`` on the command line) or set OPENAI_API_KEY."""


class SessionConfigError(ConfigError):
    """A session object the Realtime API would refuse, with the API's error code.

    Attributes:
        code: the API's ``error.code`` for it (``unknown_parameter``, ``invalid_value``,
            ``missing_required_parameter``, ``invalid_type``).
        param: the offending field as a dotted path, e.g. ``session.audio.output.voice``.
        message: the API-shaped message (also ``str(exc)``).
    """

    def __init__(self, code: str, message: str, param: str | None) -> None:
        self.code = code
        self.message = message
        self.param = param
        super().__init__(message)


class ScenarioError(ConfigError):
    """A scenario file that cannot be read or is invalid.

    Attributes:
        path: the scenario file (None for a scenario built from a dict without a path).
        turn: index of the offending turn in ``turns``, or None.
        field: the offending field (``session.turn_detection``, ``expect.reply_contains``...),
            or None.
    """

    def __init__(self, message: str, *, path: Path | None = None, turn: int | None = None,
                 field: str | None = None) -> None:
        self.path = path
        self.turn = turn
        self.field = field
        where = []
        if turn is not None:
            where.append(f"turns[{turn}]")
        if field is not None:
            where.append(field)
        location = ".".join(where)
        prefix = f"{path}: " if path is not None else ""
        super().__init__(f"{prefix}{location + ': ' if location else ''}{message}")


class PriceTableError(ConfigError):
    """An invalid price table."""


class RayUnavailable(ConfigError):
    """The Ray cluster cannot be used as asked (unreachable address, conflicting options).

    A missing Ray package is a :class:`MissingExtraError` like every other missing extra.
    """


class MissingExtraError(LivetalkError, ImportError):
    """A feature needs an optional extra that is not installed.

    The message names the extra and the ``pip install`` command that adds it.

    Attributes:
        extra: the extra to install (``"server"``, ``"vad"``, ...).
    """

    def __init__(self, message: str, *, extra: str, name: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


# --- audio -----------------------------------------------------------------------------------


class AudioError(LivetalkError):
    """An audio source or sink failed."""


class AudioFormatError(AudioError, ValueError):
    """Audio with the wrong dtype, shape or sample rate."""


class AudioFileError(AudioError):
    """A file that cannot be opened or decoded as audio."""


class OpusError(AudioError):
    """libopus refused a call (a corrupt packet, a bad argument). The receive path conceals
    the frame and goes on; you meet it only when using :mod:`livetalk.transport.opus`."""


class AudioDeviceError(AudioError):
    """No PortAudio library, no such device, or the device failed."""


# --- protocol --------------------------------------------------------------------------------


class ProtocolError(LivetalkError):
    """A Realtime protocol violation."""


class LocalProtocolError(ProtocolError):
    """This side misused the protocol (for example an invalid client event)."""


class InvalidEventError(LocalProtocolError):
    """An event built with a missing or mistyped field.

    Attributes:
        param: the offending field's wire name, or None.
        reason: ``"missing"`` (a required field is absent) or ``"type"`` (a field has the
            wrong type).
    """

    def __init__(self, message: str, *, param: str | None = None, reason: str = "type") -> None:
        self.param = param
        self.reason = reason
        super().__init__(message)


class RemoteProtocolError(ProtocolError):
    """The peer sent something that cannot be parsed."""


class EventParseError(RemoteProtocolError):
    """A frame that is not a valid event.

    Attributes:
        param: the offending field (``"type"`` for a missing or unknown type), or None when the
            frame is not a JSON object at all.
        event_id: the frame's ``event_id`` when it could be read (a server answering a bad
            client event echoes it in ``error.event_id``), else None.
        reason: what is wrong: ``"json"`` (not a JSON object), ``"unknown_type"``,
            ``"missing"`` (a required field, ``type`` included) or ``"type"`` (a mistyped field).
    """

    def __init__(
        self, message: str, *, param: str | None = None, event_id: str | None = None,
        reason: str = "json",
    ) -> None:
        self.param = param
        self.event_id = event_id
        self.reason = reason
        super().__init__(message)


# --- signaling -------------------------------------------------------------------------------


class SignalingError(LivetalkError):
    """An HTTP or WebSocket-handshake exchange with the Realtime API failed."""


class APIStatusError(SignalingError):
    """The API refused the request.

    Attributes:
        status: the HTTP status code, or None for a refusal inside an accepted WebSocket (the
            API accepts the upgrade, sends one ``error`` event and closes; see ``close_code``).
        message: the server's message (key fragments masked), or a summary of a non-JSON body.
        code: the ``error.code`` of the OpenAI error envelope, or None.
        error_type: the ``error.type`` of the envelope, or None.
        param: the ``error.param`` of the envelope, or None.
        retry_after: seconds from a ``Retry-After`` header, or None.
        close_code: the WebSocket close code of an in-band refusal (3000: auth, 4000: request
            shape), else None.
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        url: str | None = None,
        close_code: int | None = None,
    ) -> None:
        self.status = status
        self.message = mask_secrets(message)
        self.code = code
        self.error_type = error_type
        self.param = param
        self.retry_after = retry_after
        self.url = url
        self.close_code = close_code
        where = f" from {url}" if url else ""
        code_part = f" ({code})" if code else ""
        head = f"HTTP {status}" if status is not None else f"refused (close code {close_code})"
        super().__init__(f"{head}{code_part}{where}: {self.message}")


class BadRequestError(APIStatusError):
    """400, or a WebSocket refused for its request shape (unknown or missing model, beta header).

    Check the model name and the session; the message says what the server refused.
    """


class AuthenticationError(APIStatusError):
    """401 or 403 (or a WebSocket closed with code 3000): the key or client secret was refused.

    Check OPENAI_API_KEY, or mint a new client secret.
    """


class NotFoundError(APIStatusError):
    """404: unknown endpoint or call id. Check the base URL."""


class RateLimitError(APIStatusError):
    """429: rate limited or out of quota; see ``retry_after``."""


# --- the call --------------------------------------------------------------------------------


class ConnectError(LivetalkError):
    """The call could not be established (ICE, DTLS or data channel failed), or was lost."""


class Timeout(LivetalkError, TimeoutError):
    """A wait ran out of time. Catch ``TimeoutError`` to catch every timeout."""


class ConnectTimeout(ConnectError, Timeout):
    """The call did not connect within its timeout."""


class RequestTimeout(Timeout):
    """The server did not answer a request in time (e.g. ``update_session``)."""


class ServerError(LivetalkError):
    """An ``error`` event from the server (the session usually stays open).

    Attributes:
        code, message, error_type, param, event_id: the fields of the event's ``error``
            object (``event_id`` is the id of the client event it answers, or None).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        event_id: str | None = None,
    ) -> None:
        self.message = mask_secrets(message)
        self.code = code
        self.error_type = error_type
        self.param = param
        self.event_id = event_id
        super().__init__(f"server error{f' ({code})' if code else ''}: {self.message}")


class ResponseFailedError(ServerError):
    """A response ended with status ``failed`` (``status_details.error`` is the cause)."""


class CallClosedError(LivetalkError):
    """The call ended abnormally (connection lost, server killed, fatal error), or a request
    was made on a call that is already closed.

    Iterators of the call raise it after yielding everything received before the failure.
    """


# --- the local server's components -----------------------------------------------------------


class ServerComponentError(LivetalkError):
    """A component of the local server (ears, voice, brain) failed."""


class TranscriptionError(ServerComponentError):
    """The local server's recogniser failed on a piece of audio."""


class SynthesisError(ServerComponentError):
    """The local server's voice failed to synthesize a reply."""


class BrainError(ServerComponentError):
    """The local server's brain failed to produce a reply (the response ends ``failed``)."""


class RayClusterError(LivetalkError):
    """A throwaway Ray cluster of :mod:`livetalk.testing` did not start (the message holds the
    end of Ray's output)."""
