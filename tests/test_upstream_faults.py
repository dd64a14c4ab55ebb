"""OpenAI's failures against a loopback OpenAI that injects each: honest, documented statuses
without upstream text, and the deadline-aware retry loop."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2
import pytest
from fastapi.testclient import TestClient

from chat_api.services.upstream import retry_after_seconds
from tests.conftest import TEST_OPENAI_KEY, AppClient, Configure
from tests.fake_openai import FakeOpenAI, Reply, error_body

RATE_LIMITED = error_body("Rate limit reached", "requests", "rate_limit_exceeded")
SERVER_ERROR = error_body("The server had an error", "server_error")
UPSTREAM_SECRET_TEXT = "Incorrect API key provided: sk-test-****cdef"


def post_timed(client: TestClient) -> tuple[httpx2.Response, float]:
    """Send one chat message; the response, and the seconds until it came."""
    started = time.monotonic()
    response = client.post("/chat", json={"message": "hi"})
    return response, time.monotonic() - started


@pytest.fixture
def retrying(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> Iterator[TestClient]:
    """The app with two retries, as deployed."""
    configure(OPENAI_MAX_RETRIES="2")
    with app_client() as client:
        yield client


def test_429_that_clears_is_retried_after_its_retry_after(
    retrying: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(status=429, body=RATE_LIMITED, headers={"retry-after-ms": "200"}))

    response = retrying.post("/chat", json={"message": "hi"})

    assert response.status_code == 200
    first, second = fake_openai.requests
    assert second.received_at - first.received_at >= 0.2


def test_429_on_every_try_returns_429_with_retry_after(
    retrying: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        *[Reply(status=429, body=RATE_LIMITED, headers={"retry-after-ms": "10"})] * 3
    )

    response = retrying.post("/chat", json={"message": "hi"})

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"error": "OpenAI is rate-limiting this service. Try again later."}
    assert len(fake_openai.requests) == 3


def test_retry_after_past_the_deadline_is_answered_at_once(
    retrying: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(status=429, body=RATE_LIMITED, headers={"retry-after": "40"}))

    response, elapsed = post_timed(retrying)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "40"
    assert len(fake_openai.requests) == 1
    # Waiting would take until the deadline, 28 s: far above any slowness of a loaded machine.
    assert elapsed < 10


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (
            Reply(status=429, body=error_body("quota", "insufficient_quota", "insufficient_quota")),
            502,
        ),
        (Reply(status=400, body=error_body("bad request", "invalid_request_error")), 502),
        (Reply(status=401, body=error_body("bad key", "invalid_request_error")), 502),
        (Reply(status=403, body=error_body("region", "invalid_request_error")), 502),
        (Reply(status=404, body=error_body("no model", "invalid_request_error")), 502),
    ],
    ids=["insufficient-quota", "400", "401", "403", "404"],
)
def test_errors_that_waiting_cannot_fix_are_not_retried(
    retrying: TestClient, fake_openai: FakeOpenAI, reply: Reply, status: int
) -> None:
    fake_openai.enqueue(reply)

    response = retrying.post("/chat", json={"message": "hi"})

    assert response.status_code == status
    assert len(fake_openai.requests) == 1


def test_insufficient_quota_says_so(retrying: TestClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        Reply(status=429, body=error_body("quota", "insufficient_quota", "insufficient_quota"))
    )

    response = retrying.post("/chat", json={"message": "hi"})

    assert response.json() == {"error": "OpenAI refused the call: the service's quota is used up."}
    assert "retry-after" not in response.headers


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503])
def test_transient_status_is_retried(
    retrying: TestClient, fake_openai: FakeOpenAI, status: int
) -> None:
    fake_openai.enqueue(Reply(status=status, body=SERVER_ERROR))

    response = retrying.post("/chat", json={"message": "hi"})

    assert response.status_code == 200
    assert len(fake_openai.requests) == 2


def test_5xx_on_every_try_returns_502(retrying: TestClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(*[Reply(status=500, body=SERVER_ERROR)] * 3)

    response = retrying.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert response.json() == {"error": "OpenAI returned an error (HTTP 500)."}
    assert len(fake_openai.requests) == 3


def test_connection_reset_on_every_try_returns_502(
    retrying: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(*[Reply(drop_connection=True)] * 3)

    response = retrying.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert response.json() == {"error": "Could not reach OpenAI."}
    assert len(fake_openai.requests) == 3


def test_connection_reset_once_is_retried(retrying: TestClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(drop_connection=True))

    assert retrying.post("/chat", json={"message": "hi"}).status_code == 200


def test_slow_attempt_is_cut_and_retried(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    configure(OPENAI_MAX_RETRIES="1", OPENAI_TIMEOUT_SECONDS="0.6")
    fake_openai.enqueue(Reply(delay=2.0))

    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 200
    assert len(fake_openai.requests) == 2


def test_no_answer_before_the_deadline_is_504_before_the_deadline(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    # Gateway limit 4 s, margin 2 s: the service must answer by 2 s, though an attempt may take
    # 20 s and OpenAI would answer after 10 s. The margin is the slack a loaded machine gets.
    configure(
        GATEWAY_TIMEOUT_SECONDS="4",
        DEADLINE_MARGIN_SECONDS="2",
        OPENAI_TIMEOUT_SECONDS="20",
        OPENAI_MAX_RETRIES="3",
    )
    fake_openai.enqueue(*[Reply(delay=10.0)] * 4)

    with app_client() as client:
        response, elapsed = post_timed(client)

    assert response.status_code == 504
    assert response.json() == {"error": "OpenAI did not answer in time. Try again."}
    # The one attempt had all the time there was (no retry fits after it), then the answer
    # came before API Gateway's limit.
    assert len(fake_openai.requests) == 1
    assert 1.5 < elapsed < 4


def test_backoff_that_would_pass_the_deadline_is_not_taken(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    # The deadline is 5 s away; a 5 s wait would leave no time for the attempt after it.
    configure(GATEWAY_TIMEOUT_SECONDS="6", DEADLINE_MARGIN_SECONDS="1", OPENAI_MAX_RETRIES="3")
    fake_openai.enqueue(*[Reply(status=503, body=SERVER_ERROR, headers={"retry-after": "5"})] * 4)

    with app_client() as client:
        response, elapsed = post_timed(client)

    assert response.status_code == 502
    assert len(fake_openai.requests) == 1
    assert elapsed < 5  # less than the wait alone


# --- a single attempt (the `client` fixture retries nothing) ---------------------------------


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


def test_unreachable_upstream_returns_502(client: TestClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.stop()

    response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert TEST_OPENAI_KEY not in response.text


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms_are_read(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds
