"""``livetalk run``: stream an audio file through a live call and show the conversation."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from livetalk._extras import require
from livetalk.cli._args import (
    HelpFormatter,
    add_api_options,
    add_connect_timeout,
    add_model_option,
    check_output_path,
    positive,
    require_api_key,
)
from livetalk.cli._output import CallPrinter, CallSummary, HumanPrinter, JsonlPrinter, Output
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import ExitStatus
from livetalk.errors import CallClosedError, ConnectTimeout
from livetalk.protocol.session import PCM_RATE

if TYPE_CHECKING:  # imported when used, so that `livetalk --help` stays fast
    from livetalk.audio.sinks import WavSink
    from livetalk.audio.sources import FileSource
    from livetalk.call import Call

__all__ = ["RunOptions", "add_parser", "main", "run_file"]

_TAIL_SILENCE_S = 1.5
"""Silence streamed after the file, so that server VAD sees the last turn end."""
_QUIET_S = 0.6
"""How long the call must stay quiet after the file before it is hung up."""

DESCRIPTION = """\
Open a call, stream AUDIO_FILE (any format PyAV decodes) in real time followed by 1.5 s of
silence, print the transcript and the turns as they happen, wait for the last reply to
finish (at most --timeout seconds), and hang up.

The file and --save-reply are checked before connecting. With --jsonl, stdout carries one
JSON object per line and always ends with a "call.closed" line (also after an error or an
interrupt). SIGINT and SIGTERM hang up cleanly: the reply recording is finalised and the
turns so far are kept.

Against the local server (livetalk serve):
  livetalk run livetalk/data/demo.wav --base-url http://127.0.0.1:8765/v1 --api-key sk-local
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` to the sub-commands."""
    p = sub.add_parser("run", help="stream an audio file through a call and print the turns",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("audio_file", metavar="AUDIO_FILE", help="the file to stream (wav, mp3, ...)")
    add_call_options(p)
    p.set_defaults(command=main)


def add_call_options(p: argparse.ArgumentParser) -> None:
    """The options of ``run`` (``demo`` shares a few of them)."""
    add_api_options(p)
    add_model_option(p)
    p.add_argument("--jsonl", action="store_true",
                   help="print one JSON object per line on stdout instead of text")
    p.add_argument("--events-log", metavar="FILE",
                   help="write every protocol event to FILE as JSON lines")
    p.add_argument("--save-reply", metavar="OUT",
                   help="save the assistant's audio to OUT (.wav, or .ogg/.mp3/.flac/.m4a)")
    p.add_argument("--speed", type=positive, default=1.0, metavar="N",
                   help="feed the file N times faster than real time (only against "
                   "'livetalk serve --realtime-factor N')")
    p.add_argument("--timeout", type=positive, default=30.0, metavar="S",
                   help="seconds to wait for the last reply once the file has been sent")
    add_connect_timeout(p)
    p.add_argument("--vad", choices=["server", "local", "batch"], default="server",
                   help="turn detection: the server's; local webrtcvad with commits; or local "
                   "webrtcvad with each turn sent to the batch transcription endpoint (no call)")
    p.add_argument("--transport", choices=["webrtc", "websocket", "auto"], default="webrtc",
                   help="auto: WebRTC, falling back to WebSocket if it cannot connect")


@dataclass(frozen=True)
class RunOptions:
    """What :func:`run_file` needs besides the file and the printer."""

    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    events_log: str | None = None
    save_reply: str | None = None
    speed: float = 1.0
    timeout: float = 30.0
    connect_timeout: float = 15.0
    vad: str = "server"
    transport: str = "webrtc"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        """The options parsed by ``run``."""
        return cls(base_url=args.base_url, api_key=args.api_key, model=args.model,
                   events_log=args.events_log, save_reply=args.save_reply, speed=args.speed,
                   timeout=args.timeout, connect_timeout=args.connect_timeout, vad=args.vad,
                   transport=args.transport)


async def main(args: argparse.Namespace, runtime: Runtime) -> ExitStatus:
    """Run ``livetalk run``."""
    require_api_key(args)
    printer = printer_for(args.jsonl, runtime)
    await run_file(args.audio_file, RunOptions.from_args(args), printer, runtime)
    return ExitStatus.OK


def printer_for(jsonl: bool, runtime: Runtime) -> CallPrinter:
    """The printer ``--jsonl`` asks for."""
    out = Output(runtime)
    return JsonlPrinter(out) if jsonl else HumanPrinter(out)


async def run_file(audio_file: str, options: RunOptions, printer: CallPrinter,
                   runtime: Runtime | None = None) -> CallSummary:
    """Stream one audio file through a call, printing as it goes; return the summary.

    Everything that can be checked is checked before connecting: the file is opened and its
    first second decoded, the reply file is created, the extras the options need are there.
    The closing summary is printed in every case, also when the run fails or is stopped
    (then the error propagates).
    """
    from livetalk.audio.format import RTC_RATE
    from livetalk.audio.sinks import WavSink
    from livetalk.audio.sources import FileSource

    summary = CallSummary()
    sink: WavSink | None = None
    try:
        if options.vad in ("local", "batch"):
            require("vad", f"--vad {options.vad}")
        if options.transport in ("websocket", "auto"):
            require("websocket", f"--transport {options.transport}")
        # decoded straight to the rate it is sent at: resampled once (a 48 kHz file over
        # WebRTC not at all); the batch path and WebSocket take the API's rate
        over_rtc = options.transport != "websocket" and options.vad != "batch"
        source = FileSource(audio_file, rate=RTC_RATE if over_rtc else PCM_RATE)
        await source.check()
        check_output_path(options.events_log, "--events-log")
        if options.save_reply and options.vad != "batch":
            check_output_path(options.save_reply, "--save-reply")
            sink = WavSink(options.save_reply, rate=PCM_RATE)
        if options.vad == "batch":
            await _run_batch(source, options, printer, summary)
        else:
            await _run_call(source, sink, options, printer, summary)
    except BaseException as exc:
        summary.error = exc
        if runtime is not None and runtime.stopped is not None:
            summary.stopped, summary.stopped_status = runtime.reason, runtime.stopped
        raise
    finally:
        if sink is not None:
            await sink.close()  # idempotent: the call closes it too once it records
        printer.closed(summary)
    return summary


async def _run_call(source: FileSource, sink: WavSink | None, options: RunOptions,
                    printer: CallPrinter, summary: CallSummary) -> None:
    import livetalk
    from livetalk.audio.sources import SilenceSource, concat
    from livetalk.protocol import events as ev
    from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription

    config = SessionConfig(
        transcription=Transcription(),
        turn_detection=ServerVAD(),
    )
    async with livetalk.connect(
        base_url=options.base_url, api_key=options.api_key, model=options.model,
        session=config, event_log=options.events_log, speed=options.speed,
        connect_timeout=options.connect_timeout, vad=options.vad,
        transport=options.transport,
    ) as call:
        summary.call_id, summary.connect_ms = call.call_id, call.connect_ms or 0.0
        printer.connected(call.call_id, summary.connect_ms, call.transport_kind)
        if sink is not None:
            call.record_to(sink)
        speech_started = 0

        async def show_deltas() -> None:
            async for d in call.transcript_deltas():
                printer.delta(str(d.role), d.item_id, d.delta)

        async def show_turns() -> None:
            async for turn in call.turns():
                printer.turn(str(turn.role), turn.item_id, turn.text, str(turn.status))

        async def count_speech() -> None:
            nonlocal speech_started
            async for event in call.events():
                if isinstance(event, ev.InputAudioBufferSpeechStarted):
                    speech_started += 1

        tasks = [asyncio.ensure_future(c()) for c in (show_deltas, show_turns, count_speech)]
        try:
            await call.stream(concat(source, SilenceSource(_TAIL_SILENCE_S, rate=source.rate)))
            await _wait_until_answered(call, lambda: speech_started, options.timeout)
        finally:
            try:
                await call.close()
                for task in tasks:
                    with contextlib.suppress(CallClosedError):
                        await task
            finally:  # the turns are counted even when closing is interrupted
                turns = call.turns_so_far
                summary.user_turns = sum(1 for t in turns if t.role == "user")
                summary.assistant_turns = sum(1 for t in turns if t.role == "assistant")
                summary.usage = call.usage.to_dict()
        if call.failure is not None:  # the turns so far are printed; report the failure
            raise call.failure


async def _wait_until_answered(call: Call, speech_started: Callable[[], int],
                               timeout: float) -> None:
    """Wait until every turn the server heard is transcribed and answered, and the call has
    been quiet for a moment; raise ConnectTimeout after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline and not call.closed:
        users = sum(1 for t in call.turns_so_far if t.role == "user")
        busy = users < speech_started() or call.response_active or call.assistant_speaking
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= _QUIET_S:
            return
        await asyncio.sleep(0.05)
    if not call.closed:
        raise ConnectTimeout(
            f"the last reply did not finish within {timeout:g} s after the file ended "
            "(raise --timeout)")


async def _run_batch(source: FileSource, options: RunOptions, printer: CallPrinter,
                     summary: CallSummary) -> None:
    """The batch path: local VAD, each turn posted to /audio/transcriptions (no call)."""
    from livetalk.localvad import batch_turns

    async for turn in batch_turns(source, base_url=options.base_url, api_key=options.api_key):
        summary.user_turns += 1
        printer.turn(str(turn.role), turn.item_id, turn.text, str(turn.status))
