"""The adaptive jitter buffer over real calls through an impaired path (jitter, loss,
reordering): the turns' transcripts stay right and the reply audio has no hole.

The local server impairs every RTP audio packet both ways (``Faults(impairment=...)``): its
own adaptive buffer conceals what the user's audio lost, livetalk's conceals what the reply
lost. The reply the server sent is recorded at its track and compared, 20 ms frame by frame,
with what the client heard.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

import livetalk
from livetalk.audio.sinks import BufferSink
from livetalk.audio.sources import FileSource, SilenceSource, concat
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from livetalk.server.faults import Faults
from livetalk.transport.impairment import Impairment
from livetalk.transport.jitter import adaptive_receivers
from tests.conftest import DATA
from tests.speech_helpers import DEMO_PHRASES

pytestmark = pytest.mark.slow

KEY = "sk-test-jitter"
SPEED = 1.0
"""Real time: the local server runs the adaptive buffer in real time only."""
FRAME_24K = 480
IMPAIRED = Impairment(jitter_ms=20, loss=0.03, reorder=0.02, seed=3)


def _envelope(pcm: np.ndarray, frame: int) -> np.ndarray:
    """RMS of each 20 ms frame."""
    n = pcm.size // frame * frame
    return np.sqrt(np.mean(pcm[:n].astype(np.float64).reshape(-1, frame) ** 2, axis=1))


def max_hole(sent: np.ndarray, got: np.ndarray, *, segment: int = 25, slack: int = 40) -> int:
    """The longest run of frames that are loud in ``sent`` but silent in ``got`` (30 dB or
    more below what was sent: concealment may be softer than the speech it stands for, for
    instance at the onset of a word it could not predict, but a hole is silence).

    Both are frame envelopes. ``got`` is aligned to ``sent`` per ``segment`` frames, each
    within ``slack`` frames of the previous segment's lag (the adaptive buffer inserts a frame
    at an underrun and drops quiet ones to shrink its delay, so the lag moves).
    """
    n = 1 << int(np.ceil(np.log2(sent.size + got.size)))
    xcorr = np.fft.irfft(np.fft.rfft(got, n) * np.conj(np.fft.rfft(sent, n)), n)
    lag = int(np.argmax(xcorr[:got.size]))
    loud = sent > 0.25 * np.median(sent[sent > 100]) if np.any(sent > 100) else sent > 1e9
    longest = run = 0
    for start in range(0, sent.size, segment):
        part = sent[start:start + segment]
        best, best_score = lag, -np.inf
        if not np.any(loud[start:start + segment]):
            continue  # silence: nothing to align on, nothing to miss
        for shift in range(lag - slack, lag + slack + 1):
            window = got[start + shift:start + shift + part.size]
            if start + shift < 0 or window.size < part.size:
                continue
            score = -float(np.sum((part - window) ** 2))
            if score > best_score:
                best, best_score = shift, score
        lag = best
        for i in range(part.size):
            j = start + i + best
            quiet = j >= got.size or got[j] < 0.03 * sent[start + i]
            if loud[start + i] and quiet:
                run += 1
                longest = max(longest, run)
            else:
                run = 0
    return longest


def speech_spans(envelope: np.ndarray, *, gap: int = 25) -> list[int]:
    """Length in frames of each stretch of speech (loud frames) separated by at least
    ``gap`` quiet frames: one per spoken reply."""
    loud = np.flatnonzero(envelope > 300)
    if not loud.size:
        return []
    breaks = np.flatnonzero(np.diff(loud) > gap)
    starts = np.concatenate([[loud[0]], loud[breaks + 1]])
    ends = np.concatenate([loud[breaks], [loud[-1]]])
    return [int(e - s + 1) for s, e in zip(starts, ends, strict=True)]


def test_speech_spans() -> None:
    envelope = np.zeros(200)
    envelope[10:40] = 1000
    envelope[45:50] = 1000  # a pause inside the first reply
    envelope[120:160] = 1000
    assert speech_spans(envelope) == [40, 40]


def test_max_hole_finds_holes() -> None:
    rng = np.random.default_rng(0)
    sent = 3000 * rng.random(200)  # an envelope that varies like speech does
    sent[40:60] = 2000
    got = np.concatenate([np.zeros(7), sent])
    assert max_hole(sent, got) == 0
    holed = got.copy()
    holed[50:53] = 0
    assert max_hole(sent, holed) == 3
    shortened = np.delete(got, range(60, 64))  # frames vanish, as without concealment
    shortened[40:42] = 0
    assert max_hole(sent, shortened) >= 2


async def test_concealment_keeps_transcripts_right_and_the_reply_without_holes(
        make_server: Any, validator: Any) -> None:
    reply = BufferSink(rate=24000)
    sent: list[np.ndarray] = []
    config = SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                           turn_detection=ServerVAD(silence_duration_ms=500))
    async with make_server(port=0, realtime_factor=SPEED,
                           faults=Faults(impairment=IMPAIRED)) as server:
        async with livetalk.connect(base_url=server.base_url, api_key=KEY, session=config,
                                    event_log=validator, speed=SPEED) as call:
            server_call = server.calls[call.call_id]
            server_call.track.on_sent_audio = sent.append  # each frame sent, at 24 kHz
            call.record_to(reply)
            await call.stream(concat(FileSource(DATA / "demo.wav"), SilenceSource(2.0)))
            turns = await call.wait_for_turns(6, timeout=60)
            await call.wait_until_quiet(timeout=30)  # raises Timeout otherwise
            client = call.receive_statistics()
            # what the client still holds is played out within its buffer's depth
            held_ms = client.buffered_ms if client is not None else 100.0
            await asyncio.sleep(held_ms / 1000 / SPEED + 0.3)
            client = call.receive_statistics()
            server_stats = [p.statistics() for p in adaptive_receivers(server_call.pc)]
            impaired = server_call.impaired
            assert impaired is not None
            path = impaired.statistics()
    user = [t.text for t in turns if t.role == "user"]
    assert user == list(DEMO_PHRASES)  # every word right despite the impairment
    assert all(t.status == "completed" for t in turns)
    # the reply: no hole longer than one frame anywhere in what the server said
    said = _envelope(np.concatenate(sent), FRAME_24K)
    heard = _envelope(reply.array(), FRAME_24K)
    assert np.count_nonzero(said > 300) > 100  # three spoken replies were compared
    assert max_hole(said, heard) <= 1
    # ... and no frame vanished: each reply lasts as long as it was said, but for a frame
    # inserted at an underrun or a frame dropped to shrink the delay (without concealment,
    # each lost frame would shorten it)
    said_spans, heard_spans = speech_spans(said), speech_spans(heard)
    assert len(said_spans) == len(heard_spans) == 3
    changes = sum(abs(a - b) for a, b in zip(said_spans, heard_spans, strict=True))
    allowed = 2 + (client.underruns + client.dropped // 10 if client is not None else 0)
    assert changes <= allowed, (said_spans, heard_spans)
    # the path really was impaired both ways, and both buffers concealed what it lost
    assert path.received.dropped > 5 and path.sent.dropped > 5
    assert path.received.overtaken > 0 and path.sent.overtaken > 0
    assert client is not None and client.lost > 0 and client.concealed_ms > 0
    assert len(server_stats) == 1 and server_stats[0].lost > 0
    validator.assert_valid()
