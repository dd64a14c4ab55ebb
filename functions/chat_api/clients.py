"""Clients created once per warm container, lazily, and injected with `Depends`."""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING

from openai import AsyncOpenAI

from chat_api.config import get_settings
from chat_api.services.api_key import OpenAIKeySource

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from chat_api.sessions.store import SessionStore


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
def get_key_source() -> OpenAIKeySource:
    """Where the OpenAI key comes from, with its cache."""
    return OpenAIKeySource(get_settings(), secrets_client_factory=get_secrets_client)


@cache
def get_openai_client() -> AsyncOpenAI:
    """The OpenAI client; `services.upstream` sets key, timeout and retries per attempt."""
    settings = get_settings()
    return AsyncOpenAI(
        api_key=get_key_source(),
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_seconds,
        # Retries are owned by services.upstream, which knows the request's deadline.
        max_retries=0,
    )


async def openai_client_dependency() -> AsyncOpenAI:
    """`get_openai_client` for `Depends`: a coroutine, so FastAPI needs no worker thread."""
    return get_openai_client()


async def key_source_dependency() -> OpenAIKeySource:
    """`get_key_source` for `Depends`: a coroutine, so FastAPI needs no worker thread."""
    return get_key_source()


@cache
def get_dynamodb_client() -> DynamoDBClient:
    """DynamoDB client for the session store; boto3 is imported only when a table is set."""
    import boto3  # deferred: boto3 costs cold-start time

    # Three attempts ride out a throttled request; past them the client gets a 503.
    return boto3.client("dynamodb", config=_aws_config(max_attempts=3))


@cache
def get_session_store() -> SessionStore:
    """DynamoDB when SESSIONS_TABLE is set (on AWS), else the SQLite file (local runs)."""
    settings = get_settings()
    if settings.sessions_table:
        from chat_api.sessions.dynamodb import DynamoDBSessionStore

        return DynamoDBSessionStore(get_dynamodb_client(), settings.sessions_table)
    from chat_api.sessions.sqlite import SQLiteSessionStore

    return SQLiteSessionStore(settings.sessions_db_path)


async def session_store_dependency() -> SessionStore:
    """`get_session_store` for `Depends`: a coroutine, so FastAPI needs no worker thread."""
    return get_session_store()


async def close_openai_client() -> None:
    """Close the OpenAI client's connections, if one was made (server shutdown)."""
    if get_openai_client.cache_info().currsize:
        await get_openai_client().close()
        get_openai_client.cache_clear()
