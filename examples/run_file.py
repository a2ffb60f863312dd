"""Stream a spoken file through a live call and print the conversation as it happens.

    python examples/run_file.py [AUDIO_FILE] [--save-reply reply.wav]

Without OPENAI_API_KEY it runs against livetalk's local server (offline).
"""

from __future__ import annotations

import argparse
import asyncio

from _local import DEMO_WAV, endpoint

import livetalk
from livetalk import FileSource, ServerVAD, SessionConfig, SilenceSource, Transcription, WavSink
from livetalk.audio.sources import concat


async def main(path: str, save_reply: str | None) -> None:
    config = SessionConfig(
        instructions="Answer in one short sentence.",
        transcription=Transcription(),
        turn_detection=ServerVAD(silence_duration_ms=500),
    )
    async with endpoint() as (base_url, api_key), livetalk.connect(
        base_url=base_url, api_key=api_key, session=config
    ) as call:
        print(f"connected: {call.call_id} in {call.connect_ms:.0f} ms")
        if save_reply:
            call.record_to(WavSink(save_reply))

        async def show_turns() -> None:
            async for turn in call.turns():
                print(f"{turn.role:>9}: {turn.text}")

        printer = asyncio.create_task(show_turns())
        # the file, then silence so that server VAD sees the last turn end
        await call.stream(concat(FileSource(path), SilenceSource(1.5)))
        await call.wait_until_quiet(timeout=30)
        await call.close()
        await printer
        print(f"tokens used: {call.usage.total_tokens}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_file", nargs="?", default=str(DEMO_WAV))
    parser.add_argument("--save-reply")
    args = parser.parse_args()
    asyncio.run(main(args.audio_file, args.save_reply))
