"""livetalk's local Realtime-compatible server (needs the ``server`` extra).

``async with livetalk.server.serve(port=0) as srv:`` runs it in-process; ``livetalk serve``
runs it from the shell. See ``docs/local-server.md``.
"""

from __future__ import annotations

from livetalk._extras import require

require("server", "the local server (livetalk.server)")

from livetalk.server.app import LocalServer, serve  # noqa: E402 - after the extra check

__all__ = ["LocalServer", "serve"]
