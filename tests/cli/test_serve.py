"""``livetalk serve`` as a subprocess: its URL line, one stderr line per call, the verbosity
options, a clean stop on SIGINT and SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

import livetalk
from livetalk.protocol import events as ev
from livetalk.protocol.session import DEFAULT_MODEL
from tests.cli.test_run import ENV, free_port

pytestmark = pytest.mark.slow

KEY = "sk-test-serve"


@asynccontextmanager
async def serve(*args: str, scheme: str = "http",
                ) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``livetalk serve ARGS`` on a free port; yields (base URL, process)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livetalk", "serve", "--port", str(port), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == f"listening on {scheme}://127.0.0.1:{port}/v1"
        yield f"{scheme}://127.0.0.1:{port}/v1", proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _one_call_with_an_error(base_url: str) -> str:
    async with livetalk.connect(base_url=base_url, api_key=KEY) as call:
        call.send({"type": "conversation.item.delete", "item_id": "item_missing"})
        async for event in call.events():
            if isinstance(event, ev.ErrorEvent):
                break
        call_id = call.call_id
    assert call_id is not None
    return call_id


async def _stop(proc: asyncio.subprocess.Process, signum: signal.Signals) -> tuple[int, str]:
    await asyncio.sleep(0.5)  # the server logs the hang-up it has just received
    proc.send_signal(signum)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_one_line_per_call_and_a_clean_stop(signum: signal.Signals) -> None:
    async with serve() as (base_url, proc):
        call_id = await _one_call_with_an_error(base_url)
        code, err = await _stop(proc, signum)
    assert code == 0, err
    lines = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in err.splitlines()]
    assert lines[0] == f"{call_id} connected (WebRTC, {DEFAULT_MODEL})"
    assert re.fullmatch(rf"{call_id} error \S+: .*item_missing.*", lines[1]), lines
    assert re.fullmatch(rf"{call_id} closed after \d+\.\d s", lines[2]), lines
    assert lines[3:] == ["stopped"]


async def test_quiet_prints_nothing_per_call() -> None:
    async with serve("--quiet") as (base_url, proc):
        await _one_call_with_an_error(base_url)
        code, err = await _stop(proc, signal.SIGTERM)
    assert code == 0 and err == ""


async def test_verbose_logs_each_request_too() -> None:
    async with serve("--verbose") as (base_url, proc):
        call_id = await _one_call_with_an_error(base_url)
        code, err = await _stop(proc, signal.SIGTERM)
    assert code == 0
    assert f"{call_id} connected (WebRTC, {DEFAULT_MODEL})" in err
    assert '"POST /v1/realtime/calls' in err  # aiohttp's access log


async def test_bad_serve_options_are_one_line() -> None:
    from tests.cli.test_run import livetalk as run_livetalk

    code, _, err = await run_livetalk("serve", "--port", "0", "--fault", "no-such-fault")
    assert code == 2 and err.count("\n") == 1 and "no-such-fault" in err
    code, _, err = await run_livetalk("serve", "--port", "0", "--phrases", "/no/such/list.txt")
    assert code == 2 and err.count("\n") == 1 and "/no/such/list.txt" in err


async def test_tls_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    async with serve("--api-key", KEY, "--tls-cert", str(cert), "--tls-key", str(key),
                     scheme="https") as (base_url, _):
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with httpx.AsyncClient(verify=context) as client:
            reply = await client.post(f"{base_url}/realtime/client_secrets",
                                      headers={"Authorization": f"Bearer {KEY}"}, json={})
            assert reply.status_code == 200 and reply.json()["value"].startswith("ek_")
        async with httpx.AsyncClient() as untrusting:  # verification stays on by default
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.post(f"{base_url}/realtime/client_secrets", json={})


async def test_tls_needs_both_the_certificate_and_its_key(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livetalk", "serve", "--port", "0", "--tls-cert",
        str(tmp_path / "cert.pem"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=ENV)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and out == b""
    assert err.decode().strip().splitlines() == [
        "livetalk: error: TLS needs both a certificate and its key (tls_cert and tls_key)"]
