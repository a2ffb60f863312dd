"""The adaptive jitter buffer's sans-I/O core on scripted arrival patterns, with a manual clock.

Each test scripts when every RTP packet arrives (in order, reordered, lost, in bursts, from a
sender whose clock runs fast or slow) and replays it through :class:`AdaptiveJitterBuffer`:
arrivals are pushed and slots pulled in time order, exactly when the buffer asks
(``next_due``). No real clock, no sleeping: time is the script's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from livetalk.errors import ConfigError
from livetalk.transport.jitterbuffer import (
    CONCEAL,
    PACKET,
    RECOVER,
    AdaptiveJitterBuffer,
    JitterBufferSettings,
    ReceiveStatistics,
    Slot,
)

FRAME_S = 0.020
STEP = 960  # RTP timestamp units per 20 ms frame at 48 kHz
BASE_S = 0.050  # the path's constant delay: invisible to the buffer, which sees only jitter


def payload(seq: int) -> bytes:
    return seq.to_bytes(4, "big")


def seq_of(data: bytes) -> int:
    return int.from_bytes(data, "big")


@dataclass
class Run:
    """What a scripted run produced: every slot pulled, when, and the final statistics."""

    slots: list[tuple[float, Slot]] = field(default_factory=list)
    stats: ReceiveStatistics | None = None
    snapshots: list[tuple[float, ReceiveStatistics]] = field(default_factory=list)

    @property
    def played(self) -> list[int]:
        """Sequence numbers (first-seen base) played, in playout order."""
        return [seq_of(slot.payload) for _, slot in self.slots if slot.kind == PACKET]

    @property
    def delivered(self) -> list[int]:
        """Sequence numbers played or dropped to shrink the delay, sorted."""
        skipped = [seq_of(p) for _, slot in self.slots for p in slot.skipped]
        return sorted(self.played + skipped)

    @property
    def kinds(self) -> list[str]:
        return [slot.kind for _, slot in self.slots]


def arrivals(count: int, *, first_seq: int = 0, first_ts: int = 0, period: float = FRAME_S,
             jitter: dict[int, float] | None = None, lost: set[int] = frozenset(),  # type: ignore[assignment]
             start: float = 0.0) -> list[tuple[float, int, int, bytes]]:
    """``count`` packets sent every ``period`` s: (arrival, seq, timestamp, payload), sorted by
    arrival. ``jitter[i]`` delays packet ``i`` (index from 0) by that many seconds; indices in
    ``lost`` never arrive."""
    jitter = jitter or {}
    out = []
    for i in range(count):
        if i in lost:
            continue
        at = start + i * period + BASE_S + jitter.get(i, 0.0)
        out.append((at, (first_seq + i) % 65536, (first_ts + i * STEP) % (1 << 32),
                    payload(i)))
    out.sort(key=lambda a: a[0])
    return out


def replay(script: list[tuple[float, int, int, bytes]], *, until: float | None = None,
           settings: JitterBufferSettings | None = None, quiet: bool = True,
           duration: int | None = None,
           buffer: AdaptiveJitterBuffer | None = None, snapshot_every: float = 0.0) -> Run:
    """Push the scripted arrivals and pull every slot as it falls due, up to ``until`` (by
    default until the last packet was played: the underruns after the stream's end are not
    pulled)."""
    buf = buffer if buffer is not None else AdaptiveJitterBuffer(settings)
    run = Run()
    pending = list(script)
    next_snapshot = snapshot_every
    while True:
        due = buf.next_due()
        arrival = pending[0][0] if pending else None
        if until is None and arrival is None and not buf.statistics().buffered_ms:
            break
        if arrival is not None and (due is None or arrival <= due):
            at, seq, ts, data = pending.pop(0)
            if until is not None and at > until:
                break
            buf.push(seq, ts, data, at, duration)
            continue
        if due is None or (until is not None and due > until):
            break
        slot = buf.pull(due)
        if slot is not None:
            run.slots.append((due, slot))
            buf.mark_quiet(quiet)
        if snapshot_every and due >= next_snapshot:
            run.snapshots.append((due, buf.statistics()))
            next_snapshot += snapshot_every
    run.stats = buf.statistics()
    return run


# ------------------------------------------------------------------------------ in order
def test_in_order_plays_every_packet_once_at_a_small_delay() -> None:
    run = replay(arrivals(100))
    assert run.played == list(range(100))
    assert set(run.kinds) == {PACKET}
    stats = run.stats
    assert stats is not None
    assert (stats.underruns, stats.concealed, stats.lost, stats.late_drops) == (0, 0, 0, 0)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-9)
    assert stats.target_ms == pytest.approx(2.0)  # the margin only: no jitter measured
    # the first packet is played the margin after it arrives, then one slot every 20 ms
    times = [t for t, _ in run.slots]
    assert times[0] == pytest.approx(BASE_S + 0.002)
    assert all(b - a == pytest.approx(FRAME_S) for a, b in zip(times, times[1:], strict=False))


def test_slot_duration_follows_the_packets() -> None:
    """40 ms packets: the slots last 40 ms (1920 timestamp units), from the first one when the
    caller tells the duration (from the Opus header), from the second one otherwise."""
    script = [(BASE_S + i * 0.040, i, i * 1920, payload(i)) for i in range(30)]
    told = replay(script, duration=1920)
    assert told.played == list(range(30))
    assert {slot.samples for _, slot in told.slots} == {1920}
    assert told.stats is not None and told.stats.concealed == 0
    guessed = replay(script)
    assert guessed.played == list(range(30))
    assert {slot.samples for _, slot in guessed.slots[2:]} == {1920}  # 20 ms assumed first
    assert guessed.stats is not None and guessed.stats.concealed == 1


def test_sequence_and_timestamp_wrap_around() -> None:
    script = arrivals(50, first_seq=65530, first_ts=(1 << 32) - 5 * STEP)
    run = replay(script)
    assert run.played == list(range(50))
    assert run.stats is not None and run.stats.concealed == 0


# ------------------------------------------------------------------------------ jitter
def test_target_follows_the_measured_jitter() -> None:
    # every packet 0-15 ms late, a fixed pseudo-random pattern
    pattern = [0.0, 0.011, 0.004, 0.015, 0.002, 0.009, 0.0, 0.013, 0.006, 0.001]
    script = arrivals(500, jitter={i: pattern[i % 10] for i in range(500)})
    run = replay(script)
    stats = run.stats
    assert stats is not None
    assert stats.jitter_ms == pytest.approx(15.0, abs=0.5)
    assert stats.target_ms == pytest.approx(17.0, abs=0.5)
    assert stats.delay_ms == pytest.approx(stats.target_ms, abs=1.0)
    assert run.played == list(range(500))
    # it started small and grew: a few underruns while learning, none once it knew
    late_slots = [t for t, slot in run.slots if slot.kind != PACKET]
    assert 1 <= len(late_slots) <= 4
    assert max(late_slots) < 1.0


def test_low_latency_caps_the_delay_and_drops_what_comes_later() -> None:
    jitter = {i: 0.040 for i in range(500) if i % 25 == 7}  # one packet in 25 is 40 ms late
    default = replay(arrivals(500, jitter=jitter))
    capped = replay(arrivals(500, jitter=jitter),
                    settings=JitterBufferSettings.low_latency())
    assert default.stats is not None and capped.stats is not None
    # the default learns the 40 ms from the first late packet (lost: it came two slots late)
    # and plays every later one in time
    assert default.stats.target_ms >= 40
    assert default.stats.late_drops == 1
    assert default.stats.concealed == 1
    assert default.played == [i for i in range(500) if i != 7]
    # low latency keeps the delay within a frame and conceals the late packets instead
    assert capped.stats.target_ms <= 20
    assert capped.stats.delay_ms <= 25
    assert capped.stats.late_drops >= 15
    assert capped.stats.concealed >= 15
    assert capped.played == sorted(capped.played)


# ------------------------------------------------------------------------------ reordering
def test_reordered_packets_are_played_in_order() -> None:
    # every tenth packet arrives 30 ms late, after the next one
    jitter = {i: 0.030 for i in range(300) if i % 10 == 5}
    run = replay(arrivals(300, jitter=jitter))
    assert run.stats is not None
    # the first late one is concealed and dropped when it comes; then the target covers the
    # reordering and every later one is put back in its place
    assert run.stats.underruns == 1
    assert run.stats.late_drops == 1
    assert run.played == [i for i in range(300) if i != 5]
    assert run.stats.target_ms >= 30


def test_late_packets_are_dropped_not_played_out_of_order() -> None:
    # packet 10 arrives 100 ms late, when its slot and the next ones have long been played
    settings = JitterBufferSettings(max_delay_ms=40)
    run = replay(arrivals(40, jitter={10: 0.100}), settings=settings)
    assert run.stats is not None
    assert 10 not in run.played
    assert run.played == sorted(run.played)
    assert run.stats.late_drops == 1
    assert run.stats.lost == 1


def test_duplicates_are_dropped() -> None:
    script = arrivals(30)
    script += [(at + 0.001, seq, ts, data) for at, seq, ts, data in script[5:8]]
    script += [(script[20][0] + 0.2, script[20][1], script[20][2], script[20][3])]
    script.sort(key=lambda a: a[0])
    run = replay(script)
    assert run.played == list(range(30))
    assert run.stats is not None and run.stats.duplicates == 4


# ------------------------------------------------------------------------------ loss
def test_lost_packets_are_concealed_and_the_timeline_keeps_its_length() -> None:
    run = replay(arrivals(100, lost={10, 11, 30}))
    stats = run.stats
    assert stats is not None
    assert run.played == [i for i in range(100) if i not in (10, 11, 30)]
    assert stats.lost == 3
    assert stats.concealed >= 3
    assert stats.concealed_ms == stats.concealed * 20
    assert stats.late_drops == 0
    # no hole: one slot for every received packet and every concealment, back to back
    assert len(run.slots) == stats.played + stats.concealed
    times = [t for t, _ in run.slots]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= FRAME_S + 1e-9


def test_a_deeper_buffer_recovers_from_the_next_packets_fec() -> None:
    settings = JitterBufferSettings(min_delay_ms=60)
    run = replay(arrivals(60, lost={20}), settings=settings)
    recover = [slot for _, slot in run.slots if slot.kind == RECOVER]
    assert len(recover) == 1
    assert seq_of(recover[0].payload) == 21  # the next packet carries the FEC for 20
    assert run.stats is not None and run.stats.underruns == 0 and run.stats.concealed == 1
    assert run.played == [i for i in range(60) if i != 20]


def test_loss_at_a_shallow_buffer_counts_as_underrun_then_loss() -> None:
    run = replay(arrivals(40, lost={15}))
    stats = run.stats
    assert stats is not None
    assert stats.lost == 1 and stats.underruns >= 1
    assert run.played == [i for i in range(40) if i != 15]
    # the concealment played at the underrun stands for the lost packet: no extra delay
    assert stats.concealed == 1
    times = [t for t, _ in run.slots]
    assert times[-1] - times[0] == pytest.approx((len(times) - 1) * FRAME_S)


# ------------------------------------------------------------------------------ bursts
def test_burst_after_a_stall_grows_fast_and_shrinks_slowly() -> None:
    # packets 100..109 are held by the network and all delivered with packet 110
    count = 1000
    jitter = {i: (110 - i) * FRAME_S for i in range(100, 110)}
    run = replay(arrivals(count, jitter=jitter), snapshot_every=0.5)
    stats = run.stats
    assert stats is not None
    assert run.delivered == list(range(count))  # nothing lost, nothing dropped as late
    assert run.played == sorted(run.played)
    assert stats.late_drops == 0
    # grew at once: the burst's lateness became the target
    after = [s for t, s in run.snapshots if 2.5 <= t <= 4.0]
    assert after and all(s.target_ms >= 150 for s in after)
    assert all(s.delay_ms >= 150 for s in after)
    # ... and came back down only once the window (5 s) forgot the burst, by dropping quiet
    # frames
    assert all(s.target_ms >= 150 for t, s in run.snapshots if 2.5 <= t <= 6.9)
    assert stats.target_ms < 5
    assert stats.delay_ms < 5
    assert stats.dropped >= 8


def test_loud_slots_keep_the_delay_until_it_is_far_above_the_target() -> None:
    count = 1000
    jitter = {i: (110 - i) * FRAME_S for i in range(100, 110)}
    run = replay(arrivals(count, jitter=jitter), quiet=False)
    assert run.stats is not None
    # in speech only a large excess is cut (5 frames), so some of the 200 ms remains
    assert run.stats.delay_ms <= 5 * 20 + 25
    assert run.stats.delay_ms > 20
    assert run.played == sorted(run.played)


def test_starvation_goes_idle_and_restarts_on_the_next_packet() -> None:
    script = arrivals(50) + arrivals(50, first_seq=50, first_ts=50 * STEP, start=3.0)
    run = replay(script)
    stats = run.stats
    assert stats is not None
    assert run.played == list(range(50)) + list(range(50))  # the payload index restarts
    # at most max_conceal_ms (300 ms) of concealment, then nothing until packets return
    assert stats.underruns == 15
    assert stats.restarts == 1
    gap = max(b[0] - a[0] for a, b in zip(run.slots, run.slots[1:], strict=False))
    assert gap > 1.5  # idle from about 1.33 s (1.03 + 0.3) to 3.05 s


def test_a_timestamp_jump_restarts_the_buffer() -> None:
    script = arrivals(30) + arrivals(30, first_seq=30, first_ts=1_000_000_000,
                                     start=30 * FRAME_S)
    run = replay(script)
    assert run.stats is not None
    assert run.played == list(range(30)) + list(range(30))
    assert run.stats.restarts == 1


# ------------------------------------------------------------------------------ clock skew
@pytest.mark.parametrize("skew", [0.01, -0.01])
@pytest.mark.parametrize("quiet", [True, False])
def test_clock_skew_is_absorbed_without_drift(skew: float, quiet: bool) -> None:
    """A sender whose clock runs 1 % fast (or slow): packets every 19.8 (20.2) ms, for 60 s."""
    count = 3000
    run = replay(arrivals(count, period=FRAME_S * (1 - skew)), quiet=quiet,
                 snapshot_every=1.0)
    stats = run.stats
    assert stats is not None
    delays = [s.delay_ms for t, s in run.snapshots if t > 2.0]
    assert run.delivered == list(range(count))
    assert run.played == sorted(run.played)
    assert stats.late_drops == 0
    if skew < 0 or quiet:
        # the playout clock follows the sender by sub-frame steps: no drift, no glitch
        assert max(delays) - min(delays) < 5
        assert stats.concealed <= 2
        assert stats.dropped == 0
    else:
        # 1 % too many packets (30 frames in 60 s) in non-stop speech: the excess grows to
        # five frames (in 10 s), then every further frame of drift is dropped
        assert max(delays) < 5 * 20 + 25
        assert 20 <= stats.dropped <= 28


# ------------------------------------------------------------------------------ settings
def test_pull_before_any_packet_returns_none() -> None:
    buffer = AdaptiveJitterBuffer()
    assert buffer.next_due() is None
    assert buffer.pull(1.0) is None
    assert buffer.statistics().packets == 0


@pytest.mark.parametrize("changes", [
    {"min_delay_ms": -1}, {"max_delay_ms": 1, "min_delay_ms": 5}, {"percentile": 101},
    {"window_ms": 0}, {"frame_ms": 1}, {"clock_rate": 0}, {"margin_ms": True},
])
def test_settings_are_validated(changes: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        JitterBufferSettings(**changes)  # type: ignore[arg-type]


def test_low_latency_settings() -> None:
    assert JitterBufferSettings.low_latency().max_delay_ms == 20
    assert JitterBufferSettings().replace(min_delay_ms=40).min_delay_ms == 40
    assert CONCEAL != PACKET
