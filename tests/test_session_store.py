"""The two stores behind one interface: ordering under races, ownership, expiry, idempotency."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError

from chat_api.exceptions import IdempotencyKeyInUse, SessionNotFound, StoreUnavailable
from chat_api.store.base import (
    ClaimedResponse,
    IdempotencyClaim,
    IdempotencyRecord,
    Message,
    NewMessages,
    Session,
    SessionStore,
)
from chat_api.store.dynamodb import DynamoDBSessionStore
from chat_api.store.rules import CLAIM_LEASE_SECONDS
from chat_api.store.sqlite import SQLiteSessionStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NOW = 1_800_000_000.0
OWNER = "key-a"
SESSION = Session(id="S" * 22, owner=OWNER, created_at=NOW, expires_at=NOW + 3600)


def pair(text: str) -> list[Message]:
    """One turn: the user's message and the answer."""
    return [Message("user", text, NOW), Message("assistant", f"re: {text}", NOW)]


def contents(store: SessionStore, session: Session = SESSION) -> list[str]:
    conversation = store.load(session.id, session.owner, NOW)
    assert conversation is not None
    return [message.content for message in conversation.messages]


def claim_at(when: float, holder: str = "first") -> IdempotencyClaim:
    """A claim on the same key and body, made at `when` by the request called `holder`."""
    return IdempotencyClaim(
        record_id="record",
        fingerprint="body-1",
        token=holder,
        claimed_at=when,
        expires_at=when + 3600,
    )


@pytest.fixture
def started(store: SessionStore) -> SessionStore:
    """A store holding SESSION with its first turn."""
    store.append(NewMessages(SESSION, pair("zero"), create=True), now=NOW)
    return store


class HookedClient:
    """The (moto) DynamoDB client, with a function run before the next call of an operation."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.hooks: dict[str, list[Callable[[], None]]] = {}
        self.calls: list[str] = []

    def before(self, operation: str, hook: Callable[[], None]) -> None:
        self.hooks.setdefault(operation, []).append(hook)

    def __getattr__(self, operation: str) -> Any:
        method = getattr(self.client, operation)

        def call(**kwargs: Any) -> Any:
            self.calls.append(operation)
            hooks = self.hooks.get(operation)
            if hooks:
                hooks.pop(0)()
            return method(**kwargs)

        return call


def cancelled(*codes: str) -> ClientError:
    """The error DynamoDB raises when it cancels a transaction, with a reason per write."""
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": code} for code in codes],
        },
        "TransactWriteItems",
    )


def raise_(error: Exception) -> Callable[[], None]:
    def hook() -> None:
        raise error

    return hook


@pytest.fixture
def hooked(sessions_table: str) -> tuple[HookedClient, DynamoDBSessionStore]:
    """A DynamoDB store (moto) holding SESSION, whose client calls a test can interleave with."""
    client = HookedClient(boto3.client("dynamodb"))
    store = DynamoDBSessionStore(cast("DynamoDBClient", client), sessions_table)
    store.append(NewMessages(SESSION, pair("zero"), create=True), now=NOW)
    client.calls.clear()
    return client, store


def test_turns_appended_after_stale_loads_are_both_kept(started: SessionStore) -> None:
    # Both turns read the conversation before either is written, as concurrent requests do.
    seen_by_a = started.load(SESSION.id, OWNER, NOW)
    seen_by_b = started.load(SESSION.id, OWNER, NOW)
    assert seen_by_a == seen_by_b

    started.append(NewMessages(SESSION, pair("b")), now=NOW)
    started.append(NewMessages(SESSION, pair("a")), now=NOW)

    assert contents(started) == ["zero", "re: zero", "b", "re: b", "a", "re: a"]


def test_dynamodb_turns_take_positions_no_other_turn_can_get(
    hooked: tuple[HookedClient, DynamoDBSessionStore],
) -> None:
    client, store = hooked
    # A takes its positions, then B's whole turn commits before A's messages are written.
    client.before(
        "transact_write_items",
        lambda: store.append(NewMessages(SESSION, pair("b")), now=NOW),
    )

    store.append(NewMessages(SESSION, pair("a")), now=NOW)

    # In the order the positions were handed out, and neither turn had to try again.
    assert contents(store) == ["zero", "re: zero", "a", "re: a", "b", "re: b"]
    assert client.calls.count("transact_write_items") == 2


class SlowSerialClient:
    """The moto client as DynamoDB behaves under load: one call at a time, 10 ms each."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lock = threading.Lock()

    def __getattr__(self, operation: str) -> Any:
        method = getattr(self.client, operation)

        def call(**kwargs: Any) -> Any:
            with self.lock:
                time.sleep(0.01)
                return method(**kwargs)

        return call


def test_dynamodb_keeps_every_one_of_twenty_concurrent_turns_in_pairs(sessions_table: str) -> None:
    client = SlowSerialClient(boto3.client("dynamodb"))
    store = DynamoDBSessionStore(cast("DynamoDBClient", client), sessions_table)
    store.append(NewMessages(SESSION, pair("zero"), create=True), now=NOW)

    with ThreadPoolExecutor(max_workers=20) as pool:
        turns = [
            pool.submit(store.append, NewMessages(SESSION, pair(f"t{i}")), NOW) for i in range(20)
        ]
        errors = [turn.exception() for turn in turns]

    assert errors == [None] * 20
    stored = contents(store)[2:]
    assert len(stored) == 40
    assert sorted(stored[0::2]) == sorted(f"t{i}" for i in range(20))
    assert all(
        answer == f"re: {question}"
        for question, answer in zip(stored[0::2], stored[1::2], strict=True)
    )


def test_dynamodb_retries_a_transaction_cancelled_by_a_conflict(
    hooked: tuple[HookedClient, DynamoDBSessionStore],
) -> None:
    client, store = hooked
    conflict = cancelled("TransactionConflict", "None", "None")
    client.before("transact_write_items", raise_(conflict))
    client.before("transact_write_items", raise_(conflict))

    store.append(NewMessages(SESSION, pair("a")), now=NOW)

    assert contents(store) == ["zero", "re: zero", "a", "re: a"]


def test_dynamodb_gives_up_with_store_unavailable_under_endless_conflicts(
    hooked: tuple[HookedClient, DynamoDBSessionStore],
) -> None:
    client, store = hooked
    for _ in range(20):
        client.before("transact_write_items", raise_(cancelled("TransactionConflict")))

    with pytest.raises(StoreUnavailable):
        store.append(NewMessages(SESSION, pair("a")), now=NOW)


@pytest.mark.parametrize(
    ("operation", "code"),
    [
        ("query", "ProvisionedThroughputExceededException"),
        ("query", "ThrottlingException"),
        ("get_item", "InternalServerError"),
        ("put_item", "RequestLimitExceeded"),
    ],
)
def test_dynamodb_errors_become_store_unavailable(
    hooked: tuple[HookedClient, DynamoDBSessionStore], operation: str, code: str
) -> None:
    client, store = hooked
    client.before(operation, raise_(ClientError({"Error": {"Code": code}}, operation)))
    calls: dict[str, Callable[[], object]] = {
        "query": lambda: store.load(SESSION.id, OWNER, NOW),
        "get_item": lambda: store.delete(SESSION.id, OWNER, NOW),
        "put_item": lambda: store.claim(claim_at(NOW)),
    }

    with pytest.raises(StoreUnavailable):
        calls[operation]()


@pytest.mark.usefixtures("sessions_table")
def test_dynamodb_missing_table_is_store_unavailable() -> None:
    store = DynamoDBSessionStore(boto3.client("dynamodb"), "no-such-table")

    with pytest.raises(StoreUnavailable):
        store.load(SESSION.id, OWNER, NOW)


def test_sqlite_locked_database_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    store = SQLiteSessionStore(path, busy_timeout_seconds=0.01)
    holder = sqlite3.connect(path, autocommit=True)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable):
            store.append(NewMessages(SESSION, pair("a"), create=True), now=NOW)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_sqlite_store_works_again_once_the_lock_is_released(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    store = SQLiteSessionStore(path, busy_timeout_seconds=0.01)
    holder = sqlite3.connect(path, autocommit=True)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreUnavailable):
        store.append(NewMessages(SESSION, pair("a"), create=True), now=NOW)
    holder.execute("ROLLBACK")
    holder.close()

    store.append(NewMessages(SESSION, pair("a"), create=True), now=NOW)

    assert store.load(SESSION.id, OWNER, NOW) is not None


def test_sqlite_turn_is_committed_for_every_other_thread_and_process(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    store = SQLiteSessionStore(path)
    with ThreadPoolExecutor(max_workers=1) as writer:
        writer.submit(store.append, NewMessages(SESSION, pair("a"), create=True), NOW).result()

    loaded = store.load(SESSION.id, OWNER, NOW)
    with closing(sqlite3.connect(path)) as other:
        [(count,)] = other.execute("SELECT count(*) FROM messages").fetchall()

    assert loaded is not None
    assert [m.content for m in loaded.messages] == ["a", "re: a"]
    assert count == 2


def test_sqlite_unopenable_file_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the data folder should be")

    with pytest.raises(StoreUnavailable):
        SQLiteSessionStore(tmp_path / "taken" / "sessions.sqlite3")


def test_newest_loads_only_the_latest_messages_in_order(started: SessionStore) -> None:
    started.append(NewMessages(SESSION, pair("one")), now=NOW)
    started.append(NewMessages(SESSION, pair("two")), now=NOW)

    conversation = started.load(SESSION.id, OWNER, NOW, newest=3)
    assert conversation is not None
    assert [m.content for m in conversation.messages] == ["re: one", "two", "re: two"]
    empty = started.load(SESSION.id, OWNER, NOW, newest=0)
    assert empty is not None
    assert empty.messages == []


def test_another_owner_can_neither_read_append_nor_delete(started: SessionStore) -> None:
    intruder = Session(SESSION.id, "key-b", SESSION.created_at, SESSION.expires_at)

    assert started.load(SESSION.id, "key-b", NOW) is None
    assert started.load(SESSION.id, "", NOW) is None
    with pytest.raises(SessionNotFound):
        started.append(NewMessages(intruder, pair("x")), now=NOW)
    assert started.delete(SESSION.id, "key-b", NOW) is False
    assert contents(started) == ["zero", "re: zero"]


def test_expired_session_is_neither_loaded_nor_appended_to(started: SessionStore) -> None:
    assert started.load(SESSION.id, OWNER, SESSION.expires_at) is None
    with pytest.raises(SessionNotFound):
        started.append(NewMessages(SESSION, pair("late")), now=SESSION.expires_at)


def test_deleted_session_cannot_be_appended_to(started: SessionStore) -> None:
    assert started.delete(SESSION.id, OWNER, NOW) is True

    assert started.load(SESSION.id, OWNER, NOW) is None
    with pytest.raises(SessionNotFound):
        started.append(NewMessages(SESSION, pair("late")), now=NOW)


def test_delete_removes_every_message(store: SessionStore) -> None:
    store.append(
        NewMessages(SESSION, [m for i in range(30) for m in pair(str(i))], create=True), now=NOW
    )

    assert store.delete(SESSION.id, OWNER, NOW) is True

    # Recreating the id finds nothing left behind.
    store.append(NewMessages(SESSION, pair("fresh"), create=True), now=NOW)
    assert contents(store) == ["fresh", "re: fresh"]


def test_claim_is_taken_once_then_shows_who_holds_it(store: SessionStore) -> None:
    assert store.claim(claim_at(NOW)) is None

    held = store.claim(claim_at(NOW + 1, holder="second"))

    assert held == IdempotencyRecord(
        fingerprint="body-1", response=None, token="first", claimed_at=NOW, expires_at=NOW + 3600
    )


def test_completed_claim_returns_the_stored_response(store: SessionStore) -> None:
    first = claim_at(NOW)
    store.claim(first)

    store.append(
        NewMessages(
            SESSION, pair("a"), create=True, claimed_response=ClaimedResponse(first, '{"r": 1}')
        ),
        now=NOW,
    )

    assert store.claim(claim_at(NOW + 1, holder="retry")) == IdempotencyRecord(
        "body-1", '{"r": 1}', token="first", claimed_at=NOW, expires_at=NOW + 3600
    )
    # Completed answers are kept past the lease, until the record expires.
    assert store.claim(claim_at(NOW + CLAIM_LEASE_SECONDS + 1, holder="late")) is not None
    assert store.claim(claim_at(first.expires_at, holder="expired")) is None


def test_released_claim_can_be_taken_again(store: SessionStore) -> None:
    first = claim_at(NOW)
    store.claim(first)

    store.release(first)

    assert store.claim(claim_at(NOW + 1, holder="retry")) is None


def test_abandoned_claim_is_taken_over_after_the_lease(store: SessionStore) -> None:
    store.claim(claim_at(NOW))

    assert store.claim(claim_at(NOW + CLAIM_LEASE_SECONDS - 1, holder="early")) is not None
    assert store.claim(claim_at(NOW + CLAIM_LEASE_SECONDS, holder="takeover")) is None


def test_a_lost_claim_stores_nothing_and_cannot_release_the_new_one(store: SessionStore) -> None:
    first = claim_at(NOW)
    store.claim(first)
    takeover = claim_at(NOW + CLAIM_LEASE_SECONDS, holder="takeover")
    store.claim(takeover)

    with pytest.raises(IdempotencyKeyInUse):
        store.append(
            NewMessages(
                SESSION, pair("a"), create=True, claimed_response=ClaimedResponse(first, "{}")
            ),
            now=NOW,
        )
    store.release(first)

    assert store.load(SESSION.id, OWNER, NOW) is None
    assert store.claim(claim_at(NOW + CLAIM_LEASE_SECONDS + 1, holder="third")) is not None


def test_deleting_a_session_forgets_its_turns_idempotent_answers(store: SessionStore) -> None:
    first = claim_at(NOW)
    store.claim(first)
    store.append(
        NewMessages(SESSION, pair("a"), create=True, claimed_response=ClaimedResponse(first, "{}")),
        now=NOW,
    )
    second = IdempotencyClaim("record-2", "body-2", "first", NOW, NOW + 3600)
    store.claim(second)
    store.append(
        NewMessages(SESSION, pair("b"), claimed_response=ClaimedResponse(second, "{}")), now=NOW
    )

    assert store.delete(SESSION.id, OWNER, NOW)

    assert store.claim(claim_at(NOW + 1, holder="replay")) is None
    assert (
        store.claim(IdempotencyClaim("record-2", "body-2", "replay", NOW + 1, NOW + 3600)) is None
    )


def test_an_answer_is_forgotten_when_its_session_expires(store: SessionStore) -> None:
    short = Session(id="T" * 22, owner=OWNER, created_at=NOW, expires_at=NOW + 600)
    first = claim_at(NOW)  # kept for an hour, longer than the session's ten minutes
    store.claim(first)
    store.append(
        NewMessages(short, pair("a"), create=True, claimed_response=ClaimedResponse(first, "{}")),
        now=NOW,
    )

    assert store.claim(claim_at(NOW + 599, holder="before")) is not None
    assert store.claim(claim_at(NOW + 600, holder="after")) is None


def test_pages_go_through_the_conversation_in_order(started: SessionStore) -> None:
    for text in ("a", "b", "c"):
        started.append(NewMessages(SESSION, pair(text)), now=NOW)

    first = started.page(SESSION.id, OWNER, NOW, after=None, limit=3)
    assert first is not None
    assert [m.content for m in first.messages] == ["zero", "re: zero", "a"]
    assert first.more
    second = started.page(SESSION.id, OWNER, NOW, after=first.positions[-1], limit=3)
    assert second is not None
    assert [m.content for m in second.messages] == ["re: a", "b", "re: b"]
    last = started.page(SESSION.id, OWNER, NOW, after=second.positions[-1], limit=3)
    assert last is not None
    assert [m.content for m in last.messages] == ["c", "re: c"]
    assert not last.more
    assert started.page(SESSION.id, "key-b", NOW, after=None, limit=3) is None


def test_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private" / "sessions.sqlite3"
    store = SQLiteSessionStore(path)
    store.append(NewMessages(SESSION, pair("secret"), create=True), now=NOW)

    for file in [path, *tmp_path.glob("private/sessions.sqlite3-*")]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_sqlite_file_made_by_an_older_version_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    path.touch(mode=0o644)

    SQLiteSessionStore(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
