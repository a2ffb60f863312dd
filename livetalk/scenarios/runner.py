"""Running scenarios: one call per scenario, turn by turn, with timings, usage and checks.

Theory of operation. :func:`run_scenario` speaks (or plays) the scenario's turns into one call,
one after the other. Before connecting it synthesises every ``say`` text, so synthesis never
skews the timings, and it starts each call with 0.8 s of faint noise (voice activity
detectors adapt during the first half second of sound). Every server event is recorded with
its arrival time (a tap on the data channel) and the model's audio is watched for the first
loud chunk of each reply. For each spoken turn the runner:

1. streams the audio (``pause_ms`` turns stream silence); with ``turn_detection: none`` it
   works like push-to-talk: ``input_audio_buffer.clear`` before the audio, then
   ``input_audio_buffer.commit`` and ``response.create`` once it was sent;
2. waits for ``input_audio_buffer.committed`` (the user item) and the next
   ``response.created`` (the reply);
3. waits for the reply to finish (``response.done`` and, when audio played,
   ``output_audio_buffer.stopped``), or, when the next spoken turn barges in, only for the
   reply's first audio; pause turns in between are then sent while the reply plays, and the
   barging turn starts ``barge_in_after_ms`` after that first audio (or when the pauses are
   over, if later).

Durations in the scenario (``pause_ms``, ``barge_in_after_ms``) are media time: at ``speed``
N they pass N times faster, like the audio. Reported latencies are measured wall-clock
milliseconds from the end of the user's speech (``input_audio_buffer.speech_stopped``, or
the commit with manual turns) to the transcript, to the first reply audio
(``output_audio_buffer.started``, or the first audio delta over WebSocket), to the first loud
audio actually received, and to ``response.done``.

:func:`run_scenarios` runs many in one event loop (``concurrency`` calls at once);
:func:`run_in_processes` spreads them over worker processes, one event loop each.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from livetalk.audio.format import API_RATE
from livetalk.audio.sources import ArraySource, FileSource, SilenceSource, concat
from livetalk.errors import CallClosedError, LivetalkError, RateLimitError
from livetalk.protocol.conversation import Turn
from livetalk.protocol.events import Usage
from livetalk.protocol.session import DEFAULT_MODEL
from livetalk.scenarios.limits import CallLimiter
from livetalk.scenarios.pricing import DEFAULT_PRICES, PriceTable, estimate_cost
from livetalk.scenarios.schema import Scenario, ScenarioTurn, TurnKind, normalize_text

__all__ = [
    "ExpectationResult",
    "check_expectations",
    "ScenarioResult",
    "TurnResult",
    "run_in_processes",
    "run_scenario",
    "run_scenarios",
]

LOUD: Final = 300
"""Peak (int16) above which a received chunk of model audio counts as heard sound."""
_MANUAL_TAIL_S: Final = 0.3
"""Silence sent after a push-to-talk utterance before committing it (media seconds)."""
_CLOSED_POLL_S: Final = 0.25
_LEAD_IN_S: Final = 0.8
"""Room noise streamed once before the first turn (media seconds): voice activity detectors
(the local server's among them) adapt to the line during the first half second of sound and
would clip speech that starts at once."""
_LEAD_IN_PEAK: Final = 30
"""Peak of that noise (int16, about -60 dBFS): never taken for speech, never digital zero."""
DEFAULT_RATE_LIMIT_RETRIES: Final = 3
"""How many times a call refused with 429 is tried again (after its ``Retry-After``)."""
MAX_RETRY_AFTER_S: Final = 120.0
"""A 429 asking to wait longer than this (an exhausted quota) is reported, not retried."""
_DEFAULT_RETRY_AFTER_S: Final = 2.0
"""The wait after a 429 without a ``Retry-After`` header (doubled at each retry)."""

EventTap = Callable[[str, dict[str, Any]], None]
ResultCallback = Callable[["ScenarioResult"], None]


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    """The outcome of one ``expect`` entry.

    Attributes:
        key: the expectation (``reply_contains``...).
        expected: what the scenario asked for.
        actual: what was observed (text, status or milliseconds; None if nothing was).
        passed: whether it held.
    """

    key: str
    expected: Any
    actual: Any
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"key": self.key, "expected": self.expected, "actual": self.actual,
                "passed": self.passed}


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What happened on one spoken turn.

    Attributes:
        index: the turn's index in the scenario's ``turns``.
        label: ``say: ...`` or ``audio: file.wav``.
        user_item_id: the user's conversation item (None if no speech was committed).
        user_transcript: the input transcription (None if none arrived).
        reply_text: the reply's transcript or text (what was said before a cancel).
        reply_status: ``completed``, ``cancelled``, ``incomplete``, ``failed`` or None.
        response_id: the reply's response.
        transcript_ms: end of speech -> transcription completed.
        first_audio_ms: end of speech -> first reply audio event.
        first_audio_heard_ms: end of speech -> first loud chunk of reply audio received.
        reply_done_ms: end of speech -> ``response.done``.
        usage: the reply's token usage.
        cost_usd: its estimated cost (None without a price for the model).
        expectations: the outcome of each ``expect`` entry.
        error: why the turn could not be measured (timeout, call failure), or None.
    """

    index: int
    label: str
    user_item_id: str | None = None
    user_transcript: str | None = None
    reply_text: str | None = None
    reply_status: str | None = None
    response_id: str | None = None
    transcript_ms: float | None = None
    first_audio_ms: float | None = None
    first_audio_heard_ms: float | None = None
    reply_done_ms: float | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    expectations: tuple[ExpectationResult, ...] = ()
    error: str | None = None

    @property
    def passed(self) -> bool:
        """No error and every expectation held."""
        return self.error is None and all(e.passed for e in self.expectations)

    @property
    def failures(self) -> list[str]:
        """One line per failed expectation (and the error), for messages."""
        out = [f"turn {self.index} ({self.label}): {self.error}"] if self.error else []
        out += [f"turn {self.index} ({self.label}): {e.key} expected {e.expected!r}, got "
                f"{e.actual!r}" for e in self.expectations if not e.passed]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the report's ``turns[]`` entries)."""
        return {
            "index": self.index, "label": self.label, "passed": self.passed,
            "error": self.error, "user_item_id": self.user_item_id,
            "user_transcript": self.user_transcript, "reply_text": self.reply_text,
            "reply_status": self.reply_status, "response_id": self.response_id,
            "timings_ms": {
                "transcript": _round(self.transcript_ms),
                "first_audio": _round(self.first_audio_ms),
                "first_audio_heard": _round(self.first_audio_heard_ms),
                "reply_done": _round(self.reply_done_ms),
            },
            "usage": self.usage.to_dict() if self.usage is not None else None,
            "cost_usd": self.cost_usd,
            "expectations": [e.to_dict() for e in self.expectations],
        }


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """The outcome of one scenario (one call).

    Attributes:
        name: the scenario's name.
        path: its file, as a string (None for a scenario built in code).
        turns: one :class:`TurnResult` per spoken turn.
        call_id: the call's id.
        model: the session's model (prices are looked up by it).
        connect_ms: time to connect.
        duration_s: wall time of the whole scenario, connect included.
        usage: token usage of every response of the call.
        cost_usd: its estimated cost (None without a price for the model).
        speed: the media speed it ran at.
        error: why the scenario stopped early (connect failure, call lost), or None.
        error_kind: the class name of that error in :mod:`livetalk.errors`
            (``ConnectError``, ``AuthenticationError``...), or None.
        retries: connection attempts refused with 429 and tried again.
    """

    name: str
    path: str | None
    turns: tuple[TurnResult, ...]
    call_id: str | None = None
    model: str | None = None
    connect_ms: float | None = None
    duration_s: float = 0.0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    speed: float = 1.0
    error: str | None = None
    error_kind: str | None = None
    retries: int = 0

    @property
    def passed(self) -> bool:
        """No error and every turn passed."""
        return self.error is None and all(t.passed for t in self.turns)

    @property
    def failures(self) -> list[str]:
        """One line per failure, for assertion messages."""
        out = [f"scenario error: {self.error}"] if self.error else []
        for turn in self.turns:
            out += turn.failures
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the report's ``scenarios[]`` entries)."""
        return {
            "name": self.name, "path": self.path, "passed": self.passed, "error": self.error,
            "error_kind": self.error_kind,
            "call_id": self.call_id, "model": self.model, "speed": self.speed,
            "connect_ms": _round(self.connect_ms), "duration_s": round(self.duration_s, 3),
            "usage": self.usage.to_dict(), "cost_usd": self.cost_usd,
            "retries": self.retries, "turns": [t.to_dict() for t in self.turns],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ---------------------------------------------------------------------- recording
class _Recorder:
    """Every server event with its arrival time; waits for the next one matching a test."""

    def __init__(self, tap: EventTap | None) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.is_closed: Callable[[], bool] = lambda: False
        self._tap = tap
        self._waiters: list[asyncio.Future[None]] = []

    def __call__(self, direction: str, event: dict[str, Any]) -> None:
        if self._tap is not None:
            self._tap(direction, event)
        if direction != "in":
            return
        self.events.append((time.monotonic(), event))
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    def find(self, test: Callable[[dict[str, Any]], bool], start: int = 0) -> int | None:
        for i in range(start, len(self.events)):
            if test(self.events[i][1]):
                return i
        return None

    async def wait_for(self, test: Callable[[dict[str, Any]], bool], start: int,
                       deadline: float, what: str) -> int:
        """Index of the first event from ``start`` on passing ``test``.

        Raises:
            TimeoutError: none arrived before ``deadline`` (``time.monotonic()``).
            CallClosedError: the call closed while waiting.
        """
        checked = start
        while True:
            found = self.find(test, checked)
            if found is not None:
                return found
            checked = len(self.events)
            if self.is_closed():
                raise CallClosedError(f"the call closed while waiting: {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(what)
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, min(remaining, _CLOSED_POLL_S))


def _is(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    def test(event: dict[str, Any]) -> bool:
        return event.get("type") == kind and all(event.get(k) == v for k, v in fields.items())

    return test


def _response_id(event: dict[str, Any]) -> str | None:
    response = event.get("response")
    rid = response.get("id") if isinstance(response, dict) else event.get("response_id")
    return rid if isinstance(rid, str) else None


def _of_response(rid: str, *kinds: str) -> Callable[[dict[str, Any]], bool]:
    def test(event: dict[str, Any]) -> bool:
        return event.get("type") in kinds and _response_id(event) == rid

    return test


_AUDIO_START: Final = ("output_audio_buffer.started", "response.output_audio.delta")
_AUDIO_END: Final = ("output_audio_buffer.stopped", "output_audio_buffer.cleared")
_TRANSCRIPT_END: Final = ("conversation.item.input_audio_transcription.completed",
                          "conversation.item.input_audio_transcription.failed")


def _transcript_of(item: Any) -> Callable[[dict[str, Any]], bool]:
    def test(event: dict[str, Any]) -> bool:
        return event.get("type") in _TRANSCRIPT_END and event.get("item_id") == item

    return test


@dataclass
class _Anchor:
    """Where one spoken turn sits in the event record."""

    turn: ScenarioTurn
    start: int
    commit: int | None = None
    response: int | None = None
    audio_start_t: float | None = None
    error: str | None = None


# ---------------------------------------------------------------------- the flow
async def _prepare_audio(scenario: Scenario, synthesizer: Any) -> dict[int, np.ndarray]:
    """Synthesise every ``say`` turn at 24 kHz before the call starts."""
    says = [t for t in scenario.turns if t.kind is TurnKind.SAY]
    if not says:
        return {}
    from livetalk.audio.resample import resample

    if synthesizer is None:
        from livetalk.server.tts import EspeakSynthesizer

        synthesizer = EspeakSynthesizer()
    loop = asyncio.get_running_loop()
    out: dict[int, np.ndarray] = {}
    for turn in says:
        pcm, rate = await loop.run_in_executor(None, synthesizer.synthesize, turn.say)
        out[turn.index] = resample(np.asarray(pcm, dtype=np.int16), rate, API_RATE)
    return out


def _source(turn: ScenarioTurn, spoken: dict[int, np.ndarray]) -> Any:
    if turn.kind is TurnKind.PAUSE:
        return SilenceSource(turn.pause_ms / 1000, rate=API_RATE)
    if turn.kind is TurnKind.SAY:
        return ArraySource(spoken[turn.index], API_RATE)
    assert turn.audio is not None
    return FileSource(turn.audio, rate=API_RATE)


async def _drive(call: Any, scenario: Scenario, rec: _Recorder, spoken: dict[int, np.ndarray],
                 speed: float, anchors: list[_Anchor]) -> None:
    timeout = scenario.reply_timeout_s
    transcribing = call.session.get("audio", {}).get("input", {}).get("transcription") is not None
    turns = scenario.turns
    noise = np.random.default_rng(0).integers(-_LEAD_IN_PEAK, _LEAD_IN_PEAK + 1,
                                              round(_LEAD_IN_S * API_RATE), dtype=np.int16)
    await call.stream(ArraySource(noise, API_RATE))
    for pos, turn in enumerate(turns):
        if not turn.spoken:
            await call.stream(_source(turn, spoken))
            continue
        if turn.barge_in_after_ms is not None and anchors:
            heard = anchors[-1].audio_start_t
            if heard is not None:
                delay = heard + turn.barge_in_after_ms / 1000 / speed - time.monotonic()
                await asyncio.sleep(max(delay, 0.0))
        anchor = _Anchor(turn, len(rec.events))
        anchors.append(anchor)
        if scenario.manual_turns:
            # push-to-talk: clear on "press"; on "release" make sure the whole utterance
            # reached the server, then commit and ask for the reply
            call.send({"type": "input_audio_buffer.clear"})
            await call.stream(concat(_source(turn, spoken),
                                     SilenceSource(_MANUAL_TAIL_S, rate=API_RATE)))
            await call.outbound_track.wait_drained()
            call.send({"type": "input_audio_buffer.commit"})
            call.create_response()
        else:
            await call.stream(_source(turn, spoken))
        deadline = time.monotonic() + timeout
        next_spoken = next((t for t in turns[pos + 1:] if t.spoken), None)
        barge_next = next_spoken is not None and next_spoken.barge_in_after_ms is not None
        try:
            anchor.commit = await rec.wait_for(_is("input_audio_buffer.committed"), anchor.start,
                                               deadline, "no user turn was committed")
            anchor.response = await rec.wait_for(_is("response.created"), anchor.commit,
                                                 deadline, "no reply was created")
            rid = _response_id(rec.events[anchor.response][1]) or ""
            if barge_next:
                first = await rec.wait_for(_of_response(rid, *_AUDIO_START, "response.done"),
                                           anchor.response, deadline, "the reply never started")
                anchor.audio_start_t = rec.events[first][0]
                continue
            await rec.wait_for(_of_response(rid, "response.done"), anchor.response, deadline,
                               "the reply did not finish")
            if rec.find(_of_response(rid, "output_audio_buffer.started"),
                        anchor.response) is not None:
                await rec.wait_for(_of_response(rid, *_AUDIO_END), anchor.response, deadline,
                                   "the reply's audio did not stop")
            if transcribing:
                item = rec.events[anchor.commit][1].get("item_id")
                await rec.wait_for(_transcript_of(item), anchor.commit, deadline,
                                   "no transcription arrived")
        except TimeoutError as exc:
            anchor.error = f"{exc} within {timeout:g} s"
    await _settle(rec, anchors, transcribing, time.monotonic() + timeout)


async def _settle(rec: _Recorder, anchors: list[_Anchor], transcribing: bool,
                  deadline: float) -> None:
    """Wait for replies and transcripts still outstanding (cut-off replies of barge-ins)."""
    for anchor in anchors:
        if anchor.error is not None:
            continue
        try:
            if anchor.response is not None:
                rid = _response_id(rec.events[anchor.response][1]) or ""
                await rec.wait_for(_of_response(rid, "response.done"), anchor.response,
                                   deadline, "the reply did not finish")
            if transcribing and anchor.commit is not None:
                item = rec.events[anchor.commit][1].get("item_id")
                await rec.wait_for(_transcript_of(item), anchor.commit, deadline,
                                   "no transcription arrived")
        except TimeoutError as exc:
            anchor.error = f"{exc} before the end of the scenario"


async def _watch_audio(call: Any, loud: list[float]) -> None:
    async for chunk in call.audio_chunks():
        if chunk.size and max(int(chunk.max()), -int(chunk.min())) > LOUD:
            loud.append(time.monotonic())


# ---------------------------------------------------------------------- measuring
def _reply_text(response: dict[str, Any]) -> str:
    parts: list[str] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for content in item.get("content") or []:
            if isinstance(content, dict):
                text = content.get("transcript") or content.get("text")
                if isinstance(text, str) and text:
                    parts.append(text)
    return " ".join(parts)


def check_expectations(turn: TurnResult,
                       scenario_turn: ScenarioTurn) -> tuple[ExpectationResult, ...]:
    """Evaluate ``scenario_turn.expect`` against a measured turn.

    Texts are compared after :func:`~livetalk.scenarios.normalize_text`; a missing transcript,
    reply or timing fails its expectation.
    """
    out: list[ExpectationResult] = []
    for exp in scenario_turn.expect:
        key, value = exp.key, exp.value
        if key.endswith("_contains"):
            actual = turn.user_transcript if key.startswith("transcript") else turn.reply_text
            have = normalize_text(actual) if actual is not None else None
            if have is None:
                ok = False
            elif key.endswith("_not_contains"):
                ok = not any(normalize_text(v) in have for v in value)
            else:
                ok = all(normalize_text(v) in have for v in value)
            out.append(ExpectationResult(key, value, actual, ok))
        elif key == "reply_status":
            out.append(ExpectationResult(key, value, turn.reply_status,
                                         turn.reply_status == value))
        else:
            metric = key.removeprefix("max_")
            measured = getattr(turn, metric)
            ok = measured is not None and measured <= value
            out.append(ExpectationResult(key, value, _round(measured), ok))
    return tuple(out)


def _measure(anchor: _Anchor, rec: _Recorder, loud: list[float], model: str,
             prices: PriceTable, replies: dict[str, Turn]) -> TurnResult:
    turn = anchor.turn
    events = rec.events
    result: dict[str, Any] = {"index": turn.index, "label": turn.describe(),
                              "error": anchor.error}
    if anchor.commit is not None:
        t_commit, committed = events[anchor.commit]
        item = committed.get("item_id")
        result["user_item_id"] = item
        stopped = rec.find(_is("input_audio_buffer.speech_stopped", item_id=item))
        t_end = events[stopped][0] if stopped is not None else t_commit
        done_tr = rec.find(_transcript_of(item), anchor.commit)
        if done_tr is not None:
            t_tr, tr_event = events[done_tr]
            if tr_event["type"].endswith(".completed"):
                result["user_transcript"] = str(tr_event.get("transcript") or "")
                result["transcript_ms"] = (t_tr - t_end) * 1000
        if anchor.response is not None:
            rid = _response_id(events[anchor.response][1]) or ""
            result["response_id"] = rid
            start = rec.find(_of_response(rid, *_AUDIO_START), anchor.response)
            if start is not None:
                t_start = events[start][0]
                result["first_audio_ms"] = (t_start - t_end) * 1000
                heard = next((t for t in loud if t >= t_start), None)
                if heard is not None:
                    result["first_audio_heard_ms"] = (heard - t_end) * 1000
            done = rec.find(_of_response(rid, "response.done"), anchor.response)
            if done is not None:
                t_done, done_event = events[done]
                response = done_event.get("response") or {}
                result["reply_done_ms"] = (t_done - t_end) * 1000
                # the reply's turn knows what the user heard: a reply cut while playing (after
                # its response.done) is cancelled, with the text heard
                reply = replies.get(rid)
                result["reply_status"] = (str(reply.status) if reply is not None
                                          else response.get("status"))
                result["reply_text"] = reply.text if reply is not None else _reply_text(response)
                usage = response.get("usage")
                if isinstance(usage, dict):
                    result["usage"] = Usage.from_dict(usage)
                    result["cost_usd"] = estimate_cost(result["usage"], model, prices)
    measured = TurnResult(**result)
    return TurnResult(**{**result, "expectations": check_expectations(measured, turn)})


# ---------------------------------------------------------------------- public API
async def run_scenario(
    scenario: Scenario,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    speed: float = 1.0,
    prices: PriceTable = DEFAULT_PRICES,
    connect_timeout: float = 15.0,
    event_log: EventTap | None = None,
    synthesizer: Any = None,
    limiter: CallLimiter | None = None,
    rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
) -> ScenarioResult:
    """Run one scenario in its own call and measure it.

    Args:
        scenario: from :func:`~livetalk.scenarios.load_scenario`.
        base_url, api_key: as for :func:`livetalk.connect` (``OPENAI_BASE_URL`` /
            ``OPENAI_API_KEY`` by default).
        speed: media speed; above 1 only against the local server started with the same
            ``realtime_factor``.
        prices: the price table for the cost estimate.
        connect_timeout: seconds to connect.
        event_log: also called with ``(direction, event)`` for every event (for instance
            an event validator in tests).
        synthesizer: the voice of ``say`` turns (default: eSpeak NG, needing the ``server``
            extra).
        limiter: caps shared with other calls (:mod:`livetalk.scenarios.limits`): a lease is
            taken before connecting and returned after the call; a 429 pauses the limiter.
        rate_limit_retries: how many times a connection refused with 429 is tried again,
            after its ``Retry-After`` (at most :data:`MAX_RETRY_AFTER_S`; without the header
            2 s, doubling).

    Returns:
        The :class:`ScenarioResult`. Failures of the call (connect refused, call lost) are
        reported in its ``error``, not raised, so a batch always completes; check
        ``result.passed`` or write a report with :func:`~livetalk.scenarios.build_report`.
    """
    import livetalk

    started = time.monotonic()
    spoken = await _prepare_audio(scenario, synthesizer)
    rec = _Recorder(event_log)
    anchors: list[_Anchor] = []
    loud: list[float] = []
    info: dict[str, Any] = {"usage": Usage()}
    error: LivetalkError | None = None
    retries = 0
    while True:
        lease = await limiter.acquire() if limiter is not None else None
        try:
            async with livetalk.connect(base_url=base_url, api_key=api_key,
                                        session=scenario.session, speed=speed, event_log=rec,
                                        connect_timeout=connect_timeout) as call:
                info.update(call_id=call.call_id, connect_ms=call.connect_ms,
                            model=call.session.get("model"))
                rec.is_closed = lambda: call.closed
                watcher = asyncio.ensure_future(_watch_audio(call, loud))
                try:
                    await _drive(call, scenario, rec, spoken, speed, anchors)
                finally:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
                    info["usage"] = call.usage
                    info["replies"] = {t.response_id: t for t in call.turns_so_far
                                       if t.role == "assistant" and t.response_id}
        except RateLimitError as exc:  # refused before the call existed: nothing was sent
            wait = _retry_wait(exc, retries)
            if retries >= rate_limit_retries or wait is None or "call_id" in info:
                error = exc
            else:
                retries += 1
                if limiter is not None:
                    await limiter.backoff(wait)  # the next acquire waits, for every call
                else:
                    await asyncio.sleep(wait)
                continue
        except LivetalkError as exc:
            error = exc
        finally:
            if limiter is not None and lease is not None:
                await limiter.release(lease)
        break
    model = info.get("model") or scenario.session.model or DEFAULT_MODEL
    replies: dict[str, Turn] = info.get("replies", {})
    turns = tuple(_measure(a, rec, loud, model, prices, replies) for a in anchors)
    return ScenarioResult(
        name=scenario.name, path=str(scenario.path) if scenario.path else None, turns=turns,
        call_id=info.get("call_id"), model=model, connect_ms=info.get("connect_ms"),
        duration_s=time.monotonic() - started, usage=info["usage"],
        cost_usd=estimate_cost(info["usage"], model, prices), speed=speed,
        error=None if error is None else str(error),
        error_kind=None if error is None else type(error).__name__, retries=retries,
    )


def _retry_wait(exc: RateLimitError, retries: int) -> float | None:
    """Seconds to wait before trying a 429-refused call again, or None not to retry."""
    if exc.retry_after is None:
        return _DEFAULT_RETRY_AFTER_S * 2.0**retries
    wait = float(exc.retry_after)
    return wait if wait <= MAX_RETRY_AFTER_S else None


async def run_scenarios(
    scenarios: Iterable[Scenario],
    *,
    concurrency: int = 1,
    on_result: ResultCallback | None = None,
    **options: Any,
) -> list[ScenarioResult]:
    """Run scenarios in this event loop, ``concurrency`` calls at a time.

    Args:
        scenarios: the scenarios.
        concurrency: how many calls run at once (one live call costs about 8 % of a core).
        on_result: called with each result as it finishes (a progress display).
        **options: passed to :func:`run_scenario`.

    Returns:
        The results, in the order of ``scenarios``.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    gate = asyncio.Semaphore(concurrency)

    async def one(scenario: Scenario) -> ScenarioResult:
        async with gate:
            result = await run_scenario(scenario, **options)
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(s) for s in scenarios)))


def _run_batch(scenarios: list[Scenario], concurrency: int,
               options: dict[str, Any]) -> list[ScenarioResult]:
    """Worker-process entry: one event loop running a batch."""
    return asyncio.run(run_scenarios(scenarios, concurrency=concurrency, **options))


async def run_in_processes(
    scenarios: Sequence[Scenario],
    *,
    processes: int,
    concurrency: int = 1,
    on_result: ResultCallback | None = None,
    **options: Any,
) -> list[ScenarioResult]:
    """Spread scenarios over worker processes, each running ``concurrency`` calls at once.

    Scenarios go out in batches of ``concurrency``; each worker (a fresh ``spawn`` process)
    runs a batch in its own event loop. Budget about 8 % of a core per live call and keep
    ``processes`` at or below the number of cores. ``options`` must be picklable (no
    ``event_log`` callables).

    Returns:
        The results, in the order of ``scenarios``.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    batches = [list(scenarios[i:i + concurrency])
               for i in range(0, len(scenarios), concurrency)]
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:

        async def one(batch: list[Scenario]) -> list[ScenarioResult]:
            results: list[ScenarioResult] = await loop.run_in_executor(
                pool, _run_batch, batch, concurrency, options)
            if on_result is not None:
                for result in results:
                    on_result(result)
            return results

        chunks: list[Awaitable[list[ScenarioResult]]] = [one(b) for b in batches]
        done = await asyncio.gather(*chunks)
    return [r for batch in done for r in batch]
