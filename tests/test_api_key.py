"""The OpenAI key from the environment or Secrets Manager (moto), and clear 503s without one."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from fastapi.testclient import TestClient

from chat_api.config import get_settings
from chat_api.deps import key_source_dependency
from chat_api.keys import FIRST_BACKOFF_SECONDS, KeySource
from chat_api.main import create_app
from tests.conftest import (
    CLIENT_API_KEY,
    SECRET_NAME,
    TEST_OPENAI_KEY,
    AppClient,
    Clock,
    Configure,
    Secrets,
    run_python,
)
from tests.fake_openai import FakeOpenAI, Reply, error_body

SECRET_KEY = "sk-from-secrets-manager-42"


@pytest.fixture
def key_from_secret(fake_openai: FakeOpenAI, secrets: Secrets) -> None:
    """The service set up as on AWS: no key in the environment, only the secret's id."""
    secrets.serve_key_from()


def sent_key(fake_openai: FakeOpenAI) -> str:
    return fake_openai.requests[-1].headers["authorization"].removeprefix("Bearer ")


@pytest.mark.usefixtures("key_from_secret")
@pytest.mark.parametrize(
    "secret_string",
    [SECRET_KEY, {"OPENAI_API_KEY": SECRET_KEY, "other": "x"}],
    ids=["plain", "json"],
)
def test_key_is_read_from_secrets_manager(
    secrets: Secrets,
    fake_openai: FakeOpenAI,
    app_client: AppClient,
    secret_string: str | dict[str, str],
) -> None:
    secrets.create(secret_string)

    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 200
    assert sent_key(fake_openai) == SECRET_KEY


@pytest.mark.usefixtures("key_from_secret")
@pytest.mark.parametrize(
    ("ttl", "second_key"),
    [("300", SECRET_KEY), ("0", "sk-rotated")],
    ids=["reused-while-fresh", "read-again-after-ttl"],
)
def test_secret_is_cached_for_its_ttl(
    fake_openai: FakeOpenAI,
    secrets: Secrets,
    configure: Configure,
    app_client: AppClient,
    ttl: str,
    second_key: str,
) -> None:
    configure(SECRET_CACHE_TTL_SECONDS=ttl)
    secrets.create(SECRET_KEY)

    with app_client() as client:
        client.post("/chat", json={"message": "one"})
        secrets.rotate("sk-rotated")
        client.post("/chat", json={"message": "two"})

    sent = [request.headers["authorization"] for request in fake_openai.requests]
    assert sent == [f"Bearer {SECRET_KEY}", f"Bearer {second_key}"]


@pytest.mark.usefixtures("key_from_secret")
def test_missing_secret_is_503_and_openai_is_not_called(
    fake_openai: FakeOpenAI, app_client: AppClient
) -> None:
    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 503
    assert "could not be read from Secrets Manager" in response.json()["error"]
    assert fake_openai.requests == []


@pytest.mark.usefixtures("key_from_secret")
@pytest.mark.parametrize("secret_string", ["   ", '{"api_key": "sk-wrong-field"}', "{not json"])
def test_secret_without_a_key_is_503(
    fake_openai: FakeOpenAI, secrets: Secrets, app_client: AppClient, secret_string: str
) -> None:
    secrets.create(secret_string)

    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 503
    assert response.json()["error"].startswith("The Secrets Manager secret holds no OpenAI API key")
    assert "sk-wrong-field" not in response.text
    assert fake_openai.requests == []


def test_no_key_configured_is_503_saying_how_to_configure_it(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    configure(OPENAI_API_KEY=None)

    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 503
    assert response.json() == {
        "error": "No OpenAI API key is configured: set OPENAI_API_KEY, or "
        "OPENAI_API_KEY_SECRET_ID to a Secrets Manager secret that holds the key."
    }
    assert fake_openai.requests == []


def test_environment_key_wins_over_the_secret(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    configure(OPENAI_API_KEY_SECRET_ID="never-read")

    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 200
    assert sent_key(fake_openai) == TEST_OPENAI_KEY


def test_boto3_is_not_imported_without_a_secret() -> None:
    # Powertools imports botocore's bare package (0.3 ms) to tag its user agent; the costly
    # parts, boto3 and botocore's session and clients, stay unloaded.
    code = (
        "import sys; import chat_api.handler; "
        "print(any(m in sys.modules for m in ('boto3', 'botocore.session', 'botocore.client')))"
    )
    assert run_python(code).stdout.strip() == "False"


@pytest.mark.usefixtures("key_from_secret")
def test_rotated_secret_is_refetched_once_on_401(
    fake_openai: FakeOpenAI, secrets: Secrets, app_client: AppClient
) -> None:
    secrets.create(SECRET_KEY)

    with app_client() as client:
        client.post("/chat", json={"message": "warm the cache"})
        secrets.rotate("sk-rotated")
        fake_openai.enqueue(Reply(status=401, body=error_body("revoked", "invalid_request_error")))
        response = client.post("/chat", json={"message": "after rotation"})

    assert response.status_code == 200
    assert [r.headers["authorization"] for r in fake_openai.requests] == [
        f"Bearer {SECRET_KEY}",
        f"Bearer {SECRET_KEY}",
        "Bearer sk-rotated",
    ]


@pytest.mark.parametrize(
    ("key_source", "attempts"), [("secret", 2), ("environment", 1)], ids=["secret", "environment"]
)
def test_401_is_retried_once_only_for_a_key_from_the_secret_then_502(
    request: pytest.FixtureRequest,
    fake_openai: FakeOpenAI,
    app_client: AppClient,
    key_source: str,
    attempts: int,
) -> None:
    # A key from the environment cannot have been rotated: reading it again would not help.
    if key_source == "secret":
        request.getfixturevalue("key_from_secret")
        secrets: Secrets = request.getfixturevalue("secrets")
        secrets.create(SECRET_KEY)
    rejected = Reply(status=401, body=error_body("Incorrect API key", "invalid_request_error"))
    fake_openai.enqueue(rejected, rejected, rejected)

    with app_client() as client:
        response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert response.json() == {"error": "OpenAI rejected the service's configured API key."}
    assert len(fake_openai.requests) == attempts


@pytest.fixture
def stubbed_secrets(
    fake_openai: FakeOpenAI, configure: Configure, clock: Clock
) -> Iterator[tuple[Stubber, Clock, TestClient]]:
    """Secrets Manager answering exactly what the test stubs, and the key source's clock."""
    configure(OPENAI_API_KEY=None, OPENAI_API_KEY_SECRET_ID=SECRET_NAME)
    secrets_client = boto3.client("secretsmanager")
    key_source = KeySource(get_settings(), lambda: secrets_client, clock=clock)
    app = create_app()
    app.dependency_overrides[key_source_dependency] = lambda: key_source
    with (
        Stubber(secrets_client) as stubber,
        TestClient(app, headers={"x-api-key": CLIENT_API_KEY}) as client,
    ):
        yield stubber, clock, client
        stubber.assert_no_pending_responses()


def add_secret(stubber: Stubber, value: str = SECRET_KEY) -> None:
    stubber.add_response(
        "get_secret_value",
        {"Name": SECRET_NAME, "SecretString": value},
        {"SecretId": SECRET_NAME},
    )


def test_throttled_secrets_manager_is_503_then_recovers_after_backoff(
    stubbed_secrets: tuple[Stubber, Clock, TestClient], fake_openai: FakeOpenAI
) -> None:
    stubber, clock, client = stubbed_secrets
    stubber.add_client_error("get_secret_value", "ThrottlingException", http_status_code=400)
    add_secret(stubber)

    throttled = client.post("/chat", json={"message": "hi"})
    during_backoff = [client.post("/chat", json={"message": "hi"}) for _ in range(5)]
    clock.advance(FIRST_BACKOFF_SECONDS)
    recovered = client.post("/chat", json={"message": "hi"})

    assert throttled.status_code == 503
    assert throttled.headers["retry-after"] == "1"
    assert "could not be read from Secrets Manager" in throttled.json()["error"]
    # No fetch storm: the requests inside the back-off are answered without asking again
    # (the stubber would refuse a third call).
    assert {r.status_code for r in during_backoff} == {503}
    assert recovered.status_code == 200
    assert sent_key(fake_openai) == SECRET_KEY


def test_backoff_grows_while_secrets_manager_stays_down(
    stubbed_secrets: tuple[Stubber, Clock, TestClient],
) -> None:
    stubber, clock, client = stubbed_secrets
    for _ in range(3):
        stubber.add_client_error("get_secret_value", "InternalServiceError", http_status_code=500)

    waits = []
    for _ in range(3):
        response = client.post("/chat", json={"message": "hi"})
        waits.append(int(response.headers["retry-after"]))
        clock.advance(waits[-1])

    assert waits == [1, 2, 4]


def test_failed_refresh_keeps_serving_the_cached_key(
    stubbed_secrets: tuple[Stubber, Clock, TestClient], fake_openai: FakeOpenAI
) -> None:
    stubber, clock, client = stubbed_secrets
    add_secret(stubber)
    stubber.add_client_error("get_secret_value", "ThrottlingException", http_status_code=400)

    first = client.post("/chat", json={"message": "hi"})
    clock.advance(301)  # past SECRET_CACHE_TTL_SECONDS
    second = client.post("/chat", json={"message": "hi"})

    assert (first.status_code, second.status_code) == (200, 200)
    assert sent_key(fake_openai) == SECRET_KEY
