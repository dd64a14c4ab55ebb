"""The OpenAI key from the environment or Secrets Manager (moto), and clear 503s without one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.conftest import TEST_OPENAI_KEY, AppClient, Configure
from tests.fake_openai import FakeOpenAI

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"
SECRET_NAME = "chat-api/openai"
SECRET_KEY = "sk-from-secrets-manager-42"


@pytest.fixture
def secrets() -> Iterator[object]:
    """Secrets Manager, in moto."""
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def key_from_secret(fake_openai: FakeOpenAI, configure: Configure, secrets: object) -> None:
    """The service set up as on AWS: no key in the environment, only the secret's id."""
    configure(OPENAI_API_KEY=None, OPENAI_API_KEY_SECRET_ID=SECRET_NAME)


def sent_key(fake_openai: FakeOpenAI) -> str:
    return fake_openai.requests[-1].headers["authorization"].removeprefix("Bearer ")


@pytest.mark.usefixtures("key_from_secret")
@pytest.mark.parametrize(
    "secret_string",
    [SECRET_KEY, json.dumps({"OPENAI_API_KEY": SECRET_KEY, "other": "x"})],
    ids=["plain", "json"],
)
def test_key_is_read_from_secrets_manager(
    secrets: object, fake_openai: FakeOpenAI, app_client: AppClient, secret_string: str
) -> None:
    boto3.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=secret_string)

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
    configure: Configure,
    app_client: AppClient,
    ttl: str,
    second_key: str,
) -> None:
    configure(SECRET_CACHE_TTL_SECONDS=ttl)
    secrets_manager = boto3.client("secretsmanager")
    secrets_manager.create_secret(Name=SECRET_NAME, SecretString=SECRET_KEY)

    with app_client() as client:
        client.post("/chat", json={"message": "one"})
        secrets_manager.put_secret_value(SecretId=SECRET_NAME, SecretString="sk-rotated")
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
    fake_openai: FakeOpenAI, app_client: AppClient, secret_string: str
) -> None:
    boto3.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=secret_string)

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
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(FUNCTIONS_DIR)},
    )

    assert result.stdout.strip() == "False"
