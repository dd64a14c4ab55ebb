"""On `/v1/` every error takes OpenAI's shape; the rest of the API keeps `{"error": ...}`."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import AppClient, Configure
from tests.fake_openai import FakeOpenAI

COMPLETIONS = "/v1/chat/completions"
HI: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def openai_error(message: str, param: str | None = None, code: str | None = None) -> Any:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def test_unparseable_json_is_400_in_openais_shape(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    response = client.post(
        COMPLETIONS, content=b'{"model": ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json() == openai_error("Request body is not valid JSON.")
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**HI, "messages": []}, "messages"),
        ({**HI, "messages": [{"role": "wizard", "content": "Hi"}]}, "messages[0].role"),
        ({"messages": HI["messages"]}, "model"),
        ({**HI, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
    ids=["no-messages", "bad-role", "no-model", "too-many-stops"],
)
def test_invalid_field_is_400_naming_it_as_param(
    client: TestClient, body: dict[str, Any], param: str
) -> None:
    response = client.post(COMPLETIONS, json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["code"] == "invalid_value"
    assert error["message"].startswith(f"Invalid field '{param}")


def test_unknown_route_under_v1_is_404_in_openais_shape(client: TestClient) -> None:
    response = client.get("/v1/files")

    assert response.status_code == 404
    assert response.json() == openai_error("No route for GET /v1/files.")


def test_wrong_method_under_v1_is_405_in_openais_shape(client: TestClient) -> None:
    response = client.get(COMPLETIONS)

    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_body_over_the_limit_under_v1_is_413_in_openais_shape(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    configure(MAX_BODY_BYTES="500")

    with app_client() as client:
        response = client.post(COMPLETIONS, json={**HI, "user": "x" * 600})

    assert response.status_code == 413
    assert response.json() == openai_error("Request body is larger than the limit of 500 bytes.")


def test_routes_outside_v1_keep_the_apps_shape(client: TestClient) -> None:
    assert client.get("/v1x").json() == {"error": "No route for GET /v1x."}


def test_openapi_declares_v1_errors_in_openais_shape(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    responses = schema["paths"][COMPLETIONS]["post"]["responses"]
    assert {"200", "400", "401", "404", "405", "409", "413", "429", "502", "503", "504"} <= set(
        responses
    )
    for status in ("401", "409", "422"):
        ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/OpenAIErrorResponse"
    # 422 is the reused Idempotency-Key, not FastAPI's validation error (that is a 400).
    assert "Idempotency-Key" in responses["422"]["description"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"200", "401", "503"} <= set(schema["paths"]["/v1/models"]["get"]["responses"])
