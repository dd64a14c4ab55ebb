"""Configuration: CORS from settings, refused when unsafe, and the OpenAI client's limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chat_api.clients import get_openai_client
from chat_api.config import MAX_OPENAI_TIMEOUT_SECONDS, InvalidConfiguration, Settings, get_settings
from chat_api.main import create_app
from chat_api.services.upstream import Deadline
from tests.conftest import Configure
from tests.fake_openai import FakeOpenAI, Reply, error_body


def test_cors_allows_a_configured_origin(configure: Configure) -> None:
    configure(CORS_ALLOW_ORIGINS="https://app.example.com, https://admin.example.com")

    with TestClient(create_app()) as client:
        response = client.options(
            "/chat",
            headers={
                "origin": "https://admin.example.com",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://admin.example.com"


def test_cors_ignores_an_unlisted_origin(configure: Configure) -> None:
    configure(CORS_ALLOW_ORIGINS="https://app.example.com")

    with TestClient(create_app()) as client:
        response = client.get("/health", headers={"origin": "https://evil.example.net"})

    assert "access-control-allow-origin" not in response.headers


def test_cors_wildcard_with_credentials_is_refused_at_start_up(configure: Configure) -> None:
    configure(CORS_ALLOW_ORIGINS="*", CORS_ALLOW_CREDENTIALS="true")

    with pytest.raises(InvalidConfiguration, match="cannot be combined with CORS_ALLOW_CRED"):
        create_app()


def test_sdk_retries_are_off_so_the_deadline_aware_loop_owns_them(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    # OPENAI_MAX_RETRIES=0: one attempt. The SDK on its own would retry a 500 twice more.
    fake_openai.enqueue(*[Reply(status=500, body=error_body("down", "server_error"))] * 3)

    response = client.post("/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(
    ("variables", "seconds"),
    [
        ({}, 28.0),  # API Gateway's 29 s, less 1 s
        ({"GATEWAY_TIMEOUT_SECONDS": "10", "DEADLINE_MARGIN_SECONDS": "2.5"}, 7.5),
    ],
    ids=["default", "from-the-environment"],
)
def test_deadline_is_the_gateway_limit_less_the_margin(
    configure: Configure, variables: dict[str, str], seconds: float
) -> None:
    configure(**variables)

    deadline = Deadline.for_request(get_settings(), started_at=100.0, context=None)

    assert deadline.at == 100.0 + seconds


def test_openai_timeout_past_a_regional_streams_idle_limit_is_refused(
    configure: Configure,
) -> None:
    configure(OPENAI_TIMEOUT_SECONDS=str(MAX_OPENAI_TIMEOUT_SECONDS + 1))

    with pytest.raises(InvalidConfiguration, match="OPENAI_TIMEOUT_SECONDS"):
        get_settings()


def test_openai_base_url_is_honoured(configure: Configure) -> None:
    configure(OPENAI_BASE_URL="http://127.0.0.1:9/compat/v1")

    assert str(get_openai_client().base_url) == "http://127.0.0.1:9/compat/v1/"


def test_empty_variables_count_as_unset(configure: Configure) -> None:
    configure(OPENAI_API_KEY="", OPENAI_BASE_URL="", OPENAI_MODEL="")

    settings = get_settings()

    assert settings.openai_api_key is None
    assert settings.openai_base_url == "https://api.openai.com/v1"
    assert settings.openai_model == "gpt-4o-mini"


def test_env_example_lists_every_setting_with_a_valid_value() -> None:
    example = Path(__file__).resolve().parent.parent / ".env.example"
    names = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert names == {name.upper() for name in Settings.model_fields}
    Settings(_env_file=example)
