"""Fault injection against real loopback WebRTC calls: typed errors, bounded time, no leaks.

Each case runs the local server with a fault (``LocalServer(faults=...)`` or a hook on
``server.calls[call_id]``) and checks that the client ends in a typed error from
:mod:`livetalk.errors` or recovers, within a bound, without leaking a thread, a task, a file
descriptor or an open ``RTCPeerConnection``, and with every transcript received before the
fault still available. ``docs/reliability.md`` is the matrix of these cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection

import livetalk
from livetalk import errors
from livetalk.audio.sources import FileSource, SilenceSource, concat
from livetalk.protocol import events as ev
from livetalk.protocol.session import ServerVAD, SessionConfig, Transcription
from livetalk.server.faults import Faults
from livetalk.transport.signaling import mint_client_secret
from tests.conftest import DATA

pytestmark = pytest.mark.slow

KEY = "sk-test-faults"
BOUND = 10.0  # seconds: every fault resolves well within this
ROOT = Path(__file__).resolve().parents[2]


def _config() -> SessionConfig:
    return SessionConfig(transcription=Transcription(model="gpt-4o-mini-transcribe"),
                         turn_detection=ServerVAD(silence_duration_ms=500))


# ---------------------------------------------------------------------- leak checking
def _open_peers() -> list[RTCPeerConnection]:
    # no gc.collect(): uncollected garbage is still listed, and an open peer in it is a leak
    return [o for o in gc.get_objects()
            if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"]


def _snapshot() -> dict[str, Any]:
    current = asyncio.current_task()
    return {
        "threads": sorted(t.name for t in threading.enumerate()
                          if not t.name.startswith("asyncio_")),
        "tasks": sorted(repr(t.get_coro()) for t in asyncio.all_tasks() if t is not current),
        "fds": len(os.listdir("/proc/self/fd")),
        "peers": len(_open_peers()),
    }


def _leaked(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = []
    extra_threads = [t for t in after["threads"] if t not in before["threads"]]
    if extra_threads:
        problems.append(f"threads {extra_threads}")
    if len(after["tasks"]) > len(before["tasks"]):
        problems.append(f"tasks {[t for t in after['tasks'] if t not in before['tasks']]}")
    if after["fds"] > before["fds"]:
        problems.append(f"fds {before['fds']} -> {after['fds']}")
    if after["peers"] > before["peers"]:
        problems.append(f"open RTCPeerConnections {before['peers']} -> {after['peers']}")
    return problems


@contextlib.asynccontextmanager
async def no_leaks() -> AsyncIterator[None]:
    """Fail when the block leaves threads, tasks, fds or open peer connections behind."""
    before = _snapshot()
    yield
    deadline = time.monotonic() + 3.0
    while True:
        problems = _leaked(before, _snapshot())
        if not problems or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert not problems, "leaked: " + "; ".join(problems)


def _forgive_invalid(tap: Any, *expected: str) -> None:
    """The deliberately invalid events must fail the SDK's validation; nothing else may."""
    for prefix in expected:
        assert any(f.startswith(prefix + ":") for f in tap.failures), (prefix, tap.failures)
    tap.failures[:] = [f for f in tap.failures
                       if not any(f.startswith(p + ":") for p in expected)]


async def _text_turn(call: Any, text: str, expected_turns: int) -> list[Any]:
    call.add_text(text)
    call.create_response()
    return await call.wait_for_turns(expected_turns, timeout=BOUND)


# ---------------------------------------------------------------------- signaling faults
SIGNALING_CASES: list[tuple[Faults, type[errors.LivetalkError], Callable[[Any], bool]]] = [
    (Faults(calls_status=401), errors.AuthenticationError,
     lambda e: e.status == 401 and e.code == "invalid_api_key"),
    (Faults(calls_status=403), errors.AuthenticationError, lambda e: e.status == 403),
    (Faults(calls_status=404), errors.NotFoundError,
     lambda e: e.status == 404 and e.code == "model_not_found"),
    (Faults(calls_status=429, retry_after_s=3), errors.RateLimitError,
     lambda e: e.retry_after == 3.0 and e.code == "rate_limit_exceeded"),
    (Faults(calls_status=500), errors.APIStatusError,
     lambda e: e.status == 500 and e.error_type == "server_error"),
    (Faults(calls_reply="html"), errors.APIStatusError,
     lambda e: e.status == 502 and "text/html" in e.message),
    (Faults(calls_reply="garbage-sdp"), errors.SignalingError, lambda e: "not an SDP" in str(e)),
    (Faults(calls_reply="bad-answer"), errors.ConnectError, lambda e: "SDP answer" in str(e)),
    (Faults(dtls_mismatch=True), errors.ConnectError, lambda e: "DTLS" in str(e)),
    (Faults(ice_unreachable=True), errors.ConnectTimeout, lambda e: True),
    (Faults(answer_delay_s=2.0), errors.ConnectTimeout, lambda e: True),
]


@pytest.mark.parametrize(("faults", "error", "check"), SIGNALING_CASES,
                         ids=lambda v: repr(v) if isinstance(v, Faults) else "")
async def test_connect_fault_raises_typed_error_without_leaks(
    make_server: Any, faults: Faults, error: type[Exception], check: Callable[[Any], bool]
) -> None:
    async with no_leaks(), make_server(port=0, faults=faults) as srv:
        t0 = time.monotonic()
        with pytest.raises(error) as info:
            await asyncio.wait_for(livetalk.connect(
                base_url=srv.base_url, api_key=KEY, connect_timeout=1.0), BOUND)
        assert time.monotonic() - t0 < 5.0
        assert check(info.value), info.value
        assert type(info.value).__module__ == "livetalk.errors"


async def test_missing_session_created_is_a_connect_timeout(make_server: Any) -> None:
    async with no_leaks(), make_server(port=0, faults=Faults(no_session_created=True)) as srv:
        with pytest.raises(errors.ConnectTimeout):
            await asyncio.wait_for(livetalk.connect(
                base_url=srv.base_url, api_key=KEY, connect_timeout=1.0), BOUND)


async def test_missing_session_created_fails_within_the_connect_timeout(make_server: Any) -> None:
    async with no_leaks(), make_server(port=0, faults=Faults(no_session_created=True)) as srv:
        with pytest.raises(errors.LivetalkError, match="session.created"):
            await asyncio.wait_for(livetalk.connect(
                base_url=srv.base_url, api_key=KEY, connect_timeout=1.0), BOUND)


async def test_unreachable_server_is_a_signaling_error() -> None:
    async with no_leaks():
        with pytest.raises(errors.SignalingError, match="could not reach"):
            await asyncio.wait_for(livetalk.connect(
                base_url="http://127.0.0.1:9/v1", api_key=KEY, connect_timeout=2.0), BOUND)


async def test_expired_client_secret_is_refused(make_server: Any) -> None:
    async with no_leaks(), make_server(port=0) as srv:
        secret = await mint_client_secret(api_key=KEY, base_url=srv.base_url,
                                          session={"type": "realtime"}, expires_after_s=60)
        srv.expire_secrets()
        with pytest.raises(errors.AuthenticationError) as info:
            await asyncio.wait_for(livetalk.connect(base_url=srv.base_url,
                                                    api_key=secret.value), BOUND)
        assert info.value.status == 401 and info.value.code == "invalid_api_key"
        assert secret.value not in str(info.value)


async def test_secrets_minted_expired_by_the_fault_are_refused(make_server: Any) -> None:
    async with make_server(port=0, faults=Faults(expired_secrets=True)) as srv:
        secret = await mint_client_secret(api_key=KEY, base_url=srv.base_url, expires_after_s=60)
        assert secret.expires_at > time.time()  # what the server claims
        with pytest.raises(errors.AuthenticationError):
            await asyncio.wait_for(livetalk.connect(base_url=srv.base_url,
                                                    api_key=secret.value), BOUND)


# ---------------------------------------------------------------------- faults on a live call
async def _assert_ends_with_call_closed(call: Any, turns_before: list[Any],
                                        bound: float = BOUND) -> None:
    """Iterators replay everything, then raise CallClosedError; nothing is lost."""
    seen = []
    with pytest.raises(errors.CallClosedError):
        async with asyncio.timeout(bound):
            async for turn in call.turns():
                seen.append(turn)
    assert [t.item_id for t in seen[:len(turns_before)]] == [t.item_id for t in turns_before]
    assert [t.text for t in call.turns_so_far[:len(turns_before)]] == [
        t.text for t in turns_before]
    with pytest.raises(errors.CallClosedError):
        async with asyncio.timeout(BOUND):
            async for _ in call.transcript_deltas():
                pass
    assert call.closed


async def test_data_channel_closed_by_server_ends_call_with_turns_kept(make_server: Any) -> None:
    async with no_leaks(), make_server(port=0, realtime_factor=8.0) as srv:
        call = await livetalk.connect(base_url=srv.base_url, api_key=KEY)
        try:
            turns = await _text_turn(call, "hello there", 2)
            assert [t.role for t in turns] == ["user", "assistant"]
            server_call = srv.calls[call.call_id]
            server_call.close_data_channel()
            await _assert_ends_with_call_closed(call, turns)
            assert server_call.pc.connectionState == "connected"  # media still up server-side
        finally:
            await call.close()


async def test_server_hangup_mid_call_ends_call_with_turns_kept(make_server: Any) -> None:
    async with no_leaks(), make_server(port=0, realtime_factor=8.0) as srv:
        async with livetalk.connect(base_url=srv.base_url, api_key=KEY) as call:
            turns = await _text_turn(call, "hello there", 2)
            await srv.calls[call.call_id].hang_up()
            await _assert_ends_with_call_closed(call, turns)
            assert call.call_id not in srv.calls


async def test_server_stopped_mid_call_ends_call(make_server: Any) -> None:
    async with no_leaks():
        srv_cm = make_server(port=0, realtime_factor=8.0)
        srv = await srv_cm.__aenter__()
        try:
            async with livetalk.connect(base_url=srv.base_url, api_key=KEY) as call:
                turns = await _text_turn(call, "hello there", 2)
                await srv.stop()
                await _assert_ends_with_call_closed(call, turns)
        finally:
            await srv_cm.__aexit__(None, None, None)


async def test_server_killed_without_goodbye_is_detected_quickly(make_server: Any) -> None:
    """The media watchdog notices a server that vanished without a goodbye."""
    async with make_server(port=0, realtime_factor=8.0) as srv:
        async with livetalk.connect(base_url=srv.base_url, api_key=KEY,
                                    media_timeout=1.0) as call:
            turns = await _text_turn(call, "hello there", 2)
            await srv.calls[call.call_id].kill()
            await _assert_ends_with_call_closed(call, turns, bound=3.0)


async def test_session_limit_sends_error_then_closes(make_server: Any, validator: Any) -> None:
    async with no_leaks(), make_server(port=0, max_call_s=1.5) as srv:
        async with livetalk.connect(base_url=srv.base_url, api_key=KEY,
                                    event_log=validator) as call:
            t0 = time.monotonic()
            with pytest.raises(errors.CallClosedError):
                async with asyncio.timeout(BOUND):
                    async for _ in call.events():
                        pass
            assert time.monotonic() - t0 < 1.5 + 3.0
            assert [e.code for e in call.errors] == ["session_expired"]
            assert "maximum duration" in call.errors[0].message
    validator.assert_valid()


async def test_malformed_unknown_and_large_events_are_survived(
    make_server: Any, every_event_is_validated: Any
) -> None:
    async with no_leaks(), make_server(port=0, realtime_factor=8.0) as srv:
        async with livetalk.connect(base_url=srv.base_url, api_key=KEY) as call:
            server_call = srv.calls[call.call_id]
            unknown: list[ev.ServerEvent] = []

            async def collect() -> None:
                async for event in call.events():
                    if isinstance(event, ev.UnknownEvent):
                        unknown.append(event)

            collector = asyncio.ensure_future(collect())
            server_call.send_raw("{this is not json")
            server_call.send_raw(b"\x00\x01 binary")
            server_call.send_raw(json.dumps({"no": "type"}))
            server_call.send_raw(json.dumps({"type": "response.future_thing", "event_id": "e1",
                                             "payload": "x" * 200_000}))
            server_call.send_raw(json.dumps({"type": "response.done", "response": 42}))
            with pytest.raises(errors.LocalProtocolError, match="max|supports"):
                server_call.send_raw("x" * 300_000)  # over the client's max-message-size
            turns = await _text_turn(call, "still there", 2)  # the call still works
            assert turns[1].text == "You said: still there."
            assert [e.type for e in unknown] == ["response.future_thing"]
            assert not call.closed
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
    _forgive_invalid(every_event_is_validated, "in None", "in response.future_thing",
                     "in response.done")


async def test_error_events_are_recorded_and_the_call_continues(
    make_server: Any, every_event_is_validated: Any
) -> None:
    async with no_leaks(), make_server(port=0, realtime_factor=8.0) as srv:
        async with livetalk.connect(base_url=srv.base_url, api_key=KEY) as call:
            srv.calls[call.call_id].send_error("server_error", "The server had an error.",
                                               error_type="server_error")
            with pytest.raises(errors.LocalProtocolError, match="no.such.event"):
                call.send({"type": "no.such.event"})  # refused before the wire
            call.send({"type": "conversation.item.delete", "item_id": "item_nope"})
            session = await call.update_session({"instructions": "Be brief."}, timeout=BOUND)
            assert session["instructions"] == "Be brief."
            codes = [e.code for e in call.errors]
            assert codes == ["server_error", "item_delete_invalid_item_id"]
            assert isinstance(call.errors[0], errors.ServerError)
            with pytest.raises(errors.ServerError) as info:
                await call.update_session({"voice": "x"}, timeout=BOUND)
            assert info.value.code == "unknown_parameter"
            assert not call.closed


async def test_transcription_failure_then_recovery(make_server: Any, validator: Any) -> None:
    async with no_leaks(), make_server(port=0, realtime_factor=8.0) as srv:
        async with livetalk.connect(base_url=srv.base_url, api_key=KEY, session=_config(),
                                    speed=8.0, event_log=validator) as call:
            srv.calls[call.call_id].fail_transcriptions(1)
            await call.stream(concat(FileSource(DATA / "demo.wav"), SilenceSource(1.5)))
            turns = await call.wait_for_turns(6, timeout=30)
    user = [t for t in turns if t.role == "user"]
    assert user[0].status == "failed" and user[0].text == ""
    assert [t.text for t in user[1:]] == ["what is the weather like today", "thank you goodbye"]
    assert "conversation.item.input_audio_transcription.failed" in validator.types("in")
    validator.assert_valid()


# ---------------------------------------------------------------------- the CLI
async def _cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livetalk", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OPENAI_API_KEY": ""})


async def test_cli_exit_codes_for_connect_faults(make_server: Any, capfd: Any,
                                                 monkeypatch: Any) -> None:
    from livetalk.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    wav = str(DATA / "demo.wav")
    async with make_server(port=0, faults=Faults(calls_status=401)) as s401, \
            make_server(port=0, faults=Faults(calls_status=429)) as s429, \
            make_server(port=0, faults=Faults(answer_delay_s=2.0)) as slow:
        runs = [
            ["run", wav, "--base-url", s401.base_url, "--api-key", KEY],
            ["run", wav, "--base-url", s429.base_url, "--api-key", KEY],
            ["run", wav, "--base-url", slow.base_url, "--api-key", KEY, "--connect-timeout", "1"],
            ["run", wav, "--base-url", "http://127.0.0.1:9/v1", "--api-key", KEY],
            ["run", wav, "--base-url", s401.base_url],
        ]
        results = []
        for argv in runs:  # main() runs its own event loop, so in a worker thread
            code = await asyncio.wait_for(asyncio.to_thread(main, argv), 30)
            out, err = capfd.readouterr()
            results.append((code, out, err))
    assert [r[0] for r in results] == [3, 6, 5, 4, 3], [r[2] for r in results]
    for _, out, err in results:
        assert err.startswith("livetalk: error:") and err.count("\n") == 1, err
        assert KEY not in out + err
    assert "401" in results[0][2] and "429" in results[1][2]


async def test_cli_turn_log_is_flushed_per_turn_and_kept_on_failure(make_server: Any) -> None:
    async with make_server(port=0, realtime_factor=4.0) as srv:
        proc = await _cli("run", str(DATA / "demo.wav"), "--base-url", srv.base_url,
                          "--api-key", KEY, "--jsonl", "--speed", "4")
        assert proc.stdout is not None
        lines: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(45):
                while not any(o["type"] == "turn" and o["role"] == "assistant" for o in lines):
                    raw = await proc.stdout.readline()
                    assert raw, "the CLI ended before the first assistant turn"
                    lines.append(json.loads(raw))
            # the first turns are on stdout while the call still runs: flushed per turn
            call_id = next(o["call_id"] for o in lines if o["type"] == "call.connected")
            await srv.calls[call_id].hang_up()
            rest, err = await asyncio.wait_for(proc.communicate(), BOUND)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
    turns = [o for o in lines if o["type"] == "turn"]
    assert [t["role"] for t in turns[:2]] == ["user", "assistant"]
    assert proc.returncode == 6, err
    closed = json.loads(rest.splitlines()[-1])  # the stream still ends with call.closed
    assert closed["type"] == "call.closed" and closed["error"]["exit_status"] == 6
    assert err.decode().startswith("livetalk: error:")
