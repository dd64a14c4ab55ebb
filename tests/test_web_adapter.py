"""Behind the AWS Lambda Web Adapter (LAMBDA_WEB_ADAPTER): the app under uvicorn, reading the
caller, the deadline and the request id from the headers the adapter adds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx2
import pytest

from chat_api.config import InvalidConfiguration, get_settings
from tests.adapter_headers import adapter_headers
from tests.conftest import Configure, Serve
from tests.fake_openai import FakeOpenAI, Reply, stream_of

HI = {"message": "Hi"}
NOT_ANSWERED = "OpenAI did not answer in time. Try again."


@pytest.fixture
def http(fake_openai: FakeOpenAI, configure: Configure, serve: Serve) -> Iterator[httpx2.Client]:
    """The app under uvicorn behind the adapter: no client key of its own is sent."""
    configure(LAMBDA_WEB_ADAPTER="true")
    with httpx2.Client(base_url=serve(), timeout=10) as client:
        yield client


def test_caller_is_the_request_contexts_api_key_id(http: httpx2.Client) -> None:
    created = http.post("/chat", json=HI, headers=adapter_headers(api_key_id="key-a"))
    session = f"/sessions/{created.json()['session_id']}"

    assert created.status_code == 200
    assert http.get(session, headers=adapter_headers(api_key_id="key-a")).status_code == 200
    assert http.get(session, headers=adapter_headers(api_key_id="key-b")).status_code == 404


@pytest.mark.parametrize(
    "context",
    [None, "", "{not json", '"a string"', "[]"],
    ids=["missing", "empty", "malformed", "string", "list"],
)
def test_request_without_a_well_formed_context_is_401(
    http: httpx2.Client, fake_openai: FakeOpenAI, context: str | None
) -> None:
    headers = adapter_headers()
    del headers["x-amzn-request-context"]
    if context is not None:
        headers["x-amzn-request-context"] = context

    response = http.post("/chat", json=HI, headers=headers)

    assert response.status_code == 401
    assert "API key" in response.json()["error"]
    assert fake_openai.requests == []


def test_loopback_without_a_context_is_401_even_with_a_client_keyless_setup(
    http: httpx2.Client, configure: Configure
) -> None:
    # Every request reaches uvicorn from 127.0.0.1 inside Lambda: that proves nothing.
    configure(CLIENT_API_KEYS=None)

    response = http.post("/chat", json=HI, headers={"host": "localhost"})

    assert response.status_code == 401


def test_keyless_local_mode_is_refused_behind_the_adapter(configure: Configure) -> None:
    configure(LAMBDA_WEB_ADAPTER="true", ALLOW_KEYLESS_LOCALHOST="true")

    with pytest.raises(InvalidConfiguration, match="ALLOW_KEYLESS_LOCALHOST"):
        get_settings()


def test_context_without_a_key_id_falls_back_to_client_keys(http: httpx2.Client) -> None:
    response = http.post("/chat", json=HI, headers=adapter_headers(api_key_id=None))

    assert response.status_code == 401


def test_without_the_adapter_a_forged_context_is_ignored(
    fake_openai: FakeOpenAI, serve: Serve
) -> None:
    # A server not behind the adapter (LAMBDA_WEB_ADAPTER unset) never trusts these headers.
    with httpx2.Client(base_url=serve(), timeout=10) as client:
        response = client.post("/chat", json=HI, headers=adapter_headers())

    assert response.status_code == 401
    assert fake_openai.requests == []


def test_deadline_is_the_lambda_contexts(
    http: httpx2.Client, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    # The answer limit is 300 s; the invocation has 1.5 s left, less the 0.5 s margin.
    configure(GATEWAY_TIMEOUT_SECONDS="300", DEADLINE_MARGIN_SECONDS="0.5")
    fake_openai.enqueue(Reply(delay=3))
    started = time.monotonic()

    response = http.post("/chat", json=HI, headers=adapter_headers(seconds_left=1.5))

    assert response.status_code == 504
    assert response.json() == {"error": NOT_ANSWERED}
    assert time.monotonic() - started < 2


def test_deadline_counts_from_the_request_contexts_arrival_time(
    http: httpx2.Client, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    # API Gateway received the request 3 s ago: 0.5 s of the 4 s limit are left.
    configure(GATEWAY_TIMEOUT_SECONDS="4", DEADLINE_MARGIN_SECONDS="0.5")
    fake_openai.enqueue(Reply(delay=3))
    arrived = int((time.time() - 3) * 1000)
    started = time.monotonic()

    response = http.post("/chat", json=HI, headers=adapter_headers(requestTimeEpoch=arrived))

    assert response.status_code == 504
    assert time.monotonic() - started < 2.5  # counted from arrival at the app, it would be 3.5 s


def test_answer_longer_than_29_seconds_of_gateway_limit_is_allowed(
    http: httpx2.Client, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    # The default gateway limit (29 s) would leave 1 s here; the answer limit leaves 299 s.
    configure(GATEWAY_TIMEOUT_SECONDS="300")
    fake_openai.enqueue(Reply(delay=1.5))
    arrived = int((time.time() - 28) * 1000)

    response = http.post("/chat", json=HI, headers=adapter_headers(requestTimeEpoch=arrived))

    assert response.status_code == 200


def test_request_id_is_api_gateways(http: httpx2.Client) -> None:
    headers = adapter_headers(requestId="gw-request-1234")

    response = http.get("/health", headers=headers)

    assert response.headers["x-request-id"] == "gw-request-1234"


def test_without_the_adapter_the_request_id_is_not_taken_from_a_header(
    fake_openai: FakeOpenAI, serve: Serve
) -> None:
    with httpx2.Client(base_url=serve(), timeout=10) as client:
        response = client.get("/health", headers=adapter_headers(requestId="chosen-by-client"))

    assert response.headers["x-request-id"] != "chosen-by-client"


def test_docs_under_the_stage_load_the_schema_from_the_stage(http: httpx2.Client) -> None:
    response = http.get("/docs", headers=adapter_headers(path="/Prod/docs"))

    assert response.status_code == 200
    assert "/Prod/openapi.json" in response.text


def test_v1_stream_behind_the_adapter_relays_each_chunk(
    http: httpx2.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of("one two")))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}

    response = http.post(
        "/v1/chat/completions", json={**body, "stream": True}, headers=adapter_headers()
    )

    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    deltas = [json.loads(d)["choices"][0]["delta"].get("content") for d in data[:-1]]
    assert "".join(filter(None, deltas)) == "one two"
