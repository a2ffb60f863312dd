"""A real browser (headless Chromium, libwebrtc) calls the local server through the relay.

The example backend (``examples/browser/server.py``) serves the page, mints the ``ek_`` secret
and follows the call over the sideband; Chromium's fake microphone plays a WAV file. The page
opened with ``?report=1`` POSTs its progress (statuses, every server event, turns, errors) to
the backend, which is how the test observes the browser: no Playwright, no DevTools driver.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest
from aiohttp import web

from livetalk.protocol.session import DEFAULT_MODEL, DEFAULT_TRANSCRIPTION_MODEL
from livetalk.server.tts import render_turns
from tests.conftest import DATA, EventValidator

CHROMIUM = shutil.which("chromium")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "browser" / "server.py"
KEY = "sk-test-browser"
DEMO_USER = ["hello can you hear me", "what is the weather like today", "thank you goodbye"]
DEADLINE_S = 60.0
MIC_LEAD_S = 2.0

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package "
                       "(apt-get install -y chromium) for a real libwebrtc peer"),
    pytest.mark.slow,
    pytest.mark.timeout(120),
]


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("livetalk_example_browser", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.asynccontextmanager
async def _backend(base_url: str) -> AsyncIterator[tuple[Any, str]]:
    """The example backend on a free port: yields it and its page URL."""
    backend = _load_example().Backend(api_key=KEY, base_url=base_url)
    runner = web.AppRunner(backend.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield backend, f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _chromium(url: str, wav: Path, workdir: Path) -> AsyncIterator[Path]:
    """Headless Chromium on ``url`` with ``wav`` as its microphone; yields its log path."""
    assert CHROMIUM is not None
    log_path = workdir / "chromium.log"
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={workdir / 'profile'}",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required", "--enable-logging=stderr", "--v=0",
        url,
    ]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log_file,
                                start_new_session=True)
    try:
        yield log_path
    finally:
        # Chromium forks helpers (zygote, renderer, utility): end its whole process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 5)


def _console(log_path: Path) -> str:
    """The page's console lines from Chromium's log (CORS and JS errors land there)."""
    lines = log_path.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if "CONSOLE" in line)[-2000:]


def _reports(backend: Any) -> list[dict[str, Any]]:
    return sorted(backend.reports, key=lambda r: r["seq"])


def _page_turns(backend: Any) -> list[tuple[str, str]]:
    return [(r["role"], r["text"]) for r in _reports(backend) if r["kind"] == "turn"]


def _sideband_turns(backend: Any) -> list[tuple[str, str]]:
    turns = [t for per_call in backend.turns.values() for t in per_call]
    return [(t["role"], t["text"]) for t in turns]


async def _wait(backend: Any, done: Callable[[], bool], log_path: Path) -> None:
    """Poll until ``done()``; fail at once on an error the page reports, or at the deadline."""
    end = time.monotonic() + DEADLINE_S
    while not done():
        errors = [r["message"] for r in backend.reports if r["kind"] == "error"]
        assert not errors, f"the page failed: {errors}\n{_console(log_path)}"
        assert time.monotonic() < end, (
            f"no result within {DEADLINE_S:g} s; the page reported "
            f"{[r for r in _reports(backend) if r['kind'] != 'event']}\n{_console(log_path)}")
        await asyncio.sleep(0.1)


async def _assert_cors_preflight(base_url: str) -> None:
    """The browser's preflight of ``POST /realtime/calls`` from another origin must pass."""
    async with httpx.AsyncClient() as client:
        response = await client.options(f"{base_url}/realtime/calls", headers={
            "Origin": "http://127.0.0.1:1",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        })
    allowed_headers = response.headers.get("access-control-allow-headers", "").lower()
    assert response.status_code in (200, 204) and response.headers.get(
        "access-control-allow-origin") in ("*", "http://127.0.0.1:1"), (
        f"the local server answers the CORS preflight of POST /v1/realtime/calls with "
        f"{response.status_code} {dict(response.headers)}: a browser cannot call it")
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert "location" in response.headers.get("access-control-expose-headers", "").lower() or (
        response.headers.get("access-control-expose-headers") == "*")


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())
    return path


def _microphone(tmp_path: Path, pcm: np.ndarray, rate: int) -> Path:
    """The fake microphone's WAV: ``pcm`` after MIC_LEAD_S of silence.

    Chromium starts playing the file when the page opens the microphone, before the call is
    connected; the silence keeps the first words from being lost on a busy machine.
    """
    lead = np.zeros(round(MIC_LEAD_S * rate), dtype=np.int16)
    return _write_wav(tmp_path / "microphone.wav", np.concatenate([lead, pcm]), rate)


async def test_browser_call_through_relay_with_sideband(make_server, tmp_path: Path) -> None:
    with wave.open(str(DATA / "demo.wav")) as demo:
        rate = demo.getframerate()
        pcm = np.frombuffer(demo.readframes(demo.getnframes()), dtype="<i2")
    wav = _microphone(tmp_path, pcm, rate)
    async with make_server(port=0) as server:
        await _assert_cors_preflight(server.base_url)
        async with _backend(server.base_url) as (backend, url), _chromium(
            url + "?autostart=1&report=1", wav, tmp_path
        ) as log_path:
            await _wait(backend, lambda: len(_page_turns(backend)) >= 6
                        and len(_sideband_turns(backend)) >= 6, log_path)
    reports = _reports(backend)
    first = {r["kind"]: r for r in reversed(reports)}
    assert first["relay"]["status"] == 200 and first["relay"]["model"] == DEFAULT_MODEL
    assert first["calls"]["status"] == 201  # the local server accepted libwebrtc's offer
    assert first["call_id"]["call_id"].startswith("rtc_")  # Location was readable
    assert first["datachannel"]["state"] == "open"
    assert "track" in first  # the reply audio track reached the page
    events = [r["event"] for r in reports if r["kind"] == "event"]
    assert events[0]["type"] == "session.created"
    assert events[0]["session"]["audio"]["input"]["transcription"]["model"] == (
        DEFAULT_TRANSCRIPTION_MODEL)  # the session bound to the relay's secret
    validator = EventValidator()
    for event in events:
        validator("in", event)
    validator.assert_valid()

    turns = _page_turns(backend)
    assert [text for role, text in turns if role == "user"] == DEMO_USER
    assert [text for role, text in turns if role == "assistant"] == [
        f"You said: {text}." for text in DEMO_USER]
    assert [role for role, _ in turns] == ["user", "assistant"] * 3
    assert list(backend.turns) == [first["call_id"]["call_id"]]
    assert _sideband_turns(backend) == turns  # the backend heard the same call
    assert backend.relay.statistics().minted == 1


async def test_browser_multipart_offer(make_server, synthesizer, tmp_path: Path) -> None:
    pcm = render_turns(DEMO_USER[:1], gap_s=1.5, rate=16000, synthesizer=synthesizer)
    wav = _microphone(tmp_path, pcm, 16000)
    async with make_server(port=0) as server:
        await _assert_cors_preflight(server.base_url)
        async with _backend(server.base_url) as (backend, url), _chromium(
            url + "?autostart=1&report=1&multipart=1", wav, tmp_path
        ) as log_path:
            await _wait(backend, lambda: len(_page_turns(backend)) >= 2, log_path)
    statuses = [r["status"] for r in _reports(backend) if r["kind"] == "calls"]
    assert statuses == [201]  # FormData parts carry no Content-Type; the server parsed them
    assert _page_turns(backend)[:2] == [("user", DEMO_USER[0]),
                                        ("assistant", f"You said: {DEMO_USER[0]}.")]
