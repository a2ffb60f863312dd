"""What the commands print: the call's progress (human or JSONL), errors, a closed stdout.

Errors are one line on stderr, ``livetalk: error: ...``. Library messages name Python
parameters (``api_key=``); :func:`error_line` renders them with the command line's flags
(``--api-key``) through :data:`FLAG_NAMES`.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from livetalk._text import plural
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import ExitStatus, status_for

__all__ = [
    "FLAG_NAMES",
    "CallPrinter",
    "CallSummary",
    "HumanPrinter",
    "JsonlPrinter",
    "Output",
    "error_line",
]

FLAG_NAMES: dict[str, str] = {
    "api_key=": "--api-key",
    "base_url=": "--base-url",
    "input_device=": "--input-device",
    "output_device=": "--output-device",
    "connect_timeout=": "--connect-timeout",
    "list_devices()": "'livetalk devices'",
}
"""How library messages' parameter names read on the command line."""

_FLAG_PATTERN = re.compile("|".join(re.escape(k) + (r"(?:\.\.\.)?" if k.endswith("=") else "")
                                    for k in FLAG_NAMES))


def error_line(exc: BaseException) -> str:
    """``exc`` as the one line the command prints: flags instead of parameter names."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    message = _FLAG_PATTERN.sub(lambda m: FLAG_NAMES[m.group(0).removesuffix("...")], message)
    return f"livetalk: error: {message}"


class Output:
    """Lines to stdout; when its reader goes away, the command stops quietly (status 141)."""

    def __init__(self, runtime: Runtime | None, stream: TextIO | None = None) -> None:
        self.runtime = runtime
        self.stream = stream if stream is not None else sys.stdout
        self.broken = False

    def write(self, text: str) -> int:
        """Write and flush ``text``; after a broken pipe, nothing."""
        if self.broken:
            return 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self.broken = True
            if self.runtime is not None:
                self.runtime.stop(ExitStatus.BROKEN_PIPE, "stdout was closed")
        return len(text)

    def flush(self) -> None:
        """Every write is flushed already."""

    def isatty(self) -> bool:
        """Whether stdout is a terminal."""
        return self.stream.isatty()


@dataclass
class CallSummary:
    """What a call (or a batch run) ended with: the ``call.closed`` line."""

    call_id: str | None = None
    user_turns: int = 0
    assistant_turns: int = 0
    connect_ms: float = 0.0
    usage: dict[str, Any] = field(default_factory=lambda: {"total_tokens": 0})
    error: BaseException | None = None
    stopped: str = ""
    """The runtime's reason when a signal or a closed stdout stopped the run."""
    stopped_status: ExitStatus | None = None
    """The status the command exits with when it was stopped."""

    def to_dict(self) -> dict[str, Any]:
        """The JSONL form; ``error`` is None or ``{"type", "message", "exit_status"}``."""
        error: dict[str, Any] | None = None
        if self.stopped:
            error = {"type": "Interrupted", "message": self.stopped,
                     "exit_status": None if self.stopped_status is None
                     else int(self.stopped_status)}
        elif self.error is not None:
            status = status_for(self.error)
            error = {"type": type(self.error).__name__,
                     "message": " ".join(str(self.error).split()),
                     "exit_status": int(status if status is not None else ExitStatus.FAILED)}
        return {"type": "call.closed", "call_id": self.call_id,
                "user_turns": self.user_turns, "assistant_turns": self.assistant_turns,
                "connect_ms": round(self.connect_ms, 1), "usage": self.usage, "error": error}


class CallPrinter(Protocol):
    """How ``run`` and ``demo`` show a call: human-readable or JSON lines."""

    def connected(self, call_id: str | None, connect_ms: float, transport: str) -> None: ...

    def delta(self, role: str, item_id: str, text: str) -> None: ...

    def turn(self, role: str, item_id: str, text: str, status: str) -> None: ...

    def message(self, text: str) -> None: ...

    def closed(self, summary: CallSummary) -> None: ...


class JsonlPrinter:
    """One JSON object per line, flushed per line (``--jsonl``; see ``docs/cli.md``)."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def _emit(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")

    def connected(self, call_id: str | None, connect_ms: float, transport: str) -> None:
        self._emit({"type": "call.connected", "call_id": call_id,
                    "connect_ms": round(connect_ms, 1), "transport": transport})

    def delta(self, role: str, item_id: str, text: str) -> None:
        self._emit({"type": "transcript.delta", "role": role, "item_id": item_id,
                    "delta": text})

    def turn(self, role: str, item_id: str, text: str, status: str) -> None:
        self._emit({"type": "turn", "role": role, "item_id": item_id, "text": text,
                    "status": status})

    def message(self, text: str) -> None:
        """Messages are for people: not part of the JSON stream."""

    def closed(self, summary: CallSummary) -> None:
        self._emit(summary.to_dict())


class HumanPrinter:
    """Readable lines: on a terminal the transcript grows in place as deltas arrive; each
    finished turn is then written once, on its own line."""

    def __init__(self, out: Output, *, live: bool | None = None) -> None:
        from livetalk.talk import LiveTranscript

        self.out = out
        self._transcript = LiveTranscript(out, live=live)

    def connected(self, call_id: str | None, connect_ms: float, transport: str) -> None:
        kind = _TRANSPORT_NAMES.get(transport, transport)
        where = f"call {call_id}" if call_id else f"a {kind} session"
        self._transcript.message(f"connected: {where} in {connect_ms:.0f} ms")

    def delta(self, role: str, item_id: str, text: str) -> None:
        self._transcript.delta(item_id, role, text)

    def turn(self, role: str, item_id: str, text: str, status: str) -> None:
        self._transcript.commit(item_id, role, text, status)

    def message(self, text: str) -> None:
        self._transcript.message(text)

    def closed(self, summary: CallSummary) -> None:
        turns = (f"{plural(summary.user_turns, 'user turn')} and "
                 f"{plural(summary.assistant_turns, 'assistant turn')}, "
                 f"{plural(int(summary.usage.get('total_tokens', 0)), 'token')}")
        if summary.stopped:
            self.message(f"closed ({summary.stopped}): {turns}")
        elif summary.error is not None:
            self.message(f"closed after an error: {turns}")
        else:
            self.message(f"closed: {turns}")


_TRANSPORT_NAMES = {"websocket": "WebSocket", "webrtc": "WebRTC"}
