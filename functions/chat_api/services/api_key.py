"""The OpenAI key: from the environment, or from AWS Secrets Manager with a cache."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from chat_api.config import Settings

KEY_FIELD = "OPENAI_API_KEY"

logger = logging.getLogger(__name__)


# After Secrets Manager fails, requests answer 503 at once for this long (doubling to the cap)
# instead of each one asking again: a throttled API is not hammered back into throttling.
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0


class OpenAIKeyUnavailable(Exception):
    """No usable OpenAI key: none is configured, or its secret cannot be read."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIKeySource:
    """Async callable that gives the OpenAI key for the next request.

    `OPENAI_API_KEY` wins when set. Otherwise the secret named by `OPENAI_API_KEY_SECRET_ID`
    is fetched once and reused for `SECRET_CACHE_TTL_SECONDS`; a failed refresh keeps using the
    previous key, and a failed first fetch is retried after a growing back-off.
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
        self._failures = 0
        self._retry_at = 0.0
        # One fetch at a time: concurrent requests of a cold container wait for the same answer.
        self._fetching = asyncio.Lock()

    @property
    def from_secret(self) -> bool:
        """Whether the key comes from Secrets Manager (and so can be rotated there)."""
        return self._settings.openai_api_key is None and bool(
            self._settings.openai_api_key_secret_id
        )

    async def __call__(self) -> str:
        if self._settings.openai_api_key is not None:
            return self._settings.openai_api_key.get_secret_value()
        if not self._settings.openai_api_key_secret_id:
            raise OpenAIKeyUnavailable(
                "No OpenAI API key is configured: set OPENAI_API_KEY, or "
                "OPENAI_API_KEY_SECRET_ID to a Secrets Manager secret that holds the key."
            )
        if self._cached_key is not None and not self._is_stale():
            return self._cached_key
        async with self._fetching:
            if self._cached_key is not None and not self._is_stale():
                return self._cached_key  # another request fetched it while this one waited
            return await self._refresh()

    def invalidate(self, rejected_key: str) -> None:
        """Forget the cached key if it is the one OpenAI rejected, so the next call refetches."""
        if self._cached_key == rejected_key:
            self._cached_key = None

    def _is_stale(self) -> bool:
        return self._clock() - self._cached_at >= self._settings.secret_cache_ttl_seconds

    async def _refresh(self) -> str:
        wait = self._retry_at - self._clock()
        if wait > 0:
            if self._cached_key is not None:
                return self._cached_key
            raise OpenAIKeyUnavailable(_UNREADABLE, retry_after=wait)
        try:
            # boto3 is synchronous: keep the event loop free while it waits.
            key = await asyncio.to_thread(self._fetch_secret)
        except OpenAIKeyUnavailable as exc:
            backoff = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2**self._failures)
            self._failures += 1
            self._retry_at = self._clock() + backoff
            if self._cached_key is not None:
                # A key that worked until now beats a 503 while Secrets Manager is down.
                logger.warning("Secrets Manager refresh failed; keeping the cached OpenAI key")
                return self._cached_key
            exc.retry_after = backoff
            raise
        self._cached_key, self._cached_at = key, self._clock()
        self._failures, self._retry_at = 0, 0.0
        return key

    def _fetch_secret(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError  # AWS path only

        secret_id = self._settings.openai_api_key_secret_id
        try:
            secret = self._secrets_client_factory().get_secret_value(SecretId=str(secret_id))
        except (BotoCoreError, ClientError) as exc:
            raise OpenAIKeyUnavailable(_UNREADABLE) from exc
        key = _key_from_secret_string(secret.get("SecretString", ""))
        if not key:
            raise OpenAIKeyUnavailable(
                "The Secrets Manager secret holds no OpenAI API key: store the key itself, "
                f'or JSON with an "{KEY_FIELD}" field.'
            )
        return key


_UNREADABLE = (
    "The OpenAI API key could not be read from Secrets Manager "
    "(check OPENAI_API_KEY_SECRET_ID and the function's permissions)."
)


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
