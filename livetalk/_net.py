"""Small network helpers that need only the standard library (the Ray driver imports them
without aiortc)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback_url"]


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is a loopback address or ``localhost``.

    Args:
        url: an absolute URL, or ``//host:port`` for a bare address.
    """
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
