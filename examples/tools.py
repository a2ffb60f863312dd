"""Function calling: the model asks for a tool, a Python handler answers it.

Against the local server a scripted brain plays the model: it calls ``get_weather`` and then
speaks the result. Against the real API, the model decides.

    python examples/tools.py
"""

from __future__ import annotations

import asyncio

from _local import endpoint

import livetalk
from livetalk import FunctionTool, SessionConfig
from livetalk.server.brain import ScriptBrain

WEATHER = FunctionTool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]},
)


async def get_weather(city: str) -> dict[str, str]:
    """A tool handler: sync or async, keyword arguments from the model's JSON."""
    await asyncio.sleep(0.01)  # e.g. an HTTP request
    return {"city": city, "forecast": "sunny", "temperature_c": "21"}


async def main() -> None:
    brain = ScriptBrain([{"tool": "get_weather", "arguments": {"city": "Paris"}}])
    config = SessionConfig(output_modalities=["text"], turn_detection=None, tools=[WEATHER])
    async with endpoint(brain=brain) as (base_url, api_key), livetalk.connect(
        base_url=base_url, api_key=api_key, session=config,
        tool_handlers={"get_weather": get_weather},
    ) as call:
        call.add_text("What is the weather in Paris?")
        call.create_response()
        for turn in await call.wait_for_turns(2, timeout=30):
            print(f"{turn.role:>9}: {turn.text}")


if __name__ == "__main__":
    asyncio.run(main())
