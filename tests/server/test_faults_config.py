"""The local server's fault configuration (livetalk/server/faults.py) and its safe defaults."""

from __future__ import annotations

from typing import Any

import pytest

from livetalk.errors import ConfigError
from livetalk.server import LocalServer
from livetalk.server.faults import FAULTS, Faults


def test_fault_names_parse_into_faults() -> None:
    faults = Faults.parse(["calls-429", "retry-after=7", "slow-answer=1.5", "ice-unreachable"])
    assert faults == Faults(calls_status=429, retry_after_s=7.0, answer_delay_s=1.5,
                            ice_unreachable=True)
    assert faults.active and not Faults().active and not Faults(retry_after_s=9).active
    assert Faults.parse(["slow-answer"]).answer_delay_s == 30.0
    assert Faults.parse(["calls-html"]).calls_reply == "html"
    for name in FAULTS:
        assert Faults.parse([name.replace("=S", "=1")]).active or name == "retry-after=S"


def test_rate_limit_that_clears_refuses_only_the_first_calls() -> None:
    faults = Faults.parse(["calls-429=2", "retry-after=0.5"])
    assert faults == Faults(calls_status=429, calls_status_times=2, retry_after_s=0.5)
    replies = [faults.calls_response() for _ in range(4)]
    assert [r is not None and r.status for r in replies] == [429, 429, False, False]
    assert replies[0] is not None and replies[0].headers["Retry-After"] == "0.5"
    assert faults.calls_refused == 2
    assert Faults(calls_status=429).calls_refused == 0  # every Faults counts for itself


@pytest.mark.parametrize("spec", ["calls-418", "slow-answer=soon", "ice-unreachable=1",
                                  "calls-429=x", ""])
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
