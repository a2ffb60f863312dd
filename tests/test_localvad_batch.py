"""``POST /v1/audio/transcriptions`` on the local server, with httpx and the official SDK."""

from __future__ import annotations

import io
from typing import Any

import av
import httpx
import numpy as np
import openai
import pytest

from livetalk.localvad import wav_bytes
from livetalk.server.faults import Faults

pytestmark = pytest.mark.slow

KEY = "sk-test-batch"
PHRASE = "what is the weather like today"


def _flac_stereo_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """The same speech as a 44.1 kHz stereo FLAC: another container, codec, rate, layout."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=44100)
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(converted):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def speech(synthesizer: Any) -> tuple[np.ndarray, int]:
    pcm, rate = synthesizer.synthesize(PHRASE)
    return pcm, rate


async def _post(srv: Any, files: dict[str, Any], data: dict[str, str] | None = None,
                key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient() as client:
        return await client.post(f"{srv.base_url}/audio/transcriptions", files=files,
                                 data=data or {}, headers=headers, timeout=30)


async def test_wav_is_transcribed_as_json(server: Any, speech: tuple[np.ndarray, int]) -> None:
    r = await _post(server, {"file": ("turn.wav", wav_bytes(*speech), "audio/wav")},
                    {"model": "gpt-4o-mini-transcribe", "language": "en", "prompt": "weather"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == PHRASE
    assert body["usage"]["type"] == "duration"
    assert body["usage"]["seconds"] == pytest.approx(speech[0].size / speech[1], abs=0.05)


async def test_flac_stereo_is_decoded_and_resampled(server: Any,
                                                    speech: tuple[np.ndarray, int]) -> None:
    r = await _post(server, {"file": ("turn.flac", _flac_stereo_bytes(*speech), "audio/flac")},
                    {"model": "gpt-4o-transcribe", "response_format": "text"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.strip() == PHRASE


async def test_official_sdk_transcribes(server: Any, speech: tuple[np.ndarray, int]) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    async with client:
        result = await client.audio.transcriptions.create(
            file=("turn.wav", wav_bytes(*speech)), model="gpt-4o-mini-transcribe")
        assert result.text == PHRASE
        text = await client.audio.transcriptions.create(
            file=("turn.wav", wav_bytes(*speech)), model="gpt-4o-mini-transcribe",
            response_format="text")
        assert text.strip() == PHRASE
        with pytest.raises(openai.BadRequestError) as info:
            await client.audio.transcriptions.create(
                file=("turn.wav", b"RIFF garbage, not audio"), model="gpt-4o-mini-transcribe")
        assert info.value.code == "invalid_value" and info.value.param == "file"


async def test_silence_gives_empty_text(server: Any) -> None:
    r = await _post(server, {"file": ("quiet.wav", wav_bytes(np.zeros(24000, np.int16), 24000))},
                    {"model": "gpt-4o-mini-transcribe"})
    assert r.status_code == 200 and r.json()["text"] == ""


@pytest.mark.parametrize(("files", "data", "status", "code", "param"), [
    ({"audio": ("a.wav", b"RIFF")}, {"model": "gpt-4o-mini-transcribe"}, 400,
     "missing_required_parameter", "file"),
    ({"file": ("a.wav", b"RIFF")}, {}, 400, "missing_required_parameter", "model"),
    ({"file": ("a.wav", b"not audio at all")}, {"model": "m"}, 400, "invalid_value", "file"),
    ({"file": ("a.wav", b"RIFF")}, {"model": "m", "response_format": "srt"}, 400,
     "unsupported_value", "response_format"),
])
async def test_bad_requests_get_the_error_envelope(
    server: Any, files: dict[str, Any], data: dict[str, str], status: int, code: str, param: str
) -> None:
    r = await _post(server, files, data)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param,
                                                              "invalid_request_error")


async def test_auth_and_content_type_are_checked(server: Any) -> None:
    files = {"file": ("a.wav", b"RIFF")}
    assert (await _post(server, files, {"model": "m"}, key=None)).status_code == 401
    assert (await _post(server, files, {"model": "m"}, key="ek_unknown")).status_code == 401
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{server.base_url}/audio/transcriptions", json={"model": "m"},
                              headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_type"


async def test_failed_transcription_is_a_server_error(make_server: Any,
                                                      speech: tuple[np.ndarray, int]) -> None:
    async with make_server(port=0, faults=Faults(transcription_failed=True)) as srv:
        r = await _post(srv, {"file": ("turn.wav", wav_bytes(*speech))}, {"model": "m"})
    assert r.status_code == 500
    assert r.json()["error"] == {"message": "The transcription failed.", "type": "server_error",
                                 "param": None, "code": "transcription_failed"}


async def test_files_over_25_mb_are_refused_with_413(server: Any) -> None:
    big = b"\0" * ((25 << 20) + 1024)
    r = await _post(server, {"file": ("big.wav", big)}, {"model": "m"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
