"""Host-candidate selection for aioice: loopback-only calls.

aioice never offers 127.0.0.1, so two aiortc peers on one machine connect over its external
interface, and in a loopback-only network namespace (``docker --network none``, CI sandboxes)
they gather no candidate at all and the call hangs (``docs/platform-notes.md``). livetalk
installs one small wrapper around ``aioice.ice.get_host_addresses`` that returns
``["127.0.0.1"]`` while :func:`loopback_candidates` is active in the current context, and
defers to aioice otherwise. A context variable scopes it to the task that gathers, so a
loopback call and a call to the real API can run side by side in one process.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import aioice.ice

__all__ = ["loopback_candidates"]

_LOOPBACK_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "livetalk_loopback_only", default=False
)
_original = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _LOOPBACK_ONLY.get():
        return ["127.0.0.1"] if use_ipv4 else ["::1"]
    return _original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)


if getattr(aioice.ice.get_host_addresses, "__module__", "") != __name__:
    aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def loopback_candidates(enabled: bool = True) -> Iterator[None]:
    """Within this block, ICE gathering in this context offers only 127.0.0.1."""
    token = _LOOPBACK_ONLY.set(enabled)
    try:
        yield
    finally:
        _LOOPBACK_ONLY.reset(token)
