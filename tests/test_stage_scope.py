"""The ASGI scope `StageAwareAPIGateway` builds from REST API events, compared whole."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from mangum.handlers import APIGateway
from mangum.types import LambdaConfig

from tests.lambda_context import LambdaContext

CONFIG = LambdaConfig(api_gateway_base_path="/", text_mime_types=[], exclude_headers=[])


def rest_event(host: str, requested_path: str) -> dict[str, Any]:
    """A REST API proxy event for `GET /docs?q=1` that the client sent to `requested_path`."""
    return {
        "resource": "/docs",
        "path": "/docs",
        "httpMethod": "GET",
        "headers": {"Host": host, "X-Forwarded-Port": "443", "X-Forwarded-Proto": "https"},
        "multiValueHeaders": {
            "Host": [host],
            "X-Forwarded-Port": ["443"],
            "X-Forwarded-Proto": ["https"],
        },
        "queryStringParameters": {"q": "1"},
        "multiValueQueryStringParameters": {"q": ["1"]},
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/docs",
            "httpMethod": "GET",
            "path": requested_path,
            "stage": "Prod",
            "requestId": "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b",
            "identity": {"sourceIp": "203.0.113.10"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


@pytest.fixture
def gateway(import_handler: Callable[[], ModuleType]) -> type[APIGateway]:
    """The handler module's REST API event handler class."""
    handler_class: type[APIGateway] = import_handler().StageAwareAPIGateway
    return handler_class


@pytest.mark.parametrize(
    ("host", "requested_path", "root_path"),
    [
        # The execute-api URL: the client asked for /Prod/docs.
        ("a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "/Prod/docs", "/Prod"),
        # A custom domain mapped to the stage at its root: no prefix.
        ("chat.example.com", "/docs", ""),
        # A custom domain mapping /chat-api to the stage: that prefix is the root.
        ("api.example.com", "/chat-api/docs", "/chat-api"),
    ],
    ids=["stage-prefix", "custom-domain", "custom-domain-base-path"],
)
def test_scope_carries_the_requested_path_and_its_prefix_as_root_path(
    gateway: type[APIGateway], host: str, requested_path: str, root_path: str
) -> None:
    event = rest_event(host, requested_path)
    context = LambdaContext()

    handler = gateway(event, context, CONFIG)

    assert handler.scope == {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "headers": [
            [b"host", host.encode()],
            [b"x-forwarded-port", b"443"],
            [b"x-forwarded-proto", b"https"],
        ],
        "path": requested_path,
        "raw_path": None,
        "root_path": root_path,
        "scheme": "https",
        "query_string": b"q=1",
        "server": (host, 443),
        "client": ("203.0.113.10", 0),
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "aws.event": event,
        "aws.context": context,
    }
