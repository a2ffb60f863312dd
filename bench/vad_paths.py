"""Server VAD, local VAD and batch: how long after the end of speech each path answers.

``python -m bench.vad_paths [--quick]`` synthesizes a multi-turn recording with known phrase
boundaries (``tests/speech_helpers.make_turns``), starts ``livetalk serve`` in its own process
and feeds the recording in real time through each path:

* ``server``: ``livetalk.connect()`` with server VAD (``silence_duration_ms`` 500, the API's
  default); the server detects, commits, transcribes and answers.
* ``local``: ``livetalk.connect(vad="local")`` (``LocalVAD()``, a 700 ms hangover); livetalk
  detects each turn on the audio it sends, commits it and asks for the reply.
* ``batch``: :func:`livetalk.localvad.batch_turns` on the same audio paced like a microphone
  (100 ms blocks); each detected turn is posted to ``/audio/transcriptions``. No reply.

Every figure is measured from the **true** end of each phrase in the sent timeline (the wall
time at which the 20 ms frame holding the phrase's last audible sample went out, or, for
batch, at which that sample was "spoken"), so the VAD hangover is part of it: to the
``conversation.item.input_audio_transcription.completed`` event (batch: the turn yielded) and
to the first loud 20 ms of reply audio received. It prints a table and writes
``bench/results/vad_paths.json``. :func:`run` is the entry point for ``bench.run_all``;
:func:`measure_call`, :class:`ServerProcess` and :class:`LoopSource` are reused by
:mod:`bench.loss` and :mod:`bench.load_turns`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import livetalk
from bench.report import machine
from livetalk.audio.sources import SilenceSource
from livetalk.localvad import LocalVAD, batch_turns
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from livetalk.server.asr import normalize_phrase
from tests.speech_helpers import FIVE_PHRASES, Turns, make_turns

__all__ = [
    "LoopSource",
    "PacedSource",
    "PathResult",
    "ServerProcess",
    "TurnTiming",
    "measure_batch",
    "measure_call",
    "recording",
    "run",
    "summarize",
]

API_KEY = "sk-bench-local"
RATE = 24000
GAP_S = 6.0
"""Silence after each phrase: long enough for the previous reply to play out, so no turn
barges in on a reply."""
SERVER_SILENCE_MS = 500
LOUD = 1000
"""Peak (int16) above which received audio counts as reply speech."""
RESULTS = Path(__file__).resolve().parent / "results"


def recording(phrases: Sequence[str], *, repeats: int = 1, gap_s: float = GAP_S,
              snr_db: float | None = None) -> tuple[Turns, list[str]]:
    """The phrases ``repeats`` times over, ``gap_s`` apart; returns the turns and the
    expected transcript of each phrase, in order."""
    said = list(phrases) * repeats
    turns = make_turns(said, [gap_s] * (len(said) - 1), RATE, lead_s=1.0, tail_s=gap_s,
                       snr_db=snr_db, seed=3)
    return turns, said


@dataclass
class TurnTiming:
    """One phrase of the recording and what became of it.

    Attributes:
        expected: the phrase that was spoken.
        transcript: the user transcript attributed to it (None: lost).
        transcript_ms: true end of speech to the transcript, in ms.
        reply_ms: true end of speech to the first loud reply audio, in ms (None: no reply).
    """

    expected: str
    transcript: str | None = None
    transcript_ms: float | None = None
    reply_ms: float | None = None

    @property
    def correct(self) -> bool:
        """The transcript is the phrase said (case and punctuation aside: Whisper adds them)."""
        return (self.transcript is not None
                and normalize_phrase(self.transcript) == normalize_phrase(self.expected))


@dataclass
class PathResult:
    """The timings of one run of one path, plus what the client's outbound track saw."""

    path: str
    turns: list[TurnTiming]
    replies_completed: int = 0
    extra_transcripts: int = 0
    track: dict[str, Any] = field(default_factory=dict)
    lateness_ms: list[float] = field(default_factory=list, repr=False)
    """Send lateness of every frame that carried audio (left out of the JSON)."""

    def to_json(self) -> dict[str, Any]:
        """The result without the per-frame lateness."""
        out = asdict(self)
        del out["lateness_ms"]
        return out

    def add_transcripts(self, ends: list[float], got: list[tuple[float, str]]) -> None:
        """Give each (arrival time, text) to the latest phrase ending before it, if still
        without a transcript; count the others as extra."""
        for when, text in got:
            i = _attribute(ends, when)
            if i is None or self.turns[i].transcript is not None:
                self.extra_transcripts += 1
                continue
            self.turns[i].transcript = text
            self.turns[i].transcript_ms = (when - ends[i]) * 1000


class PacedSource:
    """An array delivered like a microphone: each 100 ms block once it has been "spoken".

    ``start`` (``time.monotonic()``) is set when the first block is requested; sample ``k``
    is spoken at ``start + k / rate``.
    """

    def __init__(self, pcm: np.ndarray, rate: int, *, block_ms: int = 100) -> None:
        self.rate = rate
        self._pcm = pcm
        self._block = rate * block_ms // 1000
        self.start: float | None = None

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._blocks()

    async def _blocks(self) -> AsyncIterator[np.ndarray]:
        self.start = time.monotonic()
        for pos in range(0, self._pcm.size, self._block):
            end = min(pos + self._block, self._pcm.size)
            delay = self.start + end / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield self._pcm[pos:end]

    async def aclose(self) -> None:
        """Nothing to release (the Source protocol)."""


class ServerProcess:
    """``livetalk serve`` in a child process (optionally pinned to one core).

    ``async with ServerProcess(phrases, faults=["rtp-loss=0.05"], cpu=1) as srv:`` then
    connect to :attr:`base_url`; :meth:`cpu_seconds` reads the child's CPU time so far.
    ``asr`` is the recogniser (``--asr``): pocketsphinx on the phrase list by default, as these
    benches have always measured; ``whisper`` gets the phrases as hot words.
    """

    def __init__(self, phrases: Sequence[str], *, faults: Sequence[str] = (),
                 cpu: int | None = None, asr: str = "pocketsphinx") -> None:
        self.phrases = list(phrases)
        self.asr = asr
        self.faults = list(faults)
        self.cpu = cpu
        self.base_url = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._phrase_file: str | None = None

    async def __aenter__(self) -> ServerProcess:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(sorted(set(self.phrases))) + "\n")
            self._phrase_file = f.name
        args = [sys.executable, "-m", "livetalk", "serve", "--port", "0",
                "--phrases", self._phrase_file, "--asr", self.asr]
        for fault in self.faults:
            args += ["--fault", fault]
        cpu = self.cpu
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None)
        assert self._proc.stdout is not None
        line = (await asyncio.wait_for(self._proc.stdout.readline(), 60)).decode()
        if not line.startswith("listening on "):
            await self.__aexit__()
            raise RuntimeError(f"livetalk serve did not start: {line!r}")
        self.base_url = line.split()[-1]
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        assert self._proc is not None
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._phrase_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._phrase_file)


def _attribute(ends: list[float], when: float) -> int | None:
    """Index of the latest phrase that ended before ``when`` (None: before the first)."""
    index = None
    for i, end in enumerate(ends):
        if end <= when:
            index = i
    return index


def _reply_onsets(audio: list[tuple[float, int]], quiet_ms: float = 200) -> list[float]:
    """Arrival times of the first loud chunk after at least ``quiet_ms`` of quiet chunks."""
    onsets: list[float] = []
    quiet_since: float | None = 0.0
    for t, peak in audio:
        if peak > LOUD:
            if quiet_since is not None and (not onsets or t - quiet_since >= quiet_ms / 1000):
                onsets.append(t)
            quiet_since = None
        elif quiet_since is None:
            quiet_since = t
    return onsets


class LoopSource:
    """A recording played over and over for ``seconds`` of media (the load test's voice)."""

    def __init__(self, pcm: np.ndarray, rate: int, seconds: float, *,
                 chunk_ms: int = 100) -> None:
        self.rate = rate
        self._pcm = pcm
        self._total = round(seconds * rate)
        self._chunk = rate * chunk_ms // 1000

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[np.ndarray]:
        for start in range(0, self._total, self._chunk):
            pos = start % self._pcm.size
            n = min(self._chunk, self._total - start, self._pcm.size - pos)
            yield self._pcm[pos:pos + n]

    async def aclose(self) -> None:
        """Nothing to release (the Source protocol)."""


async def measure_call(base_url: str, turns: Turns, said: Sequence[str], *,
                       vad: str | LocalVAD = "server", path: str | None = None,
                       seconds: float | None = None) -> PathResult:
    """Feed ``turns`` through one live call and time every phrase (see the module docstring).

    Args:
        base_url: the server.
        turns: the recording; ``said`` its phrases in order.
        vad: ``"server"``, ``"local"`` or a :class:`LocalVAD`.
        path: the label of the result (default: ``vad``).
        seconds: feed the recording in a loop for this many seconds of media (phrases whose
            end was not sent are not counted); None: once.
    """
    config = SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                           turn_detection=ServerVAD(silence_duration_ms=SERVER_SILENCE_MS))
    sent: list[tuple[float, float]] = []  # (played_ms, wall time the frame went out)
    transcripts: list[tuple[float, str]] = []
    audio: list[tuple[float, int]] = []
    replies = 0

    def tap(direction: str, event: dict[str, Any]) -> None:
        nonlocal replies
        if direction != "in":
            return
        kind = event.get("type")
        if kind == "conversation.item.input_audio_transcription.completed":
            transcripts.append((time.monotonic(), str(event.get("transcript", ""))))
        elif kind == "response.done" and event["response"].get("status") == "completed":
            replies += 1

    pass_ms = turns.pcm.size * 1000 / turns.rate
    media_ms = pass_ms if seconds is None else seconds * 1000
    async with livetalk.connect(base_url=base_url, api_key=API_KEY, session=config, vad=vad,
                                event_log=tap) as call:
        track = call.outbound_track
        track.on_frame_sent = lambda played_ms: sent.append((played_ms, time.monotonic()))

        async def listen() -> None:
            async for chunk in call.audio_chunks():
                audio.append((time.monotonic(), int(np.abs(chunk).max(initial=0))))

        listener = asyncio.ensure_future(listen())
        await call.stream(LoopSource(turns.pcm, turns.rate, media_ms / 1000))
        await call.stream(SilenceSource(1.0))
        await call.wait_until_quiet(timeout=15)
        stats: dict[str, Any] = asdict(track.statistics())
        await call.close()
        await listener
    passes = int(media_ms // pass_ms) + 1
    ends_ms = [k * pass_ms + end for k in range(passes) for _, end in turns.bounds_ms
               if k * pass_ms + end < media_ms]
    played = np.array([p for p, _ in sent])
    wall = np.array([t for _, t in sent])
    ends = [float(wall[min(int(np.searchsorted(played, e)), wall.size - 1)]) for e in ends_ms]
    offsets = wall - played / 1000  # a frame sent late sits above the earliest offset
    lateness = (offsets - offsets.min()) * 1000
    stats.update(lateness_p50_ms=round(float(np.percentile(lateness, 50)), 2),
                 lateness_p99_ms=round(float(np.percentile(lateness, 99)), 2))
    labels = (list(said) * passes)[:len(ends)]
    result = PathResult(path=path or str(vad), turns=[TurnTiming(s) for s in labels],
                        replies_completed=replies, track=stats,
                        lateness_ms=lateness.round(2).tolist())
    result.add_transcripts(ends, transcripts)
    for when in _reply_onsets(audio):
        i = _attribute(ends, when)
        if i is not None and result.turns[i].reply_ms is None:
            result.turns[i].reply_ms = (when - ends[i]) * 1000
    return result


async def measure_batch(base_url: str, turns: Turns, said: Sequence[str]) -> PathResult:
    """Run :func:`batch_turns` on the recording paced in real time; time every phrase."""
    source = PacedSource(turns.pcm, turns.rate)
    result = PathResult(path="batch", turns=[TurnTiming(s) for s in said])
    got: list[tuple[float, str]] = []
    async for turn in batch_turns(source, base_url=base_url, api_key=API_KEY):
        got.append((time.monotonic(), turn.text))
    assert source.start is not None
    ends = [source.start + end / 1000 for _, end in turns.bounds_ms]
    result.add_transcripts(ends, got)
    return result


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p90": None}
    return {"n": len(values), "median": round(float(np.median(values)), 1),
            "p90": round(float(np.percentile(values, 90)), 1)}


def summarize(results: Sequence[PathResult]) -> dict[str, Any]:
    """Merge the runs of one path: turn counts, transcript and reply latency stats."""
    turns = [t for r in results for t in r.turns]
    return {
        "turns": len(turns),
        "transcribed": sum(t.transcript is not None for t in turns),
        "correct": sum(t.correct for t in turns),
        "extra_transcripts": sum(r.extra_transcripts for r in results),
        "replies_completed": sum(r.replies_completed for r in results),
        "transcript_ms": _stats([t.transcript_ms for t in turns if t.transcript_ms is not None]),
        "reply_ms": _stats([t.reply_ms for t in turns if t.reply_ms is not None]),
    }


def _cell(stats: dict[str, Any]) -> str:
    if not stats["n"]:
        return "-"
    return f"{stats['median']:.0f} / {stats['p90']:.0f} (n={stats['n']})"


def render(summary: dict[str, dict[str, Any]]) -> str:
    """The side-by-side table (medians / p90 in ms, from the true end of speech)."""
    lines = [f"{'path':<8} {'turns ok':>9}  {'to transcript: median / p90':<30} "
             f"{'to first reply audio: median / p90':<36}"]
    for name, s in summary.items():
        ok = f"{s['correct']:>4}/{s['turns']:<4}"
        lines.append(f"{name:<8} {ok}  {_cell(s['transcript_ms']):<30} "
                     f"{_cell(s['reply_ms']):<36}")
    return "\n".join(lines)


async def run(quick: bool) -> dict[str, Any]:
    """Measure the three paths; returns the JSON-ready result (also written to
    ``bench/results/vad_paths.json`` by :func:`main`).

    Quick: three phrases once per path (about 1.5 min). Full: five phrases, twice per path
    (about 5 min).
    """
    phrases = FIVE_PHRASES[:3] if quick else FIVE_PHRASES
    turns, said = recording(phrases, repeats=1 if quick else 2)
    t0 = time.monotonic()
    runs: dict[str, list[PathResult]] = {"server": [], "local": [], "batch": []}
    async with ServerProcess(phrases) as server:
        runs["server"].append(await measure_call(server.base_url, turns, said, vad="server"))
        runs["local"].append(await measure_call(server.base_url, turns, said, vad="local"))
        runs["batch"].append(await measure_batch(server.base_url, turns, said))
    return {
        "machine": {**machine(), "quick": quick, "duration_s": round(time.monotonic() - t0, 1)},
        "settings": {"server_vad_silence_ms": SERVER_SILENCE_MS,
                     "local_vad_silence_ms": LocalVAD().silence_ms, "gap_s": GAP_S,
                     "phrases": len(said)},
        "paths": {name: summarize(r) for name, r in runs.items()},
        "runs": {name: [x.to_json() for x in r] for name, r in runs.items()},
    }


def write(name: str, result: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json``; returns its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def main() -> None:
    """Parse ``--quick``, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="three phrases, one run per path")
    args = parser.parse_args()
    result = asyncio.run(run(args.quick))
    print(render(result["paths"]))
    print(f"written to {write('vad_paths', result)}")


if __name__ == "__main__":
    main()
