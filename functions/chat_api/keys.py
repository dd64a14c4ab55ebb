"""The service's keys: the OpenAI key and the client keys, from the environment or one secret.

Both may live in one Secrets Manager secret (JSON with `OPENAI_API_KEY` and `CLIENT_API_KEYS`
fields, and optionally `TOKEN_BUDGETS`: client key -> tokens per period); it is fetched once
and reused for `SECRET_CACHE_TTL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from chat_api.backoff import backoff_cap
from chat_api.caller import client_key_caller_id
from chat_api.exceptions import KeyUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from chat_api.config import Settings

KEY_FIELD = "OPENAI_API_KEY"
CLIENT_KEYS_FIELD = "CLIENT_API_KEYS"
BUDGETS_FIELD = "TOKEN_BUDGETS"

logger = logging.getLogger(__name__)


# After Secrets Manager fails, requests answer 503 at once for this long (doubling to the cap)
# instead of each one asking again: a throttled API is not hammered back into throttling.
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0


class SecretValues(NamedTuple):
    """What the secret holds; empty where it holds nothing."""

    openai_api_key: str
    client_api_keys: tuple[str, ...]
    # Per-caller token budgets, by caller id (`key-<digest>`), never by the key itself.
    token_budgets: dict[str, int]


class KeySource:
    """Async callable that gives the OpenAI key for the next request.

    `OPENAI_API_KEY` wins when set. Otherwise the secret named by `OPENAI_API_KEY_SECRET_ID`
    is fetched once and reused for `SECRET_CACHE_TTL_SECONDS`; a failed refresh keeps using the
    previous key, and a failed first fetch is retried after a growing back-off. The same
    cached secret also answers `client_api_keys()` when `CLIENT_API_KEYS` is not set.
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
        self._cached: SecretValues | None = None
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
            raise KeyUnavailable(
                "No OpenAI API key is configured: set OPENAI_API_KEY, or "
                "OPENAI_API_KEY_SECRET_ID to a Secrets Manager secret that holds the key."
            )
        return (await self._secret_values()).openai_api_key

    async def client_api_keys(self) -> tuple[str, ...]:
        """Keys clients may call with: `CLIENT_API_KEYS`, else the secret's field, else none."""
        if self._settings.client_api_keys:
            return tuple(key.get_secret_value() for key in self._settings.client_api_keys)
        if not self._settings.openai_api_key_secret_id:
            return ()
        return (await self._secret_values()).client_api_keys

    async def token_budgets(self) -> dict[str, int]:
        """The secret's per-caller token budgets (by caller id), if the secret is read at all.

        It is read only for what it is used for already: the OpenAI key, or the client keys.
        """
        settings = self._settings
        if not self.from_secret and (
            settings.client_api_keys or not settings.openai_api_key_secret_id
        ):
            return {}
        return (await self._secret_values()).token_budgets

    def invalidate(self, rejected_key: str) -> None:
        """Forget the cached secret if its key is the one OpenAI rejected, to refetch it."""
        if self._cached is not None and self._cached.openai_api_key == rejected_key:
            self._cached = None

    async def _secret_values(self) -> SecretValues:
        if self._cached is not None and not self._is_stale():
            return self._cached
        async with self._fetching:
            if self._cached is not None and not self._is_stale():
                return self._cached  # another request fetched it while this one waited
            return await self._refresh()

    def _is_stale(self) -> bool:
        return self._clock() - self._cached_at >= self._settings.secret_cache_ttl_seconds

    async def _refresh(self) -> SecretValues:
        wait = self._retry_at - self._clock()
        if wait > 0:
            if self._cached is not None:
                return self._cached
            raise KeyUnavailable(_UNREADABLE, retry_after=wait)
        try:
            # boto3 is synchronous: keep the event loop free while it waits.
            values = await asyncio.to_thread(self._fetch_secret)
        except KeyUnavailable as exc:
            backoff = backoff_cap(
                self._failures, first=FIRST_BACKOFF_SECONDS, cap=MAX_BACKOFF_SECONDS
            )
            self._failures += 1
            self._retry_at = self._clock() + backoff
            if self._cached is not None:
                # A key that worked until now beats a 503 while Secrets Manager is down.
                logger.warning("Secrets Manager refresh failed; keeping the cached OpenAI key")
                return self._cached
            exc.retry_after = backoff
            raise
        self._cached, self._cached_at = values, self._clock()
        self._failures, self._retry_at = 0, 0.0
        return values

    def _fetch_secret(self) -> SecretValues:
        from botocore.exceptions import BotoCoreError, ClientError  # AWS path only

        secret_id = self._settings.openai_api_key_secret_id
        try:
            secret = self._secrets_client_factory().get_secret_value(SecretId=str(secret_id))
        except (BotoCoreError, ClientError) as exc:
            raise KeyUnavailable(_UNREADABLE) from exc
        values = _values_from_secret_string(secret.get("SecretString", ""))
        if not values.openai_api_key and not self._settings.openai_api_key:
            raise KeyUnavailable(
                "The Secrets Manager secret holds no OpenAI API key: store the key itself, "
                f'or JSON with an "{KEY_FIELD}" field.'
            )
        return values


_UNREADABLE = (
    "The OpenAI API key could not be read from Secrets Manager "
    "(check OPENAI_API_KEY_SECRET_ID and the function's permissions)."
)


def _values_from_secret_string(secret_string: str) -> SecretValues:
    """The key stored plainly, or the fields of a JSON secret."""
    text = secret_string.strip()
    if not text.startswith("{"):
        return SecretValues(openai_api_key=text, client_api_keys=(), token_budgets={})
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return SecretValues(openai_api_key="", client_api_keys=(), token_budgets={})
    # Text that starts with "{" and parses is a JSON object.
    key = document.get(KEY_FIELD)
    return SecretValues(
        openai_api_key=key.strip() if isinstance(key, str) else "",
        client_api_keys=_client_keys(document.get(CLIENT_KEYS_FIELD)),
        token_budgets=_token_budgets(document.get(BUDGETS_FIELD)),
    )


def _client_keys(value: object) -> tuple[str, ...]:
    """A JSON list of keys, or one comma-separated string like the environment variable."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        return ()
    return tuple(item.strip() for item in items if isinstance(item, str) and item.strip())


def _token_budgets(value: object) -> dict[str, int]:
    """`{"<client key>": tokens}` as caller ids; entries that are not a whole count are skipped."""
    if not isinstance(value, dict):
        return {}
    return {
        client_key_caller_id(key.strip()): tokens
        for key, tokens in value.items()
        if isinstance(key, str)
        and isinstance(tokens, int)
        and not isinstance(tokens, bool)
        and tokens >= 0
    }
