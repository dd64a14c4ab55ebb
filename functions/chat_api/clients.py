"""Clients created once per warm container, lazily; `deps` injects them with `Depends`."""

from __future__ import annotations

import logging
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from openai import AsyncOpenAI

from chat_api.config import get_settings
from chat_api.keys import KeySource

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from chat_api.store.base import BudgetStore, SessionStore
    from chat_api.store.dynamodb import DynamoDBSessionStore
    from chat_api.store.sqlite import SQLiteSessionStore


def _aws_config(max_attempts: int) -> Config:
    """Short timeouts and few retries: AWS calls run inside the request's deadline.

    botocore logs response bodies at DEBUG, and these hold the OpenAI key and conversation
    text: even with LOG_LEVEL=DEBUG (or AWS_LAMBDA_LOG_LEVEL) those records are never written.
    """
    from botocore.config import Config

    logging.getLogger("botocore").setLevel(logging.INFO)
    return Config(
        connect_timeout=2,
        read_timeout=3,
        retries={"max_attempts": max_attempts, "mode": "standard"},
    )


@cache
def get_secrets_client() -> SecretsManagerClient:
    """Secrets Manager client; boto3 is imported only when a secret is configured."""
    import boto3  # deferred: boto3 costs cold-start time

    # A failed fetch is answered with 503 and backed off (OpenAIKeySource), not waited out.
    return boto3.client("secretsmanager", config=_aws_config(max_attempts=2))


@cache
def get_key_source() -> KeySource:
    """Where the OpenAI key and the client keys come from, with its cache."""
    return KeySource(get_settings(), secrets_client_factory=get_secrets_client)


@cache
def get_openai_client() -> AsyncOpenAI:
    """The OpenAI client; `services.upstream` sets its key and owns timeouts and retries."""
    settings = get_settings()
    return AsyncOpenAI(
        api_key=get_key_source(),
        base_url=settings.openai_base_url,
        # No timeout of the SDK's own: `services.upstream` bounds the wait for the first byte
        # and `services.relay` each gap between chunks, both within the request's deadline.
        timeout=None,
        # Retries are owned by services.upstream, which knows the request's deadline.
        max_retries=0,
    )


@lru_cache(maxsize=4)
def get_openai_client_for_key(key: str) -> AsyncOpenAI:
    """The OpenAI client sending `key`, made once per key and shared by every attempt using it.

    A copy per attempt cost more than the rest of the service's warm overhead. The copy shares
    the client's connection pool; `asyncio.timeout` around the call cuts the attempt.
    """
    return get_openai_client().with_options(api_key=key, max_retries=0)


@cache
def get_dynamodb_client() -> DynamoDBClient:
    """DynamoDB client for the session store; boto3 is imported only when a table is set."""
    import boto3  # deferred: boto3 costs cold-start time

    # Three attempts ride out a throttled request; past them the client gets a 503.
    return boto3.client("dynamodb", config=_aws_config(max_attempts=3))


@cache
def get_session_store() -> SessionStore:
    """DynamoDB when SESSIONS_TABLE is set (on AWS), else the SQLite file (local runs)."""
    return _make_store()


@cache
def get_budget_store() -> BudgetStore:
    """Token budgets, stored where the conversations are (the same table or file)."""
    return _make_store()


def _make_store() -> DynamoDBSessionStore | SQLiteSessionStore:
    settings = get_settings()
    if settings.sessions_table:
        from chat_api.store.dynamodb import DynamoDBSessionStore

        return DynamoDBSessionStore(get_dynamodb_client(), settings.sessions_table)
    from chat_api.store.sqlite import SQLiteSessionStore

    return SQLiteSessionStore(settings.sessions_db_path)


async def close_openai_client() -> None:
    """Close the OpenAI client's connections, if one was made (server shutdown)."""
    if get_openai_client.cache_info().currsize:
        await get_openai_client().close()
    reset_clients()


def reset_clients() -> None:
    """Forget every client and the cached keys: the next use makes them anew from settings."""
    for factory in (
        get_openai_client,
        get_openai_client_for_key,
        get_key_source,
        get_secrets_client,
        get_dynamodb_client,
        get_session_store,
        get_budget_store,
    ):
        factory.cache_clear()
