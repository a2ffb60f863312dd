"""CPU of the outbound audio path per second of audio: resampling once (now) against the old path.

``python -m bench.outbound_path [--seconds 10] [--runs 15] [--docs]`` follows user audio from its
source to what the call keeps of it, without sockets: the source is read, queued on an
:class:`~livetalk.transport.tracks.OutboundAudioTrack`, and every 20 ms frame is pulled with
``recv()`` on a manual clock (paced, Opus-encoded by the track as in a call) while the sent-audio
view goes into an :class:`~livetalk.audio.history.AudioHistory`, as ``Call`` keeps it for
``Turn.audio``. CPU is ``time.process_time`` (every thread: FileSource decodes in a worker),
per second of audio.

Two paths run alternately, ``--runs`` times each, medians reported:

- **old** (before issue 13, kept here as the baseline): ``FileSource`` decodes to 24 kHz, the
  track resamples 24 -> 48 kHz, and the view averages sample pairs of each 48 kHz frame (no
  anti-alias filter);
- **new**: the file is decoded at the track's rate (what ``call.stream(path)`` does over
  WebRTC), the track sends 48 kHz audio as it is, and the view is one stateful 48 -> 24 kHz
  resampler over the frames sent, which skips settled silence.

Cases: a 48 kHz file (the case of issue 13), 24 kHz PCM pushed with ``send_audio`` (a
microphone at the API rate: one resampling each way now, against one plus a pair average
before) and an idle call (silence frames only). It prints a table, writes
``bench/results/outbound_path.json`` and, with ``--docs``, the "outbound-path" section of
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import machine, replace_section
from livetalk.audio.clock import ManualClock
from livetalk.audio.format import API_RATE, RTC_RATE
from livetalk.audio.history import AudioHistory
from livetalk.audio.sources import FileSource
from livetalk.transport.tracks import OutboundAudioTrack

ROOT = Path(__file__).resolve().parent.parent
SECTION = "outbound-path"
FRAMES_PER_S = 50
IDLE_FACTOR = 6
"""The idle call runs this many times longer: it costs so little that a short run is noise."""


class PairAverageTrack(OutboundAudioTrack):
    """The outbound track as the WebRTC transport used it before issue 13 (the baseline):
    each sent frame's 48 kHz PCM halved to 24 kHz by averaging sample pairs."""

    def __init__(self, on_sent: Callable[[np.ndarray], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_sent = on_sent

    async def recv(self) -> Any:
        frame = await super().recv()
        pcm = self.last_pcm.astype(np.int32)
        self.on_sent(((pcm[0::2] + pcm[1::2]) >> 1).astype(np.int16))
        return frame


def _speechlike(rate: int, seconds: float) -> np.ndarray:
    """A syllable-modulated two-tone signal with a 9 kHz component (what a good file holds)."""
    t = np.arange(int(rate * seconds)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    signal = (np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 1330 * t)
              + 0.1 * np.sin(2 * np.pi * 9000 * t))
    return (signal * envelope * 8000).astype(np.int16)


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def _track(impl: str, history: AudioHistory) -> OutboundAudioTrack:
    clock = ManualClock(autoadvance=True)
    if impl == "old":
        return PairAverageTrack(history.write, clock=clock)
    return OutboundAudioTrack(clock=clock, on_sent_audio=history.write)


async def _drain(track: OutboundAudioTrack, frames: int) -> None:
    for _ in range(frames):
        await track.recv()
    track.stop()


async def file_case(impl: str, path: Path, seconds: float) -> float:
    """A 48 kHz file, read and sent whole: CPU ms per second of audio."""
    history = AudioHistory(API_RATE, seconds + 1)
    t0 = time.process_time()
    track = _track(impl, history)
    # old: decoded to 24 kHz (the default); new: to the track's rate, as call.stream(path) does
    source = FileSource(path, rate=API_RATE if impl == "old" else RTC_RATE)
    async for chunk in source:
        track.enqueue(chunk, source.rate)
    track.flush_input()
    await _drain(track, round(seconds * FRAMES_PER_S))
    return (time.process_time() - t0) * 1000 / seconds


async def pcm_case(impl: str, pcm24: np.ndarray, seconds: float) -> float:
    """24 kHz PCM pushed in 100 ms chunks (``send_audio``): CPU ms per second of audio."""
    history = AudioHistory(API_RATE, seconds + 1)
    t0 = time.process_time()
    track = _track(impl, history)
    for k in range(0, pcm24.size, API_RATE // 10):
        track.enqueue(pcm24[k:k + API_RATE // 10], API_RATE)
    await _drain(track, round(seconds * FRAMES_PER_S))
    return (time.process_time() - t0) * 1000 / seconds


async def idle_case(impl: str, seconds: float) -> float:
    """Nothing queued, silence sent: CPU ms per second of call."""
    history = AudioHistory(API_RATE, seconds + 1)
    t0 = time.process_time()
    await _drain(_track(impl, history), round(seconds * FRAMES_PER_S))
    return (time.process_time() - t0) * 1000 / seconds


async def measure(seconds: float = 10.0, runs: int = 15) -> dict[str, Any]:
    """Every case, old and new alternately ``runs`` times: medians and the new/old ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech48k.wav"
        _write_wav(path, _speechlike(48000, seconds), 48000)
        pcm24 = _speechlike(API_RATE, seconds)
        cases: dict[str, Callable[[str], Awaitable[float]]] = {
            "48 kHz file, sent whole": lambda impl: file_case(impl, path, seconds),
            "24 kHz PCM (send_audio)": lambda impl: pcm_case(impl, pcm24, seconds),
            "idle call (silence frames)": lambda impl: idle_case(impl, IDLE_FACTOR * seconds),
        }
        for run in cases.values():  # warm-up: imports, codec set-up, first file read
            await run("old")
            await run("new")
        rows = []
        for name, run in cases.items():
            figures: dict[str, list[float]] = {"old": [], "new": []}
            for i in range(runs):
                for impl in ("old", "new") if i % 2 == 0 else ("new", "old"):
                    figures[impl].append(await run(impl))
            old, new = statistics.median(figures["old"]), statistics.median(figures["new"])
            rows.append({"case": name, "old_ms_per_s": round(old, 3),
                         "new_ms_per_s": round(new, 3),
                         "ratio": round(new / old, 3) if old > 0 else None,
                         "runs": {k: [round(x, 3) for x in v] for k, v in figures.items()}})
    return {"machine": machine(), "seconds": seconds, "idle_seconds": IDLE_FACTOR * seconds,
            "runs": runs, "rows": rows}


def render(result: dict[str, Any]) -> str:
    lines = ["| Case | old path (ms/s) | resampled once (ms/s) | ratio new/old |",
             "|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['case']} | {row['old_ms_per_s']:.2f} | {row['new_ms_per_s']:.2f} "
                     f"| {row['ratio']} |")
    return "\n".join(lines)


def docs_section(result: dict[str, Any]) -> str:
    """The "outbound-path" section of ``docs/performance.md``."""
    info = result["machine"]
    load = ", ".join(map(str, info.get("load_avg", [])))
    return f"""## The outbound audio path: resampled once (issue 13)

`python -m bench.outbound_path --docs` (in `make bench-more`) measures the CPU per second of
audio from the source to the frames sent (paced on a manual clock, Opus-encoded by the track)
plus the 24 kHz sent-audio view a call keeps for `Turn.audio`. *Old* is the path before issue
13, kept in the bench as the baseline: a 48 kHz file decoded to 24 kHz, resampled back to
48 kHz by the track, and viewed at 24 kHz by averaging sample pairs (no anti-alias filter).
*Resampled once* decodes the file at the track's 48 kHz, sends it untouched, and makes the
view with one stateful 48 -> 24 kHz resampler over the frames sent, skipping settled silence.
Medians of {result['runs']} alternated runs of {result['seconds']:g} s of audio each (the idle
call: {result['idle_seconds']:g} s). Run on {info.get('date', '')}, {info.get('cpu', '')},
{info.get('cores', '')} cores shared with other developers (load average {load}).

{render(result)}

How to read it: the Opus encoder dominates the rows with speech. The filtered view costs one
PyAV call per 20 ms frame (about 35 µs) where the pair average was one numpy expression; the
file row gets part of that back because the file is no longer taken 48 -> 24 -> 48 kHz, and on
an idle call settled silence skips the filter. On this shared machine, differences under about
1 ms/s are noise.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--docs", action="store_true",
                        help=f"write the {SECTION} section of docs/performance.md")
    args = parser.parse_args()
    result = asyncio.run(measure(args.seconds, args.runs))
    out = ROOT / "bench" / "results" / "outbound_path.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average {result['machine']['load_avg']}")
    print(render(result))
    if args.docs:
        docs = ROOT / "docs" / "performance.md"
        docs.write_text(replace_section(docs.read_text(), SECTION, docs_section(result)))
        print(f"wrote {docs.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
