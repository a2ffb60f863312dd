"""livetalk's local Realtime-compatible server (needs the ``server`` extra).

``async with livetalk.server.serve(port=0) as srv:`` runs it in-process; ``livetalk serve``
runs it from the shell. See ``docs/local-server.md``.
"""

from __future__ import annotations

from livetalk.server.app import LocalServer, serve

__all__ = ["LocalServer", "serve"]
