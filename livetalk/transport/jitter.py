"""The low-latency knob: the depth of aiortc's audio receive jitter buffer.

aiortc gives every audio :class:`~aiortc.RTCRtpReceiver` a sequence-number
``JitterBuffer(capacity=16, prefetch=4)``: a frame goes to the decoder only once four newer
frames have arrived, so every received frame waits 80 ms (4 x 20 ms) before decoding. That is
most of aiortc's ≈90 ms one-way latency on a clean network (``docs/performance.md``). The
buffer has no playout clock and conceals nothing, so on loopback, a LAN or a well-behaved
path a shallow buffer only removes delay; its cost is that packets arriving out of order by
more than ``prefetch`` frames are dropped instead of reordered.

:func:`set_receive_prefetch` sets the depth of one receiver; :func:`set_peer_receive_prefetch`
sets it on every audio receiver of a peer connection. Call them before media flows (right
after ``addTrack``/``addTransceiver``, before the offer): then nothing is lost. Called on a
receiver that already holds frames, they keep only the newest ``frames`` of them, dropping
at most ``(old depth - new depth)`` x 20 ms of audio once; otherwise the frames already
queued would keep the old delay for the rest of the call (the buffer releases at most one
frame per arriving packet).

Example::

    pc = RTCPeerConnection()
    pc.addTrack(track)
    set_peer_receive_prefetch(pc, 1)  # 20 ms instead of 80 ms of receive delay
"""

from __future__ import annotations

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from livetalk.errors import ConfigError

__all__ = [
    "AIORTC_AUDIO_CAPACITY",
    "AIORTC_AUDIO_PREFETCH",
    "LOW_LATENCY_PREFETCH",
    "receive_prefetch",
    "set_peer_receive_prefetch",
    "set_receive_prefetch",
]

AIORTC_AUDIO_PREFETCH = 4
"""aiortc's own audio prefetch: frames held back before decoding (80 ms)."""

AIORTC_AUDIO_CAPACITY = 16
"""aiortc's own audio jitter-buffer capacity, in packets."""

LOW_LATENCY_PREFETCH = 1
"""The shallowest useful depth: a frame is released as soon as the next one arrives (20 ms).

aiortc releases a frame only when a packet with a newer timestamp arrives, so depths 0 and 1
behave the same.
"""

_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"


def _buffer_of(receiver: RTCRtpReceiver) -> JitterBuffer:
    buffer = getattr(receiver, _BUFFER_ATTR, None)
    if not isinstance(buffer, JitterBuffer):
        raise ConfigError(
            "this aiortc version keeps no JitterBuffer where livetalk expects it; "
            "the receive prefetch cannot be changed"
        )
    return buffer


def _is_audio(receiver: RTCRtpReceiver) -> bool:
    return not getattr(_buffer_of(receiver), "_is_video", False)


def receive_prefetch(receiver: RTCRtpReceiver) -> int:
    """The receiver's current jitter-buffer depth, in frames (aiortc's audio default is 4).

    Raises:
        ConfigError: the installed aiortc keeps its jitter buffer elsewhere.
    """
    return int(_buffer_of(receiver)._prefetch)


def set_receive_prefetch(
    receiver: RTCRtpReceiver, frames: int, *, capacity: int = AIORTC_AUDIO_CAPACITY
) -> int:
    """Set how many frames an audio receiver holds back before decoding.

    Each frame held adds 20 ms of receive latency; 1 (:data:`LOW_LATENCY_PREFETCH`) is the
    minimum, 4 (:data:`AIORTC_AUDIO_PREFETCH`) is aiortc's default. Call it before media flows
    (see the module docstring); read the result back with :func:`receive_prefetch`.

    Args:
        receiver: an audio ``RTCRtpReceiver`` (``pc.getReceivers()``, ``transceiver.receiver``).
        frames: the new depth, 0 to ``capacity - 1``.
        capacity: packets the buffer can hold, a power of two; a gap this long (a lost packet
            followed by ``capacity`` newer ones) makes the buffer skip the hole.

    Returns:
        The number of frames dropped to reach the new depth (0 before media flows).

    Raises:
        ConfigError: ``frames`` or ``capacity`` is out of range, the receiver is a video one,
            or the installed aiortc keeps its jitter buffer elsewhere.
    """
    if isinstance(capacity, bool) or capacity < 2 or capacity & (capacity - 1):
        raise ConfigError(f"capacity must be a power of two >= 2, got {capacity!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or not 0 <= frames < capacity:
        raise ConfigError(f"frames must be an integer from 0 to {capacity - 1}, got {frames!r}")
    if not _is_audio(receiver):
        raise ConfigError("set_receive_prefetch applies to audio receivers only")
    old = _buffer_of(receiver)
    held = _held_packets(old)
    keep = held[len(held) - max(frames, 1):] if held else []
    fresh = JitterBuffer(capacity=capacity, prefetch=frames)
    for packet in keep:
        fresh.add(packet)
    setattr(receiver, _BUFFER_ATTR, fresh)
    return len(held) - len(keep)


def set_peer_receive_prefetch(
    pc: RTCPeerConnection, frames: int, *, capacity: int = AIORTC_AUDIO_CAPACITY
) -> int:
    """Apply :func:`set_receive_prefetch` to every audio receiver of ``pc``.

    Call it after ``addTrack`` and before ``createOffer`` (or right after
    ``setRemoteDescription`` on the answering side).

    Returns:
        The number of audio receivers changed.
    """
    changed = 0
    for receiver in pc.getReceivers():
        if _is_audio(receiver):
            set_receive_prefetch(receiver, frames, capacity=capacity)
            changed += 1
    return changed


def _held_packets(buffer: JitterBuffer) -> list[RtpPacket]:
    """The packets a jitter buffer holds, oldest first (by sequence from its origin)."""
    origin = buffer._origin
    if origin is None:
        return []
    slots = buffer._packets
    size = buffer.capacity
    held: list[RtpPacket] = []
    for offset in range(size):
        packet = slots[(origin + offset) % size]
        if packet is not None:
            held.append(packet)
    return held
