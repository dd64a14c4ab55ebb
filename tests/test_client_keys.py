"""Client API keys: checked by the app wherever API Gateway does not, never logged or echoed."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx2
import pytest
from fastapi.testclient import TestClient

from chat_api.main import create_app
from tests.conftest import (
    CLIENT_API_KEY,
    TEST_OPENAI_KEY,
    AppClient,
    Configure,
    LambdaRuntime,
    Secrets,
    Serve,
    load_event,
)
from tests.fake_openai import FakeOpenAI

HI = {"message": "Hi"}
REFUSAL = (
    "Missing or invalid API key: send it in the x-api-key header or as Authorization: Bearer <key>."
)


@pytest.fixture
def anonymous(fake_openai: FakeOpenAI) -> Iterator[TestClient]:
    """A client of the app that sends no key by default."""
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


def test_missing_key_is_401_json_and_openai_is_not_called(
    anonymous: TestClient, fake_openai: FakeOpenAI
) -> None:
    response = anonymous.post("/chat", json=HI)

    assert response.status_code == 401
    assert response.json() == {"error": REFUSAL}
    assert response.headers["www-authenticate"] == "Bearer"
    assert fake_openai.requests == []


def test_wrong_key_on_v1_is_401_in_openais_error_shape(
    anonymous: TestClient, fake_openai: FakeOpenAI
) -> None:
    response = anonymous.get("/v1/models", headers={"x-api-key": "guess"})

    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": REFUSAL,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def test_key_is_checked_before_the_body_is_validated(
    anonymous: TestClient, fake_openai: FakeOpenAI
) -> None:
    response = anonymous.post("/chat", json={"unexpected": True})

    assert response.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": CLIENT_API_KEY}, {"authorization": f"Bearer {CLIENT_API_KEY}"}],
    ids=["x-api-key", "bearer"],
)
def test_key_is_accepted_in_either_header(anonymous: TestClient, headers: dict[str, str]) -> None:
    assert anonymous.post("/chat", json=HI, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "authorization", [f"Basic {CLIENT_API_KEY}", "Bearer", f"Bearer {CLIENT_API_KEY}x"]
)
def test_other_authorization_values_are_refused(anonymous: TestClient, authorization: str) -> None:
    response = anonymous.post("/chat", json=HI, headers={"authorization": authorization})

    assert response.status_code == 401


def test_any_of_several_configured_keys_is_accepted(
    fake_openai: FakeOpenAI, configure: Configure
) -> None:
    configure(CLIENT_API_KEYS="team-a-key, team-b-key")

    with TestClient(create_app()) as client:
        statuses = [
            client.post("/chat", json=HI, headers={"x-api-key": key}).status_code
            for key in ("team-a-key", "team-b-key", "team-c-key")
        ]

    assert statuses == [200, 200, 401]


def test_health_and_docs_need_no_key(anonymous: TestClient) -> None:
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/docs").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200


def test_keys_are_never_logged_or_echoed(
    anonymous: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    accepted = anonymous.post("/chat", json=HI, headers={"x-api-key": CLIENT_API_KEY})
    refused = anonymous.post("/chat", json=HI, headers={"x-api-key": "sk-wrong-guess-123"})

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Sending HTTP Request" in logged  # the OpenAI client's debug records were captured
    assert CLIENT_API_KEY not in logged
    assert "sk-wrong-guess-123" not in logged
    assert TEST_OPENAI_KEY not in logged
    assert CLIENT_API_KEY not in accepted.text
    assert "sk-wrong-guess-123" not in refused.text


# --- keys from the secret --------------------------------------------------------------------


@pytest.fixture
def secret_with_client_keys(
    fake_openai: FakeOpenAI, secrets: Secrets, configure: Configure
) -> Secrets:
    """The OpenAI key and the client keys in one JSON secret (moto); neither in the env."""
    secrets.create({"OPENAI_API_KEY": "sk-from-secret", "CLIENT_API_KEYS": ["team-a", "team-b"]})
    secrets.serve_key_from()
    configure(CLIENT_API_KEYS=None)
    return secrets


def test_client_keys_are_read_from_the_secret(
    secret_with_client_keys: Secrets, fake_openai: FakeOpenAI, anonymous: TestClient
) -> None:
    accepted = anonymous.post("/chat", json=HI, headers={"x-api-key": "team-b"})
    refused = anonymous.post("/chat", json=HI, headers={"x-api-key": CLIENT_API_KEY})

    assert (accepted.status_code, refused.status_code) == (200, 401)
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-from-secret"


def test_one_secret_read_serves_both_keys(
    secret_with_client_keys: Secrets, fake_openai: FakeOpenAI, anonymous: TestClient
) -> None:
    anonymous.post("/chat", json=HI, headers={"x-api-key": "team-a"})
    secret_with_client_keys.rotate({"OPENAI_API_KEY": "sk-rotated", "CLIENT_API_KEYS": "team-z"})

    second = anonymous.post("/chat", json=HI, headers={"x-api-key": "team-a"})

    assert second.status_code == 200
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-from-secret"


@pytest.mark.usefixtures("secrets")
def test_unreadable_secret_refuses_with_503_before_calling_openai(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    # The OpenAI key stays in the environment: the client keys alone send the app to the secret.
    configure(CLIENT_API_KEYS=None, OPENAI_API_KEY_SECRET_ID="missing-secret")

    with app_client() as client:
        response = client.post("/chat", json=HI)

    assert response.status_code == 503
    assert fake_openai.requests == []


# --- no keys configured ----------------------------------------------------------------------


@pytest.fixture
def keyless(fake_openai: FakeOpenAI, configure: Configure) -> None:
    """No client keys configured anywhere (no secret either), in keyless local mode."""
    configure(CLIENT_API_KEYS=None, ALLOW_KEYLESS_LOCALHOST="true")


@pytest.mark.usefixtures("keyless")
def test_without_keys_a_request_on_loopback_is_served(serve: Serve) -> None:
    response = httpx2.post(f"{serve()}/chat", json=HI)

    assert response.status_code == 200


@pytest.mark.usefixtures("keyless")
def test_without_keys_a_request_not_on_loopback_is_refused(fake_openai: FakeOpenAI) -> None:
    with TestClient(create_app()) as client:  # its server address is "testserver"
        response = client.post("/chat", json=HI)

    assert response.status_code == 401
    assert fake_openai.requests == []


@pytest.mark.usefixtures("keyless")
def test_without_keys_lambda_is_refused_even_with_a_localhost_host_header(
    lambda_runtime: LambdaRuntime, fake_openai: FakeOpenAI
) -> None:
    event = load_event("chat-function-url.json")
    event["headers"] = {**event["headers"], "host": "127.0.0.1"}

    response = lambda_runtime.invoke(event)

    assert response["statusCode"] == 401
    assert fake_openai.requests == []


def test_start_up_says_when_no_keys_are_configured(
    configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(CLIENT_API_KEYS=None)

    create_app()

    assert "CLIENT_API_KEYS is not set: every request without an API Gateway key gets 401" in (
        caplog.text
    )


def test_start_up_is_quiet_when_keys_are_configured(
    configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(CLIENT_API_KEYS="team-a")

    create_app()

    assert "CLIENT_API_KEYS" not in caplog.text
