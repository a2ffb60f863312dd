"""Rendering of a benchmark run: the console table, ``latest.json`` and ``docs/performance.md``."""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

__all__ = [
    "Row",
    "keep_sections",
    "machine",
    "render_markdown",
    "render_table",
    "replace_section",
    "write_json",
]


@dataclass
class Row:
    """One line of the results table."""

    stage: str
    goal: str
    measured: str
    baseline: str
    ratio: float | None
    met: bool | None
    reason: str = ""

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "info"
        return "met" if self.met else f"MISSED: {self.reason}"


def machine() -> dict[str, Any]:
    """CPU model, cores, load, Python and library versions, date."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "aiortc": version("aiortc"),
        "av": version("av"),
        "numpy": version("numpy"),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_table(rows: list[Row]) -> str:
    """A fixed-width console table."""
    head = ("stage", "goal", "livetalk", "baseline", "ratio", "result")
    body = [(r.stage, r.goal, r.measured, r.baseline,
             "" if r.ratio is None else f"{r.ratio:.2f}", r.verdict) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, info: dict[str, Any], rows: list[Row], details: dict[str, Any]) -> None:
    """Write everything measured to ``path`` (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": info, "rows": [asdict(r) | {"verdict": r.verdict} for r in rows],
            "details": details}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _md_table(rows: list[Row]) -> str:
    out = ["| Stage | Goal | livetalk | Baseline | Ratio | Result |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        out.append(f"| {r.stage} | {r.goal} | {r.measured} | {r.baseline} | {ratio} | "
                   f"{r.verdict} |")
    return "\n".join(out)


def _load_table(runs: list[dict[str, Any]]) -> str:
    out = ["| Client | Calls | CPU ms per call-second | Core share | Send lateness p50 / p99 / max"
           " (ms) | Frames > 20 ms late | Loop lag p99 (ms) | Audio received |",
           "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        out.append(
            f"| {r['impl']} | {r['calls']} | {r['cpu_ms_per_call_s']} | {r['core_share']:.0%} | "
            f"{r['late_p50_ms']} / {r['late_p99_ms']} / {r['late_max_ms']} | "
            f"{r['late_over_20ms']:.1%} | {r['loop_lag_p99_ms']} | {r['received_share']:.0%} |")
    return "\n".join(out)


def _server_table(runs: list[dict[str, Any]]) -> str:
    out = ["| Server reply tracks | Calls | Server CPU ms per call-second | Client CPU ms per "
           "call-second | Audio received |", "|---|---|---|---|---|"]
    for r in runs:
        out.append(f"| {r['server_track']} | {r['calls']} | {r['server_cpu_ms_per_call_s']} | "
                   f"{r['cpu_ms_per_call_s']} | {r['received_share']:.0%} |")
    return "\n".join(out)


def _jitter_table(runs: list[dict[str, Any]]) -> str:
    out = ["| Jitter | Loss | Receiver | One way down (ms) | Underruns (ms/min) | Concealed "
           "(ms/min) | Missing (ms/min) | Glitches (ms/min) |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["jitter_ms"], r["loss"], r["impl"])):
        name = "livetalk (adaptive)" if r["impl"] == "livetalk" else "aiortc default"
        out.append(f"| {r['jitter_ms']:g} ms | {r['loss']:.0%} | {name} | {r['down_ms']:.0f} | "
                   f"{r['underrun_ms_per_min']:.0f} | {r['concealed_ms_per_min']:.0f} | "
                   f"{r['missing_ms_per_min']:.0f} | {r['glitch_ms_per_min']:.0f} |")
    return "\n".join(out)


def _server_capacity_table(runs: list[dict[str, Any]]) -> str:
    out = ["| Speaking calls | Server CPU ms per call-second | Server core share | Audio "
           "received by the clients | Client send lateness p99 (ms) |", "|---|---|---|---|---|"]
    for r in runs:
        out.append(f"| {r['calls']} | {r['server_cpu_ms_per_call_s']} | "
                   f"{r['server_core_share']:.0%} | {r['received_share']:.0%} | "
                   f"{r['late_p99_ms']} |")
    return "\n".join(out)


def _profile_table(profile: dict[str, Any]) -> str:
    out = ["| Function | Calls | Own ms | Cumulative ms |", "|---|---|---|---|"]
    for r in profile.get("top", []):
        out.append(f"| `{r['function']}` | {r['calls']} | {r['own_ms']} | {r['cumulative_ms']} |")
    return "\n".join(out)


def render_markdown(info: dict[str, Any], rows: list[Row], details: dict[str, Any],
                    *, quick: bool) -> str:
    """The whole ``docs/performance.md``: figures of this run plus how to read them."""
    machine_line = (f"{info['cpu']}, {info['cores']} cores (load average at start "
                    f"{', '.join(map(str, info['load_avg']))}), {info['os']}; Python "
                    f"{info['python']}, aiortc {info['aiortc']}, av {info['av']}, numpy "
                    f"{info['numpy']}. Run on {info['date']}"
                    + (" with `--quick` (smoke sizes: do not quote these figures)." if quick
                       else "."))
    load = details.get("cpu", []) + details.get("capacity", [])
    profile = details.get("profile", {})
    server = details.get("server", [])
    jitter = details.get("jitter", [])
    server_capacity = details.get("server_capacity", [])
    return f"""# Performance

This page is generated by `make bench` (`python -m bench.run_all`); the raw figures are in
`bench/results/latest.json`. Every figure compares livetalk with a minimal raw-aiortc client
(`bench/raw_client.py`: `RTCPeerConnection`, the `oai-events` channel, a paced 48 kHz mono track
in the style of aiortc's `AudioStreamTrack`, an httpx POST, aiortc defaults) measured in the
same run, alternating the two; the tables show medians. The machines are shared and noisy:
read the ratios, not the absolute values, and re-run before quoting a figure.

**Machine:** {machine_line}

## Results

{_md_table(rows)}

## What each stage measures

1. **Connect**: wall time from calling `livetalk.connect()` (or starting the raw client) to
   `session.created`, against `livetalk.server.serve(port=0)` in the same process.
2. **Audio latency**, by chirp cross-correlation against `bench/echo_peer.py`, an aiortc
   answerer with aiortc's defaults that returns every frame the moment it is decoded. A
   100 ms chirp leaves the client's track at a known time; *one way up* is until the far end
   has it decoded, the *echo round trip* until it is back at the client's audio consumer, and
   *one way down* (the round trip minus the way up) is the client's receive path: the one its
   jitter buffer governs, model speech to your ear. *livetalk* is the default adaptive
   receive jitter buffer, *low latency* is `connect(low_latency=True)` (its delay capped at one
   frame), *raw* is aiortc's default receiver (`JitterBuffer(capacity=16, prefetch=4)`).
   Everything runs in one process, so the jitter the adaptive buffer measures includes the
   event loop's own scheduling delays on a busy machine.
3. **Jitter and loss** (`bench/jitter.py`): the same chirp measurement of the way down, with
   `livetalk.transport.impairment.Impairment` on what the client receives (a uniform random
   0 to J ms of extra delay per packet, which also reorders them, and a share of packets
   lost), for livetalk and for the raw client (aiortc's default receiver), alternating.
   Glitches per minute of audio: *underruns* (a virtual real-time speaker with a one-frame
   prebuffer fed what the client delivers, the time it has nothing to play), *concealed*
   (livetalk: the slots its buffer concealed) and *missing* (aiortc: the lost packets it
   leaves out of the audio). The goal row is 20 ms of jitter with 2 % loss.
4. **CPU and capacity**: the client runs in its own process pinned to core 0
   (`bench/load_client.py`), the far end (`bench/echo_peer.py --mode tone`, pre-encoded Opus,
   so its cost stays low) in another pinned to core 1. Every call streams a tone both ways
   (so livetalk's track encodes every frame: no cached silence helps it here). CPU is
   `getrusage` of the client process (all threads) over the window, per second of call.
   Capacity is the most calls whose paced-frame send lateness stays under 20 ms at p99
   (lateness from the time each frame is handed to aiortc, `on_frame_sent` for livetalk);
   the number of calls rises until both clients pass that (the knee) or the steps end.
5. **End of speech -> first reply audio**: a spoken phrase streamed in real time to the local
   server (echo brain, pocketsphinx with a phrase list, espeak-ng, server VAD 500 ms), from
   the last speech sample's place on the real-time schedule to the first audible reply
   sample delivered, with livetalk over WebRTC and with the official `openai` SDK over
   WebSocket (`client.realtime.connect`, 100 ms `input_audio_buffer.append`,
   `response.output_audio.delta`). Both include the 500 ms of silence the VAD waits for.
6. **Accelerated feeding**: a multi-turn recording (`livetalk.server.tts.render_turns`, 1.5 s
   gaps) through `connect(speed=N)` against `serve(realtime_factor=N)`, the server hearing
   with pocketsphinx told the phrases (word for word); every user turn must come back,
   transcribed as spoken. The outbound track keeps `speed` times its 200 ms queue margin
   (20 ms of real time at 10x ran dry whenever the in-process server held the event loop,
   and each dry frame put silence inside a word: 24 turns for 21, 4-9 exact).
7. **Local server CPU**: `livetalk.server.serve` in its own process pinned to core 1
   (`bench/local_server.py`), livetalk clients streaming a tone to it from core 0; the
   server's CPU (`/proc/PID/stat`, all threads) over the same window, per call-second. The
   server listens (the tone never ends a turn), so its reply track sends silence: cached
   Opus packets with pre-encoding, stereo frames that aiortc encodes with `--frames` (what
   it did before). Alternated, medians. **Its capacity**: the same with every call speaking
   (streaming the tone, which the server's VAD takes for speech) and the number of calls
   rising until the server's core passes 90 % (its CPU is read from `/proc`), or until the
   clients' process on core 0 can no longer pace its frames (p99 lateness over 20 ms): from
   there the clients are the limit, and the server's capacity is projected from its CPU per
   call at the last healthy step (90 % of a core divided by it). The audio the clients
   receive is below 100 % by design: their adaptive buffers drop quiet frames when they shrink
   their delay, and the server sends silence while it listens.

## CPU and capacity runs

{_load_table(load)}

## Jitter and loss runs

{_jitter_table(jitter)}

## Local server runs

{_server_table(server)}

Capacity with every call speaking:

{_server_capacity_table(server_capacity)}

## Profile of one call

cProfile of the event-loop thread of one livetalk call streaming a tone both ways for
{profile.get('seconds', 0)} s ({profile.get('cpu_s', 0)} CPU s for the whole process, all
threads). Top functions by own time:

{_profile_table(profile)}

What the profiles showed, and what was done about it:

- Before, the largest single cost in the loop was aiortc's own `rtp.compute_audio_level_dbov`,
  a pure-Python loop over every sample of every sent `AudioFrame` (0.08 ms per 20 ms stereo
  frame on a quiet core, 0.2 ms under load), paid twice because the track sent stereo frames
  (aiortc's encoder upmixes mono at -3 dB); then the encode hop through the default executor
  (a `SimpleQueue.put`, a lock release and a thread wake-up per frame). The previous run
  measured 50.8 ms/s against raw aiortc's 42.9 (1.18x) and 15 calls per core against 20.
- What changed: `OutboundAudioTrack` pre-encodes (`preencode=True`, the default). It encodes
  each 20 ms frame itself, mono, with PyAV's libopus (VoIP application, 64 kbit/s VBR) on the
  loop thread, and returns an `av.Packet`; aiortc's sender then only packetizes it, with no
  level loop, no resampler and no executor hop. Silence (nothing queued, or muted) is not
  encoded at all: a cached silence packet goes out. After each stretch of audio three frames
  of zeros still go through the encoder, which flushes its 6.5 ms look-ahead and settles its
  state, so the switch to cached silence and back decodes like one continuous stream
  (`tests/transport/test_tracks.py` checks it against a continuously encoded reference). Mono Opus
  on the `opus/48000/2` payload decodes on both channels at gain 1.0. The local server's
  reply tracks are the same class, so it gained too (table above).
- Left in the profile: the libopus encode itself (about 0.1 ms per frame with audio, none
  for silence), socket `sendto`, the resampling of the 24 kHz input to 48 kHz, and
  `PlayoutBuffer.read_into`. None of livetalk's own functions does per-sample Python work.
- The receive side (issue 16): the adaptive buffer decodes on the loop thread with libopus
  through ctypes (`opus.py:_run`, about 40 us per frame in C) straight to 24 kHz mono, so
  aiortc's decoder thread, its per-frame `run_coroutine_threadsafe` hop into the loop and
  `RemoteAudioReader`'s resampler (now a pass-through) are gone from the profile. The first
  version woke a playout task per slot (a future, a timer and a coroutine step every 20 ms per
  call); the profile showed the task machinery next to the decode, so with a real-time media
  clock each slot is now a plain `loop.call_at` callback (`AdaptiveReceiver._on_timer`).
- Below 48 kbit/s libopus codes mono speech in SILK or hybrid mode: it sounds right but the
  waveform drifts (a fractional delay), which failed the round-trip correlation test; hence
  64 kbit/s, where it codes like aiortc's encoder did (about 35 kbit/s on real speech
  instead of about 135 kbit/s for aiortc's 96 kbit/s stereo).

## The adaptive receive jitter buffer

aiortc's audio receiver keeps a `JitterBuffer(capacity=16, prefetch=4)`: a frame is decoded
only after four newer frames arrived, which adds 80 ms to every received frame on any path,
and a lost packet is left out of the audio (and, until 16 newer packets arrive, holds up the
ones behind it). livetalk replaces it on every audio receiver with an adaptive buffer
(`livetalk.transport.jitterbuffer`, glued in `livetalk.transport.jitter`): it plays one slot per
20 ms on the media clock, holds packets only as long as the measured jitter requires (the
99th percentile over 5 s, or the lateness of any packet that missed its slot, plus 2 ms),
decodes with libopus straight to 24 kHz mono, and conceals a missing packet with libopus's
packet-loss concealment (or the next packet's in-band FEC). See
[audio.md](audio.md#the-receive-jitter-buffer) for the rules and `connect(low_latency=True)`.

Concealment measured on its own (`tests/transport/test_opus.py`, one frame in ten lost): the
concealed frames keep 0.5-1.5x the level of what was lost and their spectra correlate above
0.8 with it (silence would be a hole, level 0); with in-band FEC (libopus at 24 kbit/s, SILK,
`fec=1`) a lost frame is rebuilt at 9.0 dB waveform SNR against 5.5 dB for concealment alone.
livetalk's own tracks send 64 kbit/s CELT, which carries no FEC, so their losses are concealed.

## Running it

<!-- docs-test: skip long: the full run takes about ten minutes -->
```sh
make bench                                 # the full run (under 10 minutes)
.venv/bin/python -m bench.run_all --quick  # a smoke run at minimal sizes
.venv/bin/python -m bench.run_all --only latency,connect
```

Scripted sessions at scale (one process, `--processes`, a Ray cluster, and the CPU and memory
of one scenario call) are measured by `python -m bench.scenarios_scale` (in `make bench-more`);
the figures and what they mean for 1,000 and 100,000 scenarios are in
[researchers.md](researchers.md#throughput-and-sizing).
"""


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section {name}: start -->", f"<!-- section {name}: end -->"


def replace_section(page: str, name: str, body: str) -> str:
    """``page`` with the section ``name`` (between its HTML-comment markers) set to ``body``;
    appended at the end when the page has none. Other benchmarks own the rest of the page."""
    start, end = _markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    if start in page and end in page:
        head, rest = page.split(start, 1)
        return head + block + rest.split(end, 1)[1].lstrip("\n")
    return page.rstrip("\n") + "\n\n" + block


def keep_sections(old_page: str, new_page: str) -> str:
    """``new_page`` plus every marked section of ``old_page`` (``make bench`` regenerates the
    page; the sections other benchmarks wrote stay)."""
    marker = "<!-- section "
    for chunk in old_page.split(marker)[1:]:
        name, _, tail = chunk.partition(": start -->")
        start, end = _markers(name)
        if end in old_page and tail:
            body = old_page.split(start, 1)[1].split(end, 1)[0].strip("\n")
            new_page = replace_section(new_page, name, body)
    return new_page
