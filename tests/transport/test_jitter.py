"""The receive jitter-buffer knob on real aiortc receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from livetalk.errors import ConfigError
from livetalk.transport.jitter import (
    AIORTC_AUDIO_PREFETCH,
    LOW_LATENCY_PREFETCH,
    receive_prefetch,
    set_peer_receive_prefetch,
    set_receive_prefetch,
)

FRAME = 960  # RTP timestamp step of one 20 ms Opus frame


@pytest.fixture
async def pc() -> AsyncIterator[RTCPeerConnection]:
    peer = RTCPeerConnection()
    yield peer
    await peer.close()


def _buffer(receiver: RTCRtpReceiver) -> JitterBuffer:
    buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    assert isinstance(buffer, JitterBuffer)
    return buffer


def _packet(seq: int) -> RtpPacket:
    packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * FRAME)
    packet._data = bytes([seq % 256])  # type: ignore[attr-defined]  # set by depayload in aiortc
    return packet


def _released(buffer: JitterBuffer, seqs: range) -> list[int | None]:
    """Feed packets; for each, the sequence number of the frame released (None if none)."""
    out: list[int | None] = []
    for seq in seqs:
        _, frame = buffer.add(_packet(seq))
        out.append(None if frame is None else frame.timestamp // FRAME)
    return out


def _audio_receiver(pc: RTCPeerConnection) -> RTCRtpReceiver:
    return pc.addTransceiver("audio").receiver


async def test_default_holds_four_frames_and_the_knob_makes_it_one(pc) -> None:
    receiver = _audio_receiver(pc)
    assert receive_prefetch(receiver) == AIORTC_AUDIO_PREFETCH
    assert _released(_buffer(receiver), range(6)) == [None, None, None, None, 0, 1]

    other = _audio_receiver(pc)
    assert set_receive_prefetch(other, LOW_LATENCY_PREFETCH) == 0
    assert receive_prefetch(other) == 1
    assert _released(_buffer(other), range(6)) == [None, 0, 1, 2, 3, 4]


async def test_prefetch_zero_behaves_like_one(pc) -> None:
    receiver = _audio_receiver(pc)
    set_receive_prefetch(receiver, 0)
    assert _released(_buffer(receiver), range(4)) == [None, 0, 1, 2]


async def test_mid_stream_change_drops_the_backlog_once(pc) -> None:
    receiver = _audio_receiver(pc)
    assert _released(_buffer(receiver), range(6)) == [None, None, None, None, 0, 1]
    # frames 2..5 are held; keeping only the newest means frame 5 comes out next
    assert set_receive_prefetch(receiver, 1) == 3
    assert _released(_buffer(receiver), range(6, 9)) == [5, 6, 7]


async def test_deeper_setting_keeps_everything_held(pc) -> None:
    receiver = _audio_receiver(pc)
    _released(_buffer(receiver), range(6))
    assert set_receive_prefetch(receiver, 8) == 0
    assert receive_prefetch(receiver) == 8
    assert _released(_buffer(receiver), range(6, 11)) == [None, None, None, None, 2]


async def test_peer_helper_changes_audio_receivers_only(pc) -> None:
    audio = _audio_receiver(pc)
    video = pc.addTransceiver("video").receiver
    assert set_peer_receive_prefetch(pc, 2) == 1
    assert receive_prefetch(audio) == 2
    assert receive_prefetch(video) == 0  # aiortc's video buffer has no prefetch


@pytest.mark.parametrize(("frames", "capacity"), [(-1, 16), (16, 16), (2, 12), (1, 1), (True, 16)])
async def test_rejects_out_of_range_values(pc, frames, capacity) -> None:
    receiver = _audio_receiver(pc)
    with pytest.raises(ConfigError):
        set_receive_prefetch(receiver, frames, capacity=capacity)
    assert receive_prefetch(receiver) == AIORTC_AUDIO_PREFETCH


async def test_rejects_video_receivers(pc) -> None:
    with pytest.raises(ConfigError, match="audio"):
        set_receive_prefetch(pc.addTransceiver("video").receiver, 1)


async def test_smaller_capacity_skips_a_lost_packet_sooner(pc) -> None:
    small, default = _audio_receiver(pc), _audio_receiver(pc)
    set_receive_prefetch(small, 1, capacity=4)
    set_receive_prefetch(default, 1)
    for receiver in (small, default):
        assert _released(_buffer(receiver), range(3)) == [None, 0, 1]
    # packet 3 is lost: the buffer waits for it until the gap fills its capacity
    assert _released(_buffer(small), range(4, 8)) == [None, None, 4, 5]
    assert _released(_buffer(default), range(4, 8)) == [None, None, None, None]
