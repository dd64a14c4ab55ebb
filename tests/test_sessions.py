"""Server-side conversations over HTTP, each test run on SQLite and on DynamoDB (moto)."""

from __future__ import annotations

import re
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chat_api.deps import get_clock, session_store_dependency
from chat_api.main import create_app
from chat_api.store.base import SessionStore
from chat_api.store.sqlite import SQLiteSessionStore
from tests.conftest import AppClient, Clock, Configure, authorized_client
from tests.fake_openai import FakeOpenAI, Reply, error_body

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


class RecordingStore:
    """Wraps the real store and records every method called on it."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.store, name)


@pytest.fixture
def recording(api: TestClient, store: SessionStore) -> RecordingStore:
    """The app's store, wrapped to record every call the app makes on it."""
    recording = RecordingStore(store)
    api.app.dependency_overrides[session_store_dependency] = lambda: recording  # type: ignore[attr-defined]
    return recording


def start(api: TestClient, message: str = "My name is Ada.") -> str:
    """Open a session with one turn and return its id."""
    response = api.post("/chat", json={"message": message})
    assert response.status_code == 200, response.text
    session_id: str = response.json()["session_id"]
    return session_id


def turn(api: TestClient, session_id: str, message: str) -> dict[str, Any]:
    response = api.post("/chat", json={"message": message, "session_id": session_id})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stored(api: TestClient, session_id: str) -> list[tuple[str, str]]:
    response = api.get(f"/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"]) for m in response.json()["messages"]]


def test_chat_without_session_id_starts_one_and_returns_its_id(api: TestClient) -> None:
    response = api.post("/chat", json={"message": "Hello"})

    assert response.status_code == 200
    session_id = response.json()["session_id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", session_id)
    assert stored(api, session_id) == [("user", "Hello"), ("assistant", "Echo: Hello")]


def test_every_new_session_gets_a_different_id(api: TestClient) -> None:
    assert len({start(api) for _ in range(5)}) == 5


def test_chat_with_session_id_sends_the_stored_conversation(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    session_id = start(api, "My name is Ada.")

    body = turn(api, session_id, "What is my name?")

    assert body["session_id"] == session_id
    assert fake_openai.requests[-1].json["messages"] == [
        SYSTEM,
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Echo: My name is Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


def test_chat_with_client_history_is_answered_and_stores_nothing(
    api: TestClient, recording: RecordingStore, fake_openai: FakeOpenAI
) -> None:
    history = [
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Hello Ada."},
    ]

    response = api.post("/chat", json={"message": "Again?", "history": history})

    assert response.status_code == 200
    assert response.json()["response"] == "Echo: Again?"
    assert response.json()["session_id"] is None
    assert fake_openai.requests[-1].json["messages"][1:] == [
        *history,
        {"role": "user", "content": "Again?"},
    ]
    assert recording.calls == []


def test_client_history_with_an_idempotency_key_is_kept_as_a_session(api: TestClient) -> None:
    history = [
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Hello Ada."},
    ]

    response = api.post(
        "/chat",
        json={"message": "Again?", "history": history},
        headers={"Idempotency-Key": "retry-1"},
    )

    assert stored(api, response.json()["session_id"]) == [
        ("user", "I am Ada."),
        ("assistant", "Hello Ada."),
        ("user", "Again?"),
        ("assistant", "Echo: Again?"),
    ]


def test_store_false_answers_without_storing_a_session(
    api: TestClient, recording: RecordingStore
) -> None:
    response = api.post("/chat", json={"message": "Just once.", "store": False})

    assert response.status_code == 200
    assert response.json()["session_id"] is None
    assert recording.calls == []


def test_store_false_on_a_session_answers_from_it_without_adding_the_turn(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    session_id = start(api, "I am Ada.")

    response = api.post(
        "/chat", json={"message": "Who am I?", "session_id": session_id, "store": False}
    )

    assert response.json()["session_id"] == session_id
    assert fake_openai.requests[-1].json["messages"][1:] == [
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Echo: I am Ada."},
        {"role": "user", "content": "Who am I?"},
    ]
    assert stored(api, session_id) == [("user", "I am Ada."), ("assistant", "Echo: I am Ada.")]


def test_store_true_keeps_client_history_as_a_new_session(api: TestClient) -> None:
    history = [{"role": "user", "content": "I am Ada."}, {"role": "assistant", "content": "Hi."}]

    response = api.post("/chat", json={"message": "Again?", "history": history, "store": True})

    assert stored(api, response.json()["session_id"]) == [
        ("user", "I am Ada."),
        ("assistant", "Hi."),
        ("user", "Again?"),
        ("assistant", "Echo: Again?"),
    ]


def test_store_false_with_an_idempotency_key_is_400(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    response = api.post(
        "/chat",
        json={"message": "hi", "store": False},
        headers={"Idempotency-Key": "retry-1"},
    )

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]
    assert fake_openai.requests == []


def test_get_session_returns_messages_in_order_with_created_time(
    api: TestClient, clock: Clock
) -> None:
    session_id = start(api, "one")
    clock.advance(60)
    turn(api, session_id, "two")

    body = api.get(f"/sessions/{session_id}").json()

    assert body["session_id"] == session_id
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "one"),
        ("assistant", "Echo: one"),
        ("user", "two"),
        ("assistant", "Echo: two"),
    ]
    times = [datetime.fromisoformat(m["created_at"]).timestamp() for m in body["messages"]]
    assert times == [clock.now - 60] * 2 + [clock.now] * 2
    assert datetime.fromisoformat(body["created_at"]).timestamp() == clock.now - 60


def test_delete_session_is_204_and_the_session_is_gone(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    session_id = start(api)

    deleted = api.delete(f"/sessions/{session_id}")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert api.get(f"/sessions/{session_id}").status_code == 404
    assert api.delete(f"/sessions/{session_id}").status_code == 404
    calls = len(fake_openai.requests)
    again = api.post("/chat", json={"message": "still there?", "session_id": session_id})
    assert again.status_code == 404
    assert len(fake_openai.requests) == calls


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_session_id_is_404(api: TestClient, method: str) -> None:
    response = api.request(method, "/sessions/AAAAAAAAAAAAAAAAAAAAAA")

    assert response.status_code == 404
    assert response.json() == {"error": "No such session: it may have expired or been deleted."}


def test_chat_with_unknown_session_id_is_404_without_calling_openai(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    response = api.post("/chat", json={"message": "hi", "session_id": "A" * 22})

    assert response.status_code == 404
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    "session_id",
    ["short", "A" * 23, "A" * 21 + "/", "A" * 21 + "=", "' OR '1'='1' --", "é" * 22],
)
def test_malformed_session_id_is_400_and_never_reaches_the_store(
    api: TestClient, recording: RecordingStore, fake_openai: FakeOpenAI, session_id: str
) -> None:
    expected = {"field": "session_id", "message": "must be a session id returned by POST /chat"}

    responses = [
        api.get(f"/sessions/{session_id}"),
        api.delete(f"/sessions/{session_id}"),
        api.post("/chat", json={"message": "hi", "session_id": session_id}),
    ]

    for response in responses:
        assert response.status_code == 400, response.text
        assert response.json()["detail"] == [expected]
    assert recording.calls == []
    assert fake_openai.requests == []


def test_history_with_session_id_is_400_with_a_clear_message(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    session_id = start(api)
    calls = len(fake_openai.requests)

    response = api.post(
        "/chat",
        json={
            "message": "hi",
            "session_id": session_id,
            "history": [{"role": "user", "content": "earlier"}],
        },
    )

    assert response.status_code == 400
    assert response.json()["error"] == (
        "Invalid field 'session_id': cannot be sent with history: the session already holds "
        "the conversation (send history only when you keep the conversation yourself)"
    )
    assert len(fake_openai.requests) == calls


def test_expired_session_is_404(api: TestClient, configure: Configure, clock: Clock) -> None:
    session_id = start(api)
    clock.advance(86_400)

    assert api.get(f"/sessions/{session_id}").status_code == 404
    assert api.post("/chat", json={"message": "hi", "session_id": session_id}).status_code == 404
    assert api.delete(f"/sessions/{session_id}").status_code == 404


def test_session_lives_for_the_configured_ttl(
    fake_openai: FakeOpenAI, store_kind: str, configure: Configure, clock: Clock
) -> None:
    configure(SESSION_TTL_SECONDS="120")
    app = create_app()
    app.dependency_overrides[get_clock] = lambda: clock
    with authorized_client(app) as api:
        session_id = start(api)
        clock.advance(119)
        assert api.get(f"/sessions/{session_id}").status_code == 200
        clock.advance(1)
        assert api.get(f"/sessions/{session_id}").status_code == 404


def test_openai_failure_stores_nothing_and_the_turn_can_be_retried(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    session_id = start(api, "one")
    fake_openai.enqueue(Reply(status=500, body=error_body("boom", "server_error")))

    failed = api.post("/chat", json={"message": "two", "session_id": session_id})

    assert failed.status_code == 502
    assert stored(api, session_id) == [("user", "one"), ("assistant", "Echo: one")]
    turn(api, session_id, "two")
    assert stored(api, session_id)[2:] == [("user", "two"), ("assistant", "Echo: two")]


def test_openai_failure_on_a_first_message_creates_no_session(
    api: TestClient, recording: RecordingStore, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(status=500, body=error_body("boom", "server_error")))

    failed = api.post("/chat", json={"message": "one"})

    assert failed.status_code == 502
    assert failed.json() == {"error": "OpenAI returned an error (HTTP 500)."}
    assert recording.calls == []  # nothing was written, not even the user's message


def test_context_keeps_the_system_prompt_and_drops_the_oldest_messages_first(
    fake_openai: FakeOpenAI, store_kind: str, configure: Configure
) -> None:
    configure(CONTEXT_MAX_MESSAGES="3")
    with authorized_client() as api:
        session_id = start(api, "one")
        turn(api, session_id, "two")
        turn(api, session_id, "three")

        assert fake_openai.requests[-1].json["messages"] == [
            SYSTEM,
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "Echo: two"},
            {"role": "user", "content": "three"},
        ]
        assert len(stored(api, session_id)) == 6


def test_context_drops_the_oldest_messages_over_the_character_budget(
    fake_openai: FakeOpenAI, store_kind: str, configure: Configure
) -> None:
    configure(CONTEXT_MAX_CHARS="30")
    with authorized_client() as api:
        session_id = start(api, "a" * 10)  # stored with "Echo: aaaaaaaaaa" (16 characters)
        turn(api, session_id, "b" * 10)

        # 10 ("bbb...") + 16 ("Echo: aaa...") fit in 30; the 10 of "aaa..." would not.
        assert fake_openai.requests[-1].json["messages"] == [
            SYSTEM,
            {"role": "assistant", "content": "Echo: " + "a" * 10},
            {"role": "user", "content": "b" * 10},
        ]
        assert len(stored(api, session_id)) == 4


def test_concurrent_turns_on_one_session_are_all_stored_in_pairs(client: TestClient) -> None:
    # Real threads on SQLite (moto is not thread-safe: DynamoDB's races are pinned, step by
    # step, in test_session_store).
    session_id = start(client, "first")
    barrier = threading.Barrier(20)
    failures: list[str] = []

    def send(index: int) -> None:
        barrier.wait()
        response = client.post("/chat", json={"message": f"turn {index}", "session_id": session_id})
        if response.status_code != 200:
            failures.append(response.text)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    messages = stored(client, session_id)[2:]
    assert len(messages) == 40
    pairs = list(zip(messages[::2], messages[1::2], strict=True))
    assert all(
        user[0] == "user" and answer == ("assistant", f"Echo: {user[1]}") for user, answer in pairs
    )
    assert sorted(user[1] for user, _ in pairs) == sorted(f"turn {index}" for index in range(20))


STORE_DOWN = {"error": "Conversation storage is unavailable. Try again shortly."}


@pytest.mark.usefixtures("sessions_table")
def test_dynamodb_failure_is_a_503_json_not_a_500(
    fake_openai: FakeOpenAI, configure: Configure, app_client: AppClient
) -> None:
    configure(SESSIONS_TABLE="table-that-does-not-exist")

    with app_client() as api:
        responses = [
            api.post("/chat", json={"message": "hi"}),
            api.get(f"/sessions/{'A' * 22}"),
            api.delete(f"/sessions/{'A' * 22}"),
        ]

    for response in responses:
        assert response.status_code == 503
        assert response.json() == STORE_DOWN
        assert response.headers["retry-after"] == "1"


def test_locked_sqlite_is_a_503_json_not_a_500(
    fake_openai: FakeOpenAI, app_client: AppClient, tmp_path: Path
) -> None:
    path = tmp_path / "locked.sqlite3"
    store = SQLiteSessionStore(path, busy_timeout_seconds=0.01)
    # Another writer holds the lock past the busy timeout (readers still read, under WAL).
    holder = sqlite3.connect(path, autocommit=True)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with app_client() as api:
            api.app.dependency_overrides[session_store_dependency] = lambda: store  # type: ignore[attr-defined]
            responses = [
                api.post("/chat", json={"message": "hi"}),
                api.delete(f"/sessions/{'A' * 22}"),
            ]
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    for response in responses:
        assert response.status_code == 503
        assert response.json() == STORE_DOWN


def test_wrong_method_on_a_session_allows_both_of_its_methods(client: TestClient) -> None:
    # GET and DELETE are two routes on one path; the 405 names both.
    response = client.put(f"/sessions/{'A' * 22}")

    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"


def test_replaying_a_deleted_sessions_idempotency_key_runs_the_turn_afresh(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    key = {"Idempotency-Key": "delete-then-replay"}
    first = api.post("/chat", json={"message": "Hi"}, headers=key).json()
    assert api.delete(f"/sessions/{first['session_id']}").status_code == 204

    again = api.post("/chat", json={"message": "Hi"}, headers=key)

    # The stored answer went with its session: nothing of it is handed out again.
    assert again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["session_id"] != first["session_id"]
    assert len(fake_openai.requests) == 2


def test_get_session_pages_through_a_long_conversation(api: TestClient) -> None:
    session_id = api.post("/chat", json={"message": "m0"}).json()["session_id"]
    for n in range(1, 5):
        api.post("/chat", json={"message": f"m{n}", "session_id": session_id})

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = api.get(f"/sessions/{session_id}", params=params).json()
        assert len(page["messages"]) <= 3
        seen += [m["content"] for m in page["messages"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [text for n in range(5) for text in (f"m{n}", f"Echo: m{n}")]


@pytest.mark.parametrize("params", [{"cursor": "abc"}, {"limit": 0}, {"limit": 101}])
def test_get_session_with_a_bad_page_is_400(api: TestClient, params: dict[str, str | int]) -> None:
    session_id = api.post("/chat", json={"message": "Hi"}).json()["session_id"]

    response = api.get(f"/sessions/{session_id}", params=params)

    assert response.status_code == 400
    assert response.json()["detail"][0]["field"] in {"cursor", "limit"}


def test_a_page_holds_at_most_a_bounded_amount_of_text(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lambda answers at most 6 MB: a page stops before its text passes the bound.
    monkeypatch.setattr("chat_api.services.sessions.PAGE_MAX_CHARS", 25)
    session_id = api.post("/chat", json={"message": "twelve chars"}).json()["session_id"]

    page = api.get(f"/sessions/{session_id}").json()

    assert [m["content"] for m in page["messages"]] == ["twelve chars"]
    assert page["next_cursor"] is not None
    rest = api.get(f"/sessions/{session_id}", params={"cursor": page["next_cursor"]}).json()
    assert [m["content"] for m in rest["messages"]] == ["Echo: twelve chars"]
    assert rest["next_cursor"] is None
