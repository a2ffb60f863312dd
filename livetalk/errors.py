"""The livetalk exception tree.

Every error livetalk raises derives from :class:`LivetalkError`; errors of the libraries
underneath (httpx, aiortc, PyAV, PortAudio) are translated at the boundary and chained with
``from`` so that the original stays available as ``__cause__``::

    LivetalkError
    ├── ConfigError (also ValueError)        invalid config or arguments, caught before the wire
    │   └── MissingAPIKeyError               no api_key given and no OPENAI_API_KEY set
    ├── MissingExtraError (also ImportError) an optional extra is not installed
    ├── AudioError                           audio sources and sinks
    │   ├── AudioFormatError (also ValueError)  wrong dtype, shape or rate
    │   ├── AudioFileError                   unreadable or non-audio file
    │   └── AudioDeviceError                 no PortAudio library, no such device
    ├── ProtocolError
    │   ├── LocalProtocolError               you misused the protocol (e.g. an invalid event)
    │   └── RemoteProtocolError              the peer sent something we cannot parse
    ├── SignalingError                       HTTP with the Realtime API failed
    │   └── APIStatusError                   non-2xx reply: .status, .code, .message
    │       ├── AuthenticationError          401 / 403
    │       ├── NotFoundError                404
    │       └── RateLimitError               429 (.retry_after seconds or None)
    ├── ConnectError                         the call did not connect, or its connection was lost
    │   └── ConnectTimeout
    ├── ServerErrorEvent                     an ``error`` event (raised by update_session)
    └── CallClosedError                      the call ended abnormally; iterators raise it
        (a normal hang-up ends iterators without raising)

No exception message ever contains an API key or an ``ek_`` secret.
"""

from __future__ import annotations

__all__ = [
    "APIStatusError",
    "AudioDeviceError",
    "AudioError",
    "AudioFileError",
    "AudioFormatError",
    "AuthenticationError",
    "CallClosedError",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "LivetalkError",
    "LocalProtocolError",
    "MissingAPIKeyError",
    "MissingExtraError",
    "NotFoundError",
    "ProtocolError",
    "RateLimitError",
    "RemoteProtocolError",
    "ServerErrorEvent",
    "SignalingError",
]


class LivetalkError(Exception):
    """Root of every error livetalk raises."""


class ConfigError(LivetalkError, ValueError):
    """An invalid configuration value, detected before anything was sent."""


class MissingAPIKeyError(ConfigError):
    """No API key was given and ``OPENAI_API_KEY`` is not set."""


class MissingExtraError(LivetalkError, ImportError):
    """A feature needs an optional extra that is not installed.

    The message names the extra and the ``pip install`` command that adds it.

    Attributes:
        extra: the extra to install (``"server"``, ``"vad"``, ...).
    """

    def __init__(self, message: str, *, extra: str, name: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class AudioError(LivetalkError):
    """An audio source or sink failed."""


class AudioFormatError(AudioError, ValueError):
    """Audio with the wrong dtype, shape or sample rate."""


class AudioFileError(AudioError):
    """A file that cannot be opened or decoded as audio."""


class AudioDeviceError(AudioError):
    """No PortAudio library, no such device, or the device failed."""


class ProtocolError(LivetalkError):
    """A Realtime protocol violation."""


class LocalProtocolError(ProtocolError):
    """This side misused the protocol (for example an invalid client event)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that cannot be parsed."""


class SignalingError(LivetalkError):
    """An HTTP exchange with the Realtime API failed (network, TLS, bad reply)."""


class APIStatusError(SignalingError):
    """The API answered with a non-success status.

    Attributes:
        status: the HTTP status code.
        code: the ``error.code`` of the OpenAI error envelope, or None.
        message: the server's message (or a summary of a non-JSON body).
        error_type: the ``error.type`` of the envelope, or None.
        param: the ``error.param`` of the envelope, or None.
        retry_after: seconds from a ``Retry-After`` header, or None.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        url: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.code = code
        self.error_type = error_type
        self.param = param
        self.retry_after = retry_after
        self.url = url
        where = f" from {url}" if url else ""
        code_part = f" ({code})" if code else ""
        super().__init__(f"HTTP {status}{code_part}{where}: {message}")


class AuthenticationError(APIStatusError):
    """401 or 403: the key or client secret was refused.

    Check OPENAI_API_KEY, or mint a new client secret.
    """


class NotFoundError(APIStatusError):
    """404: unknown endpoint or call id. Check the base URL."""


class RateLimitError(APIStatusError):
    """429: rate limited or out of quota; see ``retry_after``."""


class ConnectError(LivetalkError):
    """The call could not be established (ICE, DTLS or data channel failed)."""


class ConnectTimeout(ConnectError, TimeoutError):
    """The call did not connect within its timeout."""


class ServerErrorEvent(LivetalkError):
    """An ``error`` event from the server.

    Attributes:
        code, message, error_type, param, event_id: the fields of the event's ``error`` object.
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
        self.message = message
        self.code = code
        self.error_type = error_type
        self.param = param
        self.event_id = event_id
        super().__init__(f"server error{f' ({code})' if code else ''}: {message}")


class CallClosedError(LivetalkError):
    """The call ended abnormally (connection lost, server killed, fatal error).

    Iterators of the call raise it after yielding everything received before the failure.
    """
