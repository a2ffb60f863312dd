"""The local server's pluggable "brain": what it answers in place of a language model.

For each response the server builds a :class:`BrainContext` (the user's last transcript, the
conversation so far, the instructions, the session's tools and any tool outputs since the user
last spoke) and awaits :meth:`Brain.reply`, which returns what to do: :class:`SpeakReply` (say
this text) or :class:`ToolCallReply` (call this function with these JSON arguments).

A brain that produces its answer bit by bit (a language model) implements
:class:`StreamingBrain` instead: :meth:`~StreamingBrain.stream` yields text deltas (str) as they
come, then any :class:`ToolCallReply`. The server sends text deltas on at once in a text
response; in an audio response it cuts the text into sentences (:func:`sentences`) and starts
speaking the first sentence while the rest is still being generated. :func:`brain_stream`
gives the same stream for any brain.

Shipped brains:

* :class:`EchoBrain`: repeats what it heard, and reads back tool results.
* :class:`ScriptBrain`: plays a fixed list of replies, from code or from a file.
* :class:`CallableBrain`: wraps a host function, sync or async.
* :class:`~livetalk.server.chat.ChatBrain`: asks any OpenAI-compatible Chat Completions
  endpoint (a local llama.cpp or vLLM server, or the real API), streaming.

:func:`make_brain` builds one from a server option (``"echo"``, a script path or a callable).
A brain that fails raises :class:`BrainError`, which the server reports as a failed response.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable

from livetalk._extras import install_hint
from livetalk.errors import BrainError, ConfigError

__all__ = [
    "Brain",
    "BrainContext",
    "BrainError",
    "BrainChunk",
    "BrainReply",
    "CallableBrain",
    "EchoBrain",
    "ScriptBrain",
    "SpeakReply",
    "StreamingBrain",
    "ToolCallReply",
    "brain_stream",
    "make_brain",
    "sentences",
]



@dataclass(frozen=True, slots=True)
class BrainContext:
    """What a brain knows when it is asked for a reply.

    Attributes:
        transcript: the text of the user's last message ("" if it was not understood).
        history: the conversation's messages so far, oldest first, as ``(role, text)`` with
            role ``"user"``, ``"assistant"`` or ``"system"``.
        instructions: the session's (or the response's) instructions.
        tools: the session's tools, in the GA function shape
            (``{"type": "function", "name": ..., "description": ..., "parameters": {...}}``).
        tool_outputs: the ``function_call_output`` items added since the user last spoke,
            oldest first (each has ``call_id`` and ``output``).
        items: every conversation item so far, oldest first, in the API's shape (messages,
            ``function_call`` and ``function_call_output`` items): what a brain that keeps
            track of function calls reads.
        tool_choice: the session's (or the response's) ``tool_choice``: ``"auto"``,
            ``"none"``, ``"required"`` or ``{"type": "function", "name": ...}``.
    """

    transcript: str
    history: list[tuple[str, str]] = field(default_factory=list)
    instructions: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_outputs: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"


@dataclass(frozen=True, slots=True)
class SpeakReply:
    """Answer with speech (or text, in a text-only session).

    Attributes:
        text: what to say.
    """

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallReply:
    """Answer with a function call for the client to run.

    Attributes:
        name: the function's name.
        arguments: its arguments as a JSON object in a string, as the API sends them.

    Raises:
        ConfigError: an empty name, or arguments that are not a JSON object.
    """

    name: str
    arguments: str = "{}"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a tool call needs a function name, got {self.name!r}")
        try:
            parsed = json.loads(self.arguments)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"tool call arguments must be a JSON object string, got {self.arguments!r}"
            ) from exc
        if not isinstance(parsed, dict):
            raise ConfigError(f"tool call arguments must be a JSON object, got {self.arguments!r}")


BrainReply: TypeAlias = SpeakReply | ToolCallReply
"""What a brain returns."""


@runtime_checkable
class Brain(Protocol):
    """Decides what the local server answers.

    Raise :class:`BrainError` (or let :class:`CallableBrain` translate your exception) to make
    the response fail. Cancelling :meth:`reply` (the client cancelled the response) must be
    safe.
    """

    async def reply(self, ctx: BrainContext) -> BrainReply:
        """The reply to the conversation in ``ctx``."""
        ...


BrainChunk: TypeAlias = str | ToolCallReply
"""What a streaming brain yields: a text delta, or a function call to make."""


@runtime_checkable
class StreamingBrain(Protocol):
    """A brain that hands its answer out as it is generated.

    Yield text deltas (str, in order; concatenated they make the answer) and then any
    :class:`ToolCallReply`. Raise :class:`BrainError` to make the response fail, even after
    some text went out. The server stops iterating when the response is cancelled, so the
    generator must clean up in ``finally`` (close connections).
    """

    def stream(self, ctx: BrainContext) -> AsyncIterator[BrainChunk]:
        """The answer to the conversation in ``ctx``, piece by piece."""
        ...


async def brain_stream(brain: Brain | StreamingBrain, ctx: BrainContext
                       ) -> AsyncGenerator[BrainChunk, None]:
    """The answer of any brain as a stream of :data:`BrainChunk`.

    A :class:`StreamingBrain` streams; a plain :class:`Brain`'s spoken reply comes out one
    word at a time (``"You"``, ``" said:"``...), as text responses have always been sent.
    """
    if isinstance(brain, StreamingBrain):
        chunks = brain.stream(ctx)
        try:
            async for chunk in chunks:
                yield chunk
        finally:  # the response ended or was cancelled: let the brain close its stream
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        return
    reply = await brain.reply(ctx)
    if isinstance(reply, ToolCallReply):
        yield reply
        return
    for i, word in enumerate(reply.text.split()):
        yield word if i == 0 else " " + word


_SENTENCE_END = re.compile(r"([.!?;:…][\"')\]]*)\s+|\n+")
_MAX_SENTENCE_CHARS = 200
"""A run of text without a sentence end is spoken once it is this long (at a space)."""


async def sentences(deltas: AsyncIterator[str]) -> AsyncIterator[str]:
    """Cut a stream of text deltas into sentences, each yielded as soon as it is complete.

    A sentence ends at ``. ! ? ; : …`` (and any closing quote or bracket) followed by
    whitespace, or at a line break; the rest is yielded when the stream ends. Text that runs
    on for more than 200 characters without one is cut at its last space, so a long
    unpunctuated answer still starts playing early. Yielded sentences are stripped and never
    empty.
    """
    buffer = ""
    async for delta in deltas:
        buffer += delta
        while True:
            end = _SENTENCE_END.search(buffer)
            if end is not None:
                end_at = end.end(1) if end.group(1) else end.start()
                rest_at = end.end()
            elif len(buffer) > _MAX_SENTENCE_CHARS and " " in buffer.strip():
                text = buffer.rstrip()
                cut = text.rfind(" ", 0, _MAX_SENTENCE_CHARS)
                end_at = cut if cut > 0 else text.find(" ", 1)
                rest_at = end_at + 1
            else:
                break
            sentence, buffer = buffer[:end_at].strip(), buffer[rest_at:]
            if sentence:
                yield sentence
    if buffer.strip():
        yield buffer.strip()


def _strip_end(text: str) -> str:
    return text.strip().rstrip(".!?;, ")


class EchoBrain:
    """Repeats what it heard: ``"You said: <transcript>."``.

    An empty transcript gives ``"I heard nothing."``; after a tool output (the client ran a
    function call) it reads the last output back: ``"The result is <output>."``.
    """

    async def reply(self, ctx: BrainContext) -> BrainReply:
        """Echo the transcript, or read back the last tool output."""
        if ctx.tool_outputs:
            output = ctx.tool_outputs[-1].get("output", "")
            return SpeakReply(f"The result is {_strip_end(str(output))}.")
        heard = _strip_end(ctx.transcript)
        return SpeakReply(f"You said: {heard}." if heard else "I heard nothing.")

    def __repr__(self) -> str:
        return "EchoBrain()"


ScriptEntry: TypeAlias = str | dict[str, Any]


class ScriptBrain:
    """Plays a fixed list of replies, one per response, in order.

    Each entry is a string (say it), ``{"say": text}``, or ``{"tool": name, "arguments":
    {...}}`` (call a function; ``arguments`` may also be a JSON string, and defaults to
    ``{}``). When the list is exhausted it starts over if ``loop`` is true; otherwise it
    behaves as :class:`EchoBrain` from then on.

    One instance keeps one position: a server sharing it between sessions advances it for all
    of them.

    Args:
        replies: the entries.
        loop: start the list over when exhausted, instead of echoing.

    Raises:
        ConfigError: an empty list, or an entry of the wrong shape.
    """

    def __init__(self, replies: Sequence[ScriptEntry], *, loop: bool = False) -> None:
        if isinstance(replies, str | bytes) or not replies:
            raise ConfigError("a script needs a non-empty list of replies")
        self.replies: list[BrainReply] = [_parse_entry(e, i) for i, e in enumerate(replies)]
        self.loop = loop
        self._next = 0
        self._echo = EchoBrain()

    @classmethod
    def from_file(cls, path: str | Path, *, loop: bool | None = None) -> ScriptBrain:
        """Load a script.

        The format follows the extension:

        * ``.json``: a list of entries, or ``{"replies": [...], "loop": true}``.
        * ``.yaml`` / ``.yml``: the same shapes in YAML (needs PyYAML: ``livetalk[scenarios]``).
        * anything else: plain text, one reply to say per line; blank lines and lines starting
          with ``#`` are skipped.

        Args:
            path: the script file.
            loop: overrides the file's ``loop`` setting (default False).

        Raises:
            ConfigError: the file cannot be read or parsed, or has the wrong shape.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read brain script {str(path)!r}: {exc}") from exc
        suffix = path.suffix.lower()
        data: Any
        if suffix == ".json":
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"brain script {str(path)!r} is not valid JSON: {exc}") from exc
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:
                raise ConfigError(
                    f"YAML brain scripts need PyYAML: {install_hint('scenarios')}"
                ) from exc
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"brain script {str(path)!r} is not valid YAML: {exc}") from exc
        else:
            data = [s for line in text.splitlines() if (s := line.strip()) and s[0] != "#"]
        file_loop = False
        if isinstance(data, dict):
            file_loop = bool(data.get("loop", False))
            data = data.get("replies")
        if not isinstance(data, list):
            raise ConfigError(
                f"brain script {str(path)!r} must hold a list of replies "
                "(or an object with a 'replies' list)"
            )
        return cls(data, loop=file_loop if loop is None else loop)

    async def reply(self, ctx: BrainContext) -> BrainReply:
        """The next entry of the script (or an echo once it is exhausted without ``loop``)."""
        if self._next >= len(self.replies):
            if not self.loop:
                return await self._echo.reply(ctx)
            self._next = 0
        entry = self.replies[self._next]
        self._next += 1
        return entry

    def __repr__(self) -> str:
        return f"ScriptBrain({len(self.replies)} replies, loop={self.loop})"


def _parse_entry(entry: object, index: int) -> BrainReply:
    where = f"script entry {index}"
    if isinstance(entry, str):
        return SpeakReply(entry)
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a string or an object, got {entry!r}")
    if "say" in entry and "tool" not in entry:
        if set(entry) != {"say"} or not isinstance(entry["say"], str):
            raise ConfigError(f'{where}: expected {{"say": "text"}}, got {entry!r}')
        return SpeakReply(entry["say"])
    if "tool" in entry:
        if not set(entry) <= {"tool", "arguments"}:
            raise ConfigError(
                f'{where}: expected {{"tool": name, "arguments": {{...}}}}, got {entry!r}'
            )
        arguments = entry.get("arguments", {})
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        if not isinstance(arguments, str):
            raise ConfigError(f"{where}: arguments must be an object or a JSON string")
        try:
            return ToolCallReply(str(entry["tool"]), arguments)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    raise ConfigError(f'{where} needs a "say" or a "tool" key, got {entry!r}')


HostBrainFunction: TypeAlias = Callable[
    [BrainContext], "str | BrainReply | Awaitable[str | BrainReply]"
]


class CallableBrain:
    """Wraps a host function ``fn(ctx) -> str | BrainReply`` (sync or async) as a brain.

    A returned string is spoken. Any exception the function raises becomes a
    :class:`BrainError` chained to it. A sync function runs on the event loop: keep it quick,
    or make it async and move blocking work to a thread (``asyncio.to_thread``).

    Args:
        fn: the function; called with the :class:`BrainContext`.

    Raises:
        ConfigError: ``fn`` is not callable.
    """

    def __init__(self, fn: HostBrainFunction) -> None:
        if not callable(fn):
            raise ConfigError(f"expected a callable brain function, got {fn!r}")
        self._fn = fn

    async def reply(self, ctx: BrainContext) -> BrainReply:
        """Call the function (awaiting it if it returns an awaitable).

        Raises:
            BrainError: the function raised, or returned neither a str nor a reply.
        """
        try:
            result = self._fn(ctx)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise BrainError(f"brain function {_name(self._fn)} failed: {exc!r}") from exc
        if isinstance(result, str):
            return SpeakReply(result)
        if isinstance(result, SpeakReply | ToolCallReply):
            return result
        raise BrainError(
            f"brain function {_name(self._fn)} returned {type(result).__name__}; "
            "expected a str, SpeakReply or ToolCallReply"
        )

    def __repr__(self) -> str:
        return f"CallableBrain({_name(self._fn)})"


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def make_brain(spec: Brain | str | Path | HostBrainFunction | None = "echo") -> Brain:
    """Build a brain from a server option.

    Args:
        spec: ``"echo"`` or None (:class:`EchoBrain`); a path to a script file
            (:meth:`ScriptBrain.from_file`); an object with an async ``reply`` method (used as
            is); or a callable (:class:`CallableBrain`).

    Raises:
        ConfigError: a string that is neither ``"echo"`` nor an existing file, or an
            unsupported object.
    """
    if spec is None or spec == "echo":
        return EchoBrain()
    if isinstance(spec, str | Path):
        if not Path(spec).is_file():
            raise ConfigError(f"brain must be 'echo' or a script file; no such file: {str(spec)!r}")
        return ScriptBrain.from_file(spec)
    if isinstance(spec, Brain) and inspect.iscoroutinefunction(spec.reply):
        return spec
    if callable(spec):
        return CallableBrain(spec)
    raise ConfigError(f"cannot make a brain from {spec!r}")
