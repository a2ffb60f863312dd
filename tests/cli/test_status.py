"""The exit statuses: one table, derived from the exception classes, documented as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from livetalk import errors
from livetalk.cli._status import ERROR_STATUS, ExitStatus, status_for, status_for_class

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_no_row_hides_a_later_one() -> None:
    for i, (earlier, _) in enumerate(ERROR_STATUS):
        for later, _ in ERROR_STATUS[i + 1:]:
            assert not issubclass(later, earlier), f"{later.__name__} is hidden by {earlier}"


EXPECTED = {
    "MissingAPIKeyError": ExitStatus.AUTH,
    "AuthenticationError": ExitStatus.AUTH,
    "MissingExtraError": ExitStatus.USAGE,
    "ConfigError": ExitStatus.USAGE,
    "AudioError": ExitStatus.USAGE,
    "AudioFormatError": ExitStatus.USAGE,
    "AudioFileError": ExitStatus.USAGE,
    "AudioDeviceError": ExitStatus.DEVICE,
    "ConnectTimeout": ExitStatus.TIMEOUT,
    "ConnectError": ExitStatus.CONNECT,
    "SignalingError": ExitStatus.CONNECT,
    "APIStatusError": ExitStatus.API,
    "NotFoundError": ExitStatus.API,
    "RateLimitError": ExitStatus.API,
    "ServerError": ExitStatus.API,
    "CallClosedError": ExitStatus.API,
    "RemoteProtocolError": ExitStatus.API,
    "ProtocolError": ExitStatus.FAILED,
    "LocalProtocolError": ExitStatus.FAILED,
    "BadRequestError": ExitStatus.API,
    "OpusError": ExitStatus.USAGE,
    "BrainError": ExitStatus.FAILED,
    "EventParseError": ExitStatus.API,
    "InvalidEventError": ExitStatus.FAILED,
    "PriceTableError": ExitStatus.USAGE,
    "RayClusterError": ExitStatus.FAILED,
    "RayUnavailable": ExitStatus.USAGE,
    "RequestTimeout": ExitStatus.TIMEOUT,
    "ResponseFailedError": ExitStatus.API,
    "ScenarioError": ExitStatus.USAGE,
    "ServerComponentError": ExitStatus.FAILED,
    "SessionConfigError": ExitStatus.USAGE,
    "SynthesisError": ExitStatus.FAILED,
    "Timeout": ExitStatus.TIMEOUT,
    "TranscriptionError": ExitStatus.FAILED,
    "LivetalkError": ExitStatus.FAILED,
}


@pytest.mark.parametrize(
    "name", sorted(n for n in errors.__all__ if isinstance(getattr(errors, n), type)))
def test_every_library_error_has_its_status(name: str) -> None:
    cls = getattr(errors, name)
    assert name in EXPECTED, f"decide the exit status of {name} (and add it to docs/cli.md)"
    assert status_for_class(cls) is EXPECTED[name]


def test_status_of_an_instance_and_of_other_errors() -> None:
    assert status_for(errors.MissingAPIKeyError("no key")) is ExitStatus.AUTH
    assert status_for(errors.AuthenticationError(401, "refused")) is ExitStatus.AUTH
    assert status_for(PermissionError(13, "denied")) is ExitStatus.USAGE
    assert status_for(TimeoutError()) is ExitStatus.TIMEOUT
    assert status_for(ValueError("a bug")) is None  # unexpected: the traceback is shown


def test_signal_statuses_follow_the_shell_convention() -> None:
    import signal

    assert ExitStatus.INTERRUPTED == 128 + signal.SIGINT
    assert ExitStatus.TERMINATED == 128 + signal.SIGTERM
    assert ExitStatus.BROKEN_PIPE == 128 + signal.SIGPIPE


def test_docs_show_every_status_and_the_table_in_order() -> None:
    text = DOCS.read_text()
    statuses = re.findall(r"^\| (\d+) \| .+ \|$", text, flags=re.MULTILINE)
    assert sorted(int(code) for code in statuses) == sorted(int(s) for s in ExitStatus)
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \|$", text, flags=re.MULTILINE)
    assert [(name, int(code)) for name, code in rows] == [
        (cls.__name__, int(status)) for cls, status in ERROR_STATUS]
