"""Secrets never leak; the local server is closed by default; TLS verification stays on.

Every place a key could end up is captured (logs of livetalk, aiortc, aioice, aiohttp, httpx
at DEBUG; stdout and stderr of the CLI; the events log; recordings; exception messages and
the reprs of the objects involved) and searched for the API key and every ``ek_`` value.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import sys
import uuid
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

import livetalk
from livetalk import errors
from livetalk.audio.sinks import WavSink
from livetalk.transport.signaling import mint_client_secret

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LOGGERS = ("livetalk", "aiortc", "aioice", "aiohttp", "httpx", "httpcore")
EK = re.compile(r"ek_[0-9a-f]{8,}")


@pytest.fixture
def secret_key() -> str:
    return f"sk-proj-SECRET{uuid.uuid4().hex}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            lines.append(repr(record.exc_info[1]))
    return "\n".join(lines)


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret leaked: ...{secret[-6:]}"
    assert not EK.search(text), f"an ek_ value leaked: {EK.search(text)}"


def _speech_wav(path: Path, synthesizer: Any, text: str) -> Path:
    pcm, rate = synthesizer.synthesize(text)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


async def test_no_secret_in_logs_files_errors_or_reprs(
    make_server: Any, debug_logs: pytest.LogCaptureFixture, secret_key: str, tmp_path: Path
) -> None:
    events_log = tmp_path / "events.jsonl"
    recording = tmp_path / "reply.wav"
    seen: list[str] = []
    async with make_server(port=0, api_key=secret_key, realtime_factor=8.0) as srv:
        # a standard-key call with an events log and a recording
        async with livetalk.connect(base_url=srv.base_url, api_key=secret_key,
                                    event_log=events_log) as call:
            call.record_to(WavSink(recording, rate=24000))
            call.add_text("hello there")
            call.create_response()
            await call.wait_for_turns(2, timeout=10)
            seen += [repr(call), repr(call._transport), repr(srv),
                     *(repr(c) for c in srv.calls.values()), repr(call.session)]
        # an ephemeral secret: minted, used for a call, then refused once expired
        secret = await mint_client_secret(api_key=secret_key, base_url=srv.base_url)
        seen.append(repr(secret))
        async with livetalk.connect(base_url=srv.base_url, api_key=secret.value) as eph:
            seen += [repr(eph), repr(eph._transport)]
        srv.expire_secrets()
        for bad_key in (secret.value, secret_key + "x", "sk-wrong"):
            with pytest.raises(errors.AuthenticationError) as info:
                await livetalk.connect(base_url=srv.base_url, api_key=bad_key)
            seen += [str(info.value), repr(info.value), repr(info.value.__cause__)]
        with pytest.raises(errors.AuthenticationError) as minted:
            await mint_client_secret(api_key="sk-wrong" + secret_key, base_url=srv.base_url)
        seen += [str(minted.value), repr(minted.value)]
    assert recording.stat().st_size > 1000 and events_log.stat().st_size > 1000
    everything = "\n".join([_log_text(debug_logs), *seen, events_log.read_text(),
                            recording.read_bytes().decode("latin-1")])
    assert "session.created" in everything  # the capture did capture
    _assert_clean(everything, secret_key, secret.value)


async def test_cli_run_and_failed_auth_print_no_secret(
    make_server: Any, synthesizer: Any, secret_key: str, tmp_path: Path
) -> None:
    wav = _speech_wav(tmp_path / "hello.wav", synthesizer, "hello can you hear me")
    events_log, reply = tmp_path / "events.jsonl", tmp_path / "reply.wav"
    wrong_key = secret_key[:-1] + ("1" if secret_key.endswith("0") else "0")  # one digit off
    async with make_server(port=0, api_key=secret_key, realtime_factor=4.0) as srv:
        async def run(key: str, *extra: str) -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "livetalk", "run", str(wav), "--base-url", srv.base_url,
                "--speed", "4", "--timeout", "15", *extra, cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "OPENAI_API_KEY": key})
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode is not None
            return proc.returncode, out.decode() + err.decode()

        (ok, ok_out), (denied, denied_out) = await asyncio.gather(
            run(secret_key, "--jsonl", "--events-log", str(events_log), "--save-reply",
                str(reply)),
            run(wrong_key),
        )
    assert ok == 0, ok_out
    assert '"type": "turn"' in ok_out
    assert denied == 3 and "401" in denied_out
    everything = "\n".join([ok_out, denied_out, events_log.read_text(),
                            reply.read_bytes().decode("latin-1")])
    _assert_clean(everything, secret_key, wrong_key)


async def test_server_binds_loopback_by_default(server: Any) -> None:
    assert server.host == "127.0.0.1"
    addresses = server._runner.addresses
    assert addresses and all(addr[0] == "127.0.0.1" for addr in addresses)


async def test_unknown_and_missing_credentials_get_the_401_envelope(server: Any) -> None:
    async with httpx.AsyncClient() as http:
        for headers in ({}, {"Authorization": "Bearer ek_0123456789abcdef"},
                        {"Authorization": "Bearer not-a-key"}):
            r = await http.post(f"{server.base_url}/realtime/calls", content=b"v=0",
                                headers={**headers, "Content-Type": "application/sdp"})
            assert r.status_code == 401
            error = r.json()["error"]
            assert error["code"] in (None, "invalid_api_key")
            assert "0123456789abcdef" not in error["message"]  # at most a masked fragment


async def test_data_channel_event_size_is_capped(make_server: Any) -> None:
    async with make_server(port=0, max_event_bytes=16_384) as srv, \
            livetalk.connect(base_url=srv.base_url, api_key="sk-test") as call:
        call.add_text("x" * 20_000)
        session = await call.update_session({"instructions": "still alive"}, timeout=10)
        assert session["instructions"] == "still alive"
        assert [e.code for e in call.errors] == ["message_too_large"]
        assert "16384" in call.errors[0].message
        assert srv.calls[call.call_id].session.order == []  # the oversized item was dropped


async def test_signaling_client_verifies_tls(server: Any) -> None:
    async with livetalk.connect(base_url=server.base_url, api_key="sk-test") as call:
        http = call._http
        assert isinstance(http, httpx.AsyncClient)
        context = http._transport._pool._ssl_context
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_no_code_disables_tls_verification() -> None:
    pattern = re.compile(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False")
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "livetalk").rglob("*.py")
                 if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
