"""Scenario files: the schema, loading and validation.

A scenario is a YAML or JSON file describing one scripted call::

    name: booking                      # optional; default: the file name without suffix
    session:                           # optional; mapped to SessionConfig
      instructions: You are a booking assistant.
      turn_detection: server_vad       # server_vad | semantic_vad | none | {type: ..., ...}
    reply_timeout_s: 30                # optional; wall seconds to wait for each reply
    turns:
      - audio: recordings/ask_weather.wav      # relative to the scenario file
        text: what is the weather like today   # optional: what the recording says
      - say: please book a table for two       # spoken by the bundled eSpeak NG voice
        expect: {transcript_contains: table, reply_contains: table}
      - pause_ms: 1500                         # silence
      - say: actually make it three
        barge_in_after_ms: 800                 # speak over the previous reply

Load files with :func:`load_scenario` (or :func:`load_scenarios` for several files and
directories), then run them with :func:`livetalk.scenarios.run_scenario`. Every problem raises
:class:`ScenarioError` (a :class:`~livetalk.errors.ConfigError`) whose message names the file,
the turn index and the field. The full reference is ``docs/researchers.md``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from livetalk._extras import install_hint
from livetalk.errors import ConfigError, ScenarioError
from livetalk.protocol.session import DEFAULT_TRANSCRIPTION_MODEL, SessionConfig

if TYPE_CHECKING:
    from livetalk.server.asr import AsrChoice

__all__ = [
    "DEFAULT_REPLY_TIMEOUT_S",
    "DEFAULT_TRANSCRIPTION_MODEL",
    "EXPECTATION_KEYS",
    "Expectation",
    "Scenario",
    "ScenarioError",
    "ScenarioTurn",
    "TurnKind",
    "load_scenario",
    "load_scenarios",
    "normalize_text",
    "scenario_from_dict",
    "scenario_phrases",
]

DEFAULT_REPLY_TIMEOUT_S: Final = 30.0
"""Wall seconds the runner waits for each user turn and reply, unless the scenario says."""

_SUFFIXES: Final = (".yaml", ".yml", ".json")
_TOP_KEYS: Final = frozenset({"name", "description", "session", "turns", "reply_timeout_s"})
_TURN_KEYS: Final = frozenset({"audio", "say", "pause_ms", "expect", "barge_in_after_ms",
                               "text"})
_KIND_KEYS: Final = ("audio", "say", "pause_ms")
_SESSION_KEYS: Final = frozenset({
    "instructions", "model", "voice", "turn_detection", "transcription", "output_modalities",
    "max_output_tokens", "noise_reduction",
})
_STATUSES: Final = ("completed", "cancelled", "incomplete", "failed")



class TurnKind(StrEnum):
    """What a scenario turn sends."""

    AUDIO = "audio"  # an audio file
    SAY = "say"  # text spoken by the bundled synthesizer
    PAUSE = "pause"  # silence


@dataclass(frozen=True, slots=True)
class Expectation:
    """One check on a turn's outcome (see :data:`EXPECTATION_KEYS`).

    Attributes:
        key: the expectation, e.g. ``reply_contains``.
        value: what the scenario asked for (a list of strings for the ``*_contains`` keys).
    """

    key: str
    value: Any


EXPECTATION_KEYS: Final[Mapping[str, str]] = {
    "transcript_contains": "the user transcript contains every given text",
    "transcript_not_contains": "the user transcript contains none of the given texts",
    "reply_contains": "the reply text contains every given text",
    "reply_not_contains": "the reply text contains none of the given texts",
    "reply_status": "the reply ended with this status (completed, cancelled, incomplete, failed)",
    "max_transcript_ms": "end of speech -> transcript completed, at most this many ms",
    "max_first_audio_ms": "end of speech -> first reply audio, at most this many ms",
    "max_reply_done_ms": "end of speech -> response.done, at most this many ms",
}
"""The keys allowed under ``expect``, with what each checks. Texts are compared after
:func:`normalize_text`; times are measured wall-clock milliseconds."""


@dataclass(frozen=True, slots=True)
class ScenarioTurn:
    """One step of a scenario.

    Attributes:
        index: position in the scenario's ``turns``.
        kind: :class:`TurnKind`.
        audio: the resolved audio file (``audio`` turns).
        say: the text to speak (``say`` turns).
        text: what an ``audio`` turn's recording says, if the scenario tells (a phrase for
            the local server's recogniser).
        pause_ms: the silence to send (``pause`` turns), in media milliseconds.
        expect: the checks on this turn's outcome (spoken turns only).
        barge_in_after_ms: speak over the reply to the previous spoken turn: do not wait for
            that reply to finish, start this turn once its first audio is this many media ms
            old (and once the pause turns in between, which then start with the reply's
            audio, have been sent); None to wait for the reply to finish.
    """

    index: int
    kind: TurnKind
    audio: Path | None = None
    say: str | None = None
    text: str | None = None
    pause_ms: float = 0.0
    expect: tuple[Expectation, ...] = ()
    barge_in_after_ms: float | None = None

    @property
    def spoken(self) -> bool:
        """True for ``audio`` and ``say`` turns (they get a user turn and a reply)."""
        return self.kind is not TurnKind.PAUSE

    def describe(self) -> str:
        """A short label: the text, the file name, or the pause length."""
        if self.kind is TurnKind.SAY:
            return f"say: {self.say}"
        if self.kind is TurnKind.AUDIO:
            return f"audio: {self.audio.name if self.audio else '?'}"
        return f"pause: {self.pause_ms:g} ms"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario; build it with :func:`load_scenario` or :func:`scenario_from_dict`.

    Attributes:
        name: the scenario's name (default: the file stem).
        turns: the steps, in order.
        session: the session configuration of the call.
        path: the file it came from, or None.
        description: free text.
        reply_timeout_s: wall seconds to wait for each user turn and reply.
        manual_turns: the session has no turn detection (``turn_detection: none``): the
            runner commits the audio and asks for the reply itself.
    """

    name: str
    turns: tuple[ScenarioTurn, ...]
    session: SessionConfig
    path: Path | None = None
    description: str = ""
    reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S
    manual_turns: bool = False

    @property
    def phrases(self) -> list[str]:
        """Every ``say`` text and audio ``text``, in order: the phrase list the local server's
        recogniser needs to recognise this scenario."""
        return [p for t in self.turns for p in (t.say, t.text) if p is not None]


def normalize_text(text: str) -> str:
    """Lower case, punctuation turned into spaces, whitespace collapsed (for comparisons)."""
    return " ".join(re.sub(r"[^\w']+", " ", text.lower()).split())


def _is_number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and math.isfinite(value))


def _texts(value: Any, err: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if (not isinstance(items, list) or not items
            or not all(isinstance(v, str) and normalize_text(v) for v in items)):
        raise err(f"must be a non-empty string or a list of them; got {value!r}", where)
    return [str(v) for v in items]


def _expectations(raw: Any, err: Any) -> tuple[Expectation, ...]:
    if not isinstance(raw, Mapping):
        raise err(f"must be a mapping of checks; got {raw!r}", "expect")
    out: list[Expectation] = []
    for key, value in raw.items():
        where = f"expect.{key}"
        if key not in EXPECTATION_KEYS:
            raise err(f"unknown expectation; allowed: {', '.join(EXPECTATION_KEYS)}", where)
        if key.endswith("_contains"):
            out.append(Expectation(key, _texts(value, err, where)))
        elif key == "reply_status":
            if value not in _STATUSES:
                raise err(f"must be one of {', '.join(_STATUSES)}; got {value!r}", where)
            out.append(Expectation(key, value))
        else:
            if not _is_number(value) or value <= 0:
                raise err(f"must be a number of milliseconds > 0; got {value!r}", where)
            out.append(Expectation(key, float(value)))
    return tuple(out)


def _turn(raw: Any, index: int, base: Path | None, spoken_before: bool,
          path: Path | None) -> ScenarioTurn:
    def err(message: str, where: str | None = None) -> ScenarioError:
        return ScenarioError(message, path=path, turn=index, field=where)

    if not isinstance(raw, Mapping):
        raise err(f"a turn must be a mapping with audio, say or pause_ms; got {raw!r}")
    unknown = sorted(str(k) for k in raw if k not in _TURN_KEYS)
    if unknown:
        raise err(f"unknown field; allowed: {', '.join(sorted(_TURN_KEYS))}", unknown[0])
    kinds = [k for k in _KIND_KEYS if k in raw]
    if len(kinds) != 1:
        found = f"found {', '.join(kinds)}" if kinds else "found none"
        raise err(f"a turn needs exactly one of audio, say or pause_ms ({found})")
    kind = kinds[0]
    value = raw[kind]
    if kind == "pause_ms":
        if not _is_number(value) or value < 0:
            raise err(f"must be a number of milliseconds >= 0; got {value!r}", "pause_ms")
        for key in ("expect", "barge_in_after_ms", "text"):
            if key in raw:
                raise err("only spoken turns (audio, say) take this field", key)
        return ScenarioTurn(index, TurnKind.PAUSE, pause_ms=float(value))
    expect = _expectations(raw["expect"], err) if "expect" in raw else ()
    barge = raw.get("barge_in_after_ms")
    if barge is not None:
        if not _is_number(barge) or barge < 0:
            raise err(f"must be a number of milliseconds >= 0; got {barge!r}", "barge_in_after_ms")
        if not spoken_before:
            raise err("a barge-in needs an earlier spoken turn (audio or say) to speak over",
                      "barge_in_after_ms")
        barge = float(barge)
    if kind == "say":
        if "text" in raw:
            raise err("only audio turns take this field (a say turn's text is its say)", "text")
        if not isinstance(value, str) or not normalize_text(value):
            raise err(f"must be non-empty text; got {value!r}", "say")
        return ScenarioTurn(index, TurnKind.SAY, say=value.strip(), expect=expect,
                            barge_in_after_ms=barge)
    if not isinstance(value, str) or not value:
        raise err(f"must be a path to an audio file; got {value!r}", "audio")
    text = raw.get("text")
    if text is not None and (not isinstance(text, str) or not normalize_text(text)):
        raise err(f"must be non-empty text; got {text!r}", "text")
    audio = Path(value).expanduser()
    if not audio.is_absolute() and base is not None:
        audio = base / audio
    if not audio.is_file():
        raise err(f"no such audio file: {str(audio)!r}", "audio")
    return ScenarioTurn(index, TurnKind.AUDIO, audio=audio, text=text, expect=expect,
                        barge_in_after_ms=barge)


def _session_dict(raw: Mapping[str, Any], err: Any) -> dict[str, Any]:
    unknown = sorted(str(k) for k in raw if k not in _SESSION_KEYS)
    if unknown:
        raise err(f"unknown field; allowed: {', '.join(sorted(_SESSION_KEYS))}",
                  f"session.{unknown[0]}")
    out: dict[str, Any] = {"type": "realtime"}
    audio_in: dict[str, Any] = {}
    for key in ("instructions", "model", "output_modalities", "max_output_tokens"):
        if key in raw:
            value = raw[key]
            out[key] = [value] if key == "output_modalities" and isinstance(value, str) else value
    if "voice" in raw:
        out["audio"] = {"output": {"voice": raw["voice"]}}
    td = raw.get("turn_detection", "server_vad")
    if td is None or td == "none":
        audio_in["turn_detection"] = None
    elif isinstance(td, str):
        if td not in ("server_vad", "semantic_vad"):
            raise err(f"must be server_vad, semantic_vad, none or a mapping; got {td!r}",
                      "session.turn_detection")
        audio_in["turn_detection"] = {"type": td}
    elif isinstance(td, Mapping):
        audio_in["turn_detection"] = dict(td)
    else:
        raise err(f"must be server_vad, semantic_vad, none or a mapping; got {td!r}",
                  "session.turn_detection")
    tr = raw.get("transcription", True)
    if tr is True:
        audio_in["transcription"] = {"model": DEFAULT_TRANSCRIPTION_MODEL}
    elif tr is False or tr is None or tr == "none":
        audio_in["transcription"] = None
    elif isinstance(tr, str):
        audio_in["transcription"] = {"model": tr}
    elif isinstance(tr, Mapping):
        audio_in["transcription"] = {"model": DEFAULT_TRANSCRIPTION_MODEL, **tr}
    else:
        raise err(f"must be true, false, a model name or a mapping; got {tr!r}",
                  "session.transcription")
    if "noise_reduction" in raw:
        nr = raw["noise_reduction"]
        audio_in["noise_reduction"] = None if nr in (None, "none") else {"type": nr}
    out.setdefault("audio", {})["input"] = audio_in
    return out


def scenario_from_dict(data: Any, *, path: str | Path | None = None,
                       name: str | None = None) -> Scenario:
    """Validate a scenario given as a mapping (what a YAML/JSON file holds).

    Args:
        data: the mapping.
        path: the file it came from: audio paths are resolved relative to its folder, and
            error messages name it. Without it, relative audio paths are relative to the
            current directory.
        name: the default name when ``data`` has none (default: the file stem, or
            ``"scenario"``).

    Returns:
        The :class:`Scenario`; run it with :func:`livetalk.scenarios.run_scenario`.

    Raises:
        ScenarioError: the message names the file, the turn index and the field.
    """
    file = Path(path) if path is not None else None

    def err(message: str, where: str | None = None) -> ScenarioError:
        return ScenarioError(message, path=file, field=where)

    if not isinstance(data, Mapping):
        raise err(f"a scenario must be a mapping with 'turns'; got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if unknown:
        raise err(f"unknown field; allowed: {', '.join(sorted(_TOP_KEYS))}", unknown[0])
    default_name = name or (file.stem if file is not None else "scenario")
    scenario_name = data.get("name", default_name)
    if not isinstance(scenario_name, str) or not scenario_name.strip():
        raise err(f"must be non-empty text; got {scenario_name!r}", "name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise err(f"must be text; got {description!r}", "description")
    timeout = data.get("reply_timeout_s", DEFAULT_REPLY_TIMEOUT_S)
    if not _is_number(timeout) or timeout <= 0:
        raise err(f"must be a number of seconds > 0; got {timeout!r}", "reply_timeout_s")
    raw_session = data.get("session") or {}
    if not isinstance(raw_session, Mapping):
        raise err(f"must be a mapping; got {raw_session!r}", "session")
    ga = _session_dict(raw_session, err)
    try:
        session = SessionConfig.from_dict(ga)
    except ConfigError as exc:
        raise err(str(exc), "session") from None
    raw_turns = data.get("turns")
    if not isinstance(raw_turns, Sequence) or isinstance(raw_turns, str) or not raw_turns:
        raise err("must be a non-empty list of turns", "turns")
    base = file.parent if file is not None else None
    turns: list[ScenarioTurn] = []
    for i, raw in enumerate(raw_turns):
        turns.append(_turn(raw, i, base, any(t.spoken for t in turns), file))
    if not any(t.spoken for t in turns):
        raise err("needs at least one spoken turn (audio or say)", "turns")
    manual = ga["audio"]["input"]["turn_detection"] is None
    return Scenario(name=scenario_name.strip(), turns=tuple(turns), session=session, path=file,
                    description=description, reply_timeout_s=float(timeout),
                    manual_turns=manual)


def _parse(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read the file: {exc.strerror or exc}", path=path) from None
    except UnicodeDecodeError:
        raise ScenarioError("not a UTF-8 text file", path=path) from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                                f"{exc.msg}", path=path) from None
    try:
        import yaml
    except ImportError:
        raise ScenarioError(f"reading YAML needs PyYAML: {install_hint('scenarios')} "
                            "(or write the scenario as .json)", path=path) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ScenarioError(f"invalid YAML{at}: {exc.problem}", path=path) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"invalid YAML: {exc}", path=path) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file (``.json`` is JSON, anything else YAML).

    Raises:
        ScenarioError: unreadable file, bad syntax (with line and column) or an invalid
            field (with the turn index and the field).
    """
    file = Path(path)
    if not file.is_file():
        raise ScenarioError("no such scenario file", path=file)
    return scenario_from_dict(_parse(file), path=file)


def load_scenarios(paths: Iterable[str | Path]) -> list[Scenario]:
    """Load scenario files; a directory contributes its ``*.yaml``, ``*.yml``, ``*.json`` files
    in name order.

    Raises:
        ScenarioError: the first invalid file, or a directory without scenarios.
    """
    out: list[Scenario] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            files = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in _SUFFIXES)
            if not files:
                raise ScenarioError("the folder holds no .yaml, .yml or .json scenario",
                                    path=path)
            out.extend(load_scenario(f) for f in files)
        else:
            out.append(load_scenario(path))
    return out


def scenario_phrases(scenarios: Iterable[Scenario | str | Path]) -> list[str]:
    """Every distinct ``say`` text and audio ``text`` of the scenarios, for the local server's
    ``phrases=``.

    The local server recognises speech only reliably when its phrase list holds what is said;
    start it with ``serve(phrases=scenario_phrases(files))``. Paths may be files or folders
    (as for :func:`load_scenarios`).
    """
    phrases: dict[str, None] = {}
    for item in scenarios:
        loaded = [item] if isinstance(item, Scenario) else load_scenarios([item])
        for scenario in loaded:
            phrases.update(dict.fromkeys(scenario.phrases))
    return list(phrases)


def local_recogniser(phrases: Sequence[str]) -> AsrChoice:
    """The local server's recogniser (its ``asr=``) for scripted sessions that say ``phrases``.

    Told every phrase the scenarios say, pocketsphinx hears them word for word, where
    open-vocabulary Whisper sometimes does not ("three" -> "free") and would make the
    scenarios' checks flaky; with no phrases, the server's default (``"auto"``). Used by
    ``livetalk script --local`` and by the local servers of Ray workers alike.
    """
    return "pocketsphinx" if phrases else "auto"
