"""`POST /chat` with `"stream": true` on sessions, on SQLite and on DynamoDB (moto)."""

from __future__ import annotations

import httpx2
from fastapi.testclient import TestClient

from tests.conftest import events_of
from tests.fake_openai import FakeOpenAI, Reply, stream_of


def done_session_id(events: list[httpx2.ServerSentEvent]) -> str:
    """The session id in the closing `done` event."""
    assert events[-1].event == "done"
    done = events[-1].json()
    assert isinstance(done, dict)
    return str(done["session_id"])


def stored(api: TestClient, session_id: str) -> list[tuple[str, str]]:
    messages = api.get(f"/sessions/{session_id}").json()["messages"]
    return [(m["role"], m["content"]) for m in messages]


def test_streamed_turn_ends_with_the_session_id_and_is_stored(api: TestClient) -> None:
    events = events_of(api.post("/chat", json={"message": "Hi", "stream": True}))

    session_id = done_session_id(events)
    assert stored(api, session_id) == [("user", "Hi"), ("assistant", "Echo: Hi")]


def test_streamed_turn_continues_a_session_with_its_stored_context(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    session_id = api.post("/chat", json={"message": "one"}).json()["session_id"]

    events = events_of(
        api.post("/chat", json={"message": "two", "session_id": session_id, "stream": True})
    )

    assert done_session_id(events) == session_id
    assert [m["content"] for m in fake_openai.requests[-1].json["messages"][1:]] == [
        "one",
        "Echo: one",
        "two",
    ]
    assert stored(api, session_id)[2:] == [("user", "two"), ("assistant", "Echo: two")]


def test_stream_broken_off_midway_stores_nothing(api: TestClient, fake_openai: FakeOpenAI) -> None:
    session_id = api.post("/chat", json={"message": "one"}).json()["session_id"]
    fake_openai.enqueue(Reply(stream=stream_of("never finished"), break_after=2))

    events = events_of(
        api.post("/chat", json={"message": "two", "session_id": session_id, "stream": True})
    )

    assert events[-1].event == "error"
    assert stored(api, session_id) == [("user", "one"), ("assistant", "Echo: one")]


def test_repeated_streamed_request_replays_the_stored_answer_as_a_stream(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    body = {"message": "Hi", "stream": True}
    headers = {"Idempotency-Key": "stream-1"}

    first = api.post("/chat", json=body, headers=headers)
    again = api.post("/chat", json=body, headers=headers)

    replayed = events_of(again)
    assert [e.event for e in replayed] == ["delta", "done"]
    assert replayed[0].json() == {"text": "Echo: Hi"}
    assert replayed[-1].json() == events_of(first)[-1].json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(fake_openai.requests) == 1


def test_key_is_freed_when_the_stream_breaks_so_the_retry_runs(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of("never finished"), break_after=2))
    body = {"message": "Hi", "stream": True}
    headers = {"Idempotency-Key": "stream-2"}

    broken = events_of(api.post("/chat", json=body, headers=headers))
    retried = events_of(api.post("/chat", json=body, headers=headers))

    assert broken[-1].event == "error"
    assert retried[-1].event == "done"
    assert len(fake_openai.requests) == 2
