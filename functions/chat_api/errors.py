"""The HTTP face of every failure: `ServiceError`s rendered as JSON, never a stack trace.

Routes under `/v1/` answer in OpenAI's error shape (`{"error": {"message", "type", "param",
"code"}}`) so OpenAI's SDKs raise their usual exceptions; the rest of the API answers
`{"error": "<message>"}`. What each failure says lives with its class in `exceptions`; this
module only renders it, and turns FastAPI's and Starlette's own errors into such classes.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.constants import REF_TEMPLATE
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from chat_api.exceptions import (
    BodyTooLarge,
    ClientKeyRejected,
    DeadlineExceeded,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidRequest,
    KeyUnavailable,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    UpstreamError,
    UpstreamRateLimited,
    openai_type_for,
)
from chat_api.request_log import STATE_KEY, log_unexpected
from chat_api.schemas import ErrorResponse, FieldError, OpenAIErrorResponse

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.types import ASGIApp, Scope

OPENAI_ROUTE_PREFIX = "/v1/"
REQUEST_PARTS = {"body", "path", "query", "header", "cookie"}
HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")

# What each status means, for the OpenAPI declarations of the routes.
DESCRIPTIONS: dict[int | str, str] = {
    "default": "Any error",
    InvalidRequest.status: "Unparseable JSON or an invalid field",
    ClientKeyRejected.status: "Missing or invalid client API key",
    NotFound.status: "No such route, or no such session",
    MethodNotAllowed.status: "Method not allowed on this route",
    IdempotencyKeyInUse.status: "A request with the same Idempotency-Key is still running",
    BodyTooLarge.status: "Request body over the configured limit",
    IdempotencyKeyReused.status: "Idempotency-Key already used with a different body",
    UpstreamRateLimited.status: "OpenAI is rate-limiting, or the caller's token budget is "
    "used up; see Retry-After",
    ServiceError.status: "Unexpected error in the service",
    UpstreamError.status: "OpenAI failed or rejected the call",
    KeyUnavailable.status: "No OpenAI key (or client key list) is configured or readable, "
    "or the session store failed",
    DeadlineExceeded.status: "OpenAI did not answer in time",
}


def route_path(scope: Scope) -> str:
    """The path the app routes on, without the stage prefix (`/Prod`) of the root path."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def uses_openai_shape(path: str) -> bool:
    """Whether errors on this route path take OpenAI's error shape."""
    return path.startswith(OPENAI_ROUTE_PREFIX)


def error_body(error: ServiceError, *, openai_shape: bool) -> dict[str, Any]:
    """The JSON body for a failure, in the app's shape or OpenAI's."""
    if openai_shape:
        return OpenAIErrorResponse.model_validate(
            {
                "error": {
                    "message": error.message,
                    "type": error.openai_type,
                    "param": error.param,
                    "code": error.code,
                }
            }
        ).model_dump()
    detail = [FieldError.model_validate(item) for item in error.detail or ()] or None
    return ErrorResponse(error=error.message, detail=detail).model_dump(exclude_none=True)


def error_response(error: ServiceError, path: str) -> JSONResponse:
    """The failure as a JSON response, shaped for the route at `path`."""
    return JSONResponse(
        error_body(error, openai_shape=uses_openai_shape(path)),
        status_code=error.status,
        headers=error.headers(),
    )


def error_responses(*statuses: int | str, openai_shape: bool = False) -> dict[int | str, Any]:
    """OpenAPI `responses` declarations for these statuses (or "default"): the error schema.

    By reference (`document_error_schemas` adds the schemas): with a `model`, FastAPI would
    build a serializer for each status of each route, twice (when the route registers and
    when its router is first routed), some 200 in all at ~1.5 ms each, for a body the
    handlers write themselves.
    """
    model = OpenAIErrorResponse if openai_shape else ErrorResponse
    content = {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}}
    return {
        status: {"description": DESCRIPTIONS[status], "content": content} for status in statuses
    }


def document_error_schemas(app: FastAPI) -> None:
    """Add the error bodies `error_responses` refers to to the app's OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # built once, then cached by FastAPI: adding twice changes nothing
        schemas: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorResponse, OpenAIErrorResponse):
            definition = model.model_json_schema(ref_template=REF_TEMPLATE, mode="serialization")
            # As FastAPI writes its own schemas: without the keys whose value is None.
            definition = jsonable_encoder(definition, exclude_none=True)
            schemas.update(definition.pop("$defs", {}))
            schemas[model.__name__] = definition
        schema["components"]["schemas"] = dict(sorted(schemas.items()))  # as FastAPI orders them
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point


def as_service_error(exc: Exception) -> ServiceError:
    """Any failure while answering (also one in the middle of a stream), as a `ServiceError`."""
    if isinstance(exc, ServiceError):
        return exc
    log_unexpected(exc)
    return ServiceError()


def unexpected_error_response(scope: Scope) -> ASGIApp:
    """The 500 for an exception nothing handled (`RequestLogMiddleware` sends it)."""
    return error_response(ServiceError(), route_path(scope))


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


def _invalid_request(exc: RequestValidationError) -> InvalidRequest:
    errors = list(exc.errors())
    if any(error["type"] == "json_invalid" for error in errors):
        return InvalidRequest("Request body is not valid JSON.")
    fields = [
        {"field": _field_name(tuple(error["loc"])), "message": _validation_message(error)}
        for error in errors
    ]
    if any(field["field"] == "body" for field in fields):
        return InvalidRequest(
            "Request body must be a JSON object, sent as Content-Type: application/json.",
            detail=fields,
        )
    first, first_error = fields[0]["field"], errors[0]
    if first_error["type"] == "extra_forbidden":
        # OpenAI's own wording for a parameter it does not know.
        return InvalidRequest(
            f"Unrecognized request argument supplied: {first}",
            param=first,
            code="unknown_parameter",
            detail=fields,
        )
    return InvalidRequest(
        f"Invalid field '{first}': {fields[0]['message']}",
        param=first,
        code="invalid_value",
        detail=fields,
    )


def _from_http_error(request: Request, exc: StarletteHTTPException) -> ServiceError:
    path = request.url.path
    if exc.status_code == NotFound.status:
        return NotFound(f"No route for {request.method} {path}.")
    if exc.status_code == MethodNotAllowed.status:
        return MethodNotAllowed(
            f"Method {request.method} is not allowed on {path}.", allow=_allowed_methods(request)
        )
    if exc.detail == "There was an error parsing the body":
        # FastAPI's words for a body it could not decode (such as invalid UTF-8).
        return InvalidRequest("Request body is not valid JSON.")
    error = ServiceError(str(exc.detail) or HTTPStatus(exc.status_code).phrase)
    error.status = exc.status_code
    error.openai_type = openai_type_for(exc.status_code)
    return error


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


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    log = getattr(request.state, STATE_KEY, None)
    if log is not None:
        # The root cause (OpenAI's `InternalServerError`, botocore's `ClientError`) tells the
        # operator most; the client's words come from the ServiceError raised from it.
        log.error_class = type(exc.__cause__ or exc).__name__
    error: ServiceError
    if isinstance(exc, RequestValidationError):
        error = _invalid_request(exc)
    elif isinstance(exc, StarletteHTTPException):
        error = _from_http_error(request, exc)
    else:
        error = as_service_error(exc)
    return error_response(error, route_path(request.scope))


def register_error_handlers(app: FastAPI) -> None:
    """Install the handler that renders every failure; Starlette picks it by class hierarchy.

    Anything else is answered by `unexpected_error_response`, through RequestLogMiddleware.
    """
    for exception_class in (RequestValidationError, StarletteHTTPException, ServiceError):
        app.add_exception_handler(exception_class, _on_error)
