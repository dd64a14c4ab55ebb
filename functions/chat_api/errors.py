"""Every failure mapped to HTTP in one place, never a stack trace or upstream text.

Routes under `/v1/` answer in OpenAI's error shape (`{"error": {"message", "type", "param",
"code"}}`) so OpenAI's SDKs raise their usual exceptions; the rest of the API answers
`{"error": "<message>"}`. Both shapes are rendered from the same `Failure` and one table of
statuses, so they cannot drift apart.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import openai
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from chat_api.caller import ClientKeyRejected
from chat_api.request_log import STATE_KEY
from chat_api.schemas import ErrorResponse, FieldError, OpenAIErrorResponse
from chat_api.services.api_key import OpenAIKeyUnavailable
from chat_api.services.idempotency import IdempotencyKeyReused
from chat_api.sessions.store import IdempotencyKeyInUse, SessionNotFound, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fastapi import FastAPI, Request
    from starlette.types import Scope

logger = logging.getLogger(__name__)

OPENAI_ROUTE_PREFIX = "/v1/"
REQUEST_PARTS = {"body", "path", "query", "header", "cookie"}
HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


@dataclass(frozen=True)
class Status:
    """One status the API answers: what it means, and its OpenAI error `type`."""

    description: str
    openai_type: str


# The one table of error statuses: the OpenAPI declarations and both error shapes read it.
STATUSES: dict[int, Status] = {
    400: Status("Unparseable JSON or an invalid field", "invalid_request_error"),
    401: Status("Missing or invalid client API key", "invalid_request_error"),
    404: Status("No such route, or no such session", "invalid_request_error"),
    405: Status("Method not allowed on this route", "invalid_request_error"),
    409: Status(
        "A request with the same Idempotency-Key is still running", "invalid_request_error"
    ),
    413: Status("Request body over the configured limit", "invalid_request_error"),
    422: Status("Idempotency-Key already used with a different body", "invalid_request_error"),
    429: Status("OpenAI is rate-limiting; see Retry-After", "rate_limit_error"),
    500: Status("Unexpected error in the service", "server_error"),
    502: Status("OpenAI failed or rejected the call", "upstream_error"),
    503: Status(
        "No OpenAI key (or client key list) is configured or readable, or the session store failed",
        "server_error",
    ),
    504: Status("OpenAI did not answer in time", "timeout_error"),
}


class UpstreamInvalidResponse(Exception):
    """OpenAI answered, but not with something the service can use."""


class DeadlineExceeded(Exception):
    """OpenAI gave no answer in the time the request had left."""


class InvalidRequest(Exception):
    """A well-formed request the service's configuration does not allow (400)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Failure:
    """What the client is told about one failure, whichever shape its route uses."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    detail: list[FieldError] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def route_path(scope: Scope) -> str:
    """The path the app routes on, without the stage prefix (`/Prod`) of the root path."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def uses_openai_shape(path: str) -> bool:
    """Whether errors on this route path take OpenAI's error shape."""
    return path.startswith(OPENAI_ROUTE_PREFIX)


def error_body(failure: Failure, *, openai_shape: bool) -> dict[str, Any]:
    """The JSON body for a failure, in the app's shape or OpenAI's."""
    if openai_shape:
        return OpenAIErrorResponse.model_validate(
            {
                "error": {
                    "message": failure.message,
                    "type": _openai_type(failure.status),
                    "param": failure.param,
                    "code": failure.code,
                }
            }
        ).model_dump()
    return ErrorResponse(error=failure.message, detail=failure.detail).model_dump(exclude_none=True)


def _openai_type(status: int) -> str:
    if status in STATUSES:
        return STATUSES[status].openai_type
    return "server_error" if status >= 500 else "invalid_request_error"


def error_response(failure: Failure, path: str) -> JSONResponse:
    """The failure as a JSON response, shaped for the route at `path`."""
    return JSONResponse(
        error_body(failure, openai_shape=uses_openai_shape(path)),
        status_code=failure.status,
        headers=failure.headers,
    )


def error_responses(*statuses: int, openai_shape: bool = False) -> dict[int | str, Any]:
    """OpenAPI `responses` declarations for these statuses, from the one table."""
    model = OpenAIErrorResponse if openai_shape else ErrorResponse
    return {
        status: {"model": model, "description": STATUSES[status].description} for status in statuses
    }


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """OpenAI's wait hint: `retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    with contextlib.suppress(KeyError, ValueError):
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    with contextlib.suppress(KeyError, ValueError):
        return max(0.0, float(headers["retry-after"]))
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return max(0.0, parsedate_to_datetime(headers["retry-after"]).timestamp() - time.time())
    return None


def _retry_after_header(seconds: float | None) -> dict[str, str]:
    """Whole seconds, at least 1: a client that retries at once would only be refused again."""
    return {"Retry-After": str(max(1, math.ceil(seconds or 0)))}


def describe_upstream_error(exc: Exception) -> Failure:
    """An OpenAI call's failure, in the service's own words (its text may quote keys)."""
    if isinstance(exc, DeadlineExceeded | openai.APITimeoutError):
        return Failure(504, "OpenAI did not answer in time. Try again.")
    if isinstance(exc, openai.RateLimitError) and exc.code == "insufficient_quota":
        return Failure(502, "OpenAI refused the call: the service's quota is used up.")
    if isinstance(exc, openai.RateLimitError):
        return Failure(
            429,
            "OpenAI is rate-limiting this service. Try again later.",
            code="rate_limit_exceeded",
            headers=_retry_after_header(retry_after_seconds(exc.response.headers)),
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return Failure(502, "OpenAI rejected the service's configured API key.")
    if isinstance(exc, openai.APIStatusError):
        return Failure(502, f"OpenAI returned an error (HTTP {exc.status_code}).")
    if isinstance(exc, openai.APIConnectionError):
        return Failure(502, "Could not reach OpenAI.")
    return Failure(502, "OpenAI returned a response the service could not read.")


def describe_failure(exc: Exception) -> Failure:
    """Any failure while answering (also one in the middle of a stream), as a `Failure`."""
    if isinstance(exc, openai.OpenAIError | UpstreamInvalidResponse | DeadlineExceeded):
        return describe_upstream_error(exc)
    if isinstance(exc, OpenAIKeyUnavailable):
        headers = _retry_after_header(exc.retry_after) if exc.retry_after is not None else {}
        return Failure(503, str(exc), headers=headers)
    if isinstance(exc, ClientKeyRejected):
        return Failure(
            401,
            "Missing or invalid API key: send it in the x-api-key header "
            "or as Authorization: Bearer <key>.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if isinstance(exc, InvalidRequest):
        return Failure(400, exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, SessionNotFound):
        # One answer for missing, expired, deleted and another caller's: ids reveal nothing.
        return Failure(404, "No such session: it may have expired or been deleted.")
    if isinstance(exc, StoreUnavailable):
        logger.warning("Session store unavailable: %s", exc)
        return Failure(
            503,
            "Conversation storage is unavailable. Try again shortly.",
            headers=_retry_after_header(1),
        )
    if isinstance(exc, IdempotencyKeyInUse):
        return Failure(
            409,
            "A request with this Idempotency-Key is still running. Retry it once that one ends.",
            headers=_retry_after_header(1),
        )
    if isinstance(exc, IdempotencyKeyReused):
        return Failure(422, "This Idempotency-Key was already used with a different request body.")
    logger.error("Unhandled error: %s", type(exc).__name__)
    return Failure(500, "Internal server error.")


# Pydantic names the member of a union that failed in the location ("stop", "list[str]");
# a field name never looks like these.
_UNION_MEMBER_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}


def _is_union_member_tag(part: str) -> bool:
    return part in _UNION_MEMBER_TAGS or "[" in part


def _field_name(location: tuple[int | str, ...]) -> str:
    # ("body", "history", 0, "role") -> "history[0].role"; ("path", "session_id") -> "session_id"
    name = ""
    for part in location[1:] if location and location[0] in REQUEST_PARTS else location:
        if isinstance(part, int):
            name += f"[{part}]"
        elif not _is_union_member_tag(part):
            name += f".{part}" if name else part
    return name or "body"


def _validation_message(error: dict[str, Any]) -> str:
    if error["type"] == "string_pattern_mismatch":
        return "must not be empty or only whitespace"
    return str(error["msg"])


def _describe_validation_error(exc: RequestValidationError) -> Failure:
    errors = list(exc.errors())
    if any(error["type"] == "json_invalid" for error in errors):
        return Failure(400, "Request body is not valid JSON.")
    fields = [
        FieldError(field=_field_name(tuple(error["loc"])), message=_validation_message(error))
        for error in errors
    ]
    if any(field.field == "body" for field in fields):
        return Failure(
            400,
            "Request body must be a JSON object, sent as Content-Type: application/json.",
            detail=fields,
        )
    first, first_error = fields[0], errors[0]
    if first_error["type"] == "extra_forbidden":
        # OpenAI's own wording for a parameter it does not know.
        return Failure(
            400,
            f"Unrecognized request argument supplied: {first.field}",
            param=first.field,
            code="unknown_parameter",
            detail=fields,
        )
    return Failure(
        400,
        f"Invalid field '{first.field}': {first.message}",
        param=first.field,
        code="invalid_value",
        detail=fields,
    )


def _describe_http_error(request: Request, exc: StarletteHTTPException) -> Failure:
    messages = {
        # FastAPI's words for a body it could not decode (such as invalid UTF-8).
        400: "Request body is not valid JSON."
        if exc.detail == "There was an error parsing the body"
        else None,
        404: f"No route for {request.method} {request.url.path}.",
        405: f"Method {request.method} is not allowed on {request.url.path}.",
    }
    message = messages.get(exc.status_code) or str(exc.detail) or HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return Failure(exc.status_code, message, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route accepts on this path (Starlette names only the first route's)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


def _note_error(request: Request, exc: Exception) -> None:
    log = getattr(request.state, STATE_KEY, None)
    if log is not None:
        log.error_class = type(exc).__name__


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    _note_error(request, exc)
    if isinstance(exc, RequestValidationError):
        failure = _describe_validation_error(exc)
    elif isinstance(exc, StarletteHTTPException):
        failure = _describe_http_error(request, exc)
    else:
        failure = describe_failure(exc)
    return error_response(failure, route_path(request.scope))


def register_error_handlers(app: FastAPI) -> None:
    """Install the handler that turns every failure into the route's JSON error shape."""
    for exception_class in (
        RequestValidationError,
        StarletteHTTPException,
        ClientKeyRejected,
        InvalidRequest,
        SessionNotFound,
        StoreUnavailable,
        IdempotencyKeyInUse,
        IdempotencyKeyReused,
        OpenAIKeyUnavailable,
        openai.OpenAIError,
        UpstreamInvalidResponse,
        DeadlineExceeded,
        Exception,
    ):
        app.add_exception_handler(exception_class, _on_error)
