"""livetalk._net: which URLs and bare addresses are on loopback."""

from __future__ import annotations

import pytest

from livetalk._net import is_loopback_url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8765/v1", "ws://localhost/v1/realtime", "https://[::1]:443/",
    "http://127.8.9.10", "//127.0.0.1:6379", "//localhost:6379",
])
def test_loopback_hosts(url: str) -> None:
    assert is_loopback_url(url)


@pytest.mark.parametrize("url", [
    "https://api.openai.com/v1", "http://10.0.0.1:8765", "http://[2001:db8::1]/",
    "//ray-head:6379", "//0.0.0.0:6379", "not a url", "",
])
def test_other_hosts(url: str) -> None:
    assert not is_loopback_url(url)
