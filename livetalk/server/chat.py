"""A brain that asks a language model: any OpenAI-compatible Chat Completions endpoint.

:class:`ChatBrain` turns the Realtime conversation into a Chat Completions request and
streams the answer back into the response, so the local server becomes a complete offline
voice agent: pocketsphinx or Whisper hear, the model thinks, espeak-ng speaks.

Mapping, both ways:

==============================================  ==============================================
Realtime session / conversation                 Chat Completions request
==============================================  ==============================================
``instructions``                                first ``system`` message
user message (text, or the audio's transcript)  ``user`` message (``"(inaudible)"`` if empty)
assistant message (text or audio transcript)    ``assistant`` message
system message                                  ``system`` message
``function_call`` item                          ``tool_calls`` entry of an ``assistant`` message
                                                (``id`` = the item's ``call_id``)
``function_call_output`` item                   ``tool`` message (``tool_call_id`` = ``call_id``)
``tools`` (``{"type": "function", "name"...}``)  ``tools`` (``{"type": "function",
                                                "function": {"name"...}}``)
``tool_choice``                                 ``tool_choice`` (same values; a named function
                                                becomes ``{"type": "function", "function":
                                                {"name": ...}}``)
==============================================  ==============================================

The streamed answer (``stream: true``, server-sent events) comes back as text deltas, spoken
sentence by sentence as they complete, and ``delta.tool_calls`` become ``function_call`` items
of the response once the stream ends. Any failure (unreachable endpoint, an error status, a
malformed stream, a timeout) raises :class:`~livetalk.server.brain.BrainError`: the response
ends ``failed``, the client gets an ``error`` event, and the call goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from livetalk.errors import ConfigError
from livetalk.server.brain import (
    BrainChunk,
    BrainContext,
    BrainError,
    BrainReply,
    SpeakReply,
    ToolCallReply,
)

__all__ = ["CHAT_API_KEY_ENV", "ChatBrain", "chat_messages", "chat_tool_choice", "chat_tools"]

CHAT_API_KEY_ENV = "LIVETALK_CHAT_API_KEY"
"""Environment variable holding the endpoint's API key, when it needs one."""
INAUDIBLE = "(inaudible)"
"""What a user turn with no transcript becomes: chat endpoints reject empty messages."""
_ERROR_BODY_CHARS = 300


def _item_text(item: dict[str, Any]) -> str:
    parts = []
    for part in item.get("content") or []:
        text = part.get("text") or part.get("transcript")
        if text:
            parts.append(str(text))
    return " ".join(parts)


def chat_messages(ctx: BrainContext) -> list[dict[str, Any]]:
    """The Chat Completions ``messages`` for a brain context (see the module's table)."""
    messages: list[dict[str, Any]] = []
    if ctx.instructions:
        messages.append({"role": "system", "content": ctx.instructions})
    items = ctx.items or [
        {"type": "message", "role": role, "content": [{"type": "text", "text": text}]}
        for role, text in ctx.history
    ] or [{"type": "message", "role": "user",
           "content": [{"type": "text", "text": ctx.transcript}]}]
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = item.get("role", "user")
            text = _item_text(item)
            if role == "user":
                messages.append({"role": "user", "content": text or INAUDIBLE})
            elif text:
                messages.append({"role": role, "content": text})
        elif kind == "function_call":
            call = {"id": item.get("call_id", ""), "type": "function",
                    "function": {"name": item.get("name", ""),
                                 "arguments": item.get("arguments") or "{}"}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id", ""),
                             "content": str(item.get("output", ""))})
    return messages


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Realtime function tools in the Chat Completions shape."""
    out = []
    for tool in tools:
        if tool.get("type", "function") != "function" or not tool.get("name"):
            continue
        function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """A Realtime ``tool_choice`` in the Chat Completions shape."""
    if isinstance(choice, dict):
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        return {"type": "function", "function": {"name": name}}
    return choice


@dataclass
class _PendingCall:
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatBrain:
    """Answers with a language model behind an OpenAI-compatible Chat Completions endpoint.

    Implements :class:`~livetalk.server.brain.StreamingBrain` (and :meth:`reply`, which
    waits for the whole answer).

    Args:
        base_url: the API root, such as ``http://127.0.0.1:8080/v1`` (llama.cpp's
            ``llama-server``), ``http://127.0.0.1:8000/v1`` (vLLM) or
            ``https://api.openai.com/v1``; requests go to ``{base_url}/chat/completions``.
        model: the model name the endpoint expects.
        api_key: sent as a bearer token; default the ``LIVETALK_CHAT_API_KEY`` environment
            variable; none if that is unset too (local servers need none).
        timeout_s: longest wait for the connection and between two pieces of the stream.
        temperature: sampling temperature, or None for the endpoint's default.
        max_tokens: longest answer in tokens, or None for the endpoint's default.
        extra_body: more fields for the request body (``{"top_p": 0.9}``...).
        http_client: an httpx client to reuse (you close it); by default each response
            opens and closes its own.

    Raises:
        ConfigError: an empty ``base_url`` or ``model``, or a ``timeout_s`` <= 0.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.strip():
            raise ConfigError("the chat brain needs the endpoint's base URL (--chat-base-url)")
        if not isinstance(model, str) or not model.strip():
            raise ConfigError("the chat brain needs a model name (--chat-model)")
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key if api_key is not None else os.environ.get(CHAT_API_KEY_ENV)
        self.timeout_s = timeout_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self._client = http_client

    @property
    def url(self) -> str:
        """Where requests go."""
        return f"{self.base_url}/chat/completions"

    def request_body(self, ctx: BrainContext) -> dict[str, Any]:
        """The JSON body sent for ``ctx`` (streaming)."""
        body: dict[str, Any] = {"model": self.model, "messages": chat_messages(ctx),
                                "stream": True}
        tools = chat_tools(ctx.tools)
        if tools:
            body["tools"] = tools
            body["tool_choice"] = chat_tool_choice(ctx.tool_choice)
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        body.update(self.extra_body)
        return body

    async def stream(self, ctx: BrainContext) -> AsyncIterator[BrainChunk]:
        """Ask the endpoint; yield text deltas as they arrive, then the tool calls.

        Raises:
            BrainError: the endpoint cannot be reached, answers an error or a malformed
                stream, or goes quiet for longer than ``timeout_s``.
        """
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        timeout = httpx.Timeout(self.timeout_s)
        client = self._client or httpx.AsyncClient(timeout=timeout)
        calls: dict[int, _PendingCall] = {}
        try:
            async with client.stream("POST", self.url, json=self.request_body(ctx),
                                     headers=headers, timeout=timeout) as response:
                if response.status_code != 200:
                    raise BrainError(await self._status_message(response))
                if response.headers.get("content-type", "").startswith("application/json"):
                    # a server that ignores "stream": one whole completion
                    await response.aread()
                    for chunk in self._whole(response):
                        yield chunk
                    return
                async for line in response.aiter_lines():
                    data = _sse_data(line)
                    if data is None:
                        continue
                    if data == "[DONE]":
                        break
                    for piece in self._delta(data, calls):
                        yield piece
        except httpx.TimeoutException as exc:
            raise BrainError(f"the chat endpoint {self.url} did not answer within "
                             f"{self.timeout_s:g} s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise BrainError(f"cannot reach the chat endpoint {self.url}: {exc}") from exc
        finally:
            if self._client is None:
                await client.aclose()
        for index in sorted(calls):
            yield self._tool_call(calls[index])

    async def reply(self, ctx: BrainContext) -> BrainReply:
        """The whole answer: the first tool call if there is one, else the text."""
        text: list[str] = []
        async for chunk in self.stream(ctx):
            if isinstance(chunk, ToolCallReply):
                return chunk
            text.append(chunk)
        return SpeakReply("".join(text))

    async def _status_message(self, response: httpx.Response) -> str:
        body = (await response.aread())[:4096].decode("utf-8", "replace")
        message = body.strip()[:_ERROR_BODY_CHARS]
        try:
            error = json.loads(body).get("error")
            if isinstance(error, dict) and error.get("message"):
                message = str(error["message"])
            elif isinstance(error, str):
                message = error
        except (ValueError, AttributeError):
            pass
        return f"the chat endpoint {self.url} answered {response.status_code}: {message}"

    def _delta(self, data: str, calls: dict[int, _PendingCall]) -> list[str]:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise BrainError(f"the chat endpoint {self.url} sent a malformed event: "
                             f"{data[:80]!r}") from exc
        if not isinstance(chunk, dict):
            raise BrainError(f"the chat endpoint {self.url} sent a malformed event: "
                             f"{data[:80]!r}")
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise BrainError(f"the chat endpoint {self.url} failed mid-answer: {message}")
        texts: list[str] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                texts.append(content)
            for call in delta.get("tool_calls") or []:
                pending = calls.setdefault(int(call.get("index", 0)), _PendingCall())
                function = call.get("function") or {}
                if function.get("name"):
                    pending.name += str(function["name"])
                if function.get("arguments"):
                    pending.arguments.append(str(function["arguments"]))
        return texts

    def _whole(self, response: httpx.Response) -> list[BrainChunk]:
        try:
            message = response.json()["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BrainError(f"the chat endpoint {self.url} answered an unexpected body") from exc
        out: list[BrainChunk] = []
        if message.get("content"):
            out.append(str(message["content"]))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            out.append(self._tool_call(_PendingCall(str(function.get("name", "")),
                                                    [str(function.get("arguments") or "")])))
        return out

    def _tool_call(self, call: _PendingCall) -> ToolCallReply:
        arguments = "".join(call.arguments).strip() or "{}"
        try:
            return ToolCallReply(call.name, arguments)
        except ConfigError as exc:
            raise BrainError(f"the model's tool call is unusable: {exc}") from exc

    def __repr__(self) -> str:  # never the key
        return f"ChatBrain({self.url!r}, model={self.model!r})"


def _sse_data(line: str) -> str | None:
    """The payload of one server-sent-events line, or None for anything else."""
    if not line.startswith("data:"):
        return None  # blank separators, comments (":"), "event:" and "id:" fields
    return line[5:].strip() or None
