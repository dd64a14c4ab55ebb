"""Every failure the service reports, and what the client is told about it.

This module imports nothing from the app: services raise these exceptions, and the HTTP layer
(`errors.py`) only renders them, in the app's error shape or in OpenAI's. Each class says its
status, its OpenAI error `type` and its message; an instance may name the parameter at fault,
a code, and how long the client should wait before retrying. A message never quotes upstream
text or a key: it is written here, or by the code that raises it.
"""

from __future__ import annotations

import math
from typing import ClassVar

# OpenAI's error `type` for the statuses that have their own; other 4xx are the client's
# invalid requests, other 5xx server errors. OpenAI's SDKs pick their exception by status.
OPENAI_TYPES = {429: "rate_limit_error", 502: "upstream_error", 504: "timeout_error"}


def openai_type_for(status: int) -> str:
    """OpenAI's error `type` for a status."""
    default = "server_error" if status >= 500 else "invalid_request_error"
    return OPENAI_TYPES.get(status, default)


class ServiceError(Exception):
    """A failure with a status and words for the client; the base of every one below."""

    status: int = 500
    # Derived from the status (OPENAI_TYPES) unless a class names its own.
    openai_type: str = "server_error"
    default_message: ClassVar[str] = "Internal server error."
    default_code: ClassVar[str | None] = None

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "openai_type" not in vars(cls):
            cls.openai_type = openai_type_for(cls.status)

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        detail: list[dict[str, str]] | None = None,
    ) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after
        self.detail = detail

    def headers(self) -> dict[str, str]:
        """The response headers this failure adds (Retry-After, WWW-Authenticate...)."""
        if self.retry_after is None:
            return {}
        # Whole seconds, at least 1: a client that retries at once would only be refused again.
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class InvalidRequest(ServiceError):
    """A request the service does not accept: unparseable, an invalid field, or not allowed."""

    status = 400
    default_message = "Unparseable JSON or an invalid field."


class ClientKeyRejected(ServiceError):
    """The request carries no client key, or not one of the configured keys."""

    status = 401
    default_message = (
        "Missing or invalid API key: send it in the x-api-key header "
        "or as Authorization: Bearer <key>."
    )
    default_code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        """RFC 9110: a 401 names the scheme the client should use."""
        return {"WWW-Authenticate": "Bearer"}


class NotFound(ServiceError):
    """No such route, or no such resource for this caller."""

    status = 404
    default_message = "Not found."


class SessionNotFound(NotFound):
    """No such session for this caller: never created, deleted, expired, or another caller's."""

    # One answer for missing, expired, deleted and another caller's: ids reveal nothing.
    default_message = "No such session: it may have expired or been deleted."


class MethodNotAllowed(ServiceError):
    """The route exists, but not for this method."""

    status = 405
    default_message = "Method not allowed on this route."

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        """A 405 lists the methods the route does accept."""
        return {"Allow": self.allow}


class IdempotencyKeyInUse(ServiceError):
    """Another request holds this idempotency key."""

    status = 409
    default_message = (
        "A request with this Idempotency-Key is still running. Retry it once that one ends."
    )

    def __init__(self) -> None:
        super().__init__(retry_after=1)


class BodyTooLarge(ServiceError):
    """The request body is over the configured limit."""

    status = 413
    default_message = "Request body over the configured limit."


class IdempotencyKeyReused(ServiceError):
    """The key was already used with a different request body."""

    status = 422
    default_message = "This Idempotency-Key was already used with a different request body."


class UpstreamRateLimited(ServiceError):
    """OpenAI is rate-limiting the service: the client may retry after a while."""

    status = 429
    default_message = "OpenAI is rate-limiting this service. Try again later."
    default_code = "rate_limit_exceeded"


class BudgetExceeded(ServiceError):
    """The caller's token budget for this period cannot cover the request: refused before OpenAI."""

    status = 429
    openai_type = "rate_limit_error"
    default_message = "This caller's token budget for the period is used up."
    default_code = "budget_exceeded"


class UpstreamError(ServiceError):
    """OpenAI failed or refused the call (the base of the 502s)."""

    status = 502
    default_message = "OpenAI returned a response the service could not read."


class UpstreamInvalidResponse(UpstreamError):
    """OpenAI answered, but not with something the service can use.

    The argument says what was wrong, for the traceback; the client gets the default message.
    """

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.args = (reason,)


class UpstreamUnreachable(UpstreamError):
    """No connection to OpenAI could be made, or it broke before an answer."""

    default_message = "Could not reach OpenAI."


class UpstreamBrokeOff(UpstreamError):
    """OpenAI started answering, then stopped: the connection broke, or it went silent."""

    default_message = "OpenAI stopped answering midway. Try again."


class UpstreamKeyRejected(UpstreamError):
    """OpenAI refused the service's own key (401 or 403)."""

    default_message = "OpenAI rejected the service's configured API key."


class UpstreamQuotaExhausted(UpstreamError):
    """OpenAI refused the call for billing: waiting will not help."""

    default_message = "OpenAI refused the call: the service's quota is used up."


class UpstreamRejectedRequest(UpstreamError):
    """OpenAI called the request invalid (400 or 422); on `/v1` that is the client's 400."""


class KeyUnavailable(ServiceError):
    """No usable OpenAI key (or client key list): none configured, or its secret unreadable."""

    status = 503


class StoreUnavailable(ServiceError):
    """The store failed (throttled, unreachable, locked); the same request may succeed later.

    The argument says what failed, for the traceback; the client gets the default message.
    """

    status = 503
    default_message = "Conversation storage is unavailable. Try again shortly."

    def __init__(self, reason: str) -> None:
        super().__init__(retry_after=1)
        self.args = (reason,)


class DeadlineExceeded(ServiceError):
    """OpenAI gave no answer in the time the request had left."""

    status = 504
    default_message = "OpenAI did not answer in time. Try again."
