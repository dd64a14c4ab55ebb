"""One JSON log line per request, with ids, route, status, latency, usage and attempts;
CloudWatch metrics as EMF; message text only when LOG_MESSAGE_CONTENT is on."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from chat_api.request_log import get_logger
from tests.conftest import AppClient, Configure, ReadLogs
from tests.fake_openai import FakeOpenAI, Reply, completion, error_body


def test_each_request_writes_one_line_with_its_outcome(
    client: TestClient, fake_openai: FakeOpenAI, request_logs: ReadLogs
) -> None:
    fake_openai.enqueue(Reply(body=completion("Four words in reply", model="gpt-4o-mini-x")))

    client.post("/chat", json={"message": "a secret plan"})

    [line] = request_logs()
    assert line["message"] == "request"
    assert line["method"] == "POST"
    assert line["route"] == "/chat"
    assert line["status"] == 200
    assert line["latency_ms"] > 0
    assert line["model"] == "gpt-4o-mini-x"
    assert line["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    assert line["upstream_attempts"] == 1
    assert line["upstream_errors"] == 0
    assert line["request_id"]
    assert "a secret plan" not in json.dumps(line)
    assert "Four words" not in json.dumps(line)


def test_failed_request_logs_attempts_and_error_class(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient, request_logs: ReadLogs
) -> None:
    configure(OPENAI_MAX_RETRIES="1")
    fake_openai.enqueue(*[Reply(status=500, body=error_body("down", "server_error"))] * 2)

    with app_client() as client:
        client.post("/chat", json={"message": "hi"})

    [line] = request_logs()
    assert line["status"] == 502
    assert line["upstream_attempts"] == 2
    assert line["upstream_errors"] == 2
    assert line["error_class"] == "InternalServerError"


@pytest.mark.parametrize(
    ("request_kwargs", "status", "error_class"),
    [
        ({"json": {"message": ""}}, 400, "RequestValidationError"),
        ({"content": b"x" * 70_000}, 413, None),
    ],
)
def test_refused_requests_are_logged_too(
    client: TestClient,
    request_logs: ReadLogs,
    request_kwargs: dict[str, object],
    status: int,
    error_class: str | None,
) -> None:
    client.post("/chat", **request_kwargs)  # type: ignore[arg-type]

    [line] = request_logs()
    assert line["status"] == status
    assert line.get("error_class") == error_class
    assert line["upstream_attempts"] == 0


def test_message_content_is_logged_only_when_enabled(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient, request_logs: ReadLogs
) -> None:
    configure(LOG_MESSAGE_CONTENT="true")

    with app_client() as client:
        client.post("/chat", json={"message": "debug me"})

    [line] = request_logs()
    assert line["content"]["messages"][-1] == {"role": "user", "content": "debug me"}
    assert line["content"]["answer"] == "Echo: debug me"


def test_the_request_line_carries_its_metrics_as_cloudwatch_emf(
    client: TestClient, request_logs: ReadLogs
) -> None:
    client.post("/chat", json={"message": "hi"})

    [line] = request_logs()
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "ChatApi"
    assert directive["Dimensions"] == [["service"]]
    assert line["service"] == "chat-api"  # the dimension the template's alarm names
    names = {metric["Name"] for metric in directive["Metrics"]}
    assert names == {
        "Latency",
        "UpstreamAttempts",
        "UpstreamErrors",
        "PromptTokens",
        "CompletionTokens",
    }
    assert line["PromptTokens"] == 9
    assert line["Latency"] == line["latency_ms"]


def test_below_the_log_level_the_line_carries_the_metrics_alone(
    client: TestClient, request_logs: ReadLogs
) -> None:
    logger = get_logger()  # LOG_LEVEL=WARN on Lambda: the Logger reads it when first made
    previous = logger.log_level
    logger.setLevel(logging.WARNING)
    try:
        client.post("/chat", json={"message": "a secret plan"})
    finally:
        logger.setLevel(previous)

    [line] = request_logs()
    assert "message" not in line
    assert "request_id" not in line
    assert line["PromptTokens"] == 9
    assert line["service"] == "chat-api"
