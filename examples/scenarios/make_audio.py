"""Regenerate the recordings that ``weather_recorded.yaml`` plays.

The two files in ``recordings/`` were made with this script (eSpeak NG, saved as FLAC) and
are kept in the repository, so the scenarios run on a fresh clone. Run
``python examples/scenarios/make_audio.py [OUT_DIR]`` to make them again (OUT_DIR defaults to
the ``recordings`` folder next to this file), or replace them with your own recordings (any
format PyAV reads) to script real voices.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

from livetalk.audio.sinks import WavSink
from livetalk.server.tts import EspeakSynthesizer

RECORDINGS = {
    "ask_weather.flac": "what is the weather like today",
    "thank_you.flac": "thank you goodbye",
}


async def main(out_dir: Path) -> None:
    """Synthesise each recording into ``out_dir``, with a quarter second of silence first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    voice = EspeakSynthesizer(voice="en-us")
    for name, text in RECORDINGS.items():
        pcm, rate = voice.synthesize(text)
        lead = np.zeros(rate // 4, dtype=np.int16)
        async with WavSink(out_dir / name, rate=rate) as sink:  # FLAC, from the extension
            await sink.write(np.concatenate([lead, np.asarray(pcm, dtype=np.int16)]))
        print(f"wrote {out_dir / name}: {text!r}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
                     / "recordings"))
