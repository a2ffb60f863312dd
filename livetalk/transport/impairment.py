"""Network impairment for tests and benchmarks: delay jitter, loss and reordering of RTP audio,
in process, seeded, on loopback.

An :class:`Impairment` describes what the path does to each RTP audio packet: drop it with
probability ``loss``, otherwise delay it by ``delay_ms`` plus a uniform random
``[0, jitter_ms]``, plus ``reorder_ms`` more for a share ``reorder`` of the packets. Packets
delayed by different amounts overtake each other, as on a real network: with 20 ms packets,
a jitter above 20 ms reorders some of them. :meth:`Impairment.install` applies it to one
``RTCPeerConnection`` by wrapping two bound methods of that peer's own objects (nothing global
is patched):

- **received** packets (``receive=True``): the audio ``RTCRtpReceiver``'s packet handler, after
  decryption, so the jitter buffer sees them late, out of order or never;
- **sent** packets (``send=True``): the audio sender's DTLS transport, before encryption.

RTCP, the DTLS handshake and the data channel are never touched. The random draws come from
``random.Random`` seeded with ``(seed, direction)``: the same impairment installed twice makes
the same decisions for the same packet sequence.

Example, impairing what a livetalk call receives from the local server::

    impaired = Impairment(jitter_ms=20, loss=0.02, seed=1).install(call_pc)
    ...
    impaired.statistics()   # packets seen, dropped, reordered, overtaken, per direction

The local server applies one to every call with ``Faults(impairment=...)``
(``livetalk serve --fault rtp-jitter=20``), and ``bench/jitter.py`` uses it for the
receive-latency and glitch measurements.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket, is_rtcp

from livetalk.errors import ConfigError

__all__ = [
    "ImpairedPath",
    "Impairment",
    "ImpairmentStatistics",
    "PathStatistics",
    "wrap_audio_rtp",
]


@dataclass(frozen=True, slots=True)
class Impairment:
    """What the path does to each RTP audio packet (see the module docstring).

    Args:
        delay_ms: constant one-way delay added to every packet.
        jitter_ms: each packet is delayed a further uniform random ``[0, jitter_ms]``.
        loss: share of packets dropped (0 to 1), independently.
        reorder: share of packets held back a further ``reorder_ms`` (0 to 1), so that the
            next ones overtake them.
        reorder_ms: how long a reordered packet is held back.
        seed: seed of the random draws.

    Raises:
        ConfigError: a negative delay or a share outside 0..1.
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 40.0
    seed: int | str = 0

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms", "reorder_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not 0 <= value <= 10_000:
                raise ConfigError(f"Impairment.{name} must be 0 to 10000 ms, got {value!r}")
        for name in ("loss", "reorder"):
            value = getattr(self, name)
            if isinstance(value, bool) or not 0 <= value <= 1:
                raise ConfigError(f"Impairment.{name} must be a share from 0 to 1, "
                                  f"got {value!r}")

    @property
    def active(self) -> bool:
        """True when it changes anything."""
        return bool(self.delay_ms or self.jitter_ms or self.loss or self.reorder)

    def with_seed(self, seed: int | str) -> Impairment:
        """The same impairment with another seed (one per call of a server)."""
        return Impairment(self.delay_ms, self.jitter_ms, self.loss, self.reorder,
                          self.reorder_ms, seed)

    def install(self, pc: RTCPeerConnection, *, receive: bool = True, send: bool = False
                ) -> ImpairedPath:
        """Impair the RTP audio of ``pc``: what it receives, what it sends, or both.

        Call it once the transceivers have transports (after ``setLocalDescription`` when
        answering, after ``setRemoteDescription`` when offering; any time on a connected
        call).

        Returns:
            The installed path, whose :meth:`ImpairedPath.statistics` count what it did.
        """
        path = ImpairedPath(self)
        wrap_audio_rtp(pc, receive=path.wrap_receive if receive else None,
                       send=path.wrap_send if send else None)
        return path


def wrap_audio_rtp(pc: RTCPeerConnection, *, receive: Callable[[Any], Any] | None = None,
                   send: Callable[[Any], Any] | None = None) -> None:
    """Wrap the RTP audio paths of one peer connection (nothing global is patched).

    ``receive`` wraps each audio ``RTCRtpReceiver._handle_rtp_packet`` (after decryption,
    before the jitter buffer); ``send`` wraps each audio sender's
    ``RTCDtlsTransport._send_rtp`` (before encryption; RTCP goes through it too). Each
    takes the bound method and returns its replacement. Call it once the transceivers have
    transports (after ``setLocalDescription`` when answering, after
    ``setRemoteDescription`` when offering).

    Args:
        pc: the peer connection.
        receive: the wrapper of the receive path, or None to leave it.
        send: the wrapper of the send path, or None to leave it.
    """
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        if receive is not None:
            receiver = transceiver.receiver
            receiver._handle_rtp_packet = receive(  # type: ignore[method-assign]
                receiver._handle_rtp_packet)
        transport = transceiver.sender.transport
        if send is not None and transport is not None:
            transport._send_rtp = send(transport._send_rtp)  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class PathStatistics:
    """What one direction of an :class:`ImpairedPath` did.

    Attributes:
        packets: RTP audio packets that entered the path.
        dropped: packets dropped (``loss``).
        reordered: packets held back by ``reorder_ms`` (``reorder``).
        overtaken: packets delivered after a packet that entered the path after them.
    """

    packets: int = 0
    dropped: int = 0
    reordered: int = 0
    overtaken: int = 0


@dataclass(frozen=True, slots=True)
class ImpairmentStatistics:
    """What an :class:`ImpairedPath` did so far, per direction.

    Attributes:
        received: to the packets the peer received.
        sent: to the packets the peer sent.
    """

    received: PathStatistics
    sent: PathStatistics


@dataclass(slots=True)
class _PathCounts:
    """The running counts of one direction (read through :class:`PathStatistics`)."""

    packets: int = 0
    dropped: int = 0
    reordered: int = 0
    overtaken: int = 0

    def snapshot(self) -> PathStatistics:
        return PathStatistics(self.packets, self.dropped, self.reordered, self.overtaken)


class ImpairedPath:
    """One installed :class:`Impairment`: its random draws, its pending packets, its counts."""

    def __init__(self, impairment: Impairment) -> None:
        self.impairment = impairment
        self._counts = {"received": _PathCounts(), "sent": _PathCounts()}
        self._rng = {"received": random.Random(f"{impairment.seed}:received"),
                     "sent": random.Random(f"{impairment.seed}:sent")}
        self._entered = {"received": 0, "sent": 0}
        self._delivered = {"received": -1, "sent": -1}
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def statistics(self) -> ImpairmentStatistics:
        """What the path did so far, per direction."""
        counts = self._counts
        return ImpairmentStatistics(counts["received"].snapshot(), counts["sent"].snapshot())

    def close(self) -> None:
        """Drop the packets still in flight."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()

    def wrap_receive(self, handle: Callable[..., Awaitable[None]]) -> Any:
        """``RTCRtpReceiver._handle_rtp_packet``, impaired."""
        async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
            delay = self._decide("received")
            if delay is None:
                return
            if delay <= 0:
                await handle(packet, arrival_time_ms=arrival_time_ms)
                return
            index = self._entered["received"] - 1
            self._later(delay, lambda: self._deliver(
                "received", index, handle(packet, arrival_time_ms=arrival_time_ms + round(delay))))

        return handle_rtp_packet

    def wrap_send(self, send: Callable[[bytes], Awaitable[None]]) -> Any:
        """``RTCDtlsTransport._send_rtp``, impaired (RTCP passes untouched)."""
        async def send_rtp(data: bytes) -> None:
            if is_rtcp(data):
                await send(data)
                return
            delay = self._decide("sent")
            if delay is None:
                return
            if delay <= 0:
                await send(data)
                return
            index = self._entered["sent"] - 1
            self._later(delay, lambda: self._deliver("sent", index, send(data)))

        return send_rtp

    # ---------------------------------------------------------------- internals
    def _decide(self, direction: str) -> float | None:
        """Drop (None) or the delay in ms for the next packet of ``direction``."""
        imp, rng, stats = self.impairment, self._rng[direction], self._counts[direction]
        stats.packets += 1
        self._entered[direction] += 1
        # every packet draws the same numbers whatever the settings: reproducible patterns
        lost, jitter, held = rng.random(), rng.random(), rng.random()
        if lost < imp.loss:
            stats.dropped += 1
            return None
        delay = imp.delay_ms + jitter * imp.jitter_ms
        if held < imp.reorder:
            stats.reordered += 1
            delay += imp.reorder_ms
        return delay

    def _later(self, delay_ms: float, deliver: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            deliver()

        timer = loop.call_later(delay_ms / 1000, fire)
        self._timers.add(timer)

    def _deliver(self, direction: str, index: int, step: Awaitable[None]) -> None:
        stats = self._counts[direction]
        if index < self._delivered[direction]:
            stats.overtaken += 1
        self._delivered[direction] = max(self._delivered[direction], index)
        task = asyncio.ensure_future(step)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
