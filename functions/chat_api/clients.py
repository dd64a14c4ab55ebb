"""Clients created once per warm container, lazily, and injected with `Depends`."""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING

from openai import AsyncOpenAI

from chat_api.config import get_settings
from chat_api.services.api_key import OpenAIKeySource

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


@cache
def get_secrets_client() -> SecretsManagerClient:
    """Secrets Manager client; boto3 is imported only when a secret is configured."""
    import boto3  # deferred: boto3 costs cold-start time
    from botocore.config import Config

    # botocore logs response bodies at DEBUG, and this one is the OpenAI key: even with
    # LOG_LEVEL=DEBUG (or AWS_LAMBDA_LOG_LEVEL) those records are never written.
    logging.getLogger("botocore").setLevel(logging.INFO)

    # Short timeouts and few retries: the fetch runs inside the request's deadline, and a
    # failure is answered with 503 and backed off (OpenAIKeySource) rather than waited out.
    config = Config(
        connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"}
    )
    return boto3.client("secretsmanager", config=config)


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


async def close_openai_client() -> None:
    """Close the OpenAI client's connections, if one was made (server shutdown)."""
    if get_openai_client.cache_info().currsize:
        await get_openai_client().close()
        get_openai_client.cache_clear()
