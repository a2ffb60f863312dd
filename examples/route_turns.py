"""Route each user turn to your own Python function and have its answer spoken.

``connect(route=my_agent)`` turns the model's own answers off and sends each completed user
turn (its transcript, and its audio as numpy) to ``my_agent``, in order; the string it returns
is spoken in the session's voice, queued behind any reply still playing. ``call.finish()``
ends the input and waits for the last answer before closing: nothing is lost.

    python examples/route_turns.py [AUDIO_FILE]
"""

from __future__ import annotations

import argparse
import asyncio

from _local import DEMO_WAV, endpoint

import livetalk
from livetalk import FileSource, ServerVAD, SessionConfig, Turn
from livetalk.audio.format import API_RATE


async def my_agent(turn: Turn) -> str | None:
    """Your agent: any Python code (an LLM call, a planner, a database). Here, a toy."""
    await asyncio.sleep(0.5)  # the time a real agent takes to think
    text = turn.text.lower()
    if not text:
        return None  # nothing understood: stay silent
    if "weather" in text:
        return "It is sunny in the local server's world."
    if "goodbye" in text:
        return "Goodbye, and thanks for calling."
    seconds = 0.0 if turn.audio is None else turn.audio.size / API_RATE
    return f"I heard {len(text.split())} words in {seconds:.1f} seconds of speech."


async def main(path: str) -> None:
    # a recording does not wait for the answers: let each answer play out instead of being
    # cut off by the next question (a live user who speaks over an answer interrupts it)
    config = SessionConfig(turn_detection=ServerVAD(interrupt_response=False))
    async with endpoint() as (base_url, api_key), livetalk.connect(
        base_url=base_url, api_key=api_key, session=config, route=my_agent
    ) as call:
        await call.stream(FileSource(path))
        await call.finish()  # trailing silence, every answer spoken, then close
    for turn in call.turns_so_far:
        print(f"{turn.role}: {turn.text}  [{turn.status.value}]")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_file", nargs="?", default=str(DEMO_WAV))
    asyncio.run(main(parser.parse_args().audio_file))
