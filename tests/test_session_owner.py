"""Sessions belong to their caller: the API key API Gateway checked, or the client key sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chat_api.main import create_app
from tests.conftest import Configure, Invoke, body_of, load_event
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.usefixtures("store_kind")


def rest_event(
    method: str, path: str, api_key_id: str | None, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A REST API event for the Prod stage, as API Gateway sends it after checking the key."""
    event = load_event(
        "chat.json",
        httpMethod=method,
        path=path,
        resource="/sessions/{session_id}" if path.startswith("/sessions/") else path,
        body=None if body is None else json.dumps(body),
    )
    identity = {**event["requestContext"]["identity"], "apiKeyId": api_key_id}
    event["requestContext"] = {
        **event["requestContext"],
        "httpMethod": method,
        "path": f"/Prod{path}",
        "resourcePath": event["resource"],
        "identity": identity,
    }
    return event


def start(invoke: Invoke, api_key_id: str | None) -> str:
    response = invoke(rest_event("POST", "/chat", api_key_id, {"message": "secret plans"}))
    assert response["statusCode"] == 200, response["body"]
    session_id: str = body_of(response)["session_id"]
    return session_id


def test_the_creating_key_reads_and_continues_its_session(invoke: Invoke) -> None:
    session_id = start(invoke, "key-a")

    read = invoke(rest_event("GET", f"/sessions/{session_id}", "key-a"))
    more = invoke(
        rest_event("POST", "/chat", "key-a", {"message": "and?", "session_id": session_id})
    )

    assert read["statusCode"] == 200
    assert body_of(read)["messages"][0]["content"] == "secret plans"
    assert more["statusCode"] == 200


# Without an API Gateway key id, the caller is the client key the event carries: another one.
@pytest.mark.parametrize("other_key", ["key-b", None], ids=["other-key", "client-key"])
def test_another_key_cannot_read_continue_or_delete_the_session(
    invoke: Invoke, fake_openai: FakeOpenAI, other_key: str | None
) -> None:
    session_id = start(invoke, "key-a")
    calls = len(fake_openai.requests)

    responses = [
        invoke(rest_event("GET", f"/sessions/{session_id}", other_key)),
        invoke(rest_event("POST", "/chat", other_key, {"message": "hi", "session_id": session_id})),
        invoke(rest_event("DELETE", f"/sessions/{session_id}", other_key)),
    ]

    # The same 404 as for an id that never existed: another key learns nothing.
    assert [response["statusCode"] for response in responses] == [404, 404, 404]
    assert "secret plans" not in json.dumps(responses)
    assert len(fake_openai.requests) == calls
    assert invoke(rest_event("GET", f"/sessions/{session_id}", "key-a"))["statusCode"] == 200


def test_idempotency_keys_are_per_api_key(invoke: Invoke, fake_openai: FakeOpenAI) -> None:
    def post(api_key_id: str) -> dict[str, Any]:
        event = rest_event("POST", "/chat", api_key_id, {"message": "hi"})
        event["headers"] = {**event["headers"], "Idempotency-Key": "same"}
        event["multiValueHeaders"] = {**event["multiValueHeaders"], "Idempotency-Key": ["same"]}
        return invoke(event)

    first, second = post("key-a"), post("key-b")

    assert first["statusCode"] == second["statusCode"] == 200
    assert body_of(first)["session_id"] != body_of(second)["session_id"]
    assert len(fake_openai.requests) == 2


def test_outside_api_gateway_a_session_belongs_to_the_client_key(
    fake_openai: FakeOpenAI, configure: Configure
) -> None:
    configure(CLIENT_API_KEYS="client-one,client-two")

    def client(key: str) -> TestClient:
        return TestClient(create_app(), headers={"x-api-key": key})

    with client("client-one") as one, client("client-two") as two:
        session_id = one.post("/chat", json={"message": "mine"}).json()["session_id"]

        assert one.get(f"/sessions/{session_id}").status_code == 200
        assert two.get(f"/sessions/{session_id}").status_code == 404
        assert two.delete(f"/sessions/{session_id}").status_code == 404
        assert one.delete(f"/sessions/{session_id}").status_code == 204
