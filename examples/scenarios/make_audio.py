"""Generate the recordings that ``weather_recorded.yaml`` plays (kept out of git).

Run ``python examples/scenarios/make_audio.py [OUT_DIR]``; OUT_DIR defaults to the
``recordings`` folder next to this file. Replace the files with your own recordings (any
format PyAV reads) to script real voices.
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

from livetalk.server.tts import EspeakSynthesizer

RECORDINGS = {
    "ask_weather.wav": "what is the weather like today",
    "thank_you.wav": "thank you goodbye",
}


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    """Write int16 mono PCM as a WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())


def main(out_dir: Path) -> None:
    """Synthesise each recording into ``out_dir``, with a little silence before it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    voice = EspeakSynthesizer(voice="en-us")
    for name, text in RECORDINGS.items():
        pcm, rate = voice.synthesize(text)
        lead = np.zeros(rate // 4, dtype=np.int16)
        write_wav(out_dir / name, np.concatenate([lead, pcm]), rate)
        print(f"wrote {out_dir / name}: {text!r}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "recordings")
