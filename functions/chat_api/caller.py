"""Who is calling: API Gateway's API key id, or a client key the app checks itself.

On the deployed REST API, API Gateway has already checked the key (and counted it against
the usage plan); its id arrives in the event's request context and is trusted as is. Anywhere
else (uvicorn, function URL, HTTP API) the request must carry one of the configured client
keys. With none configured, only requests that arrive on a loopback address are served.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chat_api.exceptions import ClientKeyRejected

if TYPE_CHECKING:
    from starlette.requests import Request

    from chat_api.keys import KeySource


@dataclass(frozen=True)
class Caller:
    """The caller's stable id: safe to log and to scope data by; never the key itself."""

    id: str


def api_gateway_key_id(request: Request) -> str | None:
    """The API key id API Gateway (REST) checked for this request, if it did."""
    event: dict[str, Any] = request.scope.get("aws.event") or {}
    identity = (event.get("requestContext") or {}).get("identity") or {}
    key_id = identity.get("apiKeyId")
    return key_id if isinstance(key_id, str) and key_id else None


def presented_key(request: Request) -> str | None:
    """The key the client sent: `x-api-key`, else an `Authorization: Bearer` token."""
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def key_digest(key: str) -> str:
    """A short, non-reversible id for a key (a prefix of its SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def matches_any(presented: str, keys: tuple[str, ...]) -> bool:
    """Whether `presented` is one of `keys`, in time that does not depend on which or where."""
    presented_digest = hashlib.sha256(presented.encode()).digest()
    found = False
    for key in keys:
        # Equal-length digests, and no early exit: timing says nothing about the keys.
        found |= hmac.compare_digest(presented_digest, hashlib.sha256(key.encode()).digest())
    return found


def arrived_on_loopback(request: Request) -> bool:
    """Whether the server accepted this request on a loopback address (never true on Lambda)."""
    if "aws.event" in request.scope:
        # Mangum builds `server` from the Host header, which the client chooses.
        return False
    server = request.scope.get("server")
    if not server:
        return False
    try:
        return ipaddress.ip_address(server[0]).is_loopback
    except ValueError:
        return False


async def identify_caller(request: Request, key_source: KeySource) -> Caller:
    """Identify the caller, or raise `ClientKeyRejected` before anything costs money."""
    if key_id := api_gateway_key_id(request):
        return Caller(id=key_id)
    keys = await key_source.client_api_keys()
    if not keys and arrived_on_loopback(request):
        return Caller(id="local")
    key = presented_key(request)
    if key is None or not matches_any(key, keys):
        raise ClientKeyRejected
    return Caller(id=f"key-{key_digest(key)}")
