"""TurnDetector on synthetic eSpeak speech, clean and in white noise."""

from __future__ import annotations

import numpy as np
import pytest

from livetalk.audio.vad import (
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    VadEvent,
    speech_span,
)
from livetalk.errors import AudioFormatError, ConfigError
from tests.speech_helpers import (
    DEMO_PHRASES,
    FIVE_GAPS_S,
    FIVE_PHRASES,
    Turns,
    add_noise,
    feed_in_chunks,
    make_turns,
)

# Measured on these recordings: start_ms + 300 lands 22 ms before to 96 ms after the audible
# onset; end_ms lands 6 to 137 ms after the audible end (webrtcvad's own hangover).
START_TOLERANCE_MS = (-100, 150)
END_TOLERANCE_MS = (-50, 250)


def _pairs(events: list[VadEvent]) -> list[tuple[SpeechStarted, SpeechStopped]]:
    """Check that events alternate start/stop and pair them up."""
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped] * (len(events) // 2)
    return [(events[i], events[i + 1]) for i in range(0, len(events), 2)]  # type: ignore[misc]


def _check_turns(events: list[VadEvent], turns: Turns, detector: TurnDetector) -> None:
    pairs = _pairs(events)
    assert len(pairs) == len(turns.bounds_ms)
    for (started, stopped), (true_start, true_end) in zip(pairs, turns.bounds_ms, strict=True):
        onset = started.start_ms + detector.prefix_padding_ms
        assert START_TOLERANCE_MS[0] <= onset - true_start <= START_TOLERANCE_MS[1]
        assert END_TOLERANCE_MS[0] <= stopped.end_ms - true_end <= END_TOLERANCE_MS[1]
        lo = started.start_ms * turns.rate // 1000
        hi = stopped.end_ms * turns.rate // 1000
        np.testing.assert_array_equal(stopped.audio, turns.pcm[lo:hi])


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_finds_five_clean_turns(rate: int) -> None:
    turns = make_turns(FIVE_PHRASES, FIVE_GAPS_S, rate)
    detector = TurnDetector(rate)
    events = feed_in_chunks(detector, turns.pcm, rate // 10)
    _check_turns(events, turns, detector)
    assert not detector.in_speech
    assert detector.stream_ms == turns.pcm.size * 1000 // rate


@pytest.mark.parametrize("rate", [24000, 48000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_five_turns_at_10_db_snr(rate: int, seed: int) -> None:
    turns = make_turns(FIVE_PHRASES, FIVE_GAPS_S, rate, snr_db=10, seed=seed)
    detector = TurnDetector(rate, aggressiveness=3, silence_duration_ms=800)
    _check_turns(feed_in_chunks(detector, turns.pcm, rate // 10), turns, detector)


def test_threshold_default_mode_2_also_works_in_noise() -> None:
    turns = make_turns(FIVE_PHRASES, FIVE_GAPS_S, 24000, snr_db=10, seed=7)
    detector = TurnDetector.from_threshold(24000, 0.5, silence_duration_ms=700)
    assert detector.aggressiveness == 2
    _check_turns(feed_in_chunks(detector, turns.pcm, 2400), turns, detector)


def test_chunk_size_does_not_change_events() -> None:
    turns = make_turns(FIVE_PHRASES[:3], FIVE_GAPS_S[:2], 24000, snr_db=10, seed=3)
    runs = [
        feed_in_chunks(TurnDetector(24000), turns.pcm, chunk)
        for chunk in (240, 2400, 1013, turns.pcm.size)
    ]
    assert len(runs[0]) == 6
    for other in runs[1:]:
        assert other == runs[0]
        for a, b in zip(runs[0], other, strict=True):
            if isinstance(a, SpeechStopped) and isinstance(b, SpeechStopped):
                np.testing.assert_array_equal(a.audio, b.audio)


def test_silence_and_noise_alone_give_no_turn() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 600, 24000 * 5).astype(np.int16)
    for pcm in (np.zeros(24000 * 5, dtype=np.int16), noise):
        detector = TurnDetector(24000)
        assert feed_in_chunks(detector, pcm, 2400) == []
        assert detector.force_end() is None


def _events_with_time(detector: TurnDetector, pcm: np.ndarray) -> list[tuple[int, VadEvent]]:
    """Feed 20 ms at a time; each event with the stream time at which it came out."""
    out = []
    for i in range(0, pcm.size, 480):
        out += [(detector.stream_ms, e) for e in detector.feed(pcm[i:i + 480])]
    return out


def test_ignore_first_ms_counts_from_the_first_sound_and_delays_without_clipping() -> None:
    turns = make_turns(FIVE_PHRASES[:1], [], 24000, lead_s=1.0)  # 1 s of digital silence first
    first_sound_ms = np.flatnonzero(turns.pcm)[0] * 1000 / 24000
    eager = _events_with_time(TurnDetector(24000), turns.pcm)
    patient = _events_with_time(TurnDetector(24000, ignore_first_ms=500), turns.pcm)
    assert eager[0][0] < first_sound_ms + 500 <= patient[0][0]
    # the onset is still found: speech that began inside the ignored time keeps its start
    assert [e for _, e in patient] == [e for _, e in eager]
    _check_turns([e for _, e in patient], turns, TurnDetector(24000))


def test_noise_onset_after_digital_silence_starts_no_false_turn() -> None:
    # A call's track sends zeros until the recording starts; noise whose first frame holds
    # only 4 ms of it made webrtcvad take the noise for speech for seconds.
    noisy = make_turns(DEMO_PHRASES, [3.2, 3.2], 24000, snr_db=10, seed=7, tail_s=1.5)
    lead = 24 * 28
    pcm = np.concatenate((np.zeros(lead, dtype=np.int16), noisy.pcm))
    turns = Turns(pcm, 24000, [(a + 28, b + 28) for a, b in noisy.bounds_ms])
    detector = TurnDetector.from_threshold(24000, 0.5, silence_duration_ms=700)
    _check_turns(feed_in_chunks(detector, pcm, 480), turns, detector)
    ungated = TurnDetector(24000, aggressiveness=2, silence_duration_ms=700, margin_db=0)
    started = [e for e in feed_in_chunks(ungated, pcm, 480) if isinstance(e, SpeechStarted)]
    assert started[0].start_ms == 0  # without the energy gate: a turn from the noise onset


def test_speech_span_trims_silence_and_noise_around_speech() -> None:
    turns = make_turns(FIVE_PHRASES[3:4], [], 24000, lead_s=1.5, tail_s=1.0, snr_db=10)
    (true_start, true_end), = turns.bounds_ms
    span = speech_span(turns.pcm, 24000)
    assert span is not None
    start_ms, end_ms = (i * 1000 / 24000 for i in span)
    assert true_start - 400 <= start_ms <= true_start
    assert END_TOLERANCE_MS[0] <= end_ms - true_end <= END_TOLERANCE_MS[1]
    cut = int(true_end * 24) - 2400  # speech still going on at the end of the buffer
    assert speech_span(turns.pcm[:cut], 24000) == (span[0], cut)
    noise = np.random.default_rng(0).normal(0, 600, 24000 * 2).astype(np.int16)
    assert speech_span(noise, 24000) is None


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_peek_end_once_settled_is_the_event_that_ends_the_turn(seed: int | None) -> None:
    """In every quiet stretch of a turn, from the moment its end is settled, peek_end() gives
    the SpeechStopped that the turn ends with if no more speech comes (noise included)."""
    rate = 24000
    turns = make_turns(FIVE_PHRASES, FIVE_GAPS_S, rate)
    pcm = turns.pcm if seed is None else add_noise(turns.pcm, rate, turns.bounds_ms, 10.0, seed)
    detector = TurnDetector(rate, silence_duration_ms=500)
    peeked: SpeechStopped | None = None
    stops = checked = 0
    assert detector.peek_end() is None and detector.silent_ms == 0
    for i in range(0, pcm.size, 480):  # 20 ms at a time
        if detector.end_settled and peeked is None:
            peeked = detector.peek_end()
        elif not detector.end_settled and detector.in_speech:
            peeked = None  # speech again: that end was not the turn's
        for event in detector.feed(pcm[i:i + 480]):
            if isinstance(event, SpeechStopped):
                stops += 1
                assert peeked is not None, "the turn ended with no settled end before it"
                assert peeked.end_ms == event.end_ms
                np.testing.assert_array_equal(peeked.audio, event.audio)
                checked += 1
                peeked = None
    assert stops == checked == len(turns.bounds_ms)
    assert not detector.end_settled and detector.silent_ms == 0


def test_force_end_closes_the_turn_at_the_stream_position() -> None:
    turns = make_turns(FIVE_PHRASES[:2], [1.5], 24000)
    middle = int((turns.bounds_ms[0][0] + 600) * 24)  # 600 ms into the first phrase
    detector = TurnDetector(24000)
    (started,) = feed_in_chunks(detector, turns.pcm[:middle], 480)
    assert isinstance(started, SpeechStarted) and detector.in_speech
    stopped = detector.force_end()
    assert stopped is not None and not detector.in_speech
    assert stopped.end_ms == detector.stream_ms == middle // 24
    np.testing.assert_array_equal(stopped.audio, turns.pcm[started.start_ms * 24:middle])
    assert detector.force_end() is None
    # The rest of the first phrase cannot start a turn before the forced end.
    rest = feed_in_chunks(detector, turns.pcm[middle:], 480)
    assert all(e.start_ms >= stopped.end_ms for e in rest if isinstance(e, SpeechStarted))
    assert isinstance(rest[-1], SpeechStopped)


def test_reset_drops_the_turn_and_keeps_the_clock() -> None:
    turns = make_turns(FIVE_PHRASES[:2], [1.5], 24000)
    middle = int((turns.bounds_ms[0][0] + 600) * 24)
    detector = TurnDetector(24000)
    feed_in_chunks(detector, turns.pcm[:middle], 2400)
    assert detector.in_speech
    detector.reset()
    assert not detector.in_speech and detector.stream_ms == middle // 24
    # The rest of the first phrase may make a turn of its own, but not before the reset.
    pairs = _pairs(feed_in_chunks(detector, turns.pcm[middle:], 2400))
    assert all(started.start_ms >= middle // 24 for started, _ in pairs)
    started, stopped = pairs[-1]
    onset = started.start_ms + detector.prefix_padding_ms
    assert START_TOLERANCE_MS[0] <= onset - turns.bounds_ms[1][0] <= START_TOLERANCE_MS[1]
    assert END_TOLERANCE_MS[0] <= stopped.end_ms - turns.bounds_ms[1][1] <= END_TOLERANCE_MS[1]


@pytest.mark.parametrize(
    ("threshold", "mode"), [(0.0, 0), (0.3, 1), (0.5, 2), (0.74, 2), (0.75, 3), (1.0, 3)]
)
def test_from_threshold_maps_to_aggressiveness_and_margin(threshold: float, mode: int) -> None:
    detector = TurnDetector.from_threshold(24000, threshold)
    assert detector.aggressiveness == mode
    assert detector.margin_db == pytest.approx(6 * threshold)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 22050},
        {"rate": 0},
        {"aggressiveness": 4},
        {"frame_ms": 25},
        {"silence_duration_ms": 10},
        {"start_ratio": 0.0},
        {"end_ratio": 0.7},
        {"prefix_padding_ms": -1},
        {"min_speech_ms": 400},
        {"margin_db": -1.0},
    ],
)
def test_invalid_settings_raise_config_error(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"rate": 24000, **kwargs}
    with pytest.raises(ConfigError):
        TurnDetector(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "high"])
def test_from_threshold_rejects_bad_thresholds(threshold: object) -> None:
    with pytest.raises(ConfigError):
        TurnDetector.from_threshold(24000, threshold)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        TurnDetector.from_threshold(24000, 0.5, aggressiveness=1)
    with pytest.raises(ConfigError):
        TurnDetector.from_threshold(24000, 0.5, margin_db=1.0)


def test_feed_rejects_non_pcm() -> None:
    detector = TurnDetector(24000)
    with pytest.raises(AudioFormatError):
        detector.feed(np.zeros(480, dtype=np.float32))  # type: ignore[arg-type]
    assert detector.feed(np.zeros(0, dtype=np.int16)) == []
