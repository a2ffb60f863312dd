"""Route every user turn to a slow host agent, with barge-ins: is any answer lost?

``python -m bench.routing [--turns 20] [--speed 2]`` runs the check of issue 12 against the local
server over a real WebRTC call: ``--turns`` scripted user turns (espeak-ng, the demo phrases),
a host agent (``connect(route=...)``) that takes a random 0.5-4 s (wall time) per answer, the
user cutting in on 30 % of the answers while they play, and the stream ending without trailing
silence (``call.finish()`` ends the call). It checks that every user turn got exactly one
answer, spoken (``completed``) or cut by the user (``cancelled``), that none was lost, and that
a :class:`~livetalk.turnlog.SqliteTurnLog` holds each turn once, in order; and it measures the
time from the end of the user's speech (``speech_stopped``) to the first audio of the answer
(``output_audio_buffer.started``), less the agent's own delay: livetalk's overhead on the
host-routing path. The baseline, run in the same process right before, is the same script
with the model answering (no ``route``, no agent delay): its end-of-speech to first-audio time
is the local server's own response path, and the routed overhead is reported against it as a
ratio. It prints a summary and writes ``bench/results/routing.json`` (``--docs`` also writes
the "routing" section of ``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import livetalk
from bench.report import machine, replace_section
from livetalk.protocol.conversation import Turn, TurnStatus
from livetalk.protocol.session import SessionConfig, Transcription
from livetalk.server import serve
from livetalk.testing import shared_synthesizer, speech
from livetalk.turnlog import SqliteTurnLog
from tests.speech_helpers import DEMO_PHRASES

KEY = "sk-bench-routing"
ROOT = Path(__file__).resolve().parent.parent
BARGE_IN_SHARE = 0.3
BARGE_IN_AFTER_S = 0.6


async def run(turns: int = 20, speed: float = 2.0, seed: int = 12, *,
              routed: bool = True) -> dict[str, Any]:
    """One run of the script; ``routed=False`` is the baseline (the model answers)."""
    rng = random.Random(seed)
    phrases = [DEMO_PHRASES[i % len(DEMO_PHRASES)] for i in range(turns)]
    barge = {i for i in range(turns - 1) if rng.random() < BARGE_IN_SHARE}
    delays: dict[str, float] = {}
    events: list[tuple[float, str, dict[str, Any]]] = []

    async def agent(turn: Turn) -> str:
        delay = rng.uniform(0.5, 4.0)
        delays[turn.item_id] = delay
        await asyncio.sleep(delay)
        return f"Here is the answer to question {turn.index // 2 + 1}, " + turn.text + "."

    def tap(direction: str, event: dict[str, Any]) -> None:
        if direction == "in":
            events.append((time.monotonic(), event["type"], event))

    shared_synthesizer()
    log = SqliteTurnLog(":memory:")
    started = time.monotonic()
    async with serve(port=0, phrases=DEMO_PHRASES, realtime_factor=speed) as server:
        async with livetalk.connect(base_url=server.base_url, api_key=KEY, speed=speed,
                                    session=SessionConfig(transcription=Transcription()),
                                    route=agent if routed else None, turn_log=log,
                                    event_log=tap) as call:
            answered = 0
            for i, phrase in enumerate(phrases):
                last = i == len(phrases) - 1
                await call.stream(speech(phrase, silence_after_s=0 if last else 0.9))
                if last:
                    break
                if i in barge:  # cut in while its answer plays
                    await _answer_playing(call, answered)
                    await asyncio.sleep(BARGE_IN_AFTER_S / speed)
                else:
                    await call.wait_until_quiet(timeout=120)
                answered += 1
            await call.finish(timeout=120)
    wall = time.monotonic() - started
    all_turns = call.turns_so_far
    users = [t for t in all_turns if t.role == "user"]
    answers = [t for t in all_turns if t.role == "assistant"]
    stored = [r["item_id"] for r in log.records()]
    overheads = _overheads(events, users, answers, delays)
    after_text = _overheads(events, users, answers, delays,
                            start="conversation.item.input_audio_transcription.completed")
    result = {
        "routed": routed, "turns": turns, "speed": speed, "barge_ins_planned": len(barge),
        "wall_s": round(wall, 1),
        "user_turns": len(users), "answers": len(answers),
        "completed": sum(a.status is TurnStatus.COMPLETED for a in answers),
        "cancelled": sum(a.status is TurnStatus.CANCELLED for a in answers),
        "lost": max(0, len(users) - len(answers)),
        "turn_log_once_in_order": stored == [t.item_id for t in all_turns],
        "overhead_ms": {"median": _round(statistics.median(overheads)) if overheads else None,
                        "p90": _round(_pct(overheads, 90)), "n": len(overheads)},
        "after_transcript_ms": {
            "median": _round(statistics.median(after_text)) if after_text else None,
            "p90": _round(_pct(after_text, 90)), "n": len(after_text)},
        "machine": machine(),
    }
    return result


async def _answer_playing(call: livetalk.Call, answered: int) -> None:
    """Wait until the audio of answer number ``answered`` (0-based) starts playing."""
    seen = 0
    async for event in call.events():
        if event.type == "output_audio_buffer.started":
            if seen == answered:
                return
            seen += 1


def _overheads(events: list[tuple[float, str, dict[str, Any]]], users: list[Turn],
               answers: list[Turn], delays: dict[str, float], *,
               start: str = "input_audio_buffer.speech_stopped") -> list[float]:
    """Per answered turn: ``start`` (an event of the user item) -> output_audio_buffer.started,
    less the agent's delay."""
    stopped = {e["item_id"]: t for t, kind, e in events if kind == start}
    started = {e["response_id"]: t for t, kind, e in events
               if kind == "output_audio_buffer.started"}
    out = []
    for user, answer in zip(users, answers, strict=False):
        t_stop = stopped.get(user.item_id)
        t_audio = started.get(answer.response_id or "")
        if t_stop is not None and t_audio is not None:
            out.append((t_audio - t_stop - delays.get(user.item_id, 0.0)) * 1000)
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def compare(turns: int, speed: float) -> dict[str, Any]:
    """The baseline (the model answers), then the routed run, in one process."""
    baseline = await run(turns, speed, routed=False)
    routed = await run(turns, speed, routed=True)
    base_ms, routed_ms = baseline["overhead_ms"]["median"], routed["overhead_ms"]["median"]
    ratio = round(routed_ms / base_ms, 2) if base_ms and routed_ms else None
    return {"baseline": baseline, "routed": routed, "overhead_ratio": ratio,
            "machine": routed["machine"]}


HEADER = ("| run | user turns | answers | completed | cancelled (barge-in) | lost | "
          "turn log once, in order | latency median (ms) | p90 (ms) | from the transcript, "
          "median (ms) |\n|---|---|---|---|---|---|---|---|---|---|")


def docs_section(result: dict[str, Any]) -> str:
    """The "routing" section of ``docs/performance.md`` for one :func:`compare` result."""
    base, routed, info = result["baseline"], result["routed"], result["machine"]
    load = ", ".join(map(str, info.get("load_avg", [])))

    def row(name: str, r: dict[str, Any]) -> str:
        o = r["overhead_ms"]
        return (f"| {name} | {r['user_turns']} | {r['answers']} | {r['completed']} | "
                f"{r['cancelled']} | {r['lost']} | {'yes' if r['turn_log_once_in_order'] else 'NO'}"
                f" | {o['median']} | {o['p90']} | {r['after_transcript_ms']['median']} |")

    return f"""## Host routing (issue 12)

`python -m bench.routing --docs` (in `make bench-more`), {info.get('date', '')},
{info.get('cpu', '')}, load average {load}: {routed['turns']} scripted user turns at media
speed {routed['speed']} over a real WebRTC call to the local server; on
{routed['barge_ins_planned']} of them the user cuts in while the answer plays, and the stream
ends without trailing silence (`call.finish()`). Routed: every user turn goes to a host agent
(`connect(route=...)`) that takes 0.5-4 s; baseline, in the same process just before: the
same script with the model answering. Latency: end of the user's speech
(`speech_stopped`) to the answer's first audio (`output_audio_buffer.started`), less the
agent's own delay.

{HEADER}
{row("baseline: the model answers", base)}
{row("routed to the host agent", routed)}

Routed latency against the baseline: **{result['overhead_ratio']}x** the local server's own
response path (the ratio is what to compare across machines; the absolute figures move with
the load). On the local server the model's own answer also waits for the transcript (its
brain reads text), so the two runs start from the same point. Against the real API the model
can answer from the end of speech, while your agent needs the user's words, which arrive with
`input_audio_transcription.completed`: the last column measures from there, the time livetalk
and the server add between the transcript and the answer's first audio (the turn released to
your handler, `say()`, `response.create`, synthesis), less the agent's own delay.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--speed", type=float, default=2.0)
    parser.add_argument("--docs", action="store_true",
                        help="write the routing section of docs/performance.md")
    args = parser.parse_args()
    result = asyncio.run(compare(args.turns, args.speed))
    out = ROOT / "bench" / "results" / "routing.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for name in ("baseline", "routed"):
        print(name, json.dumps({k: v for k, v in result[name].items() if k != "machine"}))
    print("overhead ratio (routed / baseline):", result["overhead_ratio"])
    routed = result["routed"]
    ok = routed["lost"] == 0 and routed["answers"] == routed["user_turns"] and (
        routed["turn_log_once_in_order"])
    print("PASS" if ok else "FAIL: an answer was lost or stored twice")
    if args.docs:
        docs = ROOT / "docs" / "performance.md"
        docs.write_text(replace_section(docs.read_text(), "routing", docs_section(result)))
        print(f"wrote {docs.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
