"""An httpx2 transport that turns each SDK request into a real Lambda event for the handler.

It lets the official `openai` SDK (sync and async) talk to the Lambda handler: the request
becomes an API Gateway REST event (as if API Gateway had checked the key) or a function URL
event (the app checks the key), built on the sample events in events/.
"""

from __future__ import annotations

import base64
import copy
from typing import TYPE_CHECKING, Any, Literal

import httpx2

from tests.conftest import load_event

if TYPE_CHECKING:
    from tests.conftest import LambdaEvent, LambdaRuntime

EventSource = Literal["rest-api", "function-url"]

BASE_URLS: dict[EventSource, str] = {
    "rest-api": "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/Prod/v1",
    "function-url": "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws/v1",
}
STAGE = "/Prod"


class LambdaTransport(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """Each request through the real handler, as an event from `source`."""

    def __init__(self, runtime: LambdaRuntime, source: EventSource) -> None:
        self._runtime = runtime
        self._source = source

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        event = self._event(request, request.read())
        return _response(self._runtime.invoke(event))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        event = self._event(request, await request.aread())
        return _response(await self._runtime.invoke_async(event))

    def _event(self, request: httpx2.Request, body: bytes) -> LambdaEvent:
        headers = {name: value for name, value in request.headers.items()}
        if self._source == "rest-api":
            return _rest_event(request, headers, body)
        return _function_url_event(request, headers, body)


def _rest_event(request: httpx2.Request, headers: dict[str, str], body: bytes) -> LambdaEvent:
    event = load_event("chat.json")
    path = request.url.path.removeprefix(STAGE)
    context = copy.deepcopy(event["requestContext"])
    context.update(path=request.url.path, resourcePath=path, httpMethod=request.method)
    event.update(
        resource=path,
        path=path,
        httpMethod=request.method,
        headers=headers,
        multiValueHeaders={name: [value] for name, value in headers.items()},
        requestContext=context,
        body=body.decode() or None,
    )
    return event


def _function_url_event(
    request: httpx2.Request, headers: dict[str, str], body: bytes
) -> LambdaEvent:
    event = load_event("chat-function-url.json")
    context = copy.deepcopy(event["requestContext"])
    context["http"] = {**context["http"], "method": request.method, "path": request.url.path}
    event.update(rawPath=request.url.path, headers=headers, requestContext=context)
    event["body"] = body.decode() or None
    return event


def _response(result: dict[str, Any]) -> httpx2.Response:
    body = result.get("body") or ""
    content = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    headers: list[tuple[str, str]] = [
        (name, value)
        for name, values in (result.get("multiValueHeaders") or {}).items()
        for value in values
    ] or list((result.get("headers") or {}).items())
    return httpx2.Response(result["statusCode"], headers=headers, content=content)
