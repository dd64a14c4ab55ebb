"""Every failure mapped to HTTP in one place: JSON `{"error": ...}`, never a stack trace."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import openai
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chat_api.request_log import STATE_KEY
from chat_api.schemas import ErrorResponse, FieldError
from chat_api.services.api_key import OpenAIKeyUnavailable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fastapi import FastAPI, Request

logger = logging.getLogger(__name__)


class UpstreamInvalidResponse(Exception):
    """OpenAI answered, but not with something the service can use."""


class DeadlineExceeded(Exception):
    """OpenAI gave no answer in the time the request had left."""


def error_response(
    status: int,
    message: str,
    *,
    detail: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error body shape, `{"error": ..., "detail": ...}`."""
    body = ErrorResponse(error=message, detail=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def _field_name(location: tuple[int | str, ...]) -> str:
    # ("body", "history", 0, "role") -> "history[0].role"
    name = ""
    for part in location[1:] if location and location[0] == "body" else location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _validation_message(error: dict[str, Any]) -> str:
    if error["type"] == "json_invalid":
        return "Request body is not valid JSON."
    if error["type"] == "string_pattern_mismatch":
        return "must not be empty or only whitespace"
    return str(error["msg"])


def _note_error(request: Request, exc: Exception) -> None:
    log = getattr(request.state, STATE_KEY, None)
    if log is not None:
        log.error_class = type(exc).__name__


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    _note_error(request, exc)
    errors = list(exc.errors())
    if any(error["type"] == "json_invalid" for error in errors):
        return error_response(400, "Request body is not valid JSON.")
    fields = [
        FieldError(field=_field_name(tuple(error["loc"])), message=_validation_message(error))
        for error in errors
    ]
    if any(field.field == "body" for field in fields):
        return error_response(
            400,
            "Request body must be a JSON object, sent as Content-Type: application/json.",
            detail=fields,
        )
    first = fields[0]
    return error_response(400, f"Invalid field '{first.field}': {first.message}", detail=fields)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    _note_error(request, exc)
    messages = {
        # FastAPI's words for a body it could not decode (such as invalid UTF-8).
        400: "Request body is not valid JSON."
        if exc.detail == "There was an error parsing the body"
        else None,
        404: f"No route for {request.method} {request.url.path}.",
        405: f"Method {request.method} is not allowed on {request.url.path}.",
    }
    message = messages.get(exc.status_code) or str(exc.detail) or HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, message, headers=exc.headers)


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


async def _on_key_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenAIKeyUnavailable)
    _note_error(request, exc)
    headers = _retry_after_header(exc.retry_after) if exc.retry_after is not None else None
    return error_response(503, str(exc), headers=headers)


async def _on_upstream_error(request: Request, exc: Exception) -> JSONResponse:
    # The upstream exception's text can quote the request or the key: it is never shown.
    _note_error(request, exc)
    if isinstance(exc, DeadlineExceeded | openai.APITimeoutError):
        return error_response(504, "OpenAI did not answer in time. Try again.")
    if isinstance(exc, openai.RateLimitError) and exc.code == "insufficient_quota":
        return error_response(502, "OpenAI refused the call: the service's quota is used up.")
    if isinstance(exc, openai.RateLimitError):
        return error_response(
            429,
            "OpenAI is rate-limiting this service. Try again later.",
            headers=_retry_after_header(retry_after_seconds(exc.response.headers)),
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return error_response(502, "OpenAI rejected the service's configured API key.")
    if isinstance(exc, openai.APIStatusError):
        return error_response(502, f"OpenAI returned an error (HTTP {exc.status_code}).")
    if isinstance(exc, openai.APIConnectionError):
        return error_response(502, "Could not reach OpenAI.")
    return error_response(502, "OpenAI returned a response the service could not read.")


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    _note_error(request, exc)
    logger.error("Unhandled error: %s", type(exc).__name__)
    return error_response(500, "Internal server error.")


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers that turn every failure into the JSON error shape."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(OpenAIKeyUnavailable, _on_key_unavailable)
    app.add_exception_handler(openai.OpenAIError, _on_upstream_error)
    app.add_exception_handler(UpstreamInvalidResponse, _on_upstream_error)
    app.add_exception_handler(DeadlineExceeded, _on_upstream_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
