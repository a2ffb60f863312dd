"""The ``livetalk`` command line: ``serve``, ``run``, ``demo``, ``mint``, ``devices``, ``talk``.

Exit statuses (documented in ``docs/cli.md``):

====  =============================================================
0     success
1     unexpected internal error (please report it)
2     bad command-line arguments or bad input (file, config)
3     authentication refused (401/403) or missing API key
4     the server could not be reached, or the call failed to connect
5     timed out
6     the API answered with another error (4xx/5xx), or the call failed
7     no audio device / PortAudio library
130   interrupted (Ctrl-C)
====  =============================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from livetalk import errors

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_CONNECT = 4
EXIT_TIMEOUT = 5
EXIT_API = 6
EXIT_DEVICE = 7
EXIT_INTERRUPTED = 130

DATA = Path(__file__).parent / "data"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, no usage dump
        self.exit(EXIT_USAGE, f"livetalk: error: {message} (see 'livetalk --help')\n")


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be > 0: {value!r}")
    return number


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {value!r}")
    return number


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="livetalk", description="Live voice with OpenAI's Realtime API.")
    parser.add_argument("--version", action="version", version="livetalk 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("serve", help="run the local Realtime-compatible server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8765, help="TCP port (0 = any free port)")
    p.add_argument("--api-key", help="require exactly this standard key (default: any sk-...)")
    p.add_argument("--phrases", help="phrase list file biasing recognition (Whisper's hot "
                   "words; the only sentences pocketsphinx recognises)")
    p.add_argument("--asr", choices=["auto", "whisper", "pocketsphinx"], default="auto",
                   help="the recogniser: auto = Whisper with livetalk[asr], else pocketsphinx")
    p.add_argument("--whisper-model", metavar="DIR",
                   help="a CTranslate2 Whisper model directory (default: the bundled tiny.en)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--reply", choices=["echo"], default="echo", help="the brain (echo)")
    group.add_argument("--script", help="a file of scripted replies (text, JSON or YAML)")
    group.add_argument("--brain", choices=["echo", "chat"],
                       help="chat: ask an OpenAI-compatible Chat Completions endpoint")
    p.add_argument("--chat-base-url", metavar="URL",
                   help="the chat endpoint's API root, e.g. http://127.0.0.1:8080/v1 (key, if "
                   "any, in LIVETALK_CHAT_API_KEY)")
    p.add_argument("--chat-model", metavar="NAME", help="the model the chat endpoint serves")
    p.add_argument("--realtime-factor", type=_positive, default=1.0,
                   help="run the media clock N times faster than real time")
    p.add_argument("--fault", action="append", default=[], metavar="NAME",
                   help="inject a fault (repeatable; see docs/reliability.md)")
    p.add_argument("--max-call-s", type=_positive, default=3600.0,
                   help="session length limit in seconds (the API's is 3600)")

    def call_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--base-url", help="API base URL (default OPENAI_BASE_URL or the API)")
        p.add_argument("--api-key", help="API key or ek_ secret (default OPENAI_API_KEY)")
        p.add_argument("--model", help="model name (default gpt-realtime)")
        p.add_argument("--jsonl", action="store_true", help="one JSON object per line on stdout")
        p.add_argument("--events-log", help="write every protocol event to this file (JSONL)")
        p.add_argument("--save-reply", help="save the assistant's audio to this file (WAV...)")
        p.add_argument("--speed", type=_positive, default=1.0,
                       help="feed the file N times faster than real time (local server only)")
        p.add_argument("--timeout", type=_positive, default=30.0,
                       help="seconds to wait for the last reply after the file ends")
        p.add_argument("--connect-timeout", type=_positive, default=15.0)
        p.add_argument("--vad", choices=["server", "local", "batch"], default="server",
                       help="turn detection: the server's, local webrtcvad + commit, or local "
                       "webrtcvad + the batch transcription endpoint (no live call)")
        p.add_argument("--transport", choices=["webrtc", "websocket", "auto"], default="webrtc",
                       help="auto: WebRTC, falling back to WebSocket if it cannot connect")

    p = sub.add_parser("run", help="stream an audio file through a call and print the turns")
    p.add_argument("audio_file")
    call_options(p)

    p = sub.add_parser("demo", help="offline demo: local server + a bundled recording")
    p.add_argument("--out", default="demo-reply.wav", help="where to save the spoken reply")
    p.add_argument("--jsonl", action="store_true")
    p.add_argument("--speed", type=_positive, default=1.0)

    p = sub.add_parser("mint", help="mint an ephemeral ek_ client secret (backends)")
    p.add_argument("--base-url")
    p.add_argument("--api-key")
    p.add_argument("--model", default="gpt-realtime")
    p.add_argument("--instructions")
    p.add_argument("--ttl", type=int, default=600, help="lifetime in seconds (10-7200)")

    from livetalk.scenarios.cli import add_script_parser
    from livetalk.talk import add_devices_parser, add_talk_parser

    add_devices_parser(sub)
    add_talk_parser(sub)
    add_script_parser(sub)
    return parser


# ---------------------------------------------------------------------- output
class _Printer:
    """Human-readable or JSONL output of a running call (one place for both)."""

    def __init__(self, jsonl: bool, out: TextIO = sys.stdout) -> None:
        self.jsonl = jsonl
        self.out = out
        self._current: str | None = None

    def emit(self, obj: dict[str, Any]) -> None:
        if self.jsonl:
            self.out.write(json.dumps(obj) + "\n")
            self.out.flush()
            return
        kind = obj["type"]
        if kind == "call.connected":
            self._line(f"connected: call {obj['call_id']} in {obj['connect_ms']:.0f} ms")
        elif kind == "transcript.delta":
            if self._current != obj["item_id"]:
                self._newline()
                self.out.write(f"  {obj['role']:>9}> ")
                self._current = obj["item_id"]
            self.out.write(obj["delta"])
            self.out.flush()
        elif kind == "turn":
            self._line(f"[turn] {obj['role']} ({obj['status']}): {obj['text']}")
        elif kind == "call.closed":
            self._line(f"closed: {obj['user_turns']} user and {obj['assistant_turns']} assistant "
                       f"turns, {obj['usage']['total_tokens']} tokens")
        elif kind == "call.error":
            self._line(f"call error: {obj['message']}")

    def _newline(self) -> None:
        if self._current is not None:
            self.out.write("\n")
            self._current = None

    def _line(self, text: str) -> None:
        self._newline()
        self.out.write(text + "\n")
        self.out.flush()


def _turn_dict(turn: Any) -> dict[str, Any]:
    return {"type": "turn", "role": turn.role, "item_id": turn.item_id, "text": turn.text,
            "status": turn.status}


async def run_file(
    audio_file: str,
    *,
    base_url: str | None,
    api_key: str | None,
    model: str | None,
    printer: _Printer,
    events_log: str | None = None,
    save_reply: str | None = None,
    speed: float = 1.0,
    timeout: float = 30.0,
    connect_timeout: float = 15.0,
    vad: str = "server",
    transport: str = "webrtc",
) -> dict[str, Any]:
    """Stream one audio file through a call; print deltas and turns; return the summary."""
    import livetalk
    from livetalk.audio.sinks import WavSink
    from livetalk.audio.sources import FileSource, SilenceSource, concat
    from livetalk.protocol import events as ev
    from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription

    source = FileSource(audio_file, rate=24000)  # fails fast on a bad file
    if vad == "batch":
        return await _run_batch(source, base_url=base_url, api_key=api_key, printer=printer)
    config = SessionConfig(
        transcription=Transcription(model="gpt-4o-mini-transcribe"),
        turn_detection=ServerVAD(),
    )
    async with livetalk.connect(
        base_url=base_url, api_key=api_key, model=model, session=config,
        event_log=events_log, speed=speed, connect_timeout=connect_timeout, vad=vad,
        transport=transport,
    ) as call:
        printer.emit({"type": "call.connected", "call_id": call.call_id,
                      "connect_ms": round(call.connect_ms or 0, 1)})
        if save_reply:
            call.record_to(WavSink(save_reply, rate=24000))
        speech_started = 0

        async def show_deltas() -> None:
            async for d in call.transcript_deltas():
                printer.emit({"type": "transcript.delta", "role": d.role, "item_id": d.item_id,
                              "delta": d.delta})

        async def show_turns() -> None:
            async for turn in call.turns():
                printer.emit(_turn_dict(turn))

        async def count_speech() -> None:
            nonlocal speech_started
            async for event in call.events():
                if isinstance(event, ev.InputAudioBufferSpeechStarted):
                    speech_started += 1

        tasks = [asyncio.ensure_future(c()) for c in (show_deltas, show_turns, count_speech)]
        try:
            # the file, then enough silence for server VAD to close the last turn
            await call.stream(concat(source, SilenceSource(1.5, rate=24000)))
            deadline = time.monotonic() + timeout
            quiet_since: float | None = None
            while time.monotonic() < deadline and not call.closed:
                users = sum(1 for t in call.turns_so_far if t.role == "user")
                busy = (users < speech_started or call.response_active
                        or call.assistant_speaking)
                now = time.monotonic()
                if busy:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = now
                elif now - quiet_since >= 0.6:
                    break
                await asyncio.sleep(0.05)
            else:
                if not call.closed:
                    raise errors.ConnectTimeout(
                        f"the last reply did not finish within {timeout:g} s after the file "
                        "ended")
        finally:
            await call.close()
            for task in tasks:
                with contextlib.suppress(errors.CallClosedError):
                    await task
        if call.failure is not None:  # the turns so far are printed; report the failure
            raise call.failure
        turns = call.turns_so_far
        summary = {
            "type": "call.closed", "call_id": call.call_id,
            "user_turns": sum(1 for t in turns if t.role == "user"),
            "assistant_turns": sum(1 for t in turns if t.role == "assistant"),
            "connect_ms": round(call.connect_ms or 0, 1),
            "usage": call.usage.to_dict(),
        }
        printer.emit(summary)
        return summary


async def _run_batch(source: Any, *, base_url: str | None, api_key: str | None,
                     printer: _Printer) -> dict[str, Any]:
    """The batch path: local VAD, each turn posted to /audio/transcriptions."""
    from livetalk.localvad import batch_turns

    count = 0
    async for turn in batch_turns(source, base_url=base_url, api_key=api_key):
        count += 1
        printer.emit(_turn_dict(turn))
    summary = {"type": "call.closed", "call_id": None, "user_turns": count,
               "assistant_turns": 0, "connect_ms": 0.0,
               "usage": {"total_tokens": 0}}
    printer.emit(summary)
    return summary


async def _serve(args: argparse.Namespace) -> int:
    from livetalk.server import LocalServer
    from livetalk.server.faults import Faults

    brain: Any = args.script or "echo"
    if args.brain == "chat":
        from livetalk.server.chat import ChatBrain

        brain = ChatBrain(args.chat_base_url or "", args.chat_model or "")
    server = LocalServer(host=args.host, port=args.port, api_key=args.api_key, brain=brain,
                         phrases=args.phrases, asr=args.asr, whisper_model=args.whisper_model,
                         realtime_factor=args.realtime_factor,
                         faults=Faults.parse(args.fault), max_call_s=args.max_call_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the URL is printed: no race
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(f"listening on {server.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    print("stopped", file=sys.stderr, flush=True)
    return EXIT_OK


async def _demo(args: argparse.Namespace) -> int:
    from livetalk.server import LocalServer
    from livetalk.server.asr import load_phrases
    from livetalk.server.whisper import whisper_missing

    printer = _Printer(args.jsonl)
    if whisper_missing() is None:  # open vocabulary: no phrase list needed
        ears: dict[str, Any] = {"asr": "whisper"}
    else:  # the light fallback is only accurate on the phrases the recording says
        ears = {"asr": "pocketsphinx", "phrases": load_phrases(str(DATA / "demo_phrases.txt"))}
    async with LocalServer(port=0, realtime_factor=args.speed, **ears) as server:
        if not args.jsonl:
            print(f"local server on {server.base_url} (ears: {server.transcriber!r}); "
                  f"streaming {DATA / 'demo.wav'}", flush=True)
        summary = await run_file(
            str(DATA / "demo.wav"), base_url=server.base_url, api_key="sk-livetalk-demo",
            model=None, printer=printer, save_reply=args.out, speed=args.speed,
        )
    if not args.jsonl:
        print(f"saved the assistant's spoken reply to {args.out}")
    return EXIT_OK if summary["assistant_turns"] > 0 else EXIT_API


async def _run(args: argparse.Namespace) -> int:
    await run_file(
        args.audio_file, base_url=args.base_url, api_key=args.api_key, model=args.model,
        printer=_Printer(args.jsonl), events_log=args.events_log, save_reply=args.save_reply,
        speed=args.speed, timeout=args.timeout, connect_timeout=args.connect_timeout,
        vad=args.vad, transport=args.transport,
    )
    return EXIT_OK


async def _mint(args: argparse.Namespace) -> int:
    from livetalk.transport.signaling import mint_client_secret

    session: dict[str, Any] = {"type": "realtime", "model": args.model}
    if args.instructions:
        session["instructions"] = args.instructions
    secret = await mint_client_secret(api_key=args.api_key, base_url=args.base_url,
                                      session=session, expires_after_s=args.ttl)
    # printing the value is the point of this command: it goes to stdout only
    print(json.dumps({"value": secret.value, "expires_at": secret.expires_at,
                      "model": secret.session.get("model")}))
    return EXIT_OK


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, errors.AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, errors.ConnectTimeout | TimeoutError):
        return EXIT_TIMEOUT
    if isinstance(exc, errors.AudioDeviceError):
        return EXIT_DEVICE
    if isinstance(exc, errors.ConfigError | errors.AudioError):
        return EXIT_USAGE
    if isinstance(exc, errors.APIStatusError | errors.CallClosedError | errors.ServerErrorEvent):
        return EXIT_API
    if isinstance(exc, errors.SignalingError | errors.ConnectError):
        return EXIT_CONNECT
    return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``livetalk`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    from livetalk.scenarios.cli import run_script
    from livetalk.talk import run_devices, run_talk

    commands = {"serve": _serve, "run": _run, "demo": _demo, "mint": _mint, "script": run_script,
                "talk": run_talk}
    try:
        if args.command == "devices":
            return run_devices(args)
        return asyncio.run(commands[args.command](args))
    except KeyboardInterrupt:
        print("livetalk: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except errors.LivetalkError as exc:
        message = str(exc).replace("\n", " ")
        if isinstance(exc, errors.ConfigError) and "API key" in message:
            code = EXIT_AUTH
        else:
            code = _exit_code(exc)
        print(f"livetalk: error: {message}", file=sys.stderr)
        return code
    except OSError as exc:  # e.g. an events log or output path that cannot be written
        print(f"livetalk: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
