"""``livetalk talk``: a live voice conversation through the microphone and the speaker.

:func:`talk` wires the pieces together::

    microphone (MicrophoneSource) -> echo control .process() -> call.send_audio()
    call.audio_chunks() -> speaker (SpeakerSink) -> echo control .on_playback()
    the devices' reported latencies -> echo control .set_device_latency()
    call.transcript_deltas() / call.turns() -> the terminal (LiveTranscript)
    input_audio_buffer.speech_started while the assistant plays -> SpeakerSink.clear()

It runs until ``stop`` is set, the call ends, or the task is cancelled (Ctrl-C), then prints a
one-line summary. Without PortAudio or a usable device it raises
:class:`~livetalk.errors.AudioDeviceError` before connecting; without the ``devices`` extra,
:class:`~livetalk.errors.MissingExtraError`. The ``livetalk talk`` command
(:mod:`livetalk.cli.talk`) runs it from the shell.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from livetalk._text import plural
from livetalk.audio.aec import EchoCancellerStatistics
from livetalk.audio.devices import MicrophoneSource, SpeakerSink
from livetalk.audio.echo import (
    EchoControl,
    EchoMode,
    EchoStatistics,
    default_echo_mode,
    make_echo_control,
)
from livetalk.errors import AudioDeviceError, ConfigError
from livetalk.protocol import events as ev
from livetalk.protocol.conversation import Turn
from livetalk.protocol.events import Usage
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription

__all__ = [
    "LiveTranscript",
    "TalkSummary",
    "TextOutput",
    "headphones_hint",
    "talk",
]

_HEADPHONE_WORDS = ("headphone", "headset", "earphone", "earbud", "airpods", "buds")
_CAPTURE_BLOCK_MS = 20
"""The microphone's block: each sample waits for its block before it is sent, so 20 ms (the
frame WebRTC sends) rather than the 100 ms default gets the user to the server's turn
detection 80 ms sooner (barge-ins, see docs/performance.md)."""


class TextOutput(Protocol):
    """Where :class:`LiveTranscript` writes: ``sys.stdout``, a file, any text stream."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


# ---------------------------------------------------------------------- the summary
@dataclass(frozen=True, slots=True)
class TalkSummary:
    """What :func:`talk` returns (and prints) when the conversation ends.

    Attributes:
        call_id: the call's id (``rtc_...``).
        duration_s: seconds from connected to hung up.
        turns: the completed turns, in conversation order.
        usage: token usage summed over every response.
        mic_overflows: times microphone audio was lost (PortAudio overflows or a slow loop).
        playout_underruns: times the speaker's playout buffer ran dry mid-stream.
        device_underflows: output underflows reported by PortAudio.
        barge_ins: times local playout was cleared because the user started speaking.
        echo: the echo mode used.
        mic_silenced_ms: microphone audio replaced by silence by the echo control.
        echo_erle_db: with ``--echo aec``, the echo removed (ERLE, dB) at the end; else None.
    """

    call_id: str | None
    duration_s: float
    turns: tuple[Turn, ...]
    usage: Usage
    mic_overflows: int
    playout_underruns: int
    device_underflows: int
    barge_ins: int
    echo: EchoMode
    mic_silenced_ms: float
    echo_erle_db: float | None = None

    @property
    def user_turns(self) -> int:
        """How many user turns were completed."""
        return sum(1 for t in self.turns if t.role == "user")

    @property
    def assistant_turns(self) -> int:
        """How many assistant turns were completed (interrupted ones included)."""
        return sum(1 for t in self.turns if t.role == "assistant")

    def line(self) -> str:
        """The summary as one human-readable line."""
        u = self.usage
        return (
            f"ended after {self.duration_s:.1f} s: {plural(self.user_turns, 'user turn')} and "
            f"{plural(self.assistant_turns, 'assistant turn')}; "
            f"{plural(u.total_tokens, 'token')} "
            f"(in {u.input_tokens}, out {u.output_tokens}); mic overflows "
            f"{self.mic_overflows}; playout underruns {self.playout_underruns}; barge-ins "
            f"{self.barge_ins}; mic silenced {self.mic_silenced_ms / 1000:.1f} s "
            f"(echo {self.echo.value}{_erle_text(self.echo_erle_db, ', ERLE ')})"
        )


def _erle_text(erle_db: float | None, prefix: str = "") -> str:
    """``"{prefix}32 dB"``, or "" when there is no figure yet."""
    if erle_db is None:
        return ""
    return f"{prefix}{erle_db:.0f} dB" if erle_db != float("inf") else f"{prefix}>60 dB"


# ---------------------------------------------------------------------- the terminal
class LiveTranscript:
    """The live transcript in a terminal.

    On a terminal (``live``), transcript deltas redraw the current line in place (carriage
    return and "erase line"), showing the tail of the text when it is wider than the terminal;
    a completed turn is committed on its own line. Elsewhere (a pipe, a file) only completed
    turns and messages are written, one per line.

    Args:
        out: where to write.
        live: redraw in place; default: ``out.isatty()``.
        width: the terminal width; default: asked from the terminal.
    """

    def __init__(self, out: TextOutput, *, live: bool | None = None,
                 width: int | None = None) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.width = width if width is not None else shutil.get_terminal_size().columns
        self._pending: dict[str, tuple[str, str]] = {}  # item_id -> (role, text so far)
        self._shown: str | None = None  # the item on the live line ("" for the status alone)
        self._status = ""

    def status(self, text: str) -> None:
        """Show ``text`` in brackets at the start of the live line (e.g. the echo meter).

        Only on a terminal; elsewhere it is ignored.
        """
        if not self.live or text == self._status:
            return
        self._status = text
        if self._pending:
            self._draw(next(reversed(self._pending)))
        else:
            self._draw_status()

    def delta(self, item_id: str, role: str, text: str) -> None:
        """Show a transcript delta (redrawing the live line)."""
        old_role, old_text = self._pending.pop(item_id, (role, ""))
        self._pending[item_id] = (old_role, old_text + text)
        if self.live:
            self._draw(item_id)

    def turn(self, turn: Turn) -> None:
        """Commit a completed turn on its own line."""
        self.commit(turn.item_id, str(turn.role), turn.text, str(turn.status))

    def commit(self, item_id: str, role: str, text: str, status: str = "completed") -> None:
        """Commit a finished message on its own line (replacing its live line)."""
        self._pending.pop(item_id, None)
        suffix = "" if status == "completed" else f" [{status}]"
        self.message(f"{role:>9}: {text}{suffix}")

    def message(self, text: str) -> None:
        """Write a line of its own (a hint, a status), keeping the live line below it."""
        self._erase()
        self.out.write(text + "\n")
        if self.live and self._pending:
            self._draw(next(reversed(self._pending)))
        elif self.live and self._status:
            self._draw_status()
        self.out.flush()

    def _draw_status(self) -> None:
        self.out.write(f"\r\x1b[K[{self._status}]")
        self.out.flush()
        self._shown = ""

    def _draw(self, item_id: str) -> None:
        role, text = self._pending[item_id]
        line = f"{role:>9}> {text}".replace("\n", " ")
        if self._status:
            line = f"[{self._status}] {line}"
        room = max(self.width - 1, 12)
        if len(line) > room:
            line = "…" + line[-(room - 1) :]
        self.out.write("\r\x1b[K" + line)
        self.out.flush()
        self._shown = item_id

    def _erase(self) -> None:
        if self._shown is not None:
            self.out.write("\r\x1b[K")
            self._shown = None


def _looks_like_headphones(output_name: str) -> bool:
    return any(word in output_name.lower() for word in _HEADPHONE_WORDS)


def headphones_hint(echo: EchoMode, output_name: str) -> str | None:
    """The one-line advice printed at start, or None when headphones are in use with echo
    control on, or the echo canceller runs."""
    on_headphones = _looks_like_headphones(output_name)
    if echo is EchoMode.OFF:
        if on_headphones:
            return None
        return ("tip: wear headphones: with --echo off the model hears itself through the "
                "speakers and interrupts itself (or use --echo half-duplex)")
    if on_headphones or echo is EchoMode.AEC:
        return None
    if echo is EchoMode.HALF_DUPLEX:
        return ("tip: on speakers your microphone is muted while the assistant speaks; wear "
                "headphones and use --echo off to interrupt it")
    return ("tip: on speakers, speak up to interrupt the assistant; headphones with --echo off "
            "work best")


# ---------------------------------------------------------------------- talk()
def _default_session() -> SessionConfig:
    return SessionConfig(
        transcription=Transcription(),
        turn_detection=ServerVAD(),
    )


async def talk(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    input_device: int | str | None = None,
    output_device: int | str | None = None,
    echo: EchoMode | str | None = None,
    headphones: bool = False,
    sd: Any = None,
    out: TextOutput = sys.stdout,
    session: SessionConfig | dict[str, Any] | None = None,
    stop: asyncio.Event | None = None,
    live: bool | None = None,
    speed: float = 1.0,
    connect_timeout: float = 15.0,
) -> TalkSummary:
    """Talk with the model through the microphone and the speaker until stopped.

    The devices are opened before connecting, so a missing device fails fast. The transcript
    is shown live on ``out`` (see :class:`LiveTranscript`). When the server reports that the
    user started speaking while the assistant's audio is playing locally, local playout is
    cleared (the server itself cancels the response and truncates what was not played).

    Args:
        base_url: the API base URL (default ``OPENAI_BASE_URL`` or the public API).
        api_key: a standard key or an ``ek_`` secret (default ``OPENAI_API_KEY``).
        model: the model (default :data:`~livetalk.protocol.session.DEFAULT_MODEL`).
        input_device: the microphone (PortAudio index or name); None for the default.
        output_device: the speaker (PortAudio index or name); None for the default.
        echo: the echo control (:class:`~livetalk.audio.echo.EchoMode` or its value); None
            picks one with :func:`~livetalk.audio.echo.default_echo_mode`: off with
            headphones, else ``aec`` when the ``[aec]`` extra is installed, else half-duplex.
        headphones: the user wears headphones (also assumed when the output device's name
            says so); only used to pick the default echo mode.
        sd: the sounddevice module or a stand-in (tests); None imports it.
        out: where the transcript, the hint and the summary go.
        session: the session config; default: server VAD plus input transcription.
        stop: set it to end the conversation (``run_talk`` sets it on Ctrl-C).
        live: redraw transcript deltas in place; default: ``out.isatty()``.
        speed: the outbound media clock speed (>1 only against the local server with a
            matching ``realtime_factor``, for tests).
        connect_timeout: seconds allowed for connecting.

    Returns:
        The :class:`TalkSummary` (also printed on ``out``), when ``stop`` is set or the call
        ends normally. When the task is cancelled, the summary is printed and the
        cancellation propagates.

    Raises:
        AudioDeviceError: PortAudio, the microphone or the speaker is missing or failed.
        ConfigError: a bad echo mode or session.
        CallClosedError: the call ended abnormally.
        SignalingError, ConnectError: the call could not be set up (see ``connect()``).
    """
    import livetalk

    mic = _open(MicrophoneSource, input_device, sd, "input_device", block_ms=_CAPTURE_BLOCK_MS)
    speaker = _open(SpeakerSink, output_device, sd, "output_device")
    if echo is None:
        echo = default_echo_mode(headphones or _looks_like_headphones(speaker.name))
    try:
        mode = EchoMode(echo)
    except ValueError:
        choices = ", ".join(m.value for m in EchoMode)
        raise ConfigError(f"echo must be one of {choices}; got {echo!r}") from None
    control = make_echo_control(mode, mic.rate, speaker.rate)
    display = LiveTranscript(out, live=live)
    hint = headphones_hint(mode, speaker.name)
    if hint:
        display.message(hint)

    call = await livetalk.connect(
        base_url=base_url, api_key=api_key, model=model,
        session=session if session is not None else _default_session(),
        speed=speed, connect_timeout=connect_timeout,
    )
    started = time.monotonic()
    barge_ins = 0
    where = f" ({call.call_id})" if call.call_id else ""
    display.message(f"connected{where}; speak now, Ctrl-C to stop")

    latency_known = False

    def sync_latency() -> None:
        """Hand the devices' latencies to the echo control once both streams are open."""
        nonlocal latency_known
        if not latency_known and mic.latency_ms is not None and speaker.latency_ms is not None:
            control.set_device_latency(mic.latency_ms + speaker.latency_ms)
            latency_known = True

    async def send_microphone() -> None:
        async for chunk in mic:
            sync_latency()
            call.send_audio(control.process(chunk), mic.rate)

    async def play_replies() -> None:
        async for chunk in call.audio_chunks():
            await speaker.write(chunk)
            control.on_playback(chunk, queued_ms=speaker.buffer.buffered_ms)

    async def show_deltas() -> None:
        async for d in call.transcript_deltas():
            display.delta(d.item_id, str(d.role), d.delta)

    async def show_turns() -> None:
        async for turn in call.turns():
            display.turn(turn)

    async def show_echo_meter() -> None:
        if not display.live or control.mode is not EchoMode.AEC:
            await asyncio.Future()  # nothing to show: wait to be cancelled with the others
        while True:
            await asyncio.sleep(0.5)
            erle = _erle_text(_erle_db(control.statistics()))
            display.status(f"echo -{erle}" if erle else "echo: listening")

    async def watch_barge_in() -> None:
        nonlocal barge_ins
        async for event in call.events():
            if isinstance(event, ev.InputAudioBufferSpeechStarted) and control.playing:
                speaker.clear()
                control.on_clear()
                barge_ins += 1

    workers = [asyncio.ensure_future(w()) for w in (
        send_microphone, play_replies, show_deltas, show_turns, watch_barge_in,
        show_echo_meter)]
    stopper = asyncio.ensure_future(stop.wait() if stop is not None else asyncio.Future())
    failure: BaseException | None = None
    try:
        done, _ = await asyncio.wait([*workers, stopper], return_when=asyncio.FIRST_COMPLETED)
        failure = next((t.exception() for t in done if t is not stopper and t.exception()),
                       None)
    finally:
        for task in (*workers, stopper):
            task.cancel()
        await asyncio.gather(*workers, stopper, return_exceptions=True)
        await _close_all(mic, call, speaker)
        summary = _summarize(call, started, mic, speaker, control, barge_ins)
        display.message(summary.line())
    if failure is not None:
        raise failure
    return summary


_Device = TypeVar("_Device", MicrophoneSource, SpeakerSink)


def _open(kind: type[_Device], device: int | str | None, sd: Any, param: str,
          **options: Any) -> _Device:
    """Open a device; its errors name this function's parameter (``input_device=``)."""
    try:
        return kind(device, sd=sd, **options)
    except AudioDeviceError as exc:
        raise AudioDeviceError(str(exc).replace(" device=", f" {param}=")) from exc.__cause__


async def _close_all(mic: MicrophoneSource, call: Any, speaker: SpeakerSink) -> None:
    """Stop the microphone, hang up, stop the speaker; every step runs even if one fails."""
    try:
        await mic.aclose()
    finally:
        try:
            await call.close()
        finally:
            await speaker.close(drain=False)


def _erle_db(echo: EchoStatistics) -> float | None:
    """The echo canceller's ERLE in dB; None for the other echo controls."""
    return echo.erle_db if isinstance(echo, EchoCancellerStatistics) else None


def _summarize(call: Any, started: float, mic: MicrophoneSource, speaker: SpeakerSink,
               control: EchoControl, barge_ins: int) -> TalkSummary:
    echo, played = control.statistics(), speaker.statistics()
    return TalkSummary(
        call_id=call.call_id,
        duration_s=time.monotonic() - started,
        turns=tuple(call.turns_so_far),
        usage=call.usage,
        mic_overflows=mic.statistics().overflows,
        playout_underruns=played.playout.underruns,
        device_underflows=played.underflows,
        barge_ins=barge_ins,
        echo=echo.mode,
        mic_silenced_ms=echo.silenced_ms,
        echo_erle_db=_erle_db(echo),
    )
