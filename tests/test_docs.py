"""Interactive docs and the OpenAPI schema, with every error status declared."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_the_schema_from_the_root(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert "/openapi.json" in response.text


def test_openapi_declares_every_documented_chat_status(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    statuses = set(schema["paths"]["/chat"]["post"]["responses"])

    assert {"200", "400", "401", "404", "405", "413", "429", "502", "503", "504"} <= statuses
    assert "422" not in statuses


def test_openapi_declares_the_chat_stream(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    ok = schema["paths"]["/chat"]["post"]["responses"]["200"]

    assert set(ok["content"]) == {"application/json", "text/event-stream"}


def test_openapi_error_responses_use_the_error_shape(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    bad_request = schema["paths"]["/chat"]["post"]["responses"]["400"]
    ref = bad_request["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ErrorResponse"
