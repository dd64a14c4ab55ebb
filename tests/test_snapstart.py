"""SnapStart: what a restored container must not share is dropped after each restore."""

from __future__ import annotations

import random
import sys
import types
from collections.abc import Callable
from types import ModuleType

import pytest

from chat_api.clients import (
    get_dynamodb_client,
    get_key_source,
    get_openai_client,
    get_openai_client_for_key,
    get_secrets_client,
    get_session_store,
)
from chat_api.snapstart import reset_after_restore
from tests.conftest import Configure, body_of, load_event
from tests.lambda_context import LambdaContext


def test_restore_drops_the_openai_client_and_the_cached_key(configure: Configure) -> None:
    configure(OPENAI_API_KEY="sk-test")
    snapshotted = (get_openai_client(), get_key_source())

    reset_after_restore()

    restored = (get_openai_client(), get_key_source())
    assert restored[0] is not snapshotted[0]
    assert restored[1] is not snapshotted[1]


def test_restore_drops_the_key_bound_openai_clients(configure: Configure) -> None:
    configure(OPENAI_API_KEY="sk-test")
    snapshotted = get_openai_client_for_key("sk-test")
    assert get_openai_client_for_key("sk-test") is snapshotted  # one per key, while warm

    reset_after_restore()

    assert get_openai_client_for_key("sk-test") is not snapshotted


def test_restore_drops_the_aws_clients_and_the_session_store(configure: Configure) -> None:
    configure(SESSIONS_TABLE="chat-sessions")
    snapshotted = (get_secrets_client(), get_dynamodb_client(), get_session_store())

    reset_after_restore()

    restored = (get_secrets_client(), get_dynamodb_client(), get_session_store())
    assert all(new is not old for new, old in zip(restored, snapshotted, strict=True))


def test_restore_reseeds_random() -> None:
    # Containers resumed from one snapshot would otherwise draw the same numbers.
    random.seed(1234)
    snapshotted = random.getstate()

    reset_after_restore()

    assert random.getstate() != snapshotted


def test_handler_registers_the_restore_hook_with_the_lambda_runtime(
    monkeypatch: pytest.MonkeyPatch, import_handler: Callable[[], ModuleType]
) -> None:
    registered: list[Callable[[], None]] = []
    runtime_library = types.ModuleType("snapshot_restore_py")
    runtime_library.register_after_restore = registered.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime_library)

    import_handler()

    assert registered == [reset_after_restore]


def test_handler_imports_without_the_lambda_runtime_library(
    monkeypatch: pytest.MonkeyPatch, import_handler: Callable[[], ModuleType]
) -> None:
    # A None entry makes the import fail as it does anywhere but on Lambda.
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)

    handler = import_handler().handler

    response = handler(load_event("health.json"), LambdaContext())
    assert (response["statusCode"], body_of(response)) == (200, {"status": "ok"})
