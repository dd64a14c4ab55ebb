"""Who is calling: API Gateway's API key id, or a client key the app checks itself.

On the deployed REST API, API Gateway has already checked the key (and counted it against
the usage plan); its id arrives in the event's request context (from Mangum, or behind the
Lambda Web Adapter in its `x-amzn-request-context` header) and is trusted as is. Anywhere
else (uvicorn, function URL, HTTP API) the request must carry one of the configured client
keys. With none configured, only requests that arrive on a loopback address are served.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from chat_api.exceptions import ClientKeyRejected
from chat_api.web_adapter import request_context

if TYPE_CHECKING:
    from starlette.requests import Request

    from chat_api.keys import KeySource

# Headers a proxy adds: a request carrying one was relayed, whatever address it came from.
FORWARDING_HEADERS = frozenset(
    {
        "forwarded",
        "via",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-real-ip",
    }
)
LOOPBACK_HOST = re.compile(r"(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?", re.IGNORECASE)


class Caller(NamedTuple):
    """The caller's stable id: safe to log and to scope data by; never the key itself."""

    id: str


def api_gateway_key_id(request: Request, behind_adapter: bool = False) -> str | None:
    """The API key id API Gateway (REST) checked for this request, if it did.

    Behind the Lambda Web Adapter a request without a well-formed request context did not come
    through it: `ClientKeyRejected`.
    """
    if behind_adapter:
        context = request_context(request.scope)
        if context is None:
            raise ClientKeyRejected
    else:
        event: dict[str, Any] = request.scope.get("aws.event") or {}
        context = event.get("requestContext") or {}
    identity = context.get("identity") or {}
    key_id = identity.get("apiKeyId") if isinstance(identity, dict) else None
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


def client_key_caller_id(key: str) -> str:
    """The caller id of a client key, as logs, sessions and budgets name it."""
    return f"key-{key_digest(key)}"


def matches_any(presented: str, keys: tuple[str, ...]) -> bool:
    """Whether `presented` is one of `keys`, in time that does not depend on which or where."""
    presented_digest = hashlib.sha256(presented.encode()).digest()
    found = False
    for key in keys:
        # Equal-length digests, and no early exit: timing says nothing about the keys.
        found |= hmac.compare_digest(presented_digest, hashlib.sha256(key.encode()).digest())
    return found


def is_local_request(request: Request) -> bool:
    """Whether the request comes straight from this machine to a local server.

    Accepted on a loopback address, and naming a loopback `Host`: a web page the developer
    visits can make the browser send requests to localhost, but with its own host name
    (DNS rebinding), and a proxy or tunnel on the same machine relays strangers' requests
    from a loopback address, but adds forwarding headers. Never on Lambda, where Mangum
    builds `server` from the Host header, which the client chooses.
    """
    if "aws.event" in request.scope:
        return False
    server = request.scope.get("server")
    if not server or not _is_loopback_ip(server[0]):
        return False
    if any(name in FORWARDING_HEADERS for name in request.headers):
        return False
    host = request.headers.get("host", "")
    return LOOPBACK_HOST.fullmatch(host) is not None


def _is_loopback_ip(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def identify_caller(
    request: Request, key_source: KeySource, keyless: bool, behind_adapter: bool = False
) -> Caller:
    """Identify the caller, or raise `ClientKeyRejected` before anything costs money.

    `keyless` (ALLOW_KEYLESS_LOCALHOST) serves local requests without a key while no client
    keys are configured. `behind_adapter` (LAMBDA_WEB_ADAPTER): the caller comes from the
    adapter's request context, and loopback means nothing (every request comes from it).
    """
    if key_id := api_gateway_key_id(request, behind_adapter):
        return Caller(id=key_id)
    keys = await key_source.client_api_keys()
    if not keys and keyless and not behind_adapter and is_local_request(request):
        return Caller(id="local")
    key = presented_key(request)
    if key is None or not matches_any(key, keys):
        raise ClientKeyRejected
    return Caller(id=client_key_caller_id(key))
