"""``livetalk mint``: mint an ephemeral ``ek_`` client secret."""

from __future__ import annotations

import argparse
import json
from typing import Any

from livetalk.cli._args import HelpFormatter, add_api_options, add_model_option, require_api_key
from livetalk.cli._output import Output
from livetalk.cli._runtime import Runtime
from livetalk.cli._status import ExitStatus
from livetalk.protocol.session import DEFAULT_MODEL

__all__ = ["add_parser", "main"]

DESCRIPTION = """\
Mint an ephemeral client secret (ek_...) with your standard key, for a backend that hands
short-lived secrets to browsers or other clients. Prints {"value", "expires_at", "model"}
as one JSON line on stdout; the secret appears nowhere else.
"""


def _ttl(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {value!r}") from None
    if not 10 <= seconds <= 7200:
        raise argparse.ArgumentTypeError(f"must be from 10 to 7200 seconds: {value!r}")
    return seconds


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mint`` to the sub-commands."""
    p = sub.add_parser("mint", help="mint an ephemeral ek_ client secret (for backends)",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    add_api_options(p)
    add_model_option(p, default=DEFAULT_MODEL)
    p.add_argument("--instructions", metavar="TEXT",
                   help="instructions bound to the secret's session (default: none)")
    p.add_argument("--ttl", type=_ttl, default=600, metavar="S",
                   help="lifetime of the secret in seconds, 10 to 7200")
    p.set_defaults(command=main)


async def main(args: argparse.Namespace, runtime: Runtime) -> ExitStatus:
    """Run ``livetalk mint``."""
    from livetalk.transport.signaling import mint_client_secret

    require_api_key(args)
    session: dict[str, Any] = {"type": "realtime", "model": args.model}
    if args.instructions:
        session["instructions"] = args.instructions
    secret = await mint_client_secret(api_key=args.api_key, base_url=args.base_url,
                                      session=session, expires_after_s=args.ttl)
    # printing the value is the point of this command: it goes to stdout only
    Output(runtime).write(json.dumps({"value": secret.value, "expires_at": secret.expires_at,
                                      "model": secret.session.get("model")}) + "\n")
    return ExitStatus.OK
