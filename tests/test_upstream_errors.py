"""OpenAI failures become honest, documented statuses without leaking upstream text."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEST_OPENAI_KEY, AppClient, Configure
from tests.fake_openai import FakeOpenAI, Reply, error_body

UPSTREAM_SECRET_TEXT = "Incorrect API key provided: sk-test-****cdef"


def test_upstream_429_returns_429_with_retry_after(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(
            status=429,
            body=error_body(
                "Rate limit reached for gpt-4o-mini", "requests", "rate_limit_exceeded"
            ),
            headers={"retry-after": "7"},
        )
    )

    response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"error": "OpenAI is rate-limiting this service. Try again later."}


def test_upstream_retry_after_ms_is_rounded_up_to_seconds(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(
            status=429, body=error_body("slow down", "requests"), headers={"retry-after-ms": "1500"}
        )
    )

    response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"


def test_upstream_5xx_returns_502(client: TestClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        Reply(status=500, body=error_body("The server had an error", "server_error"))
    )

    response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert response.json() == {"error": "OpenAI returned an error (HTTP 500)."}


def test_upstream_5xx_is_retried_when_retries_are_configured(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    configure(OPENAI_MAX_RETRIES="1")
    fake_openai.enqueue(Reply(status=503, body=error_body("overloaded", "server_error")))

    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 200
    assert len(fake_openai.requests) == 2


def test_rejected_key_returns_502_without_the_upstream_text(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(status=401, body=error_body(UPSTREAM_SECRET_TEXT, "invalid_request_error"))
    )

    response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert response.json() == {"error": "OpenAI rejected the service's configured API key."}
    assert "sk-" not in response.text


def test_upstream_timeout_returns_504(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    configure(OPENAI_TIMEOUT_SECONDS="0.2")
    fake_openai.enqueue(Reply(delay=1.0))

    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 504
    assert response.json() == {"error": "OpenAI did not answer in time. Try again."}


def test_dropped_connection_returns_502(client: TestClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(drop_connection=True))

    response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert response.json() == {"error": "Could not reach OpenAI."}


@pytest.mark.parametrize(
    "body",
    [b'{"id": "chatcmpl-1", "choices": [', b"not json at all", b'{"choices": []}'],
    ids=["truncated", "not-json", "no-choices"],
)
def test_malformed_upstream_body_returns_502(
    client: TestClient, fake_openai: FakeOpenAI, body: bytes
) -> None:
    fake_openai.enqueue(Reply(body=body))

    response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert response.json()["error"] == "OpenAI returned a response the service could not read."


def test_unreachable_upstream_returns_502(
    client: TestClient, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    fake_openai.stop()

    response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert TEST_OPENAI_KEY not in response.text
