"""Each middleware on a tiny ASGI app of its own: the body limit and the request log line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from starlette.testclient import TestClient

from chat_api.body_limit import BodySizeLimitMiddleware
from chat_api.request_log import STATE_KEY, RequestLog, RequestLogMiddleware
from tests.conftest import ReadLogs

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

LIMIT = 10
TOO_LARGE = f"Request body is larger than the limit of {LIMIT} bytes."
APP_413 = {"error": TOO_LARGE}
OPENAI_413 = {
    "error": {"message": TOO_LARGE, "type": "invalid_request_error", "param": None, "code": None}
}


class BodyReader:
    """Reads the request body to its end (or the client's disconnect), then answers 200."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.calls: list[tuple[Scope, Receive, Send]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append((scope, receive, send))
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        size = sum(len(m.get("body", b"")) for m in self.received)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


def http_scope(headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    """A POST's scope, as a server builds it."""
    return {
        "type": "http",
        "method": "POST",
        "path": "/chat",
        "root_path": "",
        "headers": headers or [],
    }


def call(app: ASGIApp, scope: Scope, incoming: list[Message]) -> list[Message]:
    """Run `app` once: its receive hands out `incoming` in order; what it sent."""
    messages = iter(incoming)
    sent: list[Message] = []

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return sent


@pytest.fixture
def reader() -> BodyReader:
    """The app behind the middleware."""
    return BodyReader()


@pytest.fixture
def limited(reader: BodyReader) -> TestClient:
    """The body limit in front of the reader, over HTTP."""
    return TestClient(BodySizeLimitMiddleware(reader, max_bytes=LIMIT))


# --- BodySizeLimitMiddleware ------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, LIMIT - 1, LIMIT])
def test_body_up_to_the_limit_reaches_the_app(
    limited: TestClient, reader: BodyReader, size: int
) -> None:
    response = limited.post("/chat", content=b"x" * size)

    assert response.status_code == 200
    assert response.text == str(size)
    assert reader.received == [{"type": "http.request", "body": b"x" * size}]


def test_declared_length_over_the_limit_is_413_before_the_app_runs(
    limited: TestClient, reader: BodyReader
) -> None:
    response = limited.post("/chat", content=b"x" * (LIMIT + 1))

    assert response.status_code == 413
    assert response.json() == APP_413
    assert reader.calls == []


def test_declared_length_is_trusted_before_a_byte_is_read(reader: BodyReader) -> None:
    # The client says 1 MB and has sent nothing yet: no read is needed to refuse it.
    scope = http_scope(headers=[(b"content-length", b"1000000")])

    sent = call(BodySizeLimitMiddleware(reader, max_bytes=LIMIT), scope, [])

    assert sent[0]["status"] == 413
    assert reader.calls == []


def test_chunked_body_over_the_limit_is_413_and_the_app_is_told_the_client_left(
    reader: BodyReader,
) -> None:
    chunks = [b"x" * 6, b"x" * 6, b"x" * 6]
    incoming: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
    ]

    sent = call(BodySizeLimitMiddleware(reader, max_bytes=LIMIT), http_scope(), incoming)

    # The first chunk fits; the second passes the limit: the app gets a disconnect instead,
    # the third chunk is never read, and the app's own 200 never leaves.
    assert reader.received == [incoming[0], {"type": "http.disconnect"}]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == APP_413


def test_chunked_body_under_the_limit_reaches_the_app_whole(reader: BodyReader) -> None:
    incoming: list[Message] = [
        {"type": "http.request", "body": b"x" * 5, "more_body": True},
        {"type": "http.request", "body": b"x" * 5, "more_body": False},
    ]

    sent = call(BodySizeLimitMiddleware(reader, max_bytes=LIMIT), http_scope(), incoming)

    assert reader.received == incoming
    assert sent[0]["status"] == 200


@pytest.mark.parametrize(
    ("path", "root_path", "body"),
    [
        ("/chat", "", APP_413),
        ("/v1/chat/completions", "", OPENAI_413),
        # On the stage URL the path keeps the stage: the route is what follows it.
        ("/Prod/chat", "/Prod", APP_413),
        ("/Prod/v1/chat/completions", "/Prod", OPENAI_413),
    ],
)
def test_413_takes_openais_shape_on_v1_and_the_apps_elsewhere(
    reader: BodyReader, path: str, root_path: str, body: dict[str, object]
) -> None:
    client = TestClient(BodySizeLimitMiddleware(reader, max_bytes=LIMIT), root_path=root_path)

    response = client.post(path, content=b"x" * (LIMIT + 1))

    assert response.status_code == 413
    assert response.json() == body


# --- RequestLogMiddleware ---------------------------------------------------------------------


async def noting_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 418 and notes a model and two attempts in the request's log, as routes do."""
    if scope["path"] == "/boom":
        raise RuntimeError("escaped before any response")
    log: RequestLog = scope["state"][STATE_KEY]
    log.model = "gpt-test"
    log.upstream_attempts = 2
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b"teapot"})


def test_request_log_writes_one_line_with_the_status_and_the_apps_notes(
    request_logs: ReadLogs,
) -> None:
    client = TestClient(RequestLogMiddleware(noting_app))

    response = client.get("/tea")

    assert response.status_code == 418
    [line] = request_logs()
    assert line["message"] == "request"
    assert line["method"] == "GET"
    assert line["status"] == 418
    assert line["model"] == "gpt-test"
    assert line["upstream_attempts"] == 2
    assert line["latency_ms"] >= 0
    assert line["request_id"]
    assert "error_class" not in line  # Powertools leaves out fields that are None


def test_exception_escaping_the_app_is_logged_as_500_and_re_raised(
    request_logs: ReadLogs,
) -> None:
    client = TestClient(RequestLogMiddleware(noting_app))

    with pytest.raises(RuntimeError, match="escaped before any response"):
        client.get("/boom")

    [error, line] = request_logs()
    assert (error["message"], error["error_class"]) == ("unexpected error", "RuntimeError")
    assert line["status"] == 500
    assert line["error_class"] == "RuntimeError"
    assert "escaped before any response" not in str([error, line])


# --- both ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
@pytest.mark.parametrize(
    "middleware",
    [lambda app: BodySizeLimitMiddleware(app, max_bytes=LIMIT), RequestLogMiddleware],
    ids=["body-limit", "request-log"],
)
def test_other_scopes_pass_through_untouched_and_unlogged(
    reader: BodyReader,
    request_logs: ReadLogs,
    middleware: Callable[[ASGIApp], ASGIApp],
    kind: str,
) -> None:
    scope: Scope = {"type": kind}

    async def receive() -> Message:
        raise AssertionError("the middleware read from the client")

    async def send(message: Message) -> None:
        raise AssertionError("the middleware answered the client")

    asyncio.run(middleware(reader)(scope, receive, send))  # type: ignore[arg-type]

    # The app gets the caller's own scope, receive and send, not wrapped ones.
    assert reader.calls == [(scope, receive, send)]
    assert scope == {"type": kind}
    assert request_logs() == []
