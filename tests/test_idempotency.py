"""`Idempotency-Key` on `POST /chat`, on SQLite and on DynamoDB (moto)."""

from __future__ import annotations

import threading
import time

import httpx2
from fastapi.testclient import TestClient

from chat_api.caller import key_digest
from chat_api.clients import get_session_store
from chat_api.schemas import ChatRequest
from chat_api.services.idempotency import new_claim
from chat_api.store.rules import CLAIM_LEASE_SECONDS
from tests.conftest import CLIENT_API_KEY, Clock
from tests.fake_openai import FakeOpenAI, Reply, error_body


def post(api: TestClient, body: dict[str, object], key: str = "retry-1") -> httpx2.Response:
    return api.post("/chat", json=body, headers={"Idempotency-Key": key})


def test_repeated_key_and_body_replays_the_answer_without_calling_openai_again(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    first = post(api, {"message": "Hello"})
    second = post(api, {"message": "Hello"})

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(fake_openai.requests) == 1
    messages = api.get(f"/sessions/{first.json()['session_id']}").json()["messages"]
    assert len(messages) == 2


def test_replay_on_a_session_stores_the_turn_once(api: TestClient, fake_openai: FakeOpenAI) -> None:
    session_id = api.post("/chat", json={"message": "one"}).json()["session_id"]
    body = {"message": "two", "session_id": session_id}

    post(api, body)
    post(api, body)

    assert len(fake_openai.requests) == 2
    assert len(api.get(f"/sessions/{session_id}").json()["messages"]) == 4


def test_same_key_with_a_different_body_is_422(api: TestClient, fake_openai: FakeOpenAI) -> None:
    post(api, {"message": "Hello"})

    response = post(api, {"message": "Something else"})

    assert response.status_code == 422
    assert response.json() == {
        "error": "This Idempotency-Key was already used with a different request body."
    }
    assert len(fake_openai.requests) == 1


def test_keys_are_independent(api: TestClient, fake_openai: FakeOpenAI) -> None:
    post(api, {"message": "Hello"}, key="a")
    post(api, {"message": "Hello"}, key="b")

    assert len(fake_openai.requests) == 2


def test_repeat_while_the_first_is_running_is_409(api: TestClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(delay=0.5))
    results: list[httpx2.Response] = []
    first = threading.Thread(target=lambda: results.append(post(api, {"message": "slow"})))
    first.start()
    deadline = time.monotonic() + 5
    while not fake_openai.requests and time.monotonic() < deadline:
        time.sleep(0.005)  # until the first request is waiting on OpenAI

    second = post(api, {"message": "slow"})
    first.join()

    assert second.status_code == 409
    assert second.headers["retry-after"] == "1"
    assert "still running" in second.json()["error"]
    assert [response.status_code for response in results] == [200]
    assert len(fake_openai.requests) == 1


def test_key_is_freed_when_openai_fails_so_the_retry_runs(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(status=500, body=error_body("boom", "server_error")))

    failed = post(api, {"message": "Hello"})
    retried = post(api, {"message": "Hello"})

    assert failed.status_code == 502
    assert retried.status_code == 200
    assert "idempotent-replayed" not in retried.headers
    assert len(fake_openai.requests) == 2


def test_claim_of_a_request_that_died_is_taken_over_after_the_lease(
    api: TestClient, fake_openai: FakeOpenAI, clock: Clock
) -> None:
    # A request claimed the key and then its container died: nothing completes or frees it.
    caller = f"key-{key_digest(CLIENT_API_KEY)}"
    request = ChatRequest(message="Hello")
    get_session_store().claim(new_claim(caller, "retry-1", request, clock.now))
    assert post(api, {"message": "Hello"}).status_code == 409

    clock.advance(CLAIM_LEASE_SECONDS)
    response = post(api, {"message": "Hello"})

    assert response.status_code == 200
    assert len(fake_openai.requests) == 1


def test_malformed_key_is_400(api: TestClient, fake_openai: FakeOpenAI) -> None:
    for key in ["has space", "x" * 256, "tab\tkey"]:
        response = post(api, {"message": "Hello"}, key=key)

        assert response.status_code == 400, key
        assert response.json()["detail"] == [
            {"field": "Idempotency-Key", "message": "must be 1 to 255 visible ASCII characters"}
        ]
    assert fake_openai.requests == []
