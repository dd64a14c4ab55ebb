"""The one path every OpenAI call takes: a deadline, retries that fit in it, key rotation.

The SDK's own retries are off (`max_retries=0` on the client) and this loop owns them: the SDK
knows no overall deadline (each retry gets a full timeout) and sleeps through a `Retry-After`
of up to a minute, long past API Gateway's 29 s. Here each attempt is cut at the time left,
a wait is taken only when another attempt still fits after it, and a key rotated in Secrets
Manager is picked up on the first 401. What finally fails leaves as a `ServiceError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

import openai

from chat_api.backoff import jittered_backoff
from chat_api.exceptions import (
    DeadlineExceeded,
    ServiceError,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamKeyRejected,
    UpstreamQuotaExhausted,
    UpstreamRateLimited,
    UpstreamRejectedRequest,
    UpstreamUnreachable,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

    from openai import AsyncOpenAI

    from chat_api.config import Settings
    from chat_api.keys import KeySource
    from chat_api.request_log import RequestLog

# No attempt starts with less time than this left: it could not finish anyway.
MIN_ATTEMPT_SECONDS = 0.5
BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 4.0
RETRIED_STATUSES = frozenset({408, 409, 429})
# The longest wait OpenAI's Retry-After is taken for: it also goes on to the client, and past
# a minute a client is better off trying again than waiting (`inf`, 1e999, year 9999 all come).
MAX_RETRY_AFTER_SECONDS = 60.0


class LambdaContext(Protocol):
    """The part of Lambda's context object the deadline needs."""

    def get_remaining_time_in_millis(self) -> int: ...


class Deadline(NamedTuple):
    """When the service must have answered, on the monotonic clock."""

    at: float

    @classmethod
    def for_request(
        cls,
        settings: Settings,
        started_at: float,
        context: LambdaContext | None,
        arrived_at: float | None = None,
    ) -> Deadline:
        """The earlier of the gateway's limit and the Lambda's remaining time, less a margin.

        The gateway's limit counts from `arrived_at` (epoch seconds, when API Gateway says the
        request reached it: a cold start eats into it) if that is a real request's time. Sample
        events carry times from years ago, and a test may reuse one for minutes: a time older
        than the limit, or in the future, is ignored and `started_at` counts.
        """
        if arrived_at is not None:
            age = time.time() - arrived_at
            if 0 <= age < settings.gateway_timeout_seconds:
                started_at = min(started_at, time.monotonic() - age)
        at = started_at + settings.gateway_timeout_seconds
        if context is not None:
            at = min(at, time.monotonic() + context.get_remaining_time_in_millis() / 1000)
        return cls(at - settings.deadline_margin_seconds)

    def remaining(self) -> float:
        """Seconds left; negative once passed."""
        return self.at - time.monotonic()


class Upstream:
    """Calls OpenAI for one request, within its deadline, noting attempts in its log."""

    def __init__(
        self,
        client_for_key: Callable[[str], AsyncOpenAI],
        keys: KeySource,
        settings: Settings,
        deadline: Deadline,
        log: RequestLog,
    ) -> None:
        self._client_for_key = client_for_key
        self._keys = keys
        self._settings = settings
        self.deadline = deadline
        self.log = log

    def chunk_timeout(self) -> float:
        """How long a stream may go without a chunk: the attempt timeout, within the deadline."""
        return min(self._settings.openai_timeout_seconds, self.deadline.remaining())

    async def call[T](
        self, operation: Callable[[AsyncOpenAI], Awaitable[T]], *, streamed: bool = False
    ) -> T:
        """Run `operation` on a client set up for one attempt, retrying what is worth it.

        A `streamed` operation returns once OpenAI's first byte arrives, so each attempt is cut
        at the attempt timeout. One that waits for the whole answer gets all the time left:
        cutting it would throw away (and pay again for) an answer being written.
        """
        try:
            return await self._attempts(operation, streamed=streamed)
        except (openai.OpenAIError, TimeoutError) as exc:
            raise upstream_failure(exc) from exc

    async def _attempts[T](
        self, operation: Callable[[AsyncOpenAI], Awaitable[T]], *, streamed: bool
    ) -> T:
        retries = 0
        rotated = False
        while True:
            remaining = self.deadline.remaining()
            budget = self.chunk_timeout() if streamed else remaining
            if budget < MIN_ATTEMPT_SECONDS:
                raise DeadlineExceeded  # too little time left for another attempt
            key = ""
            try:
                # The key fetch shares the attempt's budget: a slow Secrets Manager counts too.
                async with asyncio.timeout(budget):
                    key = await self._keys()
                    self.log.upstream_attempts += 1
                    return await operation(self._client_for_key(key))
            except openai.AuthenticationError:
                self.log.upstream_errors += 1
                if rotated or not self._keys.from_secret:
                    raise
                # The secret may have been rotated since it was cached: read it once more.
                rotated = True
                self._keys.invalidate(key)
                continue
            except json.JSONDecodeError as exc:
                # The SDK parses the body without wrapping parse errors in its own exceptions.
                self.log.upstream_errors += 1
                raise UpstreamInvalidResponse("OpenAI returned malformed JSON.") from exc
            except (TimeoutError, openai.APIConnectionError, openai.APIStatusError) as exc:
                self.log.upstream_errors += 1
                wait = _retry_delay(exc, retries)
                if (
                    wait is None
                    or retries >= self._settings.openai_max_retries
                    or self.deadline.remaining() - wait < MIN_ATTEMPT_SECONDS
                ):
                    raise
                retries += 1
                await asyncio.sleep(wait)


def upstream_failure(exc: Exception) -> ServiceError:
    """An OpenAI call's failure in the service's own words (OpenAI's text may quote keys)."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return DeadlineExceeded()
    if isinstance(exc, openai.RateLimitError) and exc.code == "insufficient_quota":
        return UpstreamQuotaExhausted()
    if isinstance(exc, openai.RateLimitError):
        return UpstreamRateLimited(retry_after=retry_after_seconds(exc.response.headers) or 0)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamKeyRejected()
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return UpstreamRejectedRequest(f"OpenAI returned an error (HTTP {exc.status_code}).")
    if isinstance(exc, openai.APIStatusError):
        return UpstreamError(f"OpenAI returned an error (HTTP {exc.status_code}).")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamUnreachable()
    return UpstreamError()


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """OpenAI's wait hint: `retry-after-ms`, or `retry-after` in seconds or as an HTTP date.

    Always between 0 and MAX_RETRY_AFTER_SECONDS; None when there is none, or it is NaN.
    """
    for hint in _retry_after_hints(headers):
        if not math.isnan(hint):
            return min(MAX_RETRY_AFTER_SECONDS, max(0.0, hint))
    return None


def _retry_after_hints(headers: Mapping[str, str]) -> Iterator[float]:
    with contextlib.suppress(KeyError, ValueError):
        yield float(headers["retry-after-ms"]) / 1000
    with contextlib.suppress(KeyError, ValueError):
        yield float(headers["retry-after"])
    with contextlib.suppress(KeyError, TypeError, ValueError, OverflowError):
        yield parsedate_to_datetime(headers["retry-after"]).timestamp() - time.time()


def _retry_delay(exc: Exception, retries: int) -> float | None:
    """Seconds to wait before retrying `exc`, or None when retrying cannot help."""
    if isinstance(exc, openai.APIStatusError):
        if exc.code == "insufficient_quota":
            return None  # billing, not load: it will not pass by waiting
        if exc.status_code not in RETRIED_STATUSES and exc.status_code < 500:
            return None
        hinted = retry_after_seconds(exc.response.headers)
        if hinted is not None:
            return hinted
    # Full jitter: concurrent requests that failed together do not retry together.
    return jittered_backoff(retries, first=BACKOFF_FIRST_SECONDS, cap=BACKOFF_CAP_SECONDS)
