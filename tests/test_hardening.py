"""What an outside attack found: no 500 from input, honest logs, no open loopback."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mangum import Mangum

from chat_api.config import InvalidConfiguration, get_settings
from chat_api.errors import unexpected_error_response
from chat_api.main import create_app
from chat_api.request_log import RequestLogMiddleware
from chat_api.services.upstream import MAX_RETRY_AFTER_SECONDS, retry_after_seconds
from tests.conftest import (
    TEST_OPENAI_KEY,
    Configure,
    LambdaRuntime,
    ReadLogs,
    Serve,
    body_of,
    load_event,
)
from tests.fake_openai import FakeOpenAI, Reply, error_body
from tests.lambda_context import LambdaContext

V1 = "/v1/chat/completions"
HI = [{"role": "user", "content": "Hi"}]


def v1_body(**fields: object) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": HI, **fields}


def raw_v1(message: str, extra: str = "") -> str:
    """A /v1 body as raw JSON text: one message, and more top-level fields."""
    return f'{{"model": "gpt-4o-mini", "messages": [{message}]{", " + extra if extra else ""}}}'


# Raw JSON: Python's parser takes lone surrogates and NaN/Infinity/1e999, and so does FastAPI's.
USER_HI = '{"role": "user", "content": "Hi"}'
UNSENDABLE = {
    "content": (raw_v1('{"role": "user", "content": "\\ud800"}'), "messages[0].content"),
    "stop": (raw_v1(USER_HI, '"stop": ["\\ud800"]'), "stop[0]"),
    "tool_choice": (raw_v1(USER_HI, '"tool_choice": {"type": "\\udfff"}'), "tool_choice.type"),
    "response_format": (
        raw_v1(USER_HI, '"response_format": {"type": "json", "x": NaN}'),
        "response_format.x",
    ),
    "tools": (raw_v1(USER_HI, '"tools": [{"x": 1e999}]'), "tools[0].x"),
    "message extra": (
        raw_v1('{"role": "user", "content": "Hi", "name": Infinity}'),
        "messages[0].name",
    ),
    "content part": (
        raw_v1('{"role": "user", "content": [{"type": "text", "text": "a", "n": -Infinity}]}'),
        "messages[0].content[0].n",
    ),
}


@pytest.mark.parametrize(("raw", "field"), UNSENDABLE.values(), ids=list(UNSENDABLE))
def test_unsendable_v1_values_are_a_400_naming_the_field_under_uvicorn(
    fake_openai: FakeOpenAI, serve: Serve, raw: str, field: str
) -> None:
    response = httpx2.post(
        f"{serve()}{V1}",
        content=raw.encode(),
        headers={
            "content-type": "application/json",
            "x-api-key": "EXAMPLE-not-a-real-api-key-0000000000000",
        },
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field
    assert field in error["message"]
    assert fake_openai.requests == []


@pytest.mark.parametrize(("raw", "field"), UNSENDABLE.values(), ids=list(UNSENDABLE))
def test_unsendable_v1_values_are_a_400_through_the_lambda_handler(
    fake_openai: FakeOpenAI, lambda_runtime: LambdaRuntime, raw: str, field: str
) -> None:
    event = load_event("chat-completions.json", body=raw)

    result = lambda_runtime.invoke(event)

    assert result["statusCode"] == 400
    assert body_of(result)["error"]["param"] == field
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    "field", ["tools", "tool_choice", "response_format", "parallel_tool_calls", "user"]
)
def test_explicit_null_where_openai_allows_none_is_a_400(
    fake_openai: FakeOpenAI, client: TestClient, field: str
) -> None:
    response = client.post(V1, json=v1_body(**{field: None}))

    assert response.status_code == 400
    assert response.json()["error"]["param"] == field
    assert fake_openai.requests == []


def test_stream_options_without_stream_is_a_400(
    fake_openai: FakeOpenAI, client: TestClient
) -> None:
    response = client.post(V1, json=v1_body(stream_options={"include_usage": True}))

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream_options"
    assert (
        client.post(
            V1, json=v1_body(stream=True, stream_options={"include_usage": True})
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "inf"},
        {"retry-after": "1e999"},
        {"retry-after-ms": "1e999"},
        {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
    ],
)
def test_absurd_retry_after_from_openai_is_bounded_never_a_500(
    fake_openai: FakeOpenAI, client: TestClient, headers: dict[str, str]
) -> None:
    fake_openai.enqueue(
        Reply(status=429, body=error_body("slow down", "rate_limit_error"), headers=headers)
    )

    response = client.post("/chat", json={"message": "Hi"})

    assert response.status_code == 429
    assert response.headers["retry-after"] == str(int(MAX_RETRY_AFTER_SECONDS))
    assert retry_after_seconds(headers) == MAX_RETRY_AFTER_SECONDS


def test_nan_retry_after_is_no_hint() -> None:
    assert retry_after_seconds({"retry-after": "nan"}) is None


def _exploding_app() -> FastAPI:
    """A tiny app whose route fails with upstream-looking text, behind the service's middleware."""
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"upstream said: key {TEST_OPENAI_KEY}")

    app.add_middleware(RequestLogMiddleware, unexpected=unexpected_error_response)
    return app


def test_unexpected_error_is_one_structured_record_with_request_id_and_frames(
    request_logs: ReadLogs, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(_exploding_app()) as client:  # raises server exceptions if any escapes
        response = client.get("/boom")

    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error."}
    records = request_logs()
    [error] = [r for r in records if r["message"] == "unexpected error"]
    [line] = [r for r in records if r["message"] == "request"]
    assert error["request_id"] == line["request_id"] == response.headers["x-request-id"]
    assert error["error_class"] == "RuntimeError"
    assert any(frame.endswith(" in boom") for frame in error["frames"])
    assert line["status"] == 500
    everything = str(records) + capsys.readouterr().out + caplog.text
    assert TEST_OPENAI_KEY not in everything
    assert "upstream said" not in everything


def test_unexpected_error_through_mangum_prints_no_traceback(
    request_logs: ReadLogs, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    event = load_event("health.json", path="/boom", resource="/boom")
    event["requestContext"] = {**event["requestContext"], "path": "/Prod/boom"}
    # Mangum runs on the current event loop, as the handler module sets one up on Lambda.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        result = Mangum(_exploding_app(), lifespan="off")(event, LambdaContext())
    finally:
        asyncio.set_event_loop(None)
        loop.close()

    assert result["statusCode"] == 500
    assert json.loads(result["body"]) == {"error": "Internal server error."}
    [error] = [r for r in request_logs() if r["message"] == "unexpected error"]
    assert error["request_id"] == event["requestContext"]["requestId"]
    # Mangum logs "An error occurred running the application." with the traceback when an
    # exception reaches it; none does.
    assert "An error occurred" not in caplog.text
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    assert TEST_OPENAI_KEY not in printed.out + printed.err + caplog.text


def test_start_up_configuration_error_shows_no_secret(configure: Configure) -> None:
    client_key = "client-key-that-must-not-print-42"
    configure(
        CORS_ALLOW_ORIGINS="*",
        CORS_ALLOW_CREDENTIALS="true",
        OPENAI_API_KEY=TEST_OPENAI_KEY,
        CLIENT_API_KEYS=client_key,
    )

    with pytest.raises(InvalidConfiguration) as raised:
        get_settings()

    text = str(raised.value)
    assert "CORS_ALLOW_ORIGINS" in text
    assert TEST_OPENAI_KEY[:8] not in text
    assert client_key not in text
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_every_response_carries_its_request_id(
    fake_openai: FakeOpenAI, client: TestClient, request_logs: ReadLogs
) -> None:
    ok = client.post("/chat", json={"message": "Hi"})
    refused = client.post("/chat", json={"message": ""})
    missing = client.get("/nowhere")

    ids = [r.headers["x-request-id"] for r in (ok, refused, missing)]
    assert ids == [line["request_id"] for line in request_logs() if line["message"] == "request"]
    assert len(set(ids)) == 3


def test_request_id_header_is_api_gateways_on_lambda(
    fake_openai: FakeOpenAI, lambda_runtime: LambdaRuntime
) -> None:
    event = load_event("health.json")

    result = lambda_runtime.invoke(event)

    assert result["headers"]["x-request-id"] == event["requestContext"]["requestId"]


# --- keyless local mode ------------------------------------------------------------------------


@pytest.fixture
def keyless(fake_openai: FakeOpenAI, configure: Configure) -> None:
    configure(CLIENT_API_KEYS=None, ALLOW_KEYLESS_LOCALHOST="true")


@pytest.mark.usefixtures("keyless")
@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:5000", "[::1]:8000"])
def test_keyless_mode_serves_loopback_host_names(
    fake_openai: FakeOpenAI, serve: Serve, host: str
) -> None:
    response = httpx2.post(f"{serve()}/chat", json={"message": "Hi"}, headers={"host": host})

    assert response.status_code == 200


@pytest.mark.usefixtures("keyless")
@pytest.mark.parametrize(
    "headers",
    [
        {"host": "rebind.attacker.example"},
        {"host": "rebind.attacker.example:8000"},
        {"host": "localhost.attacker.example"},
        {"x-forwarded-for": "203.0.113.9"},
        {"forwarded": "for=203.0.113.9"},
        {"x-real-ip": "203.0.113.9"},
        {"via": "1.1 tunnel"},
    ],
)
def test_keyless_mode_refuses_rebinding_and_relayed_requests(
    fake_openai: FakeOpenAI, serve: Serve, headers: dict[str, str]
) -> None:
    response = httpx2.post(f"{serve()}/chat", json={"message": "Hi"}, headers=headers)

    assert response.status_code == 401
    assert fake_openai.requests == []


def test_without_the_opt_in_no_keys_means_401_even_on_loopback(
    fake_openai: FakeOpenAI, configure: Configure, serve: Serve
) -> None:
    configure(CLIENT_API_KEYS=None)

    response = httpx2.post(f"{serve()}/chat", json={"message": "Hi"})

    assert response.status_code == 401
    assert fake_openai.requests == []


def test_keyless_mode_is_refused_on_lambda(configure: Configure) -> None:
    configure(ALLOW_KEYLESS_LOCALHOST="true", AWS_LAMBDA_FUNCTION_NAME="chat-api-ChatFunction")

    with pytest.raises(InvalidConfiguration, match="ALLOW_KEYLESS_LOCALHOST"):
        get_settings()


def test_start_up_says_keyless_mode_is_on(
    configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(CLIENT_API_KEYS=None, ALLOW_KEYLESS_LOCALHOST="true")

    with caplog.at_level(logging.WARNING):
        create_app()

    assert "Keyless local mode (ALLOW_KEYLESS_LOCALHOST=true" in caplog.text
