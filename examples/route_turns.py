"""Route each user turn to your own Python function and have its answer spoken.

The session keeps server VAD but sets ``create_response=False``: the model does not answer
on its own. Each completed user turn (its transcript, and its audio as numpy) goes to
``my_agent``; the call speaks the agent's answer with ``call.say()``.

    python examples/route_turns.py [AUDIO_FILE]
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np
from _local import DEMO_WAV, endpoint

import livetalk
from livetalk import FileSource, ServerVAD, SessionConfig, SilenceSource, Transcription
from livetalk.audio.sources import concat


def my_agent(text: str, audio: np.ndarray | None) -> str:
    """Your agent: any Python code. Here, a toy that answers from a table."""
    seconds = 0.0 if audio is None else audio.size / 24000
    if "weather" in text:
        return "It is sunny in the local server's world."
    if "goodbye" in text:
        return "Goodbye, and thanks for calling."
    return f"I heard {len(text.split())} words in {seconds:.1f} seconds of speech."


async def main(path: str) -> None:
    config = SessionConfig(
        transcription=Transcription(),
        turn_detection=ServerVAD(create_response=False, interrupt_response=False),
    )
    async with endpoint() as (base_url, api_key), livetalk.connect(
        base_url=base_url, api_key=api_key, session=config
    ) as call:

        async def route() -> None:
            async for turn in call.turns():
                if turn.role == "user" and turn.text:
                    answer = my_agent(turn.text, turn.audio)
                    print(f"user: {turn.text}\n  -> agent: {answer}")
                    await call.wait_until_quiet(timeout=30)
                    call.say(answer)
                elif turn.role == "assistant":
                    print(f"  spoken: {turn.text}")

        router = asyncio.create_task(route())
        await call.stream(concat(FileSource(path), SilenceSource(1.5)))
        await asyncio.sleep(1.0)
        await call.wait_until_quiet(timeout=30)
        await call.close()
        await router


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_file", nargs="?", default=str(DEMO_WAV))
    asyncio.run(main(parser.parse_args().audio_file))
