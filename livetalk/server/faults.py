"""Fault injection for the local server: make it fail the way the real API and networks do.

Pass a :class:`Faults` to :class:`~livetalk.server.LocalServer` (``LocalServer(faults=...)``)
or name faults on the command line (``livetalk serve --fault calls-429 --fault
slow-answer=20``); every named fault is listed in :data:`FAULTS`. Faults that act on one
live call are methods of :class:`~livetalk.server.app.ServerCall` instead, reached through
``server.calls[call_id]`` from a test::

    async with serve(port=0, faults=Faults(calls_status=429, retry_after_s=3)) as srv:
        ...   # every POST /realtime/calls now answers 429 with Retry-After: 3

    call = srv.calls[client_call.call_id]
    call.send_raw("{not json")           # malformed event on the data channel
    call.close_data_channel()            # media continues, events stop
    await call.kill()                    # the server vanishes without a goodbye

``docs/reliability.md`` lists what livetalk's client does in each case.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numpy as np
from aiohttp import web

from livetalk.errors import ConfigError
from livetalk.server.asr import Transcriber, TranscriptionError

__all__ = ["FAULTS", "FailingTranscriber", "Faults", "sever_peer"]

CallsReply = Literal["html", "garbage-sdp", "bad-answer"]

#: Every fault name ``Faults.parse`` (and ``livetalk serve --fault``) accepts.
FAULTS: dict[str, str] = {
    "calls-401": "POST /realtime/calls answers 401 invalid_api_key",
    "calls-403": "POST /realtime/calls answers 403 (no access to the model)",
    "calls-404": "POST /realtime/calls answers 404 model_not_found",
    "calls-429": "POST /realtime/calls answers 429 rate_limit_exceeded with Retry-After",
    "calls-500": "POST /realtime/calls answers 500 server_error",
    "calls-html": "POST /realtime/calls answers 502 with an HTML error page (a proxy)",
    "garbage-sdp": "POST /realtime/calls answers 201 with a body that is not SDP",
    "bad-answer": "POST /realtime/calls answers 201 with an SDP answer aiortc cannot parse",
    "slow-answer=S": "the SDP answer is sent S seconds late (default 30)",
    "retry-after=S": "the Retry-After value of calls-429 (default 2)",
    "ice-unreachable": "the server's ICE sockets close after the answer: ICE never completes",
    "dtls-mismatch": "the answer's DTLS fingerprint is wrong, so the handshake fails",
    "no-session-created": "the data channel opens but session.created is never sent",
    "transcription-failed": "every user turn's transcription fails (.failed event)",
    "expired-secrets": "every ek_ client secret is minted already expired",
}

_STATUS_FAULTS = {"calls-401": 401, "calls-403": 403, "calls-404": 404, "calls-429": 429,
                  "calls-500": 500}
_REPLY_FAULTS: dict[str, CallsReply] = {"calls-html": "html", "garbage-sdp": "garbage-sdp",
                                        "bad-answer": "bad-answer"}
_FLAG_FAULTS = {"ice-unreachable": "ice_unreachable", "dtls-mismatch": "dtls_mismatch",
                "no-session-created": "no_session_created",
                "transcription-failed": "transcription_failed",
                "expired-secrets": "expired_secrets"}

_STATUS_BODIES: dict[int, tuple[str, str, str | None]] = {
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("Your organization does not have access to this model.", "invalid_request_error",
          "model_not_accessible"),
    404: ("The model 'gpt-realtime' does not exist or you do not have access to it.",
          "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests. Please try again later.", "requests",
          "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error", None),
}
_HTML_PAGE = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
              "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")
_FINGERPRINT = re.compile(r"^(a=fingerprint:\S+ )([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults a :class:`~livetalk.server.LocalServer` injects; the default injects none.

    Args:
        calls_status: answer every ``POST /realtime/calls`` with this status (401, 403, 404,
            429 or 500) and an API-shaped JSON error envelope.
        retry_after_s: the ``Retry-After`` header sent with a 429.
        calls_reply: ``"html"`` (502 with an HTML page), ``"garbage-sdp"`` (201 whose body is
            not SDP) or ``"bad-answer"`` (201 with an SDP answer that cannot be parsed).
        answer_delay_s: hold every SDP answer this long before answering.
        ice_unreachable: close the server's ICE sockets right after answering, so the
            answer's candidates lead nowhere and ICE never completes.
        dtls_mismatch: rewrite the answer's DTLS fingerprint, so the handshake fails.
        no_session_created: open the data channel but never send ``session.created``.
        transcription_failed: every transcription fails with
            ``conversation.item.input_audio_transcription.failed``.
        expired_secrets: mint ``ek_`` secrets that have already expired (401 on use).

    Build one from names with :meth:`parse`; pass it as ``LocalServer(faults=...)``.
    """

    calls_status: int | None = None
    retry_after_s: float = 2.0
    calls_reply: CallsReply | None = None
    answer_delay_s: float = 0.0
    ice_unreachable: bool = False
    dtls_mismatch: bool = False
    no_session_created: bool = False
    transcription_failed: bool = False
    expired_secrets: bool = False

    def __post_init__(self) -> None:
        if self.calls_status is not None and self.calls_status not in _STATUS_BODIES:
            raise ConfigError(f"calls_status must be one of {sorted(_STATUS_BODIES)}, "
                              f"got {self.calls_status}")
        if self.calls_reply is not None and self.calls_reply not in _REPLY_FAULTS.values():
            raise ConfigError(f"unknown calls_reply {self.calls_reply!r}")
        if self.answer_delay_s < 0 or self.retry_after_s < 0:
            raise ConfigError("answer_delay_s and retry_after_s must be >= 0")

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Faults:
        """Build faults from names as ``livetalk serve --fault`` takes them (see FAULTS).

        Raises:
            ConfigError: an unknown name or a bad number.
        """
        changes: dict[str, Any] = {}
        for spec in specs:
            name, _, value = spec.strip().partition("=")
            if name in _STATUS_FAULTS and not value:
                changes["calls_status"] = _STATUS_FAULTS[name]
            elif name in _REPLY_FAULTS and not value:
                changes["calls_reply"] = _REPLY_FAULTS[name]
            elif name in _FLAG_FAULTS and not value:
                changes[_FLAG_FAULTS[name]] = True
            elif name in ("slow-answer", "retry-after"):
                key = "answer_delay_s" if name == "slow-answer" else "retry_after_s"
                try:
                    changes[key] = float(value) if value else (30.0 if key == "answer_delay_s"
                                                               else 2.0)
                except ValueError:
                    raise ConfigError(f"fault {name!r} needs a number of seconds, "
                                      f"got {value!r}") from None
            else:
                known = ", ".join(FAULTS)
                raise ConfigError(f"unknown fault {spec!r}; known faults: {known}")
        return replace(cls(), **changes)

    @property
    def active(self) -> bool:
        """True when any fault differs from the default."""
        return any(getattr(self, f.name) != f.default for f in fields(self)
                   if f.name != "retry_after_s")

    def calls_response(self) -> web.Response | None:
        """The reply that replaces a ``POST /realtime/calls``, or None to proceed normally."""
        if self.calls_status is not None:
            message, error_type, code = _STATUS_BODIES[self.calls_status]
            headers = ({"Retry-After": f"{self.retry_after_s:g}"}
                       if self.calls_status == 429 else None)
            return web.json_response(
                {"error": {"message": message, "type": error_type, "param": None,
                           "code": code}},
                status=self.calls_status, headers=headers)
        if self.calls_reply == "html":
            return web.Response(status=502, text=_HTML_PAGE, content_type="text/html")
        if self.calls_reply == "garbage-sdp":
            return web.Response(status=201, text="OK, call created. Have a nice day!",
                                content_type="application/sdp",
                                headers={"Location": "/v1/realtime/calls/rtc_garbage"})
        if self.calls_reply == "bad-answer":
            return web.Response(status=201, text="v=0\r\nthis is not a session description\r\n",
                                content_type="application/sdp",
                                headers={"Location": "/v1/realtime/calls/rtc_badanswer"})
        return None

    def rewrite_answer(self, sdp: str) -> str:
        """Apply the SDP faults (a wrong DTLS fingerprint) to an answer."""
        if self.dtls_mismatch:
            wrong = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
            sdp = _FINGERPRINT.sub(lambda m: f"{m.group(1)}{wrong}", sdp)
        return sdp


class FailingTranscriber:
    """A transcriber that fails: always, or for the next ``times`` turns then defers to
    ``fallback``. Installed by ``Faults(transcription_failed=True)`` and
    :meth:`~livetalk.server.app.ServerCall.fail_transcriptions`."""

    def __init__(self, fallback: Transcriber | None = None, times: int | None = None) -> None:
        self.fallback = fallback
        self.remaining = times

    def transcribe(self, pcm: np.ndarray, rate: int) -> str:
        if self.remaining is not None:
            if self.remaining <= 0 and self.fallback is not None:
                return self.fallback.transcribe(pcm, rate)
            self.remaining -= 1
        raise TranscriptionError("injected fault: the transcription failed")


def sever_peer(pc: Any) -> None:
    """Close the UDP sockets under an aiortc peer without any goodbye (no DTLS close_notify,
    no SCTP ABORT): to the other side the peer simply vanishes, as when a process dies.

    Call ``await pc.close()`` afterwards to release the rest of the peer.
    """
    for transceiver in pc.getTransceivers():
        _close_ice(transceiver.sender.transport)
    sctp = pc.sctp
    if sctp is not None:
        _close_ice(sctp.transport)


def _close_ice(dtls: Any) -> None:
    if dtls is None:
        return
    connection = dtls.transport._connection  # RTCIceTransport -> aioice.Connection
    for protocol in list(getattr(connection, "_protocols", [])):
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            with contextlib.suppress(OSError):
                transport.abort()
