"""The AWS Lambda Web Adapter's view of a request: API Gateway's and Lambda's contexts as headers.

With ResponseStreaming=true the function runs uvicorn behind the adapter (LAMBDA_WEB_ADAPTER),
and every request reaches it from 127.0.0.1, carrying the event's request context in
`x-amzn-request-context` and the invocation's Lambda context in `x-amzn-lambda-context`, each
as JSON. They are trusted because the adapter sets both on every request it relays and drops
any a client sent: aws-lambda-web-adapter src/lib.rs, `Adapter::fetch_response`, calls
`req_headers.insert(...)` for each, and `http::HeaderMap::insert` removes every earlier value of
the name (its tests/integ_tests `test_http_context_multi_headers` checks exactly one reaches the
app). Nothing else can reach the port inside Lambda. Without the setting the headers are
ignored, so a client cannot forge them to a server that is not behind the adapter.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from starlette.datastructures import Headers

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

REQUEST_CONTEXT_HEADER = "x-amzn-request-context"
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"
# Where a request keeps its headers once parsed, in its scope's state (which every copy of the
# scope shares): the log line, the stage path, the caller and the deadline read the request
# context, the log line and the deadline the Lambda context; parsing them for each reader cost
# ~0.1 ms a request (bench/README.md, streaming mode).
PARSED_STATE_KEY = "chat_api.web_adapter.parsed"


def request_context(scope: Scope) -> dict[str, Any] | None:
    """API Gateway's request context (as in the event's `requestContext`), if well formed."""
    return _header_object(scope, REQUEST_CONTEXT_HEADER)


class AdapterLambdaContext(NamedTuple):
    """The part of Lambda's context the adapter passes on that the app reads."""

    request_id: str | None
    deadline_ms: int

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until Lambda stops the invocation (as the runtime's context says)."""
        return max(0, self.deadline_ms - int(time.time() * 1000))


def lambda_context(scope: Scope) -> AdapterLambdaContext | None:
    """The invocation's context, if well formed.

    The adapter serializes lambda_runtime's `Context`: snake_case fields, `deadline` in epoch
    milliseconds (the adapter's guide says `deadline_ms`, the code and its C# example do not).
    """
    context = _header_object(scope, LAMBDA_CONTEXT_HEADER)
    if context is None:
        return None
    deadline = context.get("deadline")
    if not isinstance(deadline, int) or isinstance(deadline, bool) or deadline <= 0:
        return None
    request_id = context.get("request_id")
    return AdapterLambdaContext(
        request_id=request_id if isinstance(request_id, str) and request_id else None,
        deadline_ms=deadline,
    )


def _header_object(scope: Scope, name: str) -> dict[str, Any] | None:
    """The JSON object in header `name`, parsed once per request (the callers only read it)."""
    parsed: dict[str, dict[str, Any] | None] = scope.setdefault("state", {}).setdefault(
        PARSED_STATE_KEY, {}
    )
    if name not in parsed:
        parsed[name] = _json_object(Headers(scope=scope).get(name))
    return parsed[name]


def _json_object(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class StagePathMiddleware:
    """The stage prefix (`/Prod`) as the ASGI root path, as the Mangum handler sets it.

    The adapter sends the path without the stage; the request context's `path` has it. Without
    a root path `/Prod/docs` would load its schema from `/openapi.json`, outside the stage.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (context := request_context(scope)):
            requested_path = context.get("path")
            route_path = scope["path"]
            if (
                isinstance(requested_path, str)
                and requested_path.endswith(route_path)
                and requested_path != route_path
            ):
                scope = {
                    **scope,
                    "root_path": requested_path[: -len(route_path)],
                    "path": requested_path,
                }
        await self.app(scope, receive, send)
