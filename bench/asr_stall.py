"""How long a recogniser stalls the server's other threads while it decodes a turn.

``python -m bench.asr_stall``

The local server decodes turns in worker threads, but a recogniser whose native code holds
the GIL stops the event loop (media, events) meanwhile. While one recogniser decodes the same
3.5 s turn five times in a thread, the main thread sleeps 2 ms at a time and records how late
it wakes. The baseline is the same loop with nothing decoding, in the same run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from livetalk.audio.resample import resample
from livetalk.server.asr import PocketSphinxTranscriber
from livetalk.server.tts import EspeakSynthesizer
from livetalk.server.whisper import whisper_missing

RATE = 24000
SENTENCE = "Please send the quarterly report to the finance team before Friday"
REPEATS = 5
IDLE_S = 1.0


def lateness_ms(work: Callable[[], None] | None) -> list[float]:
    """How late each 2 ms sleep of the main thread wakes while ``work`` runs in a thread
    (None: for ``IDLE_S`` with nothing else running)."""
    late: list[float] = []
    thread = threading.Thread(target=work) if work is not None else None
    end = time.perf_counter() + IDLE_S
    if thread is not None:
        thread.start()
    while thread.is_alive() if thread is not None else time.perf_counter() < end:
        start = time.perf_counter()
        time.sleep(0.002)
        late.append((time.perf_counter() - start - 0.002) * 1000)
    if thread is not None:
        thread.join()
    return late


def main() -> None:
    native, rate = EspeakSynthesizer().synthesize(SENTENCE)
    pcm = resample(native, rate, RATE)
    recognisers: list[tuple[str, Any]] = [
        ("pocketsphinx, phrase list", PocketSphinxTranscriber(phrases=[SENTENCE])),
        ("pocketsphinx, no list", PocketSphinxTranscriber()),
    ]
    if whisper_missing() is None:
        from livetalk.server.whisper import WhisperTranscriber

        recognisers.append(("whisper tiny.en", WhisperTranscriber()))
    idle = lateness_ms(None)
    print(f"{pcm.size / RATE:.1f} s turn decoded {REPEATS} times in a thread; the main thread "
          "sleeps 2 ms at a time")
    print("| Decoding | Longest stall (ms) | p99 (ms) | vs idle (p99) | Heard |")
    print("|---|---|---|---|---|")
    base = float(np.percentile(idle, 99))
    print(f"| nothing (baseline) | {max(idle):.1f} | {base:.1f} | 1.0x | |")
    for label, transcriber in recognisers:
        text = transcriber.transcribe(pcm, RATE)  # warm up

        def work(t: Any = transcriber) -> None:
            for _ in range(REPEATS):
                t.transcribe(pcm, RATE)

        late = lateness_ms(work)
        p99 = float(np.percentile(late, 99))
        print(f"| {label} | {max(late):.1f} | {p99:.1f} | {p99 / max(base, 0.01):.0f}x | "
              f"{text} |", flush=True)


if __name__ == "__main__":
    main()
