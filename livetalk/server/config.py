"""Session objects of the local server: defaults, validation with API-shaped errors, merging.

The real API answers a bad ``session.update`` with an ``error`` event whose ``code`` and
``param`` say what was wrong (``realtime-protocol.md`` section 12). :func:`validate_session`
reproduces those codes; :func:`merge_session` applies an accepted update the way the API
does (only the fields present change; ``null`` clears an object).
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

from livetalk.errors import SessionConfigError
from livetalk.protocol.session import DEFAULT_MODEL

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_MODEL",
    "VOICES",
    "default_session",
    "merge_session",
    "validate_session",
]

DEFAULT_INSTRUCTIONS = (
    "You are a helpful, friendly voice assistant. This is livetalk's local server: "
    "replies come from its configured brain, not from a language model."
)
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")

_TOP_KEYS = {
    "type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
    "max_output_tokens", "tracing", "truncation", "include", "prompt", "reasoning",
    "parallel_tool_calls",
    # server-side fields a client may echo back from session.created
    "id", "object", "expires_at",
}
_AUDIO_KEYS = {"input", "output"}
_INPUT_KEYS = {"format", "transcription", "noise_reduction", "turn_detection"}
_OUTPUT_KEYS = {"format", "voice", "speed"}
_SERVER_VAD_KEYS = {
    "type", "threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms",
    "create_response", "interrupt_response",
}
_SEMANTIC_VAD_KEYS = {"type", "eagerness", "create_response", "interrupt_response"}
_TRANSCRIPTION_KEYS = {"model", "language", "prompt", "delay", "keywords", "languages"}



def default_session(model: str = DEFAULT_MODEL, *, lifetime_s: int = 3600) -> dict[str, Any]:
    """The full effective session the server starts a call with (as in ``session.created``)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_" + secrets.token_hex(12),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + lifetime_s,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0,
            },
        },
        "include": None,
    }


def _unknown(keys: set[str], allowed: set[str], prefix: str) -> None:
    extra = sorted(keys - allowed)
    if extra:
        param = f"{prefix}.{extra[0]}"
        raise SessionConfigError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def _invalid(param: str, value: Any, supported: str) -> SessionConfigError:
    return SessionConfigError(
        "invalid_value",
        f"Invalid value: {value!r}. Supported values are: {supported}.",
        param,
    )


def _number(obj: dict[str, Any], key: str, param: str, lo: float, hi: float) -> None:
    if key in obj and obj[key] is not None:
        v = obj[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise _invalid(f"{param}.{key}", v, f"a number between {lo} and {hi}")


def _bool(obj: dict[str, Any], key: str, param: str) -> None:
    if key in obj and not isinstance(obj[key], bool):
        raise _invalid(f"{param}.{key}", obj[key], "true and false")


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SessionConfigError(
            "invalid_type", f"Invalid type for '{param}': expected an object.", param
        )
    return value


def _validate_turn_detection(td: Any, param: str) -> None:
    if td is None:
        return
    td = _object(td, param)
    kind = td.get("type")
    if kind == "server_vad":
        _unknown(set(td), _SERVER_VAD_KEYS, param)
        _number(td, "threshold", param, 0.0, 1.0)
        _number(td, "prefix_padding_ms", param, 0, 10_000)
        _number(td, "silence_duration_ms", param, 0, 10_000)
        if td.get("idle_timeout_ms") is not None:
            _number(td, "idle_timeout_ms", param, 5000, 30000)
    elif kind == "semantic_vad":
        _unknown(set(td), _SEMANTIC_VAD_KEYS, param)
        if td.get("eagerness", "auto") not in ("low", "medium", "high", "auto"):
            raise _invalid(f"{param}.eagerness", td["eagerness"], "'low', 'medium', 'high', 'auto'")
    elif kind is None:
        raise SessionConfigError(
            "missing_required_parameter",
            f"Missing required parameter: '{param}.type'.",
            f"{param}.type",
        )
    else:
        raise _invalid(f"{param}.type", kind, "'server_vad' and 'semantic_vad'")
    _bool(td, "create_response", param)
    _bool(td, "interrupt_response", param)


def _validate_format(fmt: Any, param: str) -> None:
    fmt = _object(fmt, param)
    kind = fmt.get("type")
    if kind not in ("audio/pcm", "audio/pcmu", "audio/pcma"):
        raise _invalid(f"{param}.type", kind, "'audio/pcm', 'audio/pcmu', 'audio/pcma'")
    if kind == "audio/pcm" and fmt.get("rate", 24000) != 24000:
        raise _invalid(f"{param}.rate", fmt.get("rate"), "24000")


def _validate_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise SessionConfigError("invalid_type",
                                 "Invalid type for 'session.tools': expected an array.",
                                 "session.tools")
    for i, tool in enumerate(tools):
        param = f"session.tools[{i}]"
        tool = _object(tool, param)
        if tool.get("type", "function") not in ("function", "mcp"):
            raise _invalid(f"{param}.type", tool.get("type"), "'function' and 'mcp'")
        if tool.get("type", "function") == "function" and not isinstance(tool.get("name"), str):
            raise SessionConfigError("missing_required_parameter",
                               f"Missing required parameter: '{param}.name'.", f"{param}.name")


def validate_session(session: Any, *, param: str = "session") -> dict[str, Any]:
    """Check a client's session object; return it, or raise :class:`SessionConfigError`."""
    session = _object(session, param)
    if "type" not in session:
        raise SessionConfigError(
            "missing_required_parameter", f"Missing required parameter: '{param}.type'.",
            f"{param}.type",
        )
    if session["type"] != "realtime":
        raise _invalid(f"{param}.type", session["type"], "'realtime' and 'transcription'")
    _unknown(set(session), _TOP_KEYS, param)
    if "instructions" in session and not isinstance(session["instructions"], str):
        raise _invalid(f"{param}.instructions", session["instructions"], "a string")
    if "output_modalities" in session and session["output_modalities"] not in (
        ["audio"], ["text"]
    ):
        raise _invalid(f"{param}.output_modalities", session["output_modalities"],
                       "['audio'] and ['text']")
    mot = session.get("max_output_tokens")
    if mot is not None and mot != "inf":
        _number(session, "max_output_tokens", param, 1, 4096)
    if "tools" in session:
        _validate_tools(session["tools"])
    tc = session.get("tool_choice")
    if tc is not None and not isinstance(tc, dict) and tc not in ("auto", "none", "required"):
        raise _invalid(f"{param}.tool_choice", tc, "'auto', 'none', 'required'")
    if "audio" in session:
        audio = _object(session["audio"], f"{param}.audio")
        _unknown(set(audio), _AUDIO_KEYS, f"{param}.audio")
        if "input" in audio:
            inp = _object(audio["input"], f"{param}.audio.input")
            _unknown(set(inp), _INPUT_KEYS, f"{param}.audio.input")
            if "format" in inp:
                _validate_format(inp["format"], f"{param}.audio.input.format")
            if "turn_detection" in inp:
                _validate_turn_detection(
                    inp["turn_detection"], f"{param}.audio.input.turn_detection")
            tr = inp.get("transcription")
            if tr is not None:
                tr = _object(tr, f"{param}.audio.input.transcription")
                _unknown(set(tr), _TRANSCRIPTION_KEYS, f"{param}.audio.input.transcription")
        if "output" in audio:
            out = _object(audio["output"], f"{param}.audio.output")
            _unknown(set(out), _OUTPUT_KEYS, f"{param}.audio.output")
            if "format" in out:
                _validate_format(out["format"], f"{param}.audio.output.format")
            voice = out.get("voice")
            if voice is not None and not (
                voice in VOICES or (isinstance(voice, dict) and isinstance(voice.get("id"), str))
            ):
                raise _invalid(f"{param}.audio.output.voice", voice,
                               ", ".join(repr(v) for v in VOICES))
            _number(out, "speed", f"{param}.audio.output", 0.25, 1.5)
    checked: dict[str, Any] = session
    return checked


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Apply a validated update: present fields replace, nested objects merge, null clears."""
    merged = copy.deepcopy(current)
    for key, value in update.items():
        if key in ("id", "object", "expires_at", "type"):
            continue
        if key == "audio" and isinstance(value, dict):
            for direction, fields in value.items():
                target = merged["audio"].setdefault(direction, {})
                for name, v in fields.items():
                    if name == "turn_detection" and isinstance(v, dict):
                        base = target.get("turn_detection") or {}
                        if base.get("type") != v.get("type", base.get("type")):
                            base = {}
                        td = {**_td_defaults(v.get("type", base.get("type"))), **base, **v}
                        target["turn_detection"] = td
                    else:
                        target[name] = copy.deepcopy(v)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _td_defaults(kind: str | None) -> dict[str, Any]:
    if kind == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": "auto", "create_response": True,
                "interrupt_response": True}
    return {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 500, "idle_timeout_ms": None, "create_response": True,
            "interrupt_response": True}
