"""Who created each stored response, in both stores (SQLite, and DynamoDB through moto)."""

from __future__ import annotations

from chat_api.store.base import OwnedResponse, SessionStore
from chat_api.store.rules import owns_response

NOW = 1_800_000_000.0


def test_a_recorded_response_belongs_to_its_creator_only(store: SessionStore) -> None:
    store.record_response(OwnedResponse("resp_1", "key-a", NOW + 60), NOW)

    record = store.response_owner("resp_1")

    assert owns_response(record, "key-a", NOW)
    assert not owns_response(record, "key-b", NOW)
    assert not owns_response(record, "key-a", NOW + 60)  # expired
    assert store.response_owner("resp_unknown") is None


def test_the_first_owner_stays(store: SessionStore) -> None:
    store.record_response(OwnedResponse("resp_1", "key-a", NOW + 60), NOW)
    store.record_response(OwnedResponse("resp_1", "key-b", NOW + 60), NOW)

    assert owns_response(store.response_owner("resp_1"), "key-a", NOW)


def test_a_forgotten_response_is_nobodys(store: SessionStore) -> None:
    store.record_response(OwnedResponse("resp_1", "key-a", NOW + 60), NOW)

    store.forget_response("resp_1")

    assert store.response_owner("resp_1") is None
