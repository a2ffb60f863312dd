"""Fuzzing the local server: its HTTP handling never crashes, session validation only raises
SessionConfigError. HTTP runs in memory on aiohttp's test server (no sockets)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings, strategies as st

from livetalk.errors import SessionConfigError
from livetalk.protocol.session import default_session, merge_session, validate_session
from livetalk.server import LocalServer
from livetalk.server.faults import FailingTranscriber

KEY = "sk-fuzz"
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20,
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
session_keys = st.sampled_from([
    "type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
    "max_output_tokens", "tracing", "truncation", "include", "modalities", "voice",
])
audio_like = st.fixed_dictionaries({}, optional={
    "input": st.fixed_dictionaries({}, optional={
        "format": json_values | st.fixed_dictionaries(
            {"type": st.sampled_from(["audio/pcm", "audio/pcmu", "x"])},
            optional={"rate": st.integers(0, 48000) | json_values}),
        "transcription": json_values | st.fixed_dictionaries({"model": st.text(max_size=8)}),
        "turn_detection": json_values | st.fixed_dictionaries(
            {"type": st.sampled_from(["server_vad", "semantic_vad", "x"])},
            optional={"threshold": json_values | st.floats(-1, 2), "eagerness": json_values,
                      "silence_duration_ms": json_values, "create_response": json_values,
                      "idle_timeout_ms": json_values}),
        "noise_reduction": json_values,
    }),
    "output": st.fixed_dictionaries({}, optional={
        "voice": json_values | st.sampled_from(["alloy", "marin"]),
        "speed": json_values | st.floats(0, 2), "format": json_values}),
})
session_like = st.dictionaries(session_keys, json_values, max_size=5).flatmap(
    lambda d: st.fixed_dictionaries(
        {"type": st.sampled_from(["realtime", "transcription", 3])},
        optional={"audio": audio_like, "tools": st.lists(json_values, max_size=3)},
    ).map(lambda extra: {**d, **extra}))


# ---------------------------------------------------------------------- session validation
@FUZZ
@given(st.one_of(json_values, session_like))
def test_validate_session_raises_only_session_config_error(session: Any) -> None:
    try:
        validate_session(session)
    except SessionConfigError as exc:
        assert exc.code and exc.message
        return
    merged = merge_session(default_session(), session)  # an accepted update always merges
    assert merged["type"] == "realtime"


# ---------------------------------------------------------------------- HTTP handling
@pytest.fixture
async def client(synthesizer: Any) -> AsyncIterator[TestClient[Any, Any]]:
    # ears that never run a model: the fuzz is about the HTTP layer
    srv = LocalServer(transcriber=FailingTranscriber(), synthesizer=synthesizer)
    async with TestClient(TestServer(srv.app)) as test_client:
        yield test_client
    await srv.stop()


PATHS = ["/v1/realtime/calls", "/v1/realtime/calls/rtc_x/hangup", "/v1/realtime/client_secrets",
         "/v1/audio/transcriptions", "/v1/realtime", "/v1/unknown"]
CONTENT_TYPES = ["application/sdp", "application/json", "multipart/form-data",
                 "multipart/form-data; boundary=b0undary", "text/plain",
                 "application/x-www-form-urlencoded", "audio/wav", ""]


def _multipart(parts: list[tuple[str | None, bytes, str | None]], boundary: str) -> bytes:
    out = b""
    for name, data, ctype in parts:
        out += f"--{boundary}\r\n".encode()
        if name is not None:
            out += f'Content-Disposition: form-data; name="{name}"'.encode()
            out += b'; filename="f.wav"\r\n' if name == "file" else b"\r\n"
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


sdp_text = st.lists(
    st.sampled_from(["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
                     "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=application 9 UDP/DTLS/SCTP x",
                     "c=IN IP4 0.0.0.0", "a=mid:0", "a=rtpmap:111 opus/48000/2", "a=sendrecv",
                     "a=fingerprint:sha-256 00:11", "a=setup:actpass", "a=ice-ufrag:x"])
    | st.text(max_size=30), max_size=12).map(lambda lines: "\r\n".join(lines) + "\r\n")
part_names = st.sampled_from(["sdp", "session", "file", "model", "response_format", "language",
                              "x", None])
part_data = st.one_of(st.binary(max_size=200), sdp_text.map(str.encode),
                      json_values.map(lambda v: json.dumps(v).encode()),
                      st.sampled_from([b"RIFF\x00\x00", b"json", b"text", b"gpt-4o-transcribe"]))
bodies = st.one_of(
    st.binary(max_size=300),
    sdp_text.map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.tuples(part_names, part_data, st.sampled_from([None, "application/json",
                                                               "application/sdp", "x/y"])),
             max_size=4).map(lambda parts: _multipart(parts, "b0undary")),
)


@FUZZ
@given(path=st.sampled_from(PATHS), method=st.sampled_from(["POST", "GET", "PUT"]),
       auth=st.one_of(st.none(), st.just(f"Bearer {KEY}"), st.just("Bearer ek_nope"),
                      header_text, header_text.map(lambda t: "Bearer " + t)),
       ctype=st.one_of(st.sampled_from(CONTENT_TYPES), header_text), body=bodies)
async def test_http_never_crashes(client: Any, path: str, method: str, auth: str | None,
                                  ctype: str, body: bytes) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    if auth is not None:
        headers["Authorization"] = auth
    r = await client.request(method, path, data=body, headers=headers)
    assert r.status < 500, await r.text()
    if r.status >= 400:
        assert r.content_type == "application/json"
        error = (await r.json())["error"]
        assert set(error) == {"message", "type", "param", "code"}


@FUZZ
@given(sdp=sdp_text, form=st.booleans(), session=st.one_of(st.none(), json_values, session_like))
async def test_random_offers_are_refused_cleanly(client: Any, sdp: str, form: bool,
                                                 session: Any) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    if form:
        boundary = uuid.uuid4().hex
        parts: list[tuple[str | None, bytes, str | None]] = [("sdp", sdp.encode(), None)]
        if session is not None:
            parts.append(("session", json.dumps(session).encode(), "application/json"))
        data = _multipart(parts, boundary)
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    else:
        data = sdp.encode()
        headers["Content-Type"] = "application/sdp"
    r = await client.post("/v1/realtime/calls", data=data, headers=headers)
    assert r.status == 400, await r.text()
    assert (await r.json())["error"]["code"] in {
        "invalid_offer", "invalid_json", "invalid_type", "missing_required_parameter",
        "unknown_parameter", "invalid_value", "integer_below_min_value",
        "integer_above_max_value", "decimal_below_min_value", "decimal_above_max_value"}
