"""The receive jitter buffers on real aiortc receivers: aiortc's prefetch knob, and
livetalk's adaptive receiver (decoding, concealment, the fallbacks) on a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RtpPacket

from livetalk.audio.clock import ManualClock
from livetalk.errors import ConfigError
from livetalk.transport import jitter
from livetalk.transport.jitter import (
    AIORTC_AUDIO_PREFETCH,
    LOW_LATENCY_PREFETCH,
    AdaptiveReceiver,
    adaptive_receivers,
    install_adaptive_playout,
    receive_prefetch,
    set_peer_receive_prefetch,
    set_receive_prefetch,
)
from livetalk.transport.tracks import RemoteAudioReader
from tests.resampling import spy_on_resampling

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


# ------------------------------------------------------------------------------ adaptive
def _opus_packets(count: int) -> list[bytes]:
    """``count`` 20 ms Opus packets of a 440 Hz tone (the benchmarks' far-end tone)."""
    from bench.echo_peer import encode_tone

    packets = encode_tone(1.0)
    return [packets[i % len(packets)] for i in range(count)]


def _rtp(seq: int, data: bytes, payload_type: int = 111) -> RtpPacket:
    packet = RtpPacket(payload_type=payload_type, sequence_number=seq, timestamp=seq * FRAME,
                       payload=data)
    packet._data = data  # type: ignore[attr-defined]  # what aiortc's depayload sets
    return packet


async def _drive(adaptive: AdaptiveReceiver, clock: ManualClock, packets: list[bytes], *,
                 lost: set[int] = frozenset(), until: float | None = None) -> None:  # type: ignore[assignment]
    """Deliver packet ``i`` at ``i`` x 20 ms + 50 ms (except the lost ones), moving the clock
    in 1 ms steps and letting the playout task run at each."""
    arrivals = {round((0.05 + i * 0.02) * 1000): i for i in range(len(packets)) if i not in lost}
    end = round((until if until is not None else 0.05 + len(packets) * 0.02) * 1000)
    for ms in range(end + 1):
        clock.set(ms / 1000)
        if ms in arrivals:
            adaptive.add(_rtp(arrivals[ms], packets[arrivals[ms]]))
        for _ in range(5):
            await asyncio.sleep(0)


def _frames(receiver: RTCRtpReceiver) -> list[Any]:
    queue = receiver.track._queue  # type: ignore[attr-defined]
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def _adaptive_setup(pc: RTCPeerConnection) -> tuple[RTCRtpReceiver, ManualClock,
                                                    AdaptiveReceiver]:
    receiver = _audio_receiver(pc)
    receiver._track = RemoteStreamTrack(kind="audio")  # type: ignore[attr-defined]
    clock = ManualClock()
    (adaptive,) = install_adaptive_playout(pc, clock=clock, rate=24000)
    return receiver, clock, adaptive


async def test_adaptive_receiver_plays_decoded_frames_on_the_clock(pc) -> None:
    receiver, clock, adaptive = _adaptive_setup(pc)
    assert adaptive_receivers(pc) == [adaptive]
    await _drive(adaptive, clock, _opus_packets(50))
    frames = _frames(receiver)
    stats = adaptive.statistics()
    assert stats.played == 50 and stats.concealed == 0
    assert len(frames) == 50
    assert {(f.sample_rate, f.samples, f.format.name, f.layout.name) for f in frames} == {
        (24000, 480, "s16", "mono")}
    assert [f.pts for f in frames] == [480 * i for i in range(50)]
    tone = np.concatenate([f.to_ndarray()[0] for f in frames[5:]])
    assert np.sqrt(np.mean(tone.astype(np.float64) ** 2)) > 2000  # the tone, decoded
    await adaptive.aclose()


async def test_decoded_audio_reaches_the_reader_without_resampling(pc, monkeypatch) -> None:
    """Model audio is not resampled between the decoder and the consumers: libopus decodes
    straight to the reader's 24 kHz mono and ``RemoteAudioReader`` passes the frames on."""
    packets = _opus_packets(25)
    receiver, clock, adaptive = _adaptive_setup(pc)
    log = spy_on_resampling(monkeypatch)
    got: list[np.ndarray] = []
    reader = RemoteAudioReader(receiver.track, rate=24000, on_audio=got.append)
    reader.start()
    await _drive(adaptive, clock, packets)
    receiver.track._queue.put_nowait(None)  # type: ignore[attr-defined]  # aiortc's end marker
    await asyncio.wait_for(reader.wait_ended(), 5)
    assert log.conversions == []
    assert reader.frames == 25 and sum(c.size for c in got) == 25 * 480
    await adaptive.aclose()


async def test_adaptive_receiver_conceals_a_lost_packet_with_libopus(pc) -> None:
    receiver, clock, adaptive = _adaptive_setup(pc)
    assert adaptive.concealment == "libopus"
    await _drive(adaptive, clock, _opus_packets(50), lost={20})
    frames = _frames(receiver)
    stats = adaptive.statistics()
    assert (stats.lost, stats.concealed) == (1, 1)
    assert len(frames) == 50  # the timeline keeps its length
    level = [float(np.sqrt(np.mean(f.to_ndarray()[0].astype(np.float64) ** 2)))
             for f in frames]
    assert level[20] > 0.5 * level[19]  # the tone goes on through the loss: no hole
    await adaptive.aclose()


async def test_adaptive_receiver_falls_back_to_fade_and_repeat(pc, monkeypatch) -> None:
    monkeypatch.setattr(jitter, "opus_decoder_available", lambda: False)
    receiver, clock, adaptive = _adaptive_setup(pc)
    assert adaptive.concealment == "fade-repeat"
    await _drive(adaptive, clock, _opus_packets(40), lost={20, 21})
    frames = [f.to_ndarray()[0].astype(np.int32) for f in _frames(receiver)]
    assert len(frames) == 40
    assert np.array_equal(frames[20], frames[19] // 2) or np.abs(
        frames[20] - frames[19] * 0.5).max() <= 1
    assert np.abs(frames[21] - frames[19] * 0.25).max() <= 1
    await adaptive.aclose()


async def test_other_codecs_keep_aiortcs_buffer(pc) -> None:
    receiver, _, adaptive = _adaptive_setup(pc)
    codecs = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
    codecs[0] = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, payloadType=0)
    released = [adaptive.add(_rtp(i, b"\xff" * 160, payload_type=0))[1] for i in range(6)]
    assert [r is not None for r in released] == [False] * 4 + [True] * 2
    assert adaptive.statistics().packets == 0


async def test_prefetch_knob_refuses_an_adaptive_receiver(pc) -> None:
    receiver, _, _ = _adaptive_setup(pc)
    with pytest.raises(ConfigError, match="adaptive"):
        set_receive_prefetch(receiver, 1)
    assert install_adaptive_playout(pc) == adaptive_receivers(pc)  # idempotent
