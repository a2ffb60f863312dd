"""Files bundled with livetalk, for the demo, the examples and your own offline tests.

- :data:`DEMO_WAV`: a 13.7 s spoken recording (16 kHz mono WAV, synthesized with eSpeak NG):
  "hello can you hear me", "what is the weather like today", "thank you goodbye", each
  followed by 1.5 s of silence.
- :data:`DEMO_PHRASES`: the phrase list of that recording, one phrase per line. Give it to the
  local server (``livetalk serve --phrases``, ``serve(phrases=...)``) so that its recogniser
  picks among these phrases instead of guessing free English.

Both are plain paths into the installed package::

    from livetalk.data import DEMO_PHRASES, DEMO_WAV
    from livetalk.server import serve

    async with serve(port=0, phrases=str(DEMO_PHRASES)) as srv:
        ...  # stream FileSource(DEMO_WAV) to srv.base_url

From the shell: ``python -m livetalk.data`` prints both paths.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_PHRASES", "DEMO_WAV", "DIRECTORY"]

DIRECTORY = Path(__file__).resolve().parent
"""The folder holding the bundled files."""

DEMO_WAV = DIRECTORY / "demo.wav"
"""The demo recording (16 kHz mono WAV, three phrases)."""

DEMO_PHRASES = DIRECTORY / "demo_phrases.txt"
"""The phrases spoken in :data:`DEMO_WAV`, one per line (``#`` starts a comment)."""
