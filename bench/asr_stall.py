"""How long a recogniser stalls the other threads of the server while it decodes a turn.

``python -m bench.asr_stall``

The local server decodes turns in worker threads; a recogniser whose native code holds the
GIL stops the event loop (media, events) meanwhile. While one recogniser decodes the same
3 s turn five times in a thread, the main thread sleeps 2 ms at a time and records how late
it wakes. Compared in the same run: pocketsphinx fed the turn in one call (the baseline, as
it was) and in 100 ms pieces (as it is now), with and without a phrase list, and Whisper.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from livetalk.audio.resample import resample
from livetalk.server.asr import PocketSphinxTranscriber
from livetalk.server.tts import EspeakSynthesizer
from livetalk.server.whisper import whisper_missing

RATE = 24000
SENTENCE = "Please send the quarterly report to the finance team before Friday"
REPEATS = 5


class _WholeTurn:
    """The decoder fed the whole turn in one call (the baseline)."""

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decoder, name)

    def process_raw(self, data: bytes, full_utt: bool = False) -> None:
        self._pending = getattr(self, "_pending", b"") + data

    def end_utt(self) -> None:
        self._decoder.process_raw(getattr(self, "_pending", b""), full_utt=True)
        self._pending = b""
        self._decoder.end_utt()


def stall_ms(transcriber: Any, pcm: np.ndarray) -> tuple[float, float, str]:
    """Longest and 99th-percentile late wake-up of the main thread (ms), and the text."""
    text = transcriber.transcribe(pcm, RATE)  # warm

    def work() -> None:
        for _ in range(REPEATS):
            transcriber.transcribe(pcm, RATE)

    thread = threading.Thread(target=work)
    late: list[float] = []
    thread.start()
    while thread.is_alive():
        start = time.perf_counter()
        time.sleep(0.002)
        late.append((time.perf_counter() - start - 0.002) * 1000)
    thread.join()
    return max(late), float(np.percentile(late, 99)), text


def main() -> None:
    native, rate = EspeakSynthesizer().synthesize(SENTENCE)
    pcm = resample(native, rate, RATE)
    rows: list[tuple[str, Any]] = []
    for phrases in ([SENTENCE], None):
        label = "phrase list" if phrases else "no list"
        whole = PocketSphinxTranscriber(phrases=phrases)
        whole._decoder = _WholeTurn(whole._decoder)  # type: ignore[assignment]
        rows.append((f"pocketsphinx, {label}, one call (baseline)", whole))
        rows.append((f"pocketsphinx, {label}, 100 ms pieces", PocketSphinxTranscriber(phrases)))
    if whisper_missing() is None:
        from livetalk.server.whisper import WhisperTranscriber

        rows.append(("whisper tiny.en", WhisperTranscriber()))
    print(f"{pcm.size / RATE:.1f} s turn, decoded {REPEATS} times in a thread")
    print("| Recogniser | Longest stall (ms) | p99 (ms) | Heard |")
    print("|---|---|---|---|")
    for label, transcriber in rows:
        worst, p99, text = stall_ms(transcriber, pcm)
        print(f"| {label} | {worst:.0f} | {p99:.0f} | {text} |", flush=True)


if __name__ == "__main__":
    main()
