"""Recognisers of the local server compared: word error rate, CPU, latency, capacity.

``python -m bench.asr [--quick] [--no-capacity]``

1. **Turns.** Sixteen everyday sentences (no phrase list announces them) spoken by two eSpeak NG
   voices at two speeds (``en-us`` at 165 words per minute, ``en-us+f2`` at 195), each set
   clean and under white noise at 10 dB SNR: 64 turns, 1.5 s apart.
2. **Through a real call.** Each set is streamed in real time over WebRTC (Opus both ways) to
   an in-process local server with server VAD (500 ms) and Whisper as its recogniser; the
   audio of every committed turn is kept as the server received it. From the client's event
   log: commit -> ``input_audio_transcription.completed`` for every turn (the goal: <= 300 ms
   for a 3 s turn), and the live transcripts.
3. **Offline, on the same committed audio**, one recogniser after the other in this process:
   pocketsphinx without a phrase list (the baseline), pocketsphinx with the sixteen sentences
   as its list, Whisper (``window_s`` 10, the default) and Whisper with its own 30 s window.
   Word error rate per set (case and punctuation ignored, over the concatenated turns, so a
   turn the VAD split in two costs little), and CPU seconds per second of audio
   (``time.process_time`` around each call; Whisper runs one thread). The same recognisers
   also hear each sentence straight from the synthesizer (no call, no VAD): the difference
   is what the call (Opus, the VAD's cuts, late packets on a loaded machine) costs.
4. **Capacity** (unless ``--no-capacity``): :mod:`bench.load_turns` with the server pinned to
   one core, for each recogniser at a few call counts, alternating: lost turns, transcripts
   right, reply latency and the outbound pacing.

Prints a summary, writes ``bench/results/asr.json`` and, with ``--docs``, replaces the
"Recognisers" section of ``docs/performance.md`` (which ``make bench`` keeps as it is).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import livetalk
from bench import load_turns
from bench.report import machine, replace_section
from bench.vad_paths import write
from livetalk.audio.resample import resample
from livetalk.audio.sources import ArraySource, SilenceSource, concat
from livetalk.server import serve
from livetalk.server.asr import (
    PocketSphinxTranscriber,
    StreamingTranscriber,
    Transcriber,
    TranscriptionHints,
)
from livetalk.server.tts import EspeakSynthesizer
from livetalk.server.whisper import WhisperTranscriber
from tests.speech_helpers import add_noise, word_errors

__all__ = ["SENTENCES", "VOICES", "run"]

RATE = 24000
SENTENCES = (
    "Could you book a table for us tonight",
    "My flight leaves from the east terminal this evening",
    "Please send the quarterly report to the finance team",
    "Remind me to water the plants on Sunday morning",
    "I would like to cancel my subscription",
    "What is the capital of Australia",
    "The quick brown fox jumps over the lazy dog",
    "How far is it to the nearest train station",
    "Turn off the lights in the living room",
    "Can you play some relaxing music",
    "I left my umbrella at the office yesterday",
    "What should I cook for dinner tonight",
    "The meeting has been moved to next Thursday afternoon",
    "Please read me the latest news headlines",
    "Is it going to rain this weekend",
    "Add milk, eggs and bread to my shopping list",
)
VOICES = (("en-us", 165), ("en-us+f2", 195))
SNRS: tuple[float | None, ...] = (None, 10.0)
GAP_S = 1.5
KEY = "sk-bench-asr"
CAPACITY_CALLS = (6, 12)
CAPACITY_SECONDS = 60.0


@dataclass
class Condition:
    """One set of turns: a voice, a speed, clean or noisy."""

    voice: str
    wpm: int
    snr_db: float | None
    sentences: list[str]
    pcm: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int16))
    direct: list[np.ndarray] = field(repr=False, default_factory=list)
    committed: list[np.ndarray] = field(repr=False, default_factory=list)
    live: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    turn_s: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        noise = "clean" if self.snr_db is None else f"{self.snr_db:g} dB SNR"
        return f"{self.voice} {self.wpm} wpm, {noise}"


def lay_out(condition: Condition, seed: int) -> None:
    """Synthesize the sentences in the condition's voice, 1.5 s apart, noise if any."""
    voice = EspeakSynthesizer(condition.voice, condition.wpm)
    rng = np.random.default_rng(1000 + seed)
    parts = [np.zeros(RATE // 2, dtype=np.int16)]
    bounds: list[tuple[float, float]] = []
    pos = parts[0].size
    for sentence in condition.sentences:
        native, rate = voice.synthesize(sentence)
        pcm = resample(native, rate, RATE)
        bounds.append((pos * 1000 / RATE, (pos + pcm.size) * 1000 / RATE))
        parts += [pcm, np.zeros(round(GAP_S * RATE), dtype=np.int16)]
        pos += pcm.size + parts[-1].size
        alone = np.concatenate([np.zeros(RATE // 4, np.int16), pcm, np.zeros(RATE // 2, np.int16)])
        if condition.snr_db is not None:
            edge = RATE // 4 * 1000 / RATE
            alone = add_noise(alone, RATE, [(edge, edge + pcm.size * 1000 / RATE)],
                              condition.snr_db, int(rng.integers(1 << 30)))
        condition.direct.append(alone)
    out = np.concatenate(parts)
    if condition.snr_db is not None:
        out = add_noise(out, RATE, bounds, condition.snr_db, seed)
    condition.pcm = out


class Capture:
    """A streaming transcriber that keeps every turn the server commits, then defers to
    ``inner`` (an early recognition the server drops is replaced by the whole turn)."""

    def __init__(self, inner: WhisperTranscriber) -> None:
        self.inner = inner
        self.turns: list[np.ndarray] = []

    @property
    def executor(self) -> Executor:
        return self.inner.executor

    def segments(self, pcm: np.ndarray, rate: int, hints: TranscriptionHints) -> Iterator[str]:
        last = self.turns[-1] if self.turns else None
        if last is not None and last.size <= pcm.size and np.array_equal(pcm[:last.size], last):
            # the server recognised this turn early, then the user went on: only the whole
            # turn is committed
            self.turns[-1] = pcm.copy()
        else:
            self.turns.append(pcm.copy())
        return self.inner.segments(pcm, rate, hints)

    def transcribe(self, pcm: np.ndarray, rate: int) -> str:
        return " ".join(self.segments(pcm, rate, TranscriptionHints()))


async def through_a_call(condition: Condition, whisper: WhisperTranscriber) -> None:
    """Stream the condition's turns in real time; keep what the server committed."""
    capture = Capture(whisper)
    assert isinstance(capture, StreamingTranscriber)
    committed_at: dict[str, float] = {}
    completed: list[tuple[str, float, str, float]] = []

    def tap(direction: str, event: dict[str, Any]) -> None:
        if direction != "in":
            return
        if event["type"] == "input_audio_buffer.committed":
            committed_at[event["item_id"]] = time.monotonic()
        elif event["type"] == "conversation.item.input_audio_transcription.completed":
            completed.append((event["item_id"], time.monotonic(), event["transcript"],
                              float(event["usage"]["seconds"])))

    session = {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1", "language": "en"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500,
                           "create_response": False}}}}
    async with serve(port=0, transcriber=capture) as server, livetalk.connect(
            base_url=server.base_url, api_key=KEY, session=session, event_log=tap) as call:
        await call.stream(concat(ArraySource(condition.pcm, RATE), SilenceSource(1.5)))
        deadline = time.monotonic() + 30
        while len(completed) < len(committed_at) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    condition.committed = capture.turns
    for item_id, at, text, seconds in completed:
        condition.live.append(text)
        condition.latency_ms.append((at - committed_at[item_id]) * 1000)
        condition.turn_s.append(seconds)


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Word error rate of the joined hypotheses against the joined references."""
    words = sum(len(r.split()) for r in references)
    return word_errors(" ".join(references), " ".join(hypotheses)) / words


def offline(recogniser: Transcriber, conditions: Sequence[Condition], *,
            direct: bool = False) -> dict[str, Any]:
    """Run one recogniser on every committed turn (or, ``direct``, on every sentence as
    synthesized): WER per condition, CPU per audio second."""
    cpu = audio = 0.0
    per: dict[str, float] = {}
    texts: dict[str, list[str]] = {}
    for condition in conditions:
        out = []
        for pcm in condition.direct if direct else condition.committed:
            start = time.process_time()
            out.append(recogniser.transcribe(pcm, RATE))
            cpu += time.process_time() - start
            audio += pcm.size / RATE
        per[condition.label] = round(wer(condition.sentences, out), 3)
        texts[condition.label] = out
    clean = [c for c in conditions if c.snr_db is None]
    noisy = [c for c in conditions if c.snr_db is not None]
    return {
        "wer_clean": round(_pooled(clean, texts), 3),
        "wer_noisy": round(_pooled(noisy, texts), 3),
        "wer_by_set": per,
        "cpu_s_per_audio_s": round(cpu / audio, 4),
        "transcripts": texts,
    }


def _pooled(conditions: Sequence[Condition], texts: dict[str, list[str]]) -> float:
    errors = sum(word_errors(" ".join(c.sentences), " ".join(texts[c.label]))
                 for c in conditions)
    words = sum(len(s.split()) for c in conditions for s in c.sentences)
    return errors / words if words else float("nan")


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p90": None, "max": None}
    arr = np.asarray(values)
    return {"n": int(arr.size), "median": round(float(np.median(arr)), 1),
            "p90": round(float(np.percentile(arr, 90)), 1), "max": round(float(arr.max()), 1)}


async def run(quick: bool, *, capacity: bool = True) -> dict[str, Any]:
    """The whole comparison; JSON-ready."""
    started = time.monotonic()
    info = machine()
    sentences = list(SENTENCES[:5] if quick else SENTENCES)
    conditions = [Condition(voice, wpm, snr, sentences)
                  for voice, wpm in VOICES for snr in SNRS]
    for seed, condition in enumerate(conditions):
        lay_out(condition, seed)
    load_started = time.perf_counter()
    whisper = WhisperTranscriber()
    load_s = time.perf_counter() - load_started
    for condition in conditions:
        print(f"  streaming {len(sentences)} turns: {condition.label}", flush=True)
        await through_a_call(condition, whisper)
    recognisers: dict[str, Transcriber] = {
        "pocketsphinx, no list (baseline)": PocketSphinxTranscriber(),
        "pocketsphinx, phrase list": PocketSphinxTranscriber(sentences),
        "whisper tiny.en (window 10 s)": whisper,
        "whisper tiny.en (window 30 s)": WhisperTranscriber(window_s=30),
    }
    offline_results, direct_results = {}, {}
    for name, recogniser in recognisers.items():
        print(f"  recognising offline: {name}", flush=True)
        offline_results[name] = offline(recogniser, conditions)
        direct_results[name] = offline(recogniser, conditions, direct=True)
    three_s = [ms for c in conditions for ms, s in zip(c.latency_ms, c.turn_s, strict=True)
               if 2.5 <= s <= 3.5]
    live = {
        "turns_committed": sum(len(c.committed) for c in conditions),
        "turns_said": sum(len(c.sentences) for c in conditions),
        "wer_clean": round(_pooled([c for c in conditions if c.snr_db is None],
                                   {c.label: c.live for c in conditions}), 3),
        "wer_noisy": round(_pooled([c for c in conditions if c.snr_db is not None],
                                   {c.label: c.live for c in conditions}), 3),
        "commit_to_completed_ms": _stats([ms for c in conditions for ms in c.latency_ms]),
        "commit_to_completed_ms_3s_turns": _stats(three_s),
        "whisper_load_s": round(load_s, 2),
    }
    result: dict[str, Any] = {
        "machine": {**info, "quick": quick},
        "settings": {"voices": [f"{v}@{w}" for v, w in VOICES], "snr_db": list(SNRS),
                     "sentences": sentences, "gap_s": GAP_S},
        "live_call": live, "offline": offline_results, "direct": direct_results,
    }
    if capacity:
        runs = []
        for calls in CAPACITY_CALLS:
            for asr in ("pocketsphinx", "whisper"):
                print(f"  capacity: {calls} calls, {asr}", flush=True)
                load = await load_turns.run(False, calls=calls, seconds=CAPACITY_SECONDS,
                                            asr=asr)
                runs.append({"asr": asr, "calls": calls, **load["load"]})
        result["capacity"] = runs
    result["machine"]["duration_s"] = round(time.monotonic() - started, 1)
    result["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def render(result: dict[str, Any]) -> str:
    """The summary tables (also pasted into docs/performance.md)."""
    base = result["offline"]["pocketsphinx, no list (baseline)"]
    lines = ["| Recogniser | WER clean, after the call | WER 10 dB, after the call | "
             "WER clean, direct | WER 10 dB, direct | CPU s per audio s | CPU vs baseline |",
             "|---|---|---|---|---|---|---|"]
    for name, r in result["offline"].items():
        d = result["direct"][name]
        ratio = r["cpu_s_per_audio_s"] / base["cpu_s_per_audio_s"]
        lines.append(f"| {name} | {r['wer_clean']:.1%} | {r['wer_noisy']:.1%} | "
                     f"{d['wer_clean']:.1%} | {d['wer_noisy']:.1%} | "
                     f"{r['cpu_s_per_audio_s']:.3f} | {ratio:.2f}x |")
    live = result["live_call"]
    lat, lat3 = live["commit_to_completed_ms"], live["commit_to_completed_ms_3s_turns"]
    lines += [
        "",
        f"Live call (Whisper, window 10 s): {live['turns_committed']} turns committed for "
        f"{live['turns_said']} said; WER clean {live['wer_clean']:.1%}, 10 dB "
        f"{live['wer_noisy']:.1%}; commit -> transcription.completed median {lat['median']} "
        f"ms, p90 {lat['p90']} ms, max {lat['max']} ms; for 2.5-3.5 s turns (n={lat3['n']}) "
        f"median {lat3['median']} ms, p90 {lat3['p90']} ms; model loaded in "
        f"{live['whisper_load_s']} s.",
    ]
    if "capacity" in result:
        lines += ["", "| Recogniser | Calls | Turns right / expected | Lost | Reply median "
                  "(ms) | Frames > 20 ms late | Lateness p99 (ms) | Server core |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in result["capacity"]:
            lines.append(
                f"| {r['asr']} | {r['calls']} | {r['user_turns_correct']} / "
                f"{r['user_turns_expected']} | {r['lost_turns']} | {r['reply_ms_median']} | "
                f"{r['late_frames']} / {r['frames']} | {r['lateness_p99_ms']} | "
                f"{r['server_core_share']:.0%} |")
    return "\n".join(lines)


SECTION = "recognisers"
"""The section of ``docs/performance.md`` this bench owns (see bench.report.replace_section)."""
DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def docs_section(result: dict[str, Any]) -> str:
    """The "Recognisers" section of ``docs/performance.md`` for one run."""
    info = result["machine"]
    load = ", ".join(map(str, info["load_avg"]))
    load_end = ", ".join(map(str, info.get("load_avg_end", [])))
    voices = ", ".join(f"`{v}`" for v in result["settings"]["voices"])
    return f"""## Recognisers

`python -m bench.asr --docs` (also part of `make bench-more`; about 15 minutes). Run on
{info['date']}, {info['cpu']}, {info['cores']} cores, **shared with other developers** (load
average {load} at the start, {load_end} at the end): latencies and the capacity runs are
inflated by that load; word error rates and CPU seconds are not.

**Turns**: {len(result['settings']['sentences'])} everyday sentences x eSpeak NG voices
{voices} (voice@words per minute) x clean and white noise at 10 dB SNR =
{result['live_call']['turns_said']} turns, 1.5 s apart, streamed in real time through a
WebRTC call (Opus both ways) to the local server (server VAD 500 ms). Every recogniser then
hears the same committed turns, as the server received them ("after the call"), and each
sentence as synthesized ("direct", no call). Word error rate: substitutions, insertions and
deletions over the reference words, case and punctuation ignored, turns of a set joined (a
turn the VAD split costs little). The baseline is pocketsphinx without a phrase list, the
recogniser the server had without one.

{render(result)}

What it says:

{_verdicts(result)}
"""


WHISPER = "whisper tiny.en (window 10 s)"
GOALS = "Goals of issue 18"


def _verdicts(result: dict[str, Any]) -> str:
    """The goals against this run's figures, and what else the tables say."""
    whisper, full = result["offline"][WHISPER], result["offline"]["whisper tiny.en (window 30 s)"]
    lat3 = result["live_call"]["commit_to_completed_ms_3s_turns"]

    def row(what: str, goal: str, value: float | None, limit: float, shown: str) -> str:
        met = value is not None and value <= limit
        return f"| {what} | {goal} | {shown} | {'met' if met else 'MISSED'} |"

    lines = [f"| {GOALS} | Goal | Measured | Result |", "|---|---|---|---|",
             row("Whisper WER, clean, no phrase list", "<= 10 %", whisper["wer_clean"], 0.10,
                 f"{whisper['wer_clean']:.1%}"),
             row("Whisper WER, 10 dB SNR, no phrase list", "<= 20 %", whisper["wer_noisy"],
                 0.20, f"{whisper['wer_noisy']:.1%}"),
             row("Whisper CPU per second of audio", "<= 0.1 s", whisper["cpu_s_per_audio_s"],
                 0.1, f"{whisper['cpu_s_per_audio_s']:.3f} s"),
             row("commit -> transcript, 3 s turns (median)", "<= 300 ms", lat3["median"], 300,
                 f"{lat3['median']} ms (p90 {lat3['p90']} ms, n={lat3['n']})")]
    cpu_ratio = full["cpu_s_per_audio_s"] / whisper["cpu_s_per_audio_s"]
    lines += ["", f"- The 10 s window costs 1/{cpu_ratio:.1f} of the CPU of Whisper's own 30 s "
              f"window; WER {whisper['wer_clean']:.1%} against {full['wer_clean']:.1%} clean, "
              f"{whisper['wer_noisy']:.1%} against {full['wer_noisy']:.1%} under noise (where "
              "the 30 s window loops on made-up text)."]
    runs = result.get("capacity", [])
    if runs:
        top = max(r["calls"] for r in runs)
        per = {r["asr"]: r["server_core_share"] / r["calls"] for r in runs if r["calls"] == top}
        lost = sum(r["lost_turns"] for r in runs)
        estimate = ", ".join(f"{asr} about {1 / share:.0f}" for asr, share in per.items())
        lines += [f"- Capacity (`bench/load_turns.py`: server pinned to core 1, client to core "
                  "0, five phrases on a loop, hot words for Whisper, the phrase list for "
                  f"pocketsphinx): {lost} turns lost in all runs. At {top} calls the server's "
                  "core share per call puts the speaking calls one core can carry at: "
                  f"{estimate} (an extrapolation: the runs did not saturate the core). The "
                  "late frames are the client's own pacing, on a machine other developers "
                  "were using."]
    return "\n".join(lines)


def write_docs(result: dict[str, Any]) -> Path:
    """Replace (or append) the recognisers section of ``docs/performance.md``."""
    page = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    DOCS.write_text(replace_section(page, SECTION, docs_section(result)))
    return DOCS


def main() -> None:
    """Parse the command line, run, print the tables, write the JSON (and the docs)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="five sentences per set")
    parser.add_argument("--no-capacity", action="store_true", help="skip the load runs")
    parser.add_argument("--docs", action="store_true",
                        help="write the figures into docs/performance.md")
    args = parser.parse_args()
    result = asyncio.run(run(args.quick, capacity=not args.no_capacity))
    print(render(result))
    print(f"written to {write('asr', result)}")
    if args.docs:
        print(f"and to {write_docs(result)}")


if __name__ == "__main__":
    main()
