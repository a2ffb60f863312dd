"""One-way receive latency and glitches through an impaired path: livetalk's adaptive jitter
buffer against aiortc's default receiver, at several delay jitters and loss rates.

For each condition both clients call the aiortc echo answerer (:mod:`bench.echo_peer`), with
an :class:`~livetalk.transport.impairment.Impairment` on what the client receives (the way
down: ``jitter_ms`` of uniform random extra delay per packet, which also reorders, and
``loss``). Chirps measure the one-way latency down as in the latency stage (echo round trip
minus the way up, medians); meanwhile every delivered chunk is logged and the glitches are
counted, per minute of audio:

- **underruns**: a virtual speaker with a one-frame (20 ms) prebuffer plays what the client
  delivers in real time; the time it has nothing to play is an underrun (a late delivery);
- **concealed** (livetalk): the slots its buffer concealed (losses and underruns it filled);
- **missing** (aiortc): the packets the path dropped, which aiortc's receiver leaves out of the
  audio altogether (no concealment).

``python -m bench.jitter [--quick]`` prints the table; :func:`run` is the entry point for
``bench.run_all`` (the ``jitter`` stage).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import livetalk
from bench.echo_peer import EchoPeer, EchoTrack
from bench.raw_client import RawClient
from bench.signals import Recording, chirp, chirp_latency, median
from livetalk.audio.format import FRAME_MS, RTC_RATE
from livetalk.transport.impairment import Impairment

__all__ = ["CONDITIONS", "Condition", "measure", "run"]

API_KEY = "sk-bench-local"
JITTERS_MS = (0, 20, 40)
LOSSES = (0.0, 0.02, 0.05)
CONDITIONS = tuple(itertools.product(JITTERS_MS, LOSSES))
_PREBUFFER_S = 0.020
_SETTLE_S = 1.0
_CHIRP_GAP_S = 0.5


@dataclass(frozen=True)
class Condition:
    """One client through one impaired path: latency and glitches."""

    impl: str
    jitter_ms: float
    loss: float
    down_ms: float
    """Median one-way latency down (ms)."""
    underrun_ms_per_min: float
    concealed_ms_per_min: float
    missing_ms_per_min: float
    seconds: float

    @property
    def glitch_ms_per_min(self) -> float:
        """Everything the listener hears wrong: underruns, concealment, missing audio."""
        return self.underrun_ms_per_min + self.concealed_ms_per_min + self.missing_ms_per_min


class DeliveryLog:
    """When each chunk of received audio was delivered, and how long it was."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.entries: list[tuple[float, float]] = []
        self.enabled = False

    def add(self, pcm: Any) -> None:
        if self.enabled:
            self.entries.append((time.monotonic(), pcm.size / self.rate))

    def underrun_s(self) -> float:
        """Time a real-time speaker with a one-frame prebuffer would have had nothing."""
        if not self.entries:
            return 0.0
        starved = 0.0
        play_end = self.entries[0][0] + _PREBUFFER_S
        for at, seconds in self.entries:
            if at > play_end:
                starved += at - play_end
                play_end = at
            play_end += seconds
        return starved


async def measure(peer: EchoPeer, impl: str, jitter_ms: float, loss: float, *,
                  chirps: int, seed: int) -> Condition:
    """One call of ``impl`` (``livetalk`` or ``raw``) through the impaired way down."""
    impairment = Impairment(jitter_ms=jitter_ms, loss=loss, seed=seed)
    if impl == "livetalk":
        call = await livetalk.connect(base_url=peer.base_url, api_key=API_KEY)
        transport: Any = call._transport
        heard = Recording(24000)
        log = DeliveryLog(24000)
        transport.add_audio_consumer(heard.add)
        transport.add_audio_consumer(log.add)
        path = impairment.install(transport.pc)
        sent: list[float] = []
        call.outbound_track.on_frame_sent = lambda _ms: sent.append(time.monotonic())

        async def send_chirp() -> float:
            sent.clear()
            call.send_audio(chirp(24000), 24000)
            await asyncio.sleep(_CHIRP_GAP_S)
            return sent[0]

        async def close() -> None:
            await call.close()

        def concealed_ms() -> float:
            stats = call.receive_statistics()
            return stats.concealed_ms if stats is not None else 0.0
    else:
        client = await RawClient.connect(peer.base_url, API_KEY)
        heard = client.received
        log = DeliveryLog(RTC_RATE)
        record = heard.add

        def add(pcm: Any, at: float | None = None) -> None:
            log.add(pcm)
            record(pcm, at)

        heard.add = add  # type: ignore[method-assign]
        path = impairment.install(client.pc)

        async def send_chirp() -> float:
            before = len(client.track.sent)
            client.track.enqueue(chirp(RTC_RATE))
            await asyncio.sleep(_CHIRP_GAP_S)
            return client.track.sent[before][1]

        async def close() -> None:
            await client.close(peer.base_url, API_KEY)

        def concealed_ms() -> float:
            return 0.0
    try:
        await asyncio.sleep(_SETTLE_S)
        track = peer.latest.track
        assert isinstance(track, EchoTrack)
        concealed0, dropped0 = concealed_ms(), path.statistics().received.dropped
        log.enabled = True
        t0 = time.monotonic()
        downs = []
        for _ in range(chirps):
            heard.mark()
            track.received.mark()
            sent_at = await send_chirp()
            heard.stop()
            track.received.stop()
            try:
                up = chirp_latency(track.received, chirp(RTC_RATE), sent_at)
                echo = chirp_latency(heard, chirp(heard.rate), sent_at)
            except Exception:  # a chirp lost or too damaged to find: counted as a glitch
                continue
            downs.append(echo - up)
        seconds = time.monotonic() - t0
        log.enabled = False
        concealed = concealed_ms() - concealed0
        dropped = path.statistics().received.dropped - dropped0
        missing = dropped * FRAME_MS if impl == "raw" else 0.0
    finally:
        await close()
    per_min = 60.0 / seconds
    return Condition(impl=impl, jitter_ms=jitter_ms, loss=loss, down_ms=median(downs),
                     underrun_ms_per_min=log.underrun_s() * 1000 * per_min,
                     concealed_ms_per_min=concealed * per_min,
                     missing_ms_per_min=missing * per_min, seconds=round(seconds, 2))


async def run(*, quick: bool = False) -> list[Condition]:
    """Every condition, livetalk and raw aiortc alternating; returns the results."""
    chirps = 4 if quick else 12
    conditions = ((0, 0.0), (20, 0.02)) if quick else CONDITIONS
    out: list[Condition] = []
    async with EchoPeer(mode="echo") as peer:
        for i, (jitter_ms, loss) in enumerate(conditions):
            order = ("livetalk", "raw") if i % 2 == 0 else ("raw", "livetalk")
            for impl in order:
                result = await measure(peer, impl, jitter_ms, loss, chirps=chirps, seed=i)
                print(f"  {impl:8} jitter {jitter_ms:>2} ms loss {loss:4.0%}: down "
                      f"{result.down_ms:6.1f} ms, glitches {result.glitch_ms_per_min:7.0f} "
                      "ms/min", flush=True)
                out.append(result)
    return out


def main() -> None:
    """Parse ``--quick``, run, print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two conditions, four chirps")
    args = parser.parse_args()
    for result in asyncio.run(run(quick=args.quick)):
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
