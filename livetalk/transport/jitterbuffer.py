"""The adaptive receive jitter buffer: a sans-I/O core (packets and arrival times in, playout
slots out, a clock the caller moves).

It decides, for every 20 ms playout slot, what the decoder must produce: the packet that is
due, a concealment of a packet that is missing, or nothing yet. It does no I/O, no decoding
and reads no clock: :meth:`AdaptiveJitterBuffer.push` takes each RTP packet with its arrival
time, :meth:`~AdaptiveJitterBuffer.next_due` says when the next slot must be played, and
:meth:`~AdaptiveJitterBuffer.pull` (called at that time) returns a :class:`Slot`. The aiortc
glue (:mod:`livetalk.transport.jitter`) runs it on the media clock and decodes the slots with
libopus; the unit tests drive it with scripted arrivals and a hand-moved clock.

How it adapts
-------------
Each packet's *transit* is its arrival time minus its RTP timestamp in seconds: an unknown
constant (clock offsets, the path's base delay) plus the delay that varied. Over a sliding
window (:attr:`JitterBufferSettings.window_ms`, 5 s) the smallest transit is the fastest path seen;
a packet's *jitter* is how much slower it was than that. The **target delay** is a high
percentile of the jitter in the window (:attr:`~JitterBufferSettings.percentile`, 99 %) plus a
scheduling margin, clamped to ``[min_delay_ms, max_delay_ms]``: a packet is played
``target`` after the fastest path would have delivered it. The *delay* actually applied is
where the playout clock stands; it moves towards the target:

- **Starts small.** The first packet is played ``max(min_delay_ms, margin_ms)`` after it
  arrives.
- **Grows fast.** When the slot of a packet comes and the packet has not arrived, and no later
  packet has either (an *underrun*: the stream is late, not lossy), the slot is concealed and
  the packet stays next in line: the delay grows by one frame at once, and the late packet is
  played in the next slot if it has arrived by then. When the target rises above the delay
  (the jitter grew), the next slot is postponed by the difference, at most one frame per slot.
- **Shrinks slowly.** A target above the delay only falls once the slow packets have left the
  window. The delay then follows it down by at most :attr:`~JitterBufferSettings.shrink_ms_per_slot`
  per slot, and only across quiet slots (silence between words), so the speech is not sped up;
  when the delay exceeds the target by more than a frame, quiet frames are dropped. In
  non-stop speech, only an excess of more than 100 ms is cut, one frame in ten at most.
- **Late packets are dropped.** A packet arriving after its slot was played (concealed) is
  counted (:attr:`ReceiveStatistics.late_drops`) and discarded, never played out of order.
- **Losses are concealed.** A missing packet whose successors have arrived is lost: its slot
  is concealed (:data:`RECOVER` when the next packet is there, so the decoder can use its
  in-band FEC), and the timeline keeps its length: no hole, no shortened audio.
- **Starvation.** After :attr:`~JitterBufferSettings.max_conceal_ms` of underruns in a row (the far
  end stopped sending), the buffer goes idle and produces nothing until a packet arrives; it
  then starts again as at the beginning (:attr:`ReceiveStatistics.restarts`).

Clock skew (a sender whose clock runs faster or slower than the receiver's) shows as a transit
that drifts: the window follows it, and frames are dropped or underruns concealed as needed.

Example (a manual clock, as the unit tests do)::

    buffer = AdaptiveJitterBuffer()
    buffer.push(seq=0, timestamp=0, payload=b"...", arrival=0.000)
    buffer.next_due()            # 0.002: margin_ms after the arrival
    slot = buffer.pull(0.002)    # Slot(kind="packet", payload=b"...")
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

from livetalk.audio.format import FRAME_MS, RTC_RATE
from livetalk.errors import ConfigError

__all__ = [
    "CONCEAL",
    "PACKET",
    "RECOVER",
    "AdaptiveJitterBuffer",
    "JitterBufferSettings",
    "ReceiveStatistics",
    "Slot",
    "SlotKind",
]

SlotKind = Literal["packet", "conceal", "recover"]
PACKET: SlotKind = "packet"
"""Decode :attr:`Slot.payload`."""
CONCEAL: SlotKind = "conceal"
"""Conceal the slot (packet-loss concealment): its packet is missing."""
RECOVER: SlotKind = "recover"
"""Conceal the slot from the next packet's in-band FEC (:attr:`Slot.payload`); the next packet
itself is played in the next slot."""

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_MAX_STEP_MS = 120
"""The longest Opus packet: a larger timestamp step between consecutive packets is a gap
(discontinuous transmission), not a packet duration."""
_BASE_SPAN_S = 1.0
"""The base (fastest transit) is the minimum over this long: long enough to see the fastest
packets between bursts of jitter, short enough to follow a sender whose clock drifts."""
_RESYNC_S = 2.0
"""A packet whose transit differs from the window's by more than this is from a new timeline
(the sender restarted its timestamps): the window is cleared."""
_MAX_AHEAD_S = 5.0
"""Packets more than this far ahead of the playout point restart the buffer on them."""
_LATE_MEMORY = 256
"""How many recently concealed sequence numbers are remembered to tell late from duplicate."""
_CATCH_UP_S = 1.0
"""A caller that pulls more than this late (a stalled process) resumes from now; below it, the
slots it missed are pulled at once, so that the delay does not grow."""
_FORCE_DROP_S = 0.100
"""Delay beyond the target (real seconds) past which frames are dropped even in speech..."""
_FORCE_DROP_EVERY = 10
"""... but at most one in this many slots (speech sped up by 10 % at most)."""


@dataclass(frozen=True, slots=True)
class JitterBufferSettings:
    """How the adaptive buffer trades latency for glitches.

    Args:
        min_delay_ms: floor of the target delay (beyond the fastest packet's arrival).
        max_delay_ms: ceiling of the target delay; above it, a late packet is declared lost
            (concealed, then dropped when it arrives) instead of delaying playout further.
        percentile: which percentile of the jitter in the window the target covers (0-100).
        window_ms: how long arrival history counts; a spike of jitter keeps the target up for
            this long (the "shrinks slowly" half of the adaptation).
        margin_ms: added to the target: the playout clock's own scheduling slack.
        shrink_ms_per_slot: how fast the delay follows a lower target across quiet slots.
        max_conceal_ms: underruns in a row after which the buffer goes idle (the far end
            stopped sending): nothing is produced until the next packet arrives.
        frame_ms: the packet duration assumed until two consecutive packets show it.
        clock_rate: the RTP clock rate (48 000 for Opus).

    Raises:
        ConfigError: a value out of range.
    """

    min_delay_ms: float = 0.0
    max_delay_ms: float = 1000.0
    percentile: float = 99.0
    window_ms: float = 5000.0
    margin_ms: float = 2.0
    shrink_ms_per_slot: float = 1.0
    max_conceal_ms: float = 300.0
    frame_ms: float = FRAME_MS
    clock_rate: int = RTC_RATE

    def __post_init__(self) -> None:
        checks = (
            ("min_delay_ms", 0 <= self.min_delay_ms),
            ("max_delay_ms", self.min_delay_ms <= self.max_delay_ms <= 10_000),
            ("percentile", 0 <= self.percentile <= 100),
            ("window_ms", 0 < self.window_ms <= 600_000),
            ("margin_ms", 0 <= self.margin_ms <= 1000),
            ("shrink_ms_per_slot", 0 <= self.shrink_ms_per_slot <= 1000),
            ("max_conceal_ms", 0 <= self.max_conceal_ms <= 60_000),
            ("frame_ms", 2.5 <= self.frame_ms <= _MAX_STEP_MS),
            ("clock_rate", isinstance(self.clock_rate, int) and self.clock_rate > 0),
        )
        for name, ok in checks:
            value = getattr(self, name)
            if isinstance(value, bool) or not ok:
                raise ConfigError(f"JitterBufferSettings.{name} is out of range: {value!r}")

    @classmethod
    def low_latency(cls) -> JitterBufferSettings:
        """The ``low_latency=True`` settings: the delay never exceeds one frame beyond the
        fastest path; jitter beyond that is concealed (a glitch) instead of waited for."""
        return cls(max_delay_ms=FRAME_MS)

    def replace(self, **changes: float) -> JitterBufferSettings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ReceiveStatistics:
    """What the receive buffer did so far (all counts since it started).

    Durations are in milliseconds of audio; one slot is one frame (20 ms).
    """

    target_ms: float
    """The target delay now: the measured jitter percentile plus the margin, clamped."""
    delay_ms: float
    """The delay applied now: how long after the fastest path's arrival a packet is played
    (the current depth of the buffer, in time)."""
    jitter_ms: float
    """The measured jitter over the window (before margin and clamping): its percentile, or
    the jitter of the latest packet that missed its slot, whichever is larger."""
    buffered_ms: float
    """Audio received and waiting to be played."""
    packets: int
    """Packets pushed (late and duplicate ones included)."""
    played: int
    """Slots that played a received packet."""
    concealed: int
    """Slots concealed, for any reason (underruns and losses)."""
    concealed_ms: float
    """Audio concealed (the duration of the concealed slots)."""
    underruns: int
    """Slots concealed because nothing newer had arrived (late stream, or a loss at the head)."""
    lost: int
    """Packets declared lost: missing while later ones had arrived, or a late one beyond
    ``max_delay_ms``."""
    late_drops: int
    """Packets that arrived after their slot had been concealed: dropped."""
    duplicates: int
    """Packets received twice, or arriving after they were played: dropped."""
    dropped: int
    """Received frames skipped to shrink the delay."""
    restarts: int
    """Times the buffer started again after going idle (or after a timestamp jump)."""


@dataclass(frozen=True, slots=True)
class Slot:
    """What one playout slot must produce; see :data:`PACKET`, :data:`CONCEAL`,
    :data:`RECOVER`."""

    kind: SlotKind
    payload: bytes = b""
    """The packet to decode (:data:`PACKET`), or the next packet, whose in-band FEC can
    rebuild this slot (:data:`RECOVER`)."""
    samples: int = 0
    """The slot's duration in RTP clock units (960 for 20 ms at 48 kHz)."""
    skipped: tuple[bytes, ...] = ()
    """Received packets dropped just before this slot to shrink the delay. Decoding them (and
    discarding the audio) keeps the decoder state continuous."""


class _Window:
    """Arrival history: the fastest recent transit (the *base*), the jitter of each packet
    over the last ``span`` seconds, and that of the packets that came too late for their slot.

    A packet's jitter is its transit minus the base when it arrived; the base is the minimum
    transit over the last :data:`_BASE_SPAN_S` only, so that a sender whose clock drifts
    against ours does not show as jitter (the base follows the drift).
    """

    def __init__(self, span: float) -> None:
        self.span = span
        self._mins: deque[tuple[float, float]] = deque()  # (arrival, transit), increasing
        self._order: deque[tuple[float, float]] = deque()  # (arrival, jitter), arrival order
        self._sorted: list[float] = []  # the jitters, sorted
        self._late: deque[tuple[float, float]] = deque()  # (arrival, jitter) of late packets

    def __len__(self) -> int:
        return len(self._sorted)

    @property
    def base(self) -> float:
        """The fastest transit over the last :data:`_BASE_SPAN_S` seconds."""
        return self._mins[0][1]

    def add(self, arrival: float, transit: float) -> float:
        """Record one arrival; returns its jitter."""
        mins = self._mins
        while mins and mins[-1][1] >= transit:
            mins.pop()
        mins.append((arrival, transit))
        horizon = arrival - _BASE_SPAN_S
        while mins[0][0] < horizon:
            mins.popleft()
        jitter = transit - mins[0][1]
        self._order.append((arrival, jitter))
        bisect.insort(self._sorted, jitter)
        horizon = arrival - self.span
        order, ordered, late = self._order, self._sorted, self._late
        while order[0][0] < horizon:
            _, old = order.popleft()
            del ordered[bisect.bisect_left(ordered, old)]
        while late and late[0][0] < horizon:
            late.popleft()
        return jitter

    def add_late(self, arrival: float, jitter: float) -> None:
        """Remember a packet that arrived after its slot (its jitter is also in the window)."""
        self._late.append((arrival, jitter))

    def clear(self) -> None:
        self._mins.clear()
        self._order.clear()
        self._sorted.clear()
        self._late.clear()

    def jitter(self, percentile: float) -> float:
        """The larger of the ``percentile`` of the jitters (nearest rank) and the largest
        jitter of a late packet."""
        ordered = self._sorted
        if not ordered:
            return 0.0
        rank = min(len(ordered) - 1, max(0, round(percentile / 100 * (len(ordered) - 1))))
        value = ordered[rank]
        if self._late:
            value = max(value, max(j for _, j in self._late))
        return value


class AdaptiveJitterBuffer:
    """The adaptive receive jitter buffer for one RTP audio stream (see the module docstring).

    Times are seconds on one clock of the caller's choosing (the media clock); RTP sequence
    numbers and timestamps wrap as on the wire.

    Args:
        settings: the latency/robustness trade-off; :class:`JitterBufferSettings` defaults if None.
        speed: how many times faster than the caller's clock the sender's media runs (an
            accelerated test against ``serve(realtime_factor=N)``: ``N``). The caller's clock
            stays real time, so jitter, delays and the window are real milliseconds while a
            slot lasts ``frame_ms / speed``.

    Raises:
        ConfigError: a speed that is not a positive number.
    """

    def __init__(self, settings: JitterBufferSettings | None = None, *, speed: float = 1.0) -> None:
        self.settings = settings if settings is not None else JitterBufferSettings()
        if isinstance(speed, bool) or not speed > 0:
            raise ConfigError(f"speed must be a number > 0, got {speed!r}")
        s = self.settings
        self._rate = float(s.clock_rate) * speed
        self._step = round(s.frame_ms * s.clock_rate / 1000)
        self._max_step = round(_MAX_STEP_MS * s.clock_rate / 1000)
        self._window = _Window(s.window_ms / 1000)
        self._packets: dict[int, tuple[int, bytes]] = {}  # extended seq -> (extended ts, payload)
        self._highest: int | None = None  # highest extended seq ever pushed
        self._highest_ts = 0
        self._cursor: int | None = None  # next extended seq to play; None: idle
        self._floor: int | None = None  # the playout point when the buffer went idle
        self._cursor_ts = 0
        self._due: float | None = None
        self._pending = False  # the cursor's slot was already concealed (an underrun)
        self._underrun_run = 0
        self._quiet = False
        self._since_drop = 0  # slots since a frame was dropped
        self._concealed_seqs: deque[int] = deque(maxlen=_LATE_MEMORY)
        self._started = False
        self._packets_in = 0
        self._played = 0
        self._concealed = 0
        self._concealed_units = 0  # RTP clock units concealed
        self._underruns = 0
        self._lost = 0
        self._late = 0
        self._duplicates = 0
        self._dropped = 0
        self._restarts = 0

    # ---------------------------------------------------------------- input
    def push(self, seq: int, timestamp: int, payload: bytes, arrival: float,
             duration: int | None = None) -> None:
        """Hand over one received packet.

        Args:
            seq: its RTP sequence number (16 bits, wrapping).
            timestamp: its RTP timestamp (32 bits, wrapping).
            payload: the codec payload (one Opus packet).
            arrival: when it arrived, in seconds on the caller's clock.
            duration: the audio it holds, in RTP clock units, when the caller knows it (from
                the Opus header); otherwise the step to the next packet's timestamp is used.
        """
        self._packets_in += 1
        if self._highest is None:
            ext, ext_ts = seq, timestamp
        else:
            ext = self._highest + _wrap_delta(seq - self._highest, _SEQ_MOD)
            ext_ts = self._highest_ts + _wrap_delta(timestamp - self._highest_ts, _TS_MOD)
        transit = arrival - ext_ts / self._rate
        window = self._window
        if window and abs(transit - window.base) > _RESYNC_S:
            window.clear()  # a new timeline: old transits say nothing about it
            if self._cursor is not None or self._floor is not None:
                self._restart()
        jitter = window.add(arrival, transit)
        if duration is None and self._highest is not None and ext == self._highest + 1:
            duration = ext_ts - self._highest_ts  # the previous packet's, as good a guess
        if duration is not None and 0 < duration <= self._max_step:
            self._step = duration
        if self._highest is None or ext > self._highest:
            self._highest, self._highest_ts = ext, ext_ts

        cursor = self._cursor
        floor = cursor if cursor is not None else self._floor
        if floor is not None and ext < floor:
            if ext in self._concealed_seqs:
                self._late += 1
                window.add_late(arrival, jitter)
            else:
                self._duplicates += 1
            return
        if ext == cursor and self._pending:  # its slot was concealed: it comes one slot late
            window.add_late(arrival, jitter)
        if ext in self._packets:
            self._duplicates += 1
            return
        if cursor is not None and (ext_ts - self._cursor_ts) / self._rate > _MAX_AHEAD_S:
            self._restart()
            cursor = None
        self._packets[ext] = (ext_ts, payload)
        if cursor is None:
            self._start(ext, ext_ts, arrival)
        elif ext == cursor:
            self._cursor_ts = ext_ts

    def mark_quiet(self, quiet: bool) -> None:
        """Tell the buffer whether the slot just produced was quiet (silence between words).

        The buffer only shrinks its delay across quiet slots; the glue calls this after
        decoding each slot. Without it, slots count as loud and the delay shrinks only by
        dropping frames when it exceeds the target by more than a frame.
        """
        self._quiet = quiet

    # ---------------------------------------------------------------- output
    def next_due(self) -> float | None:
        """When the next slot must be pulled, or None while idle (waiting for a packet)."""
        return self._due

    def pull(self, now: float) -> Slot | None:
        """Play the slot that is due; call it at (or after) :meth:`next_due`.

        Args:
            now: the current time, on the clock of the arrivals; only used when the caller
                fell far behind (a stalled process), to resume from now.

        Returns:
            The slot, or None when the buffer is idle (nothing to play: it went idle after
            ``max_conceal_ms`` of underruns, or never started).
        """
        due = self._due
        cursor = self._cursor
        if due is None or cursor is None:
            return None
        packets = self._packets
        step = self._step_at(cursor)

        if self._pending:
            self._pending = False
            if cursor not in packets and self._newer_than(cursor):
                # the concealment already played stands for the lost packet
                self._lost += 1
                self._forget(cursor)
                cursor = self._advance(step)
                step = self._step_at(cursor)

        skipped: tuple[bytes, ...] = ()
        target = self.target()
        excess = (due - self._cursor_ts / self._rate) - (self._window.base + target)
        frame_s = step / self._rate
        if (excess > frame_s + self.settings.margin_ms / 1000
                and (self._quiet or (excess > max(_FORCE_DROP_S, 5 * frame_s)
                                     and self._since_drop >= _FORCE_DROP_EVERY))
                and cursor in packets and cursor + 1 in packets):
            skipped = (packets.pop(cursor)[1],)
            self._dropped += 1
            self._since_drop = 0
            cursor = self._advance(step)
            step = self._step_at(cursor)
            frame_s = step / self._rate

        self._since_drop += 1
        slot: Slot
        if cursor in packets:
            slot = Slot(PACKET, packets.pop(cursor)[1], step, skipped)
            self._played += 1
            self._underrun_run = 0
            self._advance(step)
        elif self._newer_than(cursor):
            following = packets.get(cursor + 1)
            self._lost += 1
            self._concealed += 1
            self._concealed_units += step
            self._forget(cursor)
            self._advance(step)
            slot = (Slot(RECOVER, following[1], step, skipped) if following is not None
                    else Slot(CONCEAL, b"", step, skipped))
        else:
            if (self._underrun_run + 1) * frame_s * 1000 > self.settings.max_conceal_ms:
                self._go_idle()
                return None
            self._underrun_run += 1
            self._underruns += 1
            self._concealed += 1
            self._concealed_units += step
            delay = due - self._cursor_ts / self._rate - self._window.base
            if delay + frame_s > self.settings.max_delay_ms / 1000 + frame_s / 2:
                # waiting longer would exceed the ceiling: give the packet up
                self._lost += 1
                self._forget(cursor)
                self._advance(step)
            else:
                self._pending = True  # the packet may still come: play it next slot
            slot = Slot(CONCEAL, b"", step, skipped)

        self._due = self._schedule(due, frame_s, now)
        return slot

    # ---------------------------------------------------------------- figures
    def target(self) -> float:
        """The target delay in seconds (see the module docstring)."""
        s = self.settings
        target = self._window.jitter(s.percentile) + s.margin_ms / 1000
        return min(max(target, s.min_delay_ms / 1000), s.max_delay_ms / 1000)

    def has_next(self) -> bool:
        """True when the packet of the next slot has arrived (pulling will not conceal)."""
        return self._cursor is not None and self._cursor in self._packets

    def statistics(self) -> ReceiveStatistics:
        """The buffer's figures now (a frozen snapshot).

        Durations are in ms of media (``buffered_ms``, ``concealed_ms``) or of the caller's
        clock (``target_ms``, ``delay_ms``, ``jitter_ms``); they differ only with ``speed``.
        """
        window = self._window
        frame_ms = self._step * 1000 / self.settings.clock_rate
        delay = 0.0
        if self._due is not None and window:
            delay = max(0.0, self._due - self._cursor_ts / self._rate - window.base)
        cursor = self._cursor
        buffered = sum(1 for seq in self._packets if cursor is None or seq >= cursor)
        return ReceiveStatistics(
            target_ms=self.target() * 1000,
            delay_ms=delay * 1000,
            jitter_ms=window.jitter(self.settings.percentile) * 1000,
            buffered_ms=buffered * frame_ms,
            packets=self._packets_in,
            played=self._played,
            concealed=self._concealed,
            concealed_ms=self._concealed_units * 1000 / self.settings.clock_rate,
            underruns=self._underruns,
            lost=self._lost,
            late_drops=self._late,
            duplicates=self._duplicates,
            dropped=self._dropped,
            restarts=self._restarts,
        )

    # ---------------------------------------------------------------- internals
    def _start(self, ext: int, ext_ts: int, arrival: float) -> None:
        """Start playing at packet ``ext``: its slot comes after the starting delay."""
        if self._started:
            self._restarts += 1
        self._started = True
        self._cursor, self._cursor_ts = ext, ext_ts
        self._pending = False
        self._underrun_run = 0
        s = self.settings
        start = max(s.min_delay_ms, s.margin_ms) / 1000
        if len(self._window) > 1:  # a restart: the window knows the path
            start = max(start, self._window.base + self.target() - (arrival - ext_ts / self._rate))
        self._due = arrival + min(start, s.max_delay_ms / 1000)

    def _restart(self) -> None:
        """Forget the playout point (a timestamp jump): the next packet starts again."""
        self._packets.clear()
        self._cursor = self._floor = None
        self._due = None
        self._pending = False

    def _go_idle(self) -> None:
        self._floor, self._cursor = self._cursor, None
        self._due = None
        self._pending = False
        self._underrun_run = 0
        if self._highest is not None:  # what is still held is older than what comes next
            self._packets.clear()

    def _advance(self, step: int) -> int:
        """Move the playout point to the next packet; returns the new cursor."""
        assert self._cursor is not None
        self._cursor += 1
        following = self._packets.get(self._cursor)
        self._cursor_ts = following[0] if following is not None else self._cursor_ts + step
        return self._cursor

    def _step_at(self, cursor: int) -> int:
        """The duration of the slot at ``cursor``, in RTP clock units."""
        return self._step

    def _newer_than(self, cursor: int) -> bool:
        return any(seq > cursor for seq in self._packets)

    def _forget(self, seq: int) -> None:
        self._concealed_seqs.append(seq)

    def _schedule(self, due: float, frame_s: float, now: float) -> float:
        """The next slot's time: one frame later, nudged towards the target delay."""
        nxt = due + frame_s
        window = self._window
        if window and self._cursor is not None:
            delay = nxt - self._cursor_ts / self._rate - window.base
            gap = self.target() - delay
            if gap > 0:  # grow at once (at most one frame per slot)
                nxt += min(gap, frame_s)
            elif gap < 0 and self._quiet and not self._pending:
                # shrink slowly, across silence only (and not while an underrun may yet turn
                # out to be a loss, which takes the extra frame back at once)
                nxt -= min(-gap, self.settings.shrink_ms_per_slot / 1000)
        if nxt < now - _CATCH_UP_S:  # the caller stalled: start afresh rather than burst
            nxt = now
        return nxt


def _wrap_delta(delta: int, modulus: int) -> int:
    """``delta`` modulo ``modulus``, mapped to the signed range around 0."""
    delta %= modulus
    return delta - modulus if delta >= modulus // 2 else delta
