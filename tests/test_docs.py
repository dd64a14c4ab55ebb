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

    assert {
        "200",
        "400",
        "401",
        "404",
        "405",
        "409",
        "413",
        "422",
        "429",
        "502",
        "503",
        "504",
    } <= statuses


def test_openapi_422_is_the_idempotency_error_not_fastapis_validation_error(
    client: TestClient,
) -> None:
    schema = client.get("/openapi.json").json()

    unprocessable = schema["paths"]["/chat"]["post"]["responses"]["422"]
    ref = unprocessable["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ErrorResponse"
    assert "Idempotency-Key" in unprocessable["description"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_openapi_declares_the_session_routes_statuses(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]["/sessions/{session_id}"]

    assert {"200", "400", "401", "404", "503"} <= set(paths["get"]["responses"])
    assert {"204", "400", "401", "404", "503"} <= set(paths["delete"]["responses"])


def test_openapi_declares_the_chat_stream(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    ok = schema["paths"]["/chat"]["post"]["responses"]["200"]

    assert set(ok["content"]) == {"application/json", "text/event-stream"}


def test_openapi_error_responses_use_the_error_shape(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    bad_request = schema["paths"]["/chat"]["post"]["responses"]["400"]
    ref = bad_request["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ErrorResponse"


def test_every_error_response_refers_to_an_error_schema_the_document_defines(
    client: TestClient,
) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status == "default" or status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    name = ref.removeprefix("#/components/schemas/")
                    expected = "OpenAIErrorResponse" if path.startswith("/v1/") else "ErrorResponse"
                    assert name == expected, (method, path, status)
    assert components["ErrorResponse"]["required"] == ["error"]
    assert components["OpenAIErrorResponse"]["properties"]["error"]["$ref"] == (
        "#/components/schemas/OpenAIErrorDetail"
    )
    assert "FieldError" in components


def test_operation_ids_are_the_route_names_client_generators_use(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    ids = {
        (method.upper(), path): operation["operationId"]
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert ids[("POST", "/chat")] == "chat"
    assert ids[("GET", "/sessions/{session_id}")] == "get_session"
    assert ids[("DELETE", "/sessions/{session_id}")] == "remove_session"
    assert ids[("POST", "/v1/chat/completions")] == "chat_completions"
    assert ids[("GET", "/v1/models")] == "models"
    assert ids[("GET", "/health")] == "health"
    assert len(set(ids.values())) == len(ids)
