"""HTTP signaling with the Realtime API over httpx: create a call, hang up, mint secrets.

Every httpx error and every non-success reply is translated here into the livetalk
exception tree (:mod:`livetalk.errors`); no error body ever reaches ``setRemoteDescription``.
Credentials are sent in the ``Authorization`` header only and never appear in messages.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import httpx

from livetalk.errors import (
    APIStatusError,
    AuthenticationError,
    ConfigError,
    MissingAPIKeyError,
    NotFoundError,
    RateLimitError,
    SignalingError,
)

__all__ = [
    "CallAnswer",
    "ClientSecret",
    "DEFAULT_BASE_URL",
    "create_call",
    "hangup",
    "mint_client_secret",
    "resolve_api_key",
    "resolve_base_url",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_USER_AGENT = "livetalk/0.1"


def resolve_base_url(base_url: str | None) -> str:
    """The explicit value, else ``OPENAI_BASE_URL``, else the public API, without a trailing /."""
    url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def resolve_api_key(api_key: str | None) -> str:
    """The explicit key, else ``OPENAI_API_KEY``; raises MissingAPIKeyError when there is none."""
    key = api_key or os.environ.get("OPENAI_API_KEY")
    if not key:
        raise MissingAPIKeyError(
            "no API key: pass api_key=..., or set OPENAI_API_KEY (a standard key, or an ek_ "
            "client secret minted by your backend)"
        )
    return key


def is_ephemeral(key: str) -> bool:
    """True for an ``ek_`` client secret (the same test the official SDKs use)."""
    return key.startswith("ek_")


@dataclass(frozen=True, slots=True)
class CallAnswer:
    """The reply to ``POST /realtime/calls``: the SDP answer and the call id."""

    sdp: str
    call_id: str | None
    location: str | None


@dataclass(frozen=True, slots=True)
class ClientSecret:
    """An ephemeral client secret minted by :func:`mint_client_secret`.

    The value is hidden from ``repr``; hand it to the browser or client that opens the call.
    """

    value: str
    expires_at: int
    session: dict[str, Any]

    def __repr__(self) -> str:
        return f"ClientSecret(value='ek_…', expires_at={self.expires_at})"


def _headers(api_key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": _USER_AGENT, **extra}


def _status_error(response: httpx.Response) -> APIStatusError:
    """Build the typed error for a non-success reply (JSON envelope, HTML page or garbage)."""
    code = error_type = param = None
    message = ""
    try:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            code = err.get("code")
            error_type = err.get("type")
            param = err.get("param")
    except (ValueError, UnicodeDecodeError):
        pass
    if not message:
        text = response.text.strip().replace("\n", " ")
        ctype = response.headers.get("content-type", "").split(";")[0]
        message = (
            f"non-JSON {ctype or 'body'} ({len(response.content)} bytes): {text[:120]}"
            if text else response.reason_phrase or "no body"
        )
    retry_after = None
    if "retry-after" in response.headers:
        try:
            retry_after = float(response.headers["retry-after"])
        except ValueError:
            retry_after = None
    status = response.status_code
    cls = (
        AuthenticationError if status in (401, 403)
        else NotFoundError if status == 404
        else RateLimitError if status == 429
        else APIStatusError
    )
    url = str(response.request.url.copy_with(query=None)) if response.request else None
    return cls(status, message, code=code, error_type=error_type, param=param,
               retry_after=retry_after, url=url)


async def _post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.post(url, **kwargs)
    except httpx.TimeoutException as exc:
        raise SignalingError(f"timed out talking to {url}: {type(exc).__name__}") from exc
    except httpx.HTTPError as exc:
        raise SignalingError(f"could not reach {url}: {exc}") from exc


def _call_id_from_location(location: str | None) -> str | None:
    if not location:
        return None
    segment = location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return segment if segment.startswith("rtc_") else None


async def create_call(
    client: httpx.AsyncClient,
    *,
    base_url: str,
    api_key: str,
    offer_sdp: str,
    session: dict[str, Any] | None = None,
    timeout: float = 10.0,
) -> CallAnswer:
    """``POST {base_url}/realtime/calls`` with an SDP offer; returns the answer.

    With ``session`` the multipart form (``sdp`` + ``session`` parts) is sent, otherwise the
    raw ``application/sdp`` form. Raises :class:`~livetalk.errors.APIStatusError` (or a
    subclass) for any status but 201, and :class:`~livetalk.errors.SignalingError` when the
    server cannot be reached or the reply is not an SDP answer.
    """
    url = f"{base_url}/realtime/calls"
    if session is not None:
        files = {
            "sdp": (None, offer_sdp.encode(), "application/sdp"),
            "session": (None, json.dumps(session).encode(), "application/json"),
        }
        response = await _post(client, url, headers=_headers(api_key), files=files,
                               timeout=timeout)
    else:
        response = await _post(
            client, url, content=offer_sdp.encode(), timeout=timeout,
            headers=_headers(api_key, **{"Content-Type": "application/sdp",
                                         "Accept": "application/sdp"}),
        )
    if response.status_code != 201:
        raise _status_error(response)
    answer = response.text
    if not answer.lstrip().startswith("v=0"):
        raise SignalingError(
            f"{url} answered 201 but the body is not an SDP answer "
            f"({response.headers.get('content-type', 'no content type')}, "
            f"{len(response.content)} bytes)"
        )
    location = response.headers.get("location")
    return CallAnswer(sdp=answer, call_id=_call_id_from_location(location), location=location)


async def hangup(
    client: httpx.AsyncClient, *, base_url: str, api_key: str, call_id: str, timeout: float = 5.0
) -> None:
    """``POST {base_url}/realtime/calls/{call_id}/hangup`` (needs a standard key)."""
    url = f"{base_url}/realtime/calls/{call_id}/hangup"
    response = await _post(client, url, headers=_headers(api_key), json=None, timeout=timeout)
    if response.status_code >= 300:
        raise _status_error(response)


async def mint_client_secret(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    session: dict[str, Any] | Any | None = None,
    expires_after_s: int = 600,
    http_client: httpx.AsyncClient | None = None,
    safety_identifier: str | None = None,
) -> ClientSecret:
    """Mint an ephemeral ``ek_`` client secret for a browser or device (backends only).

    Args:
        api_key: a standard API key (default ``OPENAI_API_KEY``).
        base_url: default ``OPENAI_BASE_URL`` or the public API.
        session: the session the secret is bound to: a dict in the GA shape or a
            :class:`~livetalk.protocol.session.SessionConfig`.
        expires_after_s: lifetime, 10 to 7200 seconds.
        http_client: an httpx client to reuse (TLS verification stays on).
        safety_identifier: a hashed end-user id, sent as ``OpenAI-Safety-Identifier``.

    Returns:
        The secret's ``value``, ``expires_at`` (unix seconds) and effective ``session``.
    """
    if not 10 <= expires_after_s <= 7200:
        raise ConfigError(f"expires_after_s must be between 10 and 7200, got {expires_after_s}")
    key = resolve_api_key(api_key)
    url = f"{resolve_base_url(base_url)}/realtime/client_secrets"
    session_dict = session if session is None or isinstance(session, dict) else session.to_dict()
    body: dict[str, Any] = {"expires_after": {"anchor": "created_at", "seconds": expires_after_s}}
    if session_dict is not None:
        body["session"] = session_dict
    headers = _headers(key)
    if safety_identifier:
        headers["OpenAI-Safety-Identifier"] = safety_identifier
    owned = http_client is None
    client = http_client or httpx.AsyncClient()
    try:
        response = await _post(client, url, headers=headers, json=body, timeout=10.0)
    finally:
        if owned:
            await client.aclose()
    if response.status_code != 200:
        raise _status_error(response)
    try:
        data = response.json()
        return ClientSecret(value=data["value"], expires_at=int(data["expires_at"]),
                            session=data.get("session") or {})
    except (ValueError, KeyError, TypeError) as exc:
        raise SignalingError(f"{url} returned an unexpected body") from exc
