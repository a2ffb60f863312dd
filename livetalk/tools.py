"""Answering the model's function calls with the host's Python functions.

A :class:`ToolRunner` belongs to one call. For each function call the model makes
(:class:`~livetalk.protocol.conversation.FunctionCallDone`) whose name has a handler, it runs
the handler in a task (sync or async; a slow one blocks nothing), and once every handled call
of that response has an output *and* the response is done, sends the outputs as
``function_call_output`` items followed by one ``response.create`` (parallel calls get one
follow-up, not one each). A handler that raises, or arguments that are not a JSON object,
become an ``{"error": ...}`` output for the model: the call goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livetalk.protocol.client import ClientSession
from livetalk.protocol.conversation import FunctionCallDone

__all__ = ["ToolHandler", "ToolRunner", "run_tool_handler"]

log = logging.getLogger("livetalk")

ToolHandler = Callable[..., Any]
"""A function-call handler: called with the parsed JSON arguments as keyword arguments
(sync or async); its return value (a string, or anything JSON-serialisable) is sent back."""


async def run_tool_handler(handler: ToolHandler, arguments: str) -> str:
    """Run a tool handler on the model's JSON ``arguments``; return the output string.

    Bad arguments and exceptions raised by the handler become an ``{"error": ...}`` output
    for the model instead of failing the call.
    """
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(parsed, dict):
            raise TypeError("the arguments are not a JSON object")
        result = handler(**parsed)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # reported to the model, never fatal to the call
        log.warning("tool handler %r failed: %s", getattr(handler, "__name__", handler), exc)
        return json.dumps({"error": f"{type(exc).__name__}: {exc}"})
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result)
    except (TypeError, ValueError):
        return json.dumps({"result": str(result)})


@dataclass(slots=True)
class _Pending:
    running: int = 0
    outputs: list[tuple[str, str]] = field(default_factory=list)
    finished: bool = False


class ToolRunner:
    """The tool handlers of one call and the function calls they are answering.

    Args:
        handlers: ``{function name: handler}``.
        spawn: starts a background task of the call.
        flush: called after outputs were queued on the session, to send them.
    """

    def __init__(self, handlers: dict[str, ToolHandler] | None,
                 spawn: Callable[[Any], asyncio.Task[Any]], flush: Callable[[], None]) -> None:
        self.handlers: dict[str, ToolHandler] = dict(handlers or {})
        self._spawn = spawn
        self._flush = flush
        self._pending: dict[str, _Pending] = {}

    def register(self, name: str, handler: ToolHandler) -> None:
        """Answer the model's calls of function ``name`` with ``handler``."""
        self.handlers[name] = handler

    def on_function_call(self, session: ClientSession, call: FunctionCallDone) -> bool:
        """Start answering ``call`` if a handler is registered; returns whether it is."""
        handler = self.handlers.get(call.name)
        if handler is None:
            return False
        pending = self._pending.setdefault(call.response_id, _Pending())
        pending.running += 1
        session.expect_tool_outputs(call.response_id)
        self._spawn(self._run(session, call, handler))
        return True

    def on_response_done(self, session: ClientSession, response_id: str) -> None:
        """The response that made the calls is done: its outputs may go once ready."""
        pending = self._pending.get(response_id)
        if pending is not None:
            pending.finished = True
            self._maybe_send(session, response_id)

    async def _run(self, session: ClientSession, call: FunctionCallDone,
                   handler: ToolHandler) -> None:
        output = await run_tool_handler(handler, call.arguments)
        pending = self._pending[call.response_id]
        pending.running -= 1
        pending.outputs.append((call.call_id, output))
        self._maybe_send(session, call.response_id)

    def _maybe_send(self, session: ClientSession, response_id: str) -> None:
        pending = self._pending[response_id]
        if pending.running or not pending.finished or session.closed:
            return
        del self._pending[response_id]
        session.send_tool_outputs(response_id, pending.outputs)
        self._flush()
