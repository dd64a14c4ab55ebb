"""A recognisable key, configured in the environment or in Secrets Manager, driven through
every error path: it, and any `sk-` string, appears in no response body and no log record."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import TEST_OPENAI_KEY, AppClient, Configure, ReadLogs, Secrets
from tests.fake_openai import FakeOpenAI, Reply, error_body

SECRET_KEY = "sk-proj-canary-from-secret-9876543210"
ECHO = f"Incorrect API key provided: {TEST_OPENAI_KEY} / {SECRET_KEY}"

UPSTREAM_FAULTS = [
    Reply(status=401, body=error_body(ECHO, "invalid_request_error", "invalid_api_key")),
    Reply(status=403, body=error_body(ECHO, "invalid_request_error")),
    Reply(status=400, body=error_body(ECHO, "invalid_request_error")),
    Reply(status=404, body=error_body(ECHO, "invalid_request_error")),
    Reply(status=429, body=error_body(ECHO, "requests"), headers={"retry-after": "30"}),
    Reply(status=429, body=error_body(ECHO, "insufficient_quota", "insufficient_quota")),
    Reply(status=500, body=error_body(ECHO, "server_error")),
    Reply(status=200, body=f'{{"error": "{ECHO}", "choices": ['.encode()),
    Reply(status=200, body=ECHO.encode()),
    Reply(drop_connection=True),
    Reply(delay=2.0),
]


@pytest.fixture(params=["environment", "secret"])
def canary_key(
    request: pytest.FixtureRequest, fake_openai: FakeOpenAI, configure: Configure
) -> str:
    """The key the service is configured with, one way or the other."""
    configure(OPENAI_TIMEOUT_SECONDS="0.5", OPENAI_MAX_RETRIES="0")
    if request.param == "environment":
        return TEST_OPENAI_KEY
    secrets: Secrets = request.getfixturevalue("secrets")
    secrets.create(SECRET_KEY)
    secrets.serve_key_from()
    return SECRET_KEY


def test_key_leaks_into_no_response_and_no_log(
    canary_key: str,
    fake_openai: FakeOpenAI,
    app_client: AppClient,
    request_logs: ReadLogs,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = []
    with app_client() as client:
        for fault in UPSTREAM_FAULTS:
            fake_openai.enqueue(fault, fault)  # a second time for the secret's 401 retry
            response = client.post("/chat", json={"message": "hi"})
            assert response.status_code >= 400, fault
            bodies.append(response.text)
            fake_openai.replies.clear()
        bodies.append(client.post("/chat", json={"message": ""}).text)
        bodies.append(client.post("/chat", content=b"{").text)

    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {canary_key}"
    logs = [str(line) for line in request_logs()]
    records = [record.getMessage() for record in caplog.records]
    records += [str(record.__dict__) for record in caplog.records]
    captured = capsys.readouterr()
    for text in [*bodies, *logs, *records, captured.out, captured.err]:
        assert canary_key not in text
        assert "sk-" not in text
    assert len(logs) == len(UPSTREAM_FAULTS) + 2


def test_key_leaks_nowhere_when_secrets_manager_fails(
    fake_openai: FakeOpenAI,
    secrets: Secrets,
    app_client: AppClient,
    request_logs: ReadLogs,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets.serve_key_from()  # a secret that does not exist
    caplog.set_level(logging.DEBUG)

    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 503
    texts = [response.text, *map(str, request_logs()), *(r.getMessage() for r in caplog.records)]
    assert not any("sk-" in text for text in texts)
