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
import random
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
from aiohttp import web
from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket, is_rtcp

from livetalk.errors import ConfigError
from livetalk.server.asr import Transcriber, TranscriptionError
from livetalk.transport.impairment import ImpairedPath, Impairment, wrap_audio_rtp

__all__ = [
    "DEFAULT_RTP_LOSS",
    "FAULTS",
    "FailingTranscriber",
    "Faults",
    "RtpLoss",
    "RtpLossStatistics",
    "sever_peer",
]

CallsReply = Literal["html", "garbage-sdp", "bad-answer"]

#: Every fault name ``Faults.parse`` (and ``livetalk serve --fault``) accepts.
FAULTS: dict[str, str] = {
    "calls-401": "POST /realtime/calls answers 401 invalid_api_key",
    "calls-403": "POST /realtime/calls answers 403 (no access to the model)",
    "calls-404": "POST /realtime/calls answers 404 model_not_found",
    "calls-429": "POST /realtime/calls answers 429 rate_limit_exceeded with Retry-After "
                 "(calls-429=N: only the first N calls)",
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
    "rtp-loss": "drop 5% of the RTP audio packets the server receives, before decoding "
                "(rtp-loss=F: the fraction F, 0 to 1)",
    "rtp-loss-sent": "drop 5% of the RTP audio packets the server sends "
                     "(rtp-loss-sent=F: the fraction F, 0 to 1)",
    "rtp-jitter": "delay every RTP audio packet, both ways, by a random 0 to 20 ms, which "
                  "reorders some of them (rtp-jitter=MS: 0 to MS ms)",
    "rtp-reorder": "hold back 5% of the RTP audio packets, both ways, by 40 ms, so that the "
                   "next ones overtake them (rtp-reorder=F: the fraction F)",
}

#: The share of packets ``rtp-loss`` and ``rtp-loss-sent`` drop when no fraction is given.
DEFAULT_RTP_LOSS = 0.05

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
        calls_status_times: answer only the first this many calls with ``calls_status``, then
            proceed normally (a rate limit that clears); None for every call.
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
        rtp_loss: share (0 to 1) of the RTP audio packets each call receives that are
            dropped before the jitter buffer, as a lossy uplink would.
        rtp_loss_sent: share of the RTP audio packets each call sends that never leave.
        rtp_loss_seed: seed of the drop pattern; call ``n`` of the server draws from
            ``(rtp_loss_seed, n)``, so a run is reproducible (see :class:`RtpLoss`).
        impairment: delay jitter, loss and reordering applied to the RTP audio each call
            sends and receives (:class:`~livetalk.transport.impairment.Impairment`); call
            ``n`` draws from ``(impairment.seed, n)``.

    Build one from names with :meth:`parse`; pass it as ``LocalServer(faults=...)``.
    """

    calls_status: int | None = None
    calls_status_times: int | None = None
    retry_after_s: float = 2.0
    calls_reply: CallsReply | None = None
    answer_delay_s: float = 0.0
    ice_unreachable: bool = False
    dtls_mismatch: bool = False
    no_session_created: bool = False
    transcription_failed: bool = False
    expired_secrets: bool = False
    rtp_loss: float = 0.0
    rtp_loss_sent: float = 0.0
    rtp_loss_seed: int = 0
    impairment: Impairment | None = None
    _refused: list[int] = field(default_factory=lambda: [0], init=False, repr=False,
                                compare=False)
    """How many calls ``calls_status`` has answered (one mutable cell: the rest is frozen)."""

    def __post_init__(self) -> None:
        if self.calls_status is not None and self.calls_status not in _STATUS_BODIES:
            raise ConfigError(f"calls_status must be one of {sorted(_STATUS_BODIES)}, "
                              f"got {self.calls_status}")
        if self.calls_reply is not None and self.calls_reply not in _REPLY_FAULTS.values():
            raise ConfigError(f"unknown calls_reply {self.calls_reply!r}")
        if self.calls_status_times is not None and self.calls_status_times < 0:
            raise ConfigError(f"calls_status_times must be >= 0, got {self.calls_status_times}")
        if self.answer_delay_s < 0 or self.retry_after_s < 0:
            raise ConfigError("answer_delay_s and retry_after_s must be >= 0")
        for name in ("rtp_loss", "rtp_loss_sent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a fraction from 0 to 1, got {value!r}")

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
            elif name == "calls-429":
                changes["calls_status"] = 429
                try:
                    changes["calls_status_times"] = int(value)
                except ValueError:
                    raise ConfigError(f"fault {name!r} needs a whole number of calls, "
                                      f"got {value!r}") from None
            elif name in _REPLY_FAULTS and not value:
                changes["calls_reply"] = _REPLY_FAULTS[name]
            elif name in _FLAG_FAULTS and not value:
                changes[_FLAG_FAULTS[name]] = True
            elif name in ("rtp-loss", "rtp-loss-sent"):
                key = "rtp_loss" if name == "rtp-loss" else "rtp_loss_sent"
                try:
                    changes[key] = float(value) if value else DEFAULT_RTP_LOSS
                except ValueError:
                    raise ConfigError(f"fault {name!r} needs a fraction from 0 to 1, "
                                      f"got {value!r}") from None
            elif name in ("rtp-jitter", "rtp-reorder"):
                try:
                    number = float(value) if value else (20.0 if name == "rtp-jitter" else 0.05)
                    base = changes.get("impairment") or Impairment()
                    changes["impairment"] = (
                        replace(base, jitter_ms=number) if name == "rtp-jitter"
                        else replace(base, reorder=number))
                except (ValueError, ConfigError):
                    raise ConfigError(f"fault {name!r} needs a number "
                                      f"({'ms' if name == 'rtp-jitter' else '0 to 1'}), "
                                      f"got {value!r}") from None
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
                   if f.name not in ("retry_after_s", "rtp_loss_seed", "_refused"))

    @property
    def calls_refused(self) -> int:
        """How many ``POST /realtime/calls`` were answered with ``calls_status`` so far."""
        return self._refused[0]

    def rtp_loss_for(self, call_number: int) -> RtpLoss | None:
        """The packet-loss fault of the server's ``call_number``-th call, or None."""
        if not (self.rtp_loss or self.rtp_loss_sent):
            return None
        return RtpLoss(received=self.rtp_loss, sent=self.rtp_loss_sent,
                       seed=f"{self.rtp_loss_seed}:{call_number}")

    def install_impairment(self, pc: RTCPeerConnection, call_number: int
                           ) -> ImpairedPath | None:
        """Impair the RTP audio of the server's ``call_number``-th call both ways, if asked."""
        if self.impairment is None or not self.impairment.active:
            return None
        seeded = self.impairment.with_seed(f"{self.impairment.seed}:{call_number}")
        return seeded.install(pc, receive=True, send=True)

    def calls_response(self) -> web.Response | None:
        """The reply that replaces a ``POST /realtime/calls``, or None to proceed normally."""
        times = self.calls_status_times
        if self.calls_status is not None and (times is None or self._refused[0] < times):
            self._refused[0] += 1
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


@dataclass(frozen=True, slots=True)
class RtpLossStatistics:
    """What an :class:`RtpLoss` saw and dropped so far, per direction.

    Attributes:
        received_packets: RTP audio packets that arrived (dropped ones included).
        received_dropped: arrived RTP audio packets dropped before decoding.
        sent_packets: RTP packets the audio sender handed to its transport (dropped ones
            included).
        sent_dropped: RTP packets dropped instead of sent.
    """

    received_packets: int
    received_dropped: int
    sent_packets: int
    sent_dropped: int


class RtpLoss:
    """Drops a seeded random share of one peer connection's RTP audio packets.

    Nothing global is patched: :meth:`install` wraps two bound methods of one peer's
    objects. Received packets are dropped on the audio ``RTCRtpReceiver`` before its jitter
    buffer (the sequence numbers show the gap, as after a lossy network); sent packets are
    dropped on the audio sender's DTLS transport just before encryption (RTCP always passes).
    aiortc conceals nothing: a lost 20 ms frame is simply missing from the decoded audio, so
    the receiver's timeline is shorter than the sender's.

    Args:
        received: share (0 to 1) of incoming RTP audio packets to drop.
        sent: share (0 to 1) of outgoing RTP audio packets to drop.
        seed: seed of the drop patterns (the two directions draw independently).

    Use it through ``Faults(rtp_loss=..., rtp_loss_sent=...)``; the server installs one per
    call and exposes it as ``server.calls[call_id].loss`` (read :meth:`statistics`).
    """

    def __init__(self, *, received: float = 0.0, sent: float = 0.0,
                 seed: int | str = 0) -> None:
        for name, value in (("received", received), ("sent", sent)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"RtpLoss {name} must be a fraction from 0 to 1, got {value}")
        self.received = received
        self.sent = sent
        self._rng_in = random.Random(f"{seed}:in")
        self._rng_out = random.Random(f"{seed}:out")
        self.received_packets = 0
        """RTP audio packets that arrived (dropped ones included)."""
        self.received_dropped = 0
        """Arrived RTP audio packets dropped before decoding."""
        self.sent_packets = 0
        """RTP packets the audio sender handed to its transport (dropped ones included)."""
        self.sent_dropped = 0
        """RTP packets dropped instead of sent."""

    def __repr__(self) -> str:
        return f"<RtpLoss received={self.received:g} sent={self.sent:g}>"

    def install(self, pc: RTCPeerConnection) -> None:
        """Start dropping on every audio transceiver of ``pc``.

        Call it once the transceivers have transports (after ``setLocalDescription`` on the
        answering side, after ``setRemoteDescription`` on the offering one).
        """
        wrap_audio_rtp(pc, receive=self._wrap_receive if self.received else None,
                       send=self._wrap_send if self.sent else None)

    def statistics(self) -> RtpLossStatistics:
        """Packets seen and dropped in each direction so far."""
        return RtpLossStatistics(self.received_packets, self.received_dropped,
                                 self.sent_packets, self.sent_dropped)

    def _wrap_receive(self, handle: Any) -> Any:
        async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
            self.received_packets += 1
            if self._rng_in.random() < self.received:
                self.received_dropped += 1
                return
            await handle(packet, arrival_time_ms=arrival_time_ms)

        return handle_rtp_packet

    def _wrap_send(self, send: Any) -> Any:
        async def send_rtp(data: bytes) -> None:
            if not is_rtcp(data):
                self.sent_packets += 1
                if self._rng_out.random() < self.sent:
                    self.sent_dropped += 1
                    return
            await send(data)

        return send_rtp


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
