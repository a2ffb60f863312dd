"""Tests for livetalk.transport.tracks, without a peer connection."""

from __future__ import annotations

import asyncio
import fractions
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError

from livetalk.audio.clock import ManualClock, MediaClock
from livetalk.audio.format import rms_dbfs
from livetalk.audio.resample import Resampler, resample
from livetalk.audio.sinks import BufferSink
from livetalk.audio.sources import ArraySource, FileSource
from livetalk.errors import AudioFormatError
from livetalk.transport.tracks import TAIL_FRAMES, OutboundAudioTrack, RemoteAudioReader
from tests.resampling import spy_on_resampling


def sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(np.sin(2 * np.pi * freq * t) * amp).astype(np.int16)


def channels(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1, 2)


async def pull(track: OutboundAudioTrack, n: int) -> list[Any]:
    return [await track.recv() for _ in range(n)]


async def pull_pcm(track: OutboundAudioTrack, n: int) -> np.ndarray:
    """The 48 kHz PCM of the next ``n`` frames, as the track reports having sent it."""
    out = []
    for _ in range(n):
        await track.recv()
        out.append(track.last_pcm)
    return np.concatenate(out)


def decode(packets: list[av.Packet]) -> np.ndarray:
    """The packets through aiortc's receive path (its Opus decoder): (samples, 2) int16."""
    decoder = OpusDecoder()
    out = []
    for packet in packets:
        timestamp = OpusEncoder().pack(packet)[1]  # what aiortc's sender puts in RTP
        for frame in decoder.decode(JitterFrame(bytes(packet), timestamp)):
            out.append(channels(frame))
    return np.concatenate(out)


@pytest.fixture(params=[True, False], ids=["preencode", "frames"])
def preencode(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


# -- OutboundAudioTrack: what recv() returns ---------------------------------------------------


async def test_packets_are_20ms_mono_opus_with_incrementing_pts() -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True))
    assert track.kind == "audio" and track.preencode
    track.enqueue(sine(48000, 0.04), 48000)
    packets = await pull(track, 4)
    for k, packet in enumerate(packets):
        assert isinstance(packet, av.Packet)
        assert packet.pts == 960 * k
        assert packet.time_base == fractions.Fraction(1, 48000)
        assert OpusEncoder().pack(packet)[1] == 960 * k  # aiortc's RTP timestamp
        assert not bytes(packet)[0] & 0x04  # TOC: a mono packet
    decoded = decode(packets)
    assert decoded.shape == (4 * 960, 2)
    assert (decoded[:, 0] == decoded[:, 1]).all()  # decoders put mono on both channels
    assert track.statistics().frames == 4


async def test_frames_without_preencoding_are_20ms_stereo_s16() -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=False)
    assert not track.preencode
    frames = await pull(track, 3)
    for k, frame in enumerate(frames):
        assert isinstance(frame, av.AudioFrame)
        assert frame.samples == 960
        assert frame.format.name == "s16" and not frame.format.is_planar
        assert frame.layout.name == "stereo"
        assert frame.sample_rate == 48000
        assert frame.time_base == fractions.Fraction(1, 48000)
        assert frame.pts == 960 * k
        assert frame.to_ndarray().shape == (1, 1920)
    assert track.encoded_frames == 0


async def test_stereo_frames_carry_last_pcm_on_both_channels() -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=False)
    track.enqueue(sine(48000, 0.02), 48000)
    frame = await track.recv()
    assert (channels(frame)[:, 0] == track.last_pcm).all()
    assert (channels(frame)[:, 1] == track.last_pcm).all()
    assert track.last_pcm.tolist() == sine(48000, 0.02).tolist()


async def test_bitrate_is_validated_and_applied() -> None:
    with pytest.raises(AudioFormatError, match="bitrate"):
        OutboundAudioTrack(ManualClock(), bitrate=1000)
    sizes = {}
    for bitrate in (16_000, 64_000):
        track = OutboundAudioTrack(ManualClock(autoadvance=True), bitrate=bitrate)
        track.enqueue(sine(48000, 0.5, freq=1000), 48000)
        sizes[bitrate] = np.mean([len(bytes(p)) for p in await pull(track, 25)])
    assert sizes[64_000] > 2 * sizes[16_000]


# -- OutboundAudioTrack: content -------------------------------------------------------------


async def test_silence_when_nothing_is_queued(preencode: bool) -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=preencode)
    assert not (await pull_pcm(track, 5)).any()
    assert track.silence_frames == 5 and track.samples_sent == 0


async def test_silence_is_a_cached_packet_with_no_encoding() -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True))
    idle = await pull(track, 5)
    assert track.encoded_frames == 0
    assert len({bytes(p) for p in idle}) == 1
    assert np.abs(decode(idle)).max() <= 2  # digital silence, give or take the codec's LSB
    track.enqueue(sine(48000, 0.04), 48000)
    sent = await pull(track, 10)
    assert track.encoded_frames == 2 + TAIL_FRAMES  # the audio, then a tail of zeros
    assert track.silence_frames == 5 + 8
    after = [bytes(p) for p in sent[2 + TAIL_FRAMES :]]
    assert after == [bytes(idle[0])] * (8 - TAIL_FRAMES)
    assert [p.pts for p in sent] == [960 * k for k in range(5, 15)]
    assert track.statistics().encoded_frames == 2 + TAIL_FRAMES


async def test_queued_audio_is_resampled(preencode: bool) -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=preencode)
    pcm = sine(24000, 0.2)
    track.enqueue(pcm[:2400], 24000)
    track.enqueue(pcm[2400:], 24000)
    track.flush_input()
    expected = resample(pcm, 24000, 48000)
    sent = await pull_pcm(track, 11)
    assert sent[: expected.size].tolist() == expected.tolist()
    assert not sent[expected.size :].any()
    assert track.samples_sent == expected.size
    assert track.played_ms == pytest.approx(200.0, abs=0.1)
    assert track.silence_frames == 1
    assert track.queued_ms == 0.0


async def test_last_pcm_is_not_overwritten_by_later_frames(preencode: bool) -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=preencode)
    track.enqueue(np.full(960 * 2, 1234, dtype=np.int16), 48000)
    await track.recv()
    first = track.last_pcm
    track.enqueue(np.full(960, -5, dtype=np.int16), 48000)
    await pull(track, 2)
    assert (first == 1234).all() and (track.last_pcm == -5).all()
    await track.recv()  # silence: the shared array, read-only
    assert not track.last_pcm.any() and not track.last_pcm.flags.writeable


async def test_returned_frames_do_not_share_the_track_buffer() -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=False)
    track.enqueue(np.full(960, 1234, dtype=np.int16), 48000)
    first = await track.recv()
    await track.recv()  # silence, built in the same scratch buffer
    assert (first.to_ndarray() == 1234).all()


async def test_enqueue_48k_is_sent_bit_exact(preencode: bool) -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=preencode)
    pcm = np.arange(-960, 960, dtype=np.int16)
    track.enqueue(pcm, 48000)
    assert (await pull_pcm(track, 2)).tolist() == pcm.tolist()


async def test_enqueue_validation() -> None:
    track = OutboundAudioTrack(ManualClock())
    with pytest.raises(AudioFormatError):
        track.enqueue(np.zeros(10, dtype=np.float32), 24000)
    with pytest.raises(AudioFormatError, match="rate"):
        track.enqueue(np.zeros(10, dtype=np.int16), 0)


async def test_overflow_drops_oldest_and_counts() -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), max_buffer_ms=100)
    track.enqueue(np.full(4800, 1, dtype=np.int16), 48000)
    track.enqueue(np.full(960, 2, dtype=np.int16), 48000)
    assert track.statistics().dropped_ms == 20.0
    assert track.queued_ms == 100.0

# -- OutboundAudioTrack: pacing -----------------------------------------------------------------


async def test_pacing_follows_the_media_clock() -> None:
    clock = ManualClock(start=10.0)
    track = OutboundAudioTrack(clock)
    first = await track.recv()  # frame 0 is due at once
    assert first.pts == 0
    second = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    assert not second.done()
    assert clock.next_deadline == pytest.approx(10.02)
    clock.advance(0.019)
    await asyncio.sleep(0)
    assert not second.done()
    clock.advance(0.001)
    assert (await second).pts == 960
    assert track.late_frames == 0


async def test_late_frames_are_sent_at_once_and_counted() -> None:
    clock = ManualClock()
    track = OutboundAudioTrack(clock)
    await track.recv()
    clock.advance(0.105)  # frames 1..5 are due; 1..4 by more than one frame period
    frames = await pull(track, 5)
    assert [f.pts for f in frames] == [960 * k for k in range(1, 6)]
    assert track.late_frames == 4
    assert track.max_lateness_ms == pytest.approx(85.0)
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    assert not waiting.done()  # frame 6 is due at 120 ms
    clock.advance(0.015)
    assert (await waiting).pts == 960 * 6


async def test_fast_media_clock_runs() -> None:
    track = OutboundAudioTrack(MediaClock(speed=1000.0))
    frames = await pull(track, 50)
    assert [f.pts for f in frames] == [960 * k for k in range(50)]


async def test_stop_ends_recv_and_wakes_sleeper() -> None:
    clock = ManualClock()
    track = OutboundAudioTrack(clock)
    await track.recv()
    pending = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.stop()
    clock.advance(1.0)
    with pytest.raises(MediaStreamError):
        await pending
    with pytest.raises(MediaStreamError):
        await track.recv()


# -- OutboundAudioTrack: mute, clear, play ---------------------------------------------------


async def test_mute_sends_silence_but_keeps_time(preencode: bool) -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=preencode)
    track.enqueue(np.full(960 * 4, 500, dtype=np.int16), 48000)
    track.mute()
    assert track.muted
    muted = await pull(track, 2)
    assert not track.last_pcm.any()
    assert track.samples_sent == 1920 and track.silence_frames == 2
    assert track.encoded_frames == 0
    if preencode:
        assert np.abs(decode(muted)).max() <= 2
    else:
        assert not any(f.to_ndarray().any() for f in muted)
    track.unmute()
    assert ((await pull_pcm(track, 2)) == 500).all()
    assert track.encoded_frames == (2 if preencode else 0)


async def test_clear_drops_queue_with_short_fade(preencode: bool) -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=preencode)
    track.enqueue(np.full(48000, 10000, dtype=np.int16), 48000)
    await pull(track, 2)
    dropped = track.clear()
    assert dropped == pytest.approx(1000 - 40 - 5)
    assert track.queued_ms == pytest.approx(5.0)
    fade = await pull_pcm(track, 1)
    assert fade[0] > 9900 and 0 < fade[239] < 100 and not fade[240:].any()
    assert fade[0] >= fade[100] >= fade[200]
    assert track.statistics().cleared_ms == pytest.approx(dropped)
    await pull(track, 10)
    assert track.encoded_frames == (3 + TAIL_FRAMES if preencode else 0)


async def test_on_frame_sent_reports_played_position() -> None:
    positions: list[float] = []
    track = OutboundAudioTrack(ManualClock(autoadvance=True), on_frame_sent=positions.append)
    track.enqueue(np.zeros(960 * 2 + 480, dtype=np.int16), 48000)
    await pull(track, 5)
    assert positions == [20.0, 40.0, 50.0]


async def test_play_applies_backpressure_and_sends_everything(preencode: bool) -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=preencode)
    pcm = sine(24000, 1.0)
    source = ArraySource(pcm, 24000)
    player = asyncio.create_task(track.play(source, high_water_ms=200))
    peak_queued = 0.0
    sent = []
    while not player.done() or track.queued_ms:
        await asyncio.sleep(0)
        peak_queued = max(peak_queued, track.queued_ms)
        await track.recv()
        sent.append(track.last_pcm)
    await player
    assert source.closed
    assert peak_queued <= 200 + 100 + 1  # the high-water mark plus one 100 ms chunk
    expected = resample(pcm, 24000, 48000)
    assert track.samples_sent == expected.size
    assert np.concatenate(sent)[: expected.size].tolist() == expected.tolist()


class _FastManualClock(ManualClock):
    """A manual clock standing for media time at 10x real time."""

    @property
    def speed(self) -> float:
        return 10.0


@pytest.mark.parametrize(("clock", "margin_ms"), [(ManualClock(), 200), (_FastManualClock(), 2000)],
                         ids=["real-time", "10x"])
async def test_play_keeps_the_same_real_time_margin_at_any_speed(clock: ManualClock,
                                                               margin_ms: float) -> None:
    """The queue a source is kept ahead by is 200 ms of real time: at 10x, 2 s of media (a
    20 ms margin ran dry whenever the event loop was late, putting silence inside words)."""
    track = OutboundAudioTrack(clock)
    player = asyncio.create_task(track.play(ArraySource(sine(24000, 5.0), 24000)))
    for _ in range(100):  # the clock stands still: play() fills the queue and waits
        await asyncio.sleep(0)
    assert not player.done()
    assert margin_ms < track.queued_ms <= margin_ms + 100 + 1
    player.cancel()
    with pytest.raises(asyncio.CancelledError):
        await player


async def test_wait_drained() -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True))
    await track.wait_drained()  # nothing queued
    track.enqueue(np.zeros(960 * 3, dtype=np.int16), 48000)
    drained = asyncio.create_task(track.wait_drained())
    await track.recv()
    await asyncio.sleep(0)
    assert not drained.done()
    await pull(track, 2)
    await drained
    assert track.queued_ms == 0


async def test_play_returns_when_the_track_stops() -> None:
    track = OutboundAudioTrack(ManualClock())
    source = ArraySource(np.zeros(48000 * 2, dtype=np.int16), 48000)
    player = asyncio.create_task(track.play(source))
    await asyncio.sleep(0)
    assert not player.done()  # blocked by backpressure: nobody calls recv()
    track.stop()
    await player
    assert source.closed
    await track.wait_drained()


# -- OutboundAudioTrack: one resampling each way, the sent-audio view ------------------------


def chirp(rate: int, seconds: float = 1.0, f0: float = 200.0, f1: float = 10_000.0,
          amp: float = 8000) -> np.ndarray:
    """A linear sweep from ``f0`` to ``f1``, computed directly at ``rate`` (no resampling)."""
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return np.rint(np.sin(phase) * amp).astype(np.int16)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized correlation of two signals at zero lag (over the shorter one)."""
    n = min(a.size, b.size)
    x, y = a[:n].astype(np.float64), b[:n].astype(np.float64)
    return float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))


async def pull_views(track: OutboundAudioTrack, views: list[np.ndarray],
                     n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The 48 kHz PCM of the next ``n`` frames, and the view ``on_sent_audio`` got of each."""
    sent, seen = [], []
    for _ in range(n):
        before = len(views)
        await track.recv()
        sent.append(track.last_pcm)
        assert len(views) == before + 1  # one view per frame, silence included
        seen.append(views[-1])
    return np.concatenate(sent), seen


async def test_48k_audio_is_sent_untouched_and_viewed_through_one_resampler(
        preencode: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    log = spy_on_resampling(monkeypatch)
    views: list[np.ndarray] = []
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=preencode,
                               on_sent_audio=views.append)
    pcm = chirp(48000)
    track.enqueue(pcm, 48000)
    sent, _ = await pull_views(track, views, 55)  # 50 frames of the sweep, 5 of silence
    conversions = log.conversions  # before the reference below adds its own
    calls = log.calls_of(48000, 24000)
    view = np.concatenate(views)

    # the way to the encoder: no resampling at all; the view: one resampler, 48 -> 24 kHz
    assert sent[: pcm.size].tolist() == pcm.tolist()
    assert conversions == [(48000, 24000)]
    assert calls <= 55
    # (a) the view is a reference resampling of what was sent, sample for sample ...
    reference = resample(sent, 48000, 24000)
    assert view.tolist() == reference[: view.size].tolist()
    assert 0 < reference.size - view.size <= 32  # the filter's delay, still held at the end
    # ... in time and in shape with the sweep computed directly at 24 kHz
    assert _correlation(view, chirp(24000)) > 0.999
    assert _correlation(view[1:], chirp(24000)) < 0.5  # one sample off: no match
    # the pair average the view replaced: high frequencies dulled and folded back
    pairs = (sent[0::2].astype(np.int32) + sent[1::2]) >> 1
    assert _correlation(pairs, chirp(24000)) < 0.95


async def test_a_48k_file_is_resampled_once_on_the_way_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13's case: a 48 kHz file went 48 -> 24 -> 48 -> 24 kHz through three resamplers.
    Now it is decoded at the track's rate, sent as it is, and viewed at 24 kHz once."""
    path = tmp_path / "question48k.wav"
    pcm = chirp(48000, 0.9)  # decoded in one step: every chunk is ready before the first frame
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.astype("<i2").tobytes())
    log = spy_on_resampling(monkeypatch)
    views: list[np.ndarray] = []
    track = OutboundAudioTrack(ManualClock(autoadvance=True), on_sent_audio=views.append)
    source = FileSource(path, rate=48000)  # what call.stream(path) opens over WebRTC
    await source.check()
    player = asyncio.create_task(track.play(source))
    await asyncio.sleep(0)
    sent = []
    while not player.done() or track.queued_ms:
        await track.recv()
        sent.append(track.last_pcm)
        await asyncio.sleep(0)
    await player
    assert np.concatenate(sent)[: pcm.size].tolist() == pcm.tolist()
    assert log.conversions == [(48000, 24000)]  # the view's, and nothing else
    assert _correlation(np.concatenate(views), chirp(24000, 0.9)) > 0.999


async def test_the_view_does_not_alias_a_tone_above_12k_into_the_band() -> None:
    views: list[np.ndarray] = []
    track = OutboundAudioTrack(ManualClock(autoadvance=True), on_sent_audio=views.append)
    tone = sine(48000, 0.5, freq=15_000)
    track.enqueue(tone, 48000)
    sent, _ = await pull_views(track, views, 25)
    steady = np.concatenate(views)[480:-480]
    assert rms_dbfs(steady) < rms_dbfs(tone) - 60  # above 12 kHz there is nothing to keep
    # The pair average the view replaced folds the tone down to 9 kHz at about -5 dB.
    pairs = ((sent[0::2].astype(np.int32) + sent[1::2]) >> 1).astype(np.int16)[480:-480]
    assert rms_dbfs(pairs) > rms_dbfs(tone) - 10


async def test_24k_audio_is_resampled_once_each_way(monkeypatch: pytest.MonkeyPatch) -> None:
    log = spy_on_resampling(monkeypatch)
    views: list[np.ndarray] = []
    track = OutboundAudioTrack(ManualClock(autoadvance=True), on_sent_audio=views.append)
    pcm = chirp(24000)
    for k in range(0, pcm.size, 2400):  # 100 ms chunks, as a source yields them
        track.enqueue(pcm[k:k + 2400], 24000)
    await pull_views(track, views, 55)
    # up to the encoder once (24 -> 48 kHz), and the view once (48 -> 24 kHz)
    assert log.conversions == [(24000, 48000), (48000, 24000)]
    assert log.calls_of(24000, 48000) == 10
    assert _correlation(np.concatenate(views), pcm) > 0.999


async def test_the_view_skips_settled_silence_and_stays_exact(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = spy_on_resampling(monkeypatch)
    views: list[np.ndarray] = []
    track = OutboundAudioTrack(ManualClock(autoadvance=True), on_sent_audio=views.append)
    track.enqueue(chirp(48000, 0.3), 48000)
    first, seen = await pull_views(track, views, 40)  # 15 frames of audio, 25 of silence
    track.enqueue(sine(48000, 0.2), 48000)
    track.mute()
    muted, seen_muted = await pull_views(track, views, 5)  # consumed, sent as silence
    track.unmute()
    second, seen_second = await pull_views(track, views, 20)  # 5 frames of audio, 15 silent
    calls = log.calls_of(48000, 24000)

    # The silent frames after the first three of each stretch were not filtered ...
    assert calls == 15 + 3 + 5 + 3
    # ... and the view is still exactly one resampler run over every frame sent.
    frames = np.concatenate([first, muted, second]).reshape(-1, 960)
    plain = Resampler(48000, 24000)
    expected = [plain.process(frame) for frame in frames]
    assert [v.tolist() for v in seen + seen_muted + seen_second] == [
        e.tolist() for e in expected]
    assert not np.concatenate(seen_muted).any()
    assert sum(v.size for v in views) == 65 * 480 - 16  # the frames' time, less the delay


async def test_the_view_at_another_rate_and_its_validation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = spy_on_resampling(monkeypatch)
    views: list[np.ndarray] = []
    track = OutboundAudioTrack(ManualClock(autoadvance=True), on_sent_audio=views.append,
                               sent_audio_rate=16000)
    track.enqueue(sine(48000, 0.2), 48000)
    await pull_views(track, views, 20)
    assert log.conversions == [(48000, 16000)]
    assert abs(sum(v.size for v in views) - 20 * 320) <= 32
    with pytest.raises(AudioFormatError, match="sent_audio_rate"):
        OutboundAudioTrack(ManualClock(), sent_audio_rate=0)


async def test_no_view_is_made_without_a_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    log = spy_on_resampling(monkeypatch)
    track = OutboundAudioTrack(ManualClock(autoadvance=True))
    track.enqueue(sine(48000, 0.2), 48000)
    await pull(track, 10)
    assert track.on_sent_audio is None and log.conversions == []


# -- Opus level and continuity ---------------------------------------------------------------


def _opus_round_trip(frames: list[av.AudioFrame]) -> np.ndarray:
    encoder, decoder = OpusEncoder(), OpusDecoder()
    out = []
    for frame in frames:
        payloads, timestamp = encoder.encode(frame)
        for payload in payloads:
            for decoded in decoder.decode(JitterFrame(payload, timestamp)):
                out.append(decoded.to_ndarray().reshape(-1, 2).mean(axis=1))
    return np.concatenate(out)


def _level_gain(decoded: np.ndarray, reference: np.ndarray) -> float:
    steady = decoded[4800:-4800].astype(np.float64)
    ref = reference[4800:-4800].astype(np.float64)
    return float(np.sqrt(np.mean(steady**2) / np.mean(ref**2)))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


async def test_preencoded_level_survives_aiortc_opus_decoder() -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True))
    pcm = sine(48000, 1.0, freq=440, amp=8000)
    track.enqueue(pcm, 48000)
    decoded = decode(await pull(track, 50))
    for channel in (0, 1):
        assert _level_gain(decoded[:, channel], pcm) == pytest.approx(1.0, abs=0.08)
    # what RemoteAudioReader hands out: the downmix of both channels
    assert _level_gain(decoded.mean(axis=1), pcm) == pytest.approx(1.0, abs=0.08)


async def test_level_survives_aiortc_opus_encoder() -> None:
    track = OutboundAudioTrack(ManualClock(autoadvance=True), preencode=False)
    pcm = sine(48000, 1.0, freq=440, amp=8000)
    track.enqueue(pcm, 48000)
    frames = await pull(track, 50)
    assert _level_gain(_opus_round_trip(frames), pcm) == pytest.approx(1.0, abs=0.08)

    # Why the track sends duplicated stereo: the same audio as mono frames loses about 3 dB.
    mono = []
    for k in range(50):
        frame = av.AudioFrame.from_ndarray(
            pcm[k * 960 : (k + 1) * 960].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 48000, k * 960
        frame.time_base = fractions.Fraction(1, 48000)
        mono.append(frame)
    assert _level_gain(_opus_round_trip(mono), pcm) < 0.8


async def test_switching_to_cached_silence_and_back_does_not_click() -> None:
    first = sine(48000, 0.4, freq=440)
    second = sine(48000, 0.4, freq=660)
    gap = 15 * 960

    # The reference: one continuous stream, every frame (the gap's zeros too) encoded.
    continuous = OutboundAudioTrack(ManualClock(autoadvance=True))
    idle = await pull(continuous, 10)
    continuous.enqueue(np.concatenate([first, np.zeros(gap, np.int16), second]), 48000)
    reference = decode(idle + await pull(continuous, 20 + 15 + 20 + 10))[:, 0].astype(np.int32)

    # The same timeline with the gap sent as a tail of zeros, then cached silence.
    track = OutboundAudioTrack(ManualClock(autoadvance=True))
    sent = await pull(track, 10)
    track.enqueue(first, 48000)
    sent += await pull(track, 20 + 15)
    track.enqueue(second, 48000)
    sent += await pull(track, 20 + 10)
    assert track.encoded_frames == 40 + 2 * TAIL_FRAMES < continuous.encoded_frames
    decoded = decode(sent)[:, 0].astype(np.int32)

    assert _rms(decoded - reference) < 0.02 * _rms(second)
    # the gap after the tail decodes as silence, and the second tone starts cleanly
    tail_end = (10 + 20 + TAIL_FRAMES) * 960 + 312  # plus the encoder's look-ahead
    assert np.abs(decoded[tail_end : 45 * 960]).max() < 300
    onset = slice(45 * 960, 47 * 960)
    assert np.abs(decoded[onset] - reference[onset]).max() < 0.1 * 8000  # a 0-1 frame tail: > 7000


# -- RemoteAudioReader -------------------------------------------------------------------------


class FakeRemoteTrack:
    """Returns the given frames, then ends like an aiortc remote track."""

    def __init__(self, frames: list[av.AudioFrame]) -> None:
        self.id = "fake-remote"
        self._frames = list(frames)

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(0)
        if not self._frames:
            raise MediaStreamError
        return self._frames.pop(0)


class NeverTrack:
    id = "never"

    async def recv(self) -> Any:
        await asyncio.get_running_loop().create_future()


def stereo_frames(left: np.ndarray, right: np.ndarray, rtp_origin: int = 123456) -> list[Any]:
    frames = []
    for k in range(left.size // 960):
        pair = np.stack([left[k * 960 : (k + 1) * 960], right[k * 960 : (k + 1) * 960]], axis=1)
        frame = av.AudioFrame.from_ndarray(pair.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = rtp_origin + k * 960
        frame.time_base = fractions.Fraction(1, 48000)
        frames.append(frame)
    return frames


async def test_reader_downmixes_resamples_and_feeds_consumers() -> None:
    left = sine(48000, 0.5, amp=8000)
    right = (left // 2).astype(np.int16)
    track = FakeRemoteTrack(stereo_frames(left, right))
    chunks: list[np.ndarray] = []
    sink = BufferSink(24000)
    reader = RemoteAudioReader(track, rate=24000, on_audio=chunks.append)  # type: ignore[arg-type]
    reader.add_consumer(sink)
    reader.start()
    await reader.wait_ended()
    assert not reader.running
    assert reader.frames == 25 and reader.received_ms == pytest.approx(500.0)
    got = np.concatenate(chunks)
    assert got.tolist() == sink.array().tolist()
    mono48 = ((left.astype(np.int32) + right) // 2).astype(np.int16)
    expected = resample(mono48, 48000, 24000)
    assert abs(got.size - expected.size) <= 1
    n = min(got.size, expected.size)
    assert np.abs(got[:n].astype(np.int32) - expected[:n]).max() <= 2
    await reader.stop()


async def test_reader_passes_frames_at_its_rate_through_untouched(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What livetalk's receive jitter buffer hands over (24 kHz mono s16) is not resampled."""
    log = spy_on_resampling(monkeypatch)
    pcm = chirp(24000, 0.2)
    frames = []
    for k in range(0, pcm.size, 480):
        frame = av.AudioFrame.from_ndarray(pcm[k:k + 480].reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = 24000
        frames.append(frame)
    sink = BufferSink(24000)
    async with RemoteAudioReader(FakeRemoteTrack(frames), on_audio=sink) as reader:  # type: ignore[arg-type]
        await reader.wait_ended()
    assert sink.array().tolist() == pcm.tolist()
    assert log.conversions == []


async def test_reader_resamples_aiortc_frames_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc's own decoder delivers 48 kHz stereo: one resampler, once, to the reader's rate."""
    log = spy_on_resampling(monkeypatch)
    pcm = sine(48000, 0.2)
    sink = BufferSink(24000)
    async with RemoteAudioReader(FakeRemoteTrack(stereo_frames(pcm, pcm)),  # type: ignore[arg-type]
                                 on_audio=sink) as reader:
        await reader.wait_ended()
    assert log.conversions == [(48000, 24000)]
    assert log.calls_of(48000, 24000) == 10
    assert abs(sink.samples - 4800) <= 2


async def test_reader_handles_planar_float_frames_at_another_rate() -> None:
    pcm = sine(16000, 0.2).astype(np.float32) / 32768
    frames = []
    for k in range(10):
        frame = av.AudioFrame.from_ndarray(
            pcm[k * 320 : (k + 1) * 320].reshape(1, -1), format="fltp", layout="mono"
        )
        frame.sample_rate = 16000
        frames.append(frame)
    sink = BufferSink(24000)
    async with RemoteAudioReader(FakeRemoteTrack(frames), on_audio=sink) as reader:  # type: ignore[arg-type]
        await reader.wait_ended()
    out = sink.array()
    assert abs(out.size - 4800) <= 2
    assert rms_dbfs(out) == pytest.approx(rms_dbfs(sine(16000, 0.2)), abs=0.3)


async def test_reader_drains_without_consumers() -> None:
    track = FakeRemoteTrack(stereo_frames(np.zeros(9600, np.int16), np.zeros(9600, np.int16)))
    reader = RemoteAudioReader(track)  # type: ignore[arg-type]
    reader.start()
    await reader.wait_ended()
    assert reader.frames == 10


async def test_failing_consumer_is_removed_others_continue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pcm = sine(48000, 0.2)
    track = FakeRemoteTrack(stereo_frames(pcm, pcm))
    calls = 0

    def broken(chunk: np.ndarray) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    sink = BufferSink(24000)
    reader = RemoteAudioReader(track, on_audio=broken)  # type: ignore[arg-type]
    reader.add_consumer(sink)
    reader.start()
    await reader.wait_ended()
    assert calls == 1 and reader.consumer_errors == 1
    assert abs(sink.samples - 4800) <= 2
    assert "boom" in caplog.text


async def test_remove_consumer() -> None:
    pcm = sine(48000, 0.1)
    track = FakeRemoteTrack(stereo_frames(pcm, pcm))
    removed: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    reader = RemoteAudioReader(track, on_audio=removed.append)  # type: ignore[arg-type]
    reader.add_consumer(kept.append)
    reader.remove_consumer(removed.append)  # an equal bound method is enough
    reader.remove_consumer(print)  # not registered: no error
    reader.start()
    await reader.wait_ended()
    assert removed == []
    assert sum(c.size for c in kept) == pytest.approx(2400, abs=2)


async def test_consumer_validation() -> None:
    reader = RemoteAudioReader(NeverTrack())  # type: ignore[arg-type]
    with pytest.raises(AudioFormatError, match="16000 Hz"):
        reader.add_consumer(BufferSink(16000))
    with pytest.raises(TypeError):
        reader.add_consumer(42)  # type: ignore[arg-type]


async def test_stop_cancels_a_blocked_reader() -> None:
    reader = RemoteAudioReader(NeverTrack())  # type: ignore[arg-type]
    reader.start()
    reader.start()  # idempotent
    await asyncio.sleep(0)
    assert reader.running
    await reader.stop()
    assert not reader.running
    await reader.stop()
