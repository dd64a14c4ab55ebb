"""The OpenAI key: from the environment, or from AWS Secrets Manager with a cache."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from chat_api.config import Settings

KEY_FIELD = "OPENAI_API_KEY"


class OpenAIKeyUnavailable(Exception):
    """No usable OpenAI key: none is configured, or its secret cannot be read."""


class OpenAIKeySource:
    """Async callable the OpenAI client asks for the key before each request.

    `OPENAI_API_KEY` wins when set. Otherwise the secret named by `OPENAI_API_KEY_SECRET_ID`
    is fetched once and reused for `SECRET_CACHE_TTL_SECONDS`.
    """

    def __init__(
        self,
        settings: Settings,
        secrets_client_factory: Callable[[], SecretsManagerClient],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._secrets_client_factory = secrets_client_factory
        self._clock = clock
        self._cached_key: str | None = None
        self._cached_at = 0.0

    async def __call__(self) -> str:
        if self._settings.openai_api_key is not None:
            return self._settings.openai_api_key.get_secret_value()
        if not self._settings.openai_api_key_secret_id:
            raise OpenAIKeyUnavailable(
                "No OpenAI API key is configured: set OPENAI_API_KEY, or "
                "OPENAI_API_KEY_SECRET_ID to a Secrets Manager secret that holds the key."
            )
        if self._cached_key is None or self._is_stale():
            # boto3 is synchronous: keep the event loop free while it waits.
            self._cached_key = await asyncio.to_thread(self._fetch_secret)
            self._cached_at = self._clock()
        return self._cached_key

    def invalidate(self) -> None:
        """Forget the cached key, so the next request reads the secret again."""
        self._cached_key = None

    def _is_stale(self) -> bool:
        return self._clock() - self._cached_at >= self._settings.secret_cache_ttl_seconds

    def _fetch_secret(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError  # AWS path only

        secret_id = self._settings.openai_api_key_secret_id
        try:
            secret = self._secrets_client_factory().get_secret_value(SecretId=str(secret_id))
        except (BotoCoreError, ClientError) as exc:
            raise OpenAIKeyUnavailable(
                "The OpenAI API key could not be read from Secrets Manager "
                "(check OPENAI_API_KEY_SECRET_ID and the function's permissions)."
            ) from exc
        key = _key_from_secret_string(secret.get("SecretString", ""))
        if not key:
            raise OpenAIKeyUnavailable(
                "The Secrets Manager secret holds no OpenAI API key: store the key itself, "
                f'or JSON with an "{KEY_FIELD}" field.'
            )
        return key


def _key_from_secret_string(secret_string: str) -> str:
    """The key stored plainly, or in the `OPENAI_API_KEY` field of a JSON secret."""
    text = secret_string.strip()
    if not text.startswith("{"):
        return text
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return ""
    value = document.get(KEY_FIELD) if isinstance(document, dict) else None
    return value.strip() if isinstance(value, str) else ""
