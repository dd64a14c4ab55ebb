"""Long answers and deadlines: one upstream call per answer, streams that end in time."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx2
import pytest

from tests.conftest import (
    AppClient,
    Configure,
    LambdaRuntime,
    body_of,
    load_event,
)
from tests.fake_openai import FakeOpenAI, Reply, stream_of

TEN_WORDS = "one two three four five six seven eight nine ten"
NOT_FINISHED = "OpenAI did not finish the answer in time."
STOPPED = "OpenAI stopped answering midway. Try again."


def sse_data(body: str) -> list[Any]:
    """The JSON of every `data:` line of an SSE body (`[DONE]` as the string)."""
    lines = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data:")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def test_chat_answer_longer_than_the_attempt_timeout_is_one_upstream_call(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    # Starts answering at once, finishes after ~2 s: twice the attempt timeout.
    configure(OPENAI_TIMEOUT_SECONDS="1", OPENAI_MAX_RETRIES="2")
    fake_openai.enqueue(Reply(stream=stream_of("a slow answer"), chunk_delay=0.4))

    with app_client() as client:
        response = client.post("/chat", json={"message": "Hi"})

    assert response.status_code == 200
    assert response.json()["response"] == "a slow answer"
    assert len(fake_openai.requests) == 1
    sent = fake_openai.requests[0].json
    assert sent["stream"] is True
    assert sent["max_completion_tokens"] == 4096


def test_chat_is_capped_by_max_completion_tokens(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    configure(MAX_COMPLETION_TOKENS="300")

    with app_client() as client:
        assert client.post("/chat", json={"message": "Hi"}).status_code == 200

    assert fake_openai.requests[0].json["max_completion_tokens"] == 300


def test_chat_stream_that_goes_silent_midway_says_it_stopped(
    fake_openai: FakeOpenAI, configure: Configure, http: httpx2.Client
) -> None:
    configure(OPENAI_TIMEOUT_SECONDS="1", OPENAI_MAX_RETRIES="2")
    fake_openai.enqueue(Reply(stream=stream_of("one two"), chunk_delay=1.6))

    response = http.post("/chat", json={"message": "Hi", "stream": True})

    events = list(httpx2.EventSource(response))
    assert events[-1].event == "error"
    assert events[-1].json() == {"error": STOPPED}
    # An answer that had started is never asked for again.
    assert len(fake_openai.requests) == 1


@pytest.fixture
def short_deadline(configure: Configure) -> None:
    """A 1.5 s deadline (2 s gateway limit less 0.5 s), and an upstream that would take 5 s."""
    configure(
        GATEWAY_TIMEOUT_SECONDS="2", DEADLINE_MARGIN_SECONDS="0.5", OPENAI_TIMEOUT_SECONDS="5"
    )


@pytest.mark.usefixtures("short_deadline")
def test_chat_stream_ends_at_the_deadline_with_an_error_event_under_uvicorn(
    fake_openai: FakeOpenAI, http: httpx2.Client
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of(TEN_WORDS), chunk_delay=0.5))
    started = time.monotonic()

    response = http.post("/chat", json={"message": "Hi", "stream": True})

    events = list(httpx2.EventSource(response))
    assert time.monotonic() - started < 4  # the whole answer would take 5 s
    assert events[0].event == "delta"
    assert events[-1].event == "error"
    assert events[-1].json() == {"error": NOT_FINISHED}


@pytest.mark.usefixtures("short_deadline")
def test_v1_stream_ends_at_the_deadline_with_an_error_chunk_under_uvicorn(
    fake_openai: FakeOpenAI, http: httpx2.Client
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of(TEN_WORDS), chunk_delay=0.5))
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}

    data = sse_data(http.post("/v1/chat/completions", json=body).text)

    assert data[0]["object"] == "chat.completion.chunk"
    assert data[-1] == {
        "error": {"message": NOT_FINISHED, "type": "timeout_error", "param": None, "code": None}
    }


@pytest.mark.usefixtures("short_deadline")
def test_chat_stream_ends_at_the_deadline_through_the_lambda_handler(
    fake_openai: FakeOpenAI, lambda_runtime: LambdaRuntime
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of(TEN_WORDS), chunk_delay=0.5))
    started = time.monotonic()

    result = lambda_runtime.invoke(load_event("chat-stream.json"))

    assert time.monotonic() - started < 4
    assert result["statusCode"] == 200
    assert result["body"].rstrip().endswith(f"data: {json.dumps({'error': NOT_FINISHED})}")


@pytest.mark.usefixtures("short_deadline")
def test_whole_chat_answer_past_the_deadline_is_a_504(
    fake_openai: FakeOpenAI, app_client: AppClient
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of(TEN_WORDS), chunk_delay=0.5))

    with app_client() as client:
        response = client.post("/chat", json={"message": "Hi"})

    assert response.status_code == 504
    assert response.json() == {"error": NOT_FINISHED}


def test_dropped_stream_frees_its_idempotency_key_at_once(
    fake_openai: FakeOpenAI, http: httpx2.Client, app_client: AppClient
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of(TEN_WORDS), chunk_delay=0.3))
    request = {"message": "Hi", "stream": True}
    headers = {"Idempotency-Key": "drop-then-retry"}

    with http.stream("POST", "/chat", json=request, headers=headers) as response:
        next(response.iter_lines())  # the first event has come: the client hangs up

    # The server notices the hang-up within moments; well within the 60 s lease either way.
    deadline = time.monotonic() + 3
    while (retried := http.post("/chat", json=request, headers=headers)).status_code == 409:
        assert time.monotonic() < deadline, "the key was still held after the client left"
        time.sleep(0.05)
    events = list(httpx2.EventSource(retried))
    assert events[-1].event == "done"
    assert retried.headers.get("Idempotent-Replayed") is None


def _arriving(seconds_ago: float) -> dict[str, Any]:
    event = load_event("chat.json")
    event["requestContext"]["requestTimeEpoch"] = int((time.time() - seconds_ago) * 1000)
    return event


def test_deadline_counts_from_api_gateways_arrival_time(
    fake_openai: FakeOpenAI, configure: Configure, lambda_runtime: LambdaRuntime
) -> None:
    # The request reached API Gateway 3 s ago (a cold start): 0.5 s of the 4 s limit are left.
    configure(GATEWAY_TIMEOUT_SECONDS="4", DEADLINE_MARGIN_SECONDS="0.5")
    fake_openai.enqueue(Reply(delay=3))
    started = time.monotonic()

    result = lambda_runtime.invoke(_arriving(seconds_ago=3))

    assert result["statusCode"] == 504
    assert time.monotonic() - started < 2.5  # counted from the handler, it would be 3.5 s


@pytest.mark.parametrize("seconds_ago", [86_400 * 365, -60], ids=["years-old", "future"])
def test_arrival_times_no_real_request_has_are_ignored(
    fake_openai: FakeOpenAI,
    configure: Configure,
    lambda_runtime: LambdaRuntime,
    seconds_ago: float,
) -> None:
    configure(GATEWAY_TIMEOUT_SECONDS="2", DEADLINE_MARGIN_SECONDS="0.5")
    fake_openai.enqueue(Reply(delay=3))
    started = time.monotonic()

    result = lambda_runtime.invoke(_arriving(seconds_ago))

    assert result["statusCode"] == 504, body_of(result)
    # The handler's own start counts: the 1.5 s deadline, not "no time left" at once.
    assert time.monotonic() - started >= 1.0
