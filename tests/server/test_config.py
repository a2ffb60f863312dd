"""Session objects of the local server (livetalk/server/config.py) and its fault config."""

from __future__ import annotations

import time
from typing import Any

import pytest
from openai.types.realtime import RealtimeSessionCreateResponse

from livetalk.errors import ConfigError
from livetalk.server import LocalServer
from livetalk.server.config import (
    DEFAULT_MODEL,
    SessionError,
    default_session,
    merge_session,
    validate_session,
)
from livetalk.server.faults import FAULTS, Faults


def test_default_session_is_a_valid_ga_session_object() -> None:
    session = default_session("gpt-realtime-mini", lifetime_s=60)
    parsed = RealtimeSessionCreateResponse.model_validate(session)
    assert parsed.model == "gpt-realtime-mini"
    assert session["id"].startswith("sess_") and session["object"] == "realtime.session"
    assert 55 <= session["expires_at"] - time.time() <= 61
    assert default_session()["model"] == DEFAULT_MODEL
    assert default_session()["id"] != default_session()["id"]


@pytest.mark.parametrize(("session", "code", "param"), [
    ("realtime", "invalid_type", "session"),
    ({}, "missing_required_parameter", "session.type"),
    ({"type": "translation"}, "invalid_value", "session.type"),
    ({"type": "realtime", "voice": "alloy"}, "unknown_parameter", "session.voice"),
    ({"type": "realtime", "instructions": 3}, "invalid_value", "session.instructions"),
    ({"type": "realtime", "output_modalities": ["audio", "text"]}, "invalid_value",
     "session.output_modalities"),
    ({"type": "realtime", "max_output_tokens": 0}, "invalid_value", "session.max_output_tokens"),
    ({"type": "realtime", "tools": {}}, "invalid_type", "session.tools"),
    ({"type": "realtime", "tools": [{"type": "function"}]}, "missing_required_parameter",
     "session.tools[0].name"),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                 "threshold": 2}}}},
     "invalid_value", "session.audio.input.turn_detection.threshold"),
    ({"type": "realtime", "audio": {"input": {"turn_detection": {"silence_duration_ms": 1}}}},
     "missing_required_parameter", "session.audio.input.turn_detection.type"),
    ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
     "invalid_value", "session.audio.input.format.rate"),
    ({"type": "realtime", "audio": {"output": {"voice": "nobody"}}}, "invalid_value",
     "session.audio.output.voice"),
    ({"type": "realtime", "audio": {"output": {"speed": 3}}}, "invalid_value",
     "session.audio.output.speed"),
])
def test_validation_errors_carry_the_api_code_and_param(session: Any, code: str,
                                                        param: str) -> None:
    with pytest.raises(SessionError) as info:
        validate_session(session)
    assert (info.value.code, info.value.param) == (code, param)
    assert info.value.message.endswith(".")


def test_merge_changes_only_present_fields_and_null_clears() -> None:
    base = default_session()
    update = validate_session({
        "type": "realtime", "instructions": "Be brief.",
        "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"},
                            "turn_detection": {"type": "server_vad",
                                               "silence_duration_ms": 800}},
                  "output": {"voice": "alloy"}},
    })
    merged = merge_session(base, update)
    assert merged["instructions"] == "Be brief."
    assert merged["id"] == base["id"] and merged["model"] == base["model"]
    td = merged["audio"]["input"]["turn_detection"]
    assert td["silence_duration_ms"] == 800 and td["threshold"] == 0.5  # others kept
    assert merged["audio"]["output"] == {**base["audio"]["output"], "voice": "alloy"}
    assert base["instructions"] != "Be brief."  # the input is not mutated
    cleared = merge_session(merged, {"type": "realtime",
                                     "audio": {"input": {"turn_detection": None}}})
    assert cleared["audio"]["input"]["turn_detection"] is None
    semantic = merge_session(merged, {"audio": {"input": {"turn_detection": {
        "type": "semantic_vad"}}}})
    assert semantic["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad", "eagerness": "auto", "create_response": True,
        "interrupt_response": True}


# ---------------------------------------------------------------------- faults config
def test_fault_names_parse_into_faults() -> None:
    faults = Faults.parse(["calls-429", "retry-after=7", "slow-answer=1.5", "ice-unreachable"])
    assert faults == Faults(calls_status=429, retry_after_s=7.0, answer_delay_s=1.5,
                            ice_unreachable=True)
    assert faults.active and not Faults().active and not Faults(retry_after_s=9).active
    assert Faults.parse(["slow-answer"]).answer_delay_s == 30.0
    assert Faults.parse(["calls-html"]).calls_reply == "html"
    for name in FAULTS:
        assert Faults.parse([name.replace("=S", "=1")]).active or name == "retry-after=S"


@pytest.mark.parametrize("spec", ["calls-418", "slow-answer=soon", "ice-unreachable=1", ""])
def test_bad_fault_names_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        Faults.parse([spec])


def test_fault_values_are_checked() -> None:
    with pytest.raises(ConfigError):
        Faults(calls_status=418)
    with pytest.raises(ConfigError):
        Faults(answer_delay_s=-1)


def test_calls_responses_look_like_the_api() -> None:
    r = Faults(calls_status=429, retry_after_s=3).calls_response()
    assert r is not None and r.status == 429 and r.headers["Retry-After"] == "3"
    assert r.content_type == "application/json"
    html = Faults(calls_reply="html").calls_response()
    assert html is not None and html.status == 502 and html.content_type == "text/html"
    assert Faults().calls_response() is None


def test_dtls_mismatch_rewrites_only_the_fingerprint() -> None:
    sdp = ("v=0\r\na=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
           "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n")
    out = Faults(dtls_mismatch=True).rewrite_answer(sdp)
    assert out != sdp and "127.0.0.1 5000" in out
    assert out.splitlines()[1].startswith("a=fingerprint:sha-256 ")
    assert Faults().rewrite_answer(sdp) == sdp


def test_server_defaults_are_safe(transcriber: Any, synthesizer: Any) -> None:
    srv = LocalServer(transcriber=transcriber, synthesizer=synthesizer)
    assert srv.host == "127.0.0.1"
    assert srv.max_call_s == 3600 and not srv.faults.active
    with pytest.raises(ValueError):
        LocalServer(max_call_s=0, transcriber=transcriber, synthesizer=synthesizer)


def test_impairment_fault_names_parse() -> None:
    from livetalk.transport.impairment import Impairment

    faults = Faults.parse(["rtp-jitter=40", "rtp-reorder=0.1"])
    assert faults.impairment == Impairment(jitter_ms=40, reorder=0.1)
    assert Faults.parse(["rtp-jitter"]).impairment == Impairment(jitter_ms=20)
    for spec in ("rtp-jitter=soon", "rtp-reorder=2", "rtp-jitter=-5"):
        with pytest.raises(ConfigError):
            Faults.parse([spec])
