"""One structured JSON log line per request that also carries its CloudWatch metrics (EMF).

The line is CloudWatch's embedded metric format: CloudWatch Logs extracts the metrics from
it, no API call, no agent. Written with `json.dumps` on the Powertools Logger's stream:
through the Logger, and a second record from Powertools Metrics, it took ~160 us per
request, now ~28 (bench/README.md). The Logger still writes every other record.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from chat_api.config import get_settings
from chat_api.exceptions import BudgetExceeded
from chat_api.web_adapter import lambda_context, request_context

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from chat_api.schemas import Usage

STATE_KEY = "request_log"
# Every response names its request: OpenAI's SDKs report it, and a user can quote it.
REQUEST_ID_HEADER = b"x-request-id"
# The request being answered, for records written where no scope is at hand (a stream).
current_request: ContextVar[RequestLog | None] = ContextVar("current_request", default=None)


@cache
def get_logger() -> Logger:
    """The service's JSON logger (stdout, which Lambda sends to CloudWatch Logs)."""
    return Logger(service=get_settings().powertools_service_name)


@cache
def metric_directive() -> dict[str, Any]:
    """What EMF says of the metrics: their namespace and the one dimension, `service`."""
    return {
        "Namespace": get_settings().powertools_metrics_namespace,
        "Dimensions": [["service"]],
    }


@dataclass
class RequestLog:
    """What one request did, filled in as it goes and written once when it ends."""

    request_id: str
    lambda_request_id: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    model: str | None = None
    usage: Usage | None = None
    upstream_attempts: int = 0
    upstream_errors: int = 0
    error_class: str | None = None
    # Only filled when LOG_MESSAGE_CONTENT=true.
    content: dict[str, Any] | None = None

    @classmethod
    def from_scope(cls, scope: Scope) -> RequestLog:
        """Take the API Gateway and Lambda request ids from Mangum's scope, when present.

        Behind the Lambda Web Adapter they come from its headers instead.
        """
        if get_settings().lambda_web_adapter:
            gateway_id = (request_context(scope) or {}).get("requestId")
            lambda_id = getattr(lambda_context(scope), "request_id", None)
        else:
            event = scope.get("aws.event") or {}
            gateway_id = (event.get("requestContext") or {}).get("requestId")
            lambda_id = getattr(scope.get("aws.context"), "aws_request_id", None)
        if not isinstance(gateway_id, str):
            gateway_id = None
        return cls(
            request_id=gateway_id or lambda_id or str(uuid.uuid4()), lambda_request_id=lambda_id
        )

    def record(self, scope: Scope, status: int) -> dict[str, Any]:
        """The log line's fields."""
        route = scope.get("route")
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "lambda_request_id": self.lambda_request_id,
            "method": scope.get("method"),
            "route": getattr(route, "path", None),
            "status": status,
            "latency_ms": round((time.monotonic() - self.started_at) * 1000, 1),
            "model": self.model,
            "usage": self.usage.model_dump() if self.usage else None,
            "upstream_attempts": self.upstream_attempts,
            "upstream_errors": self.upstream_errors,
            "error_class": self.error_class,
        }
        if self.content is not None:
            fields["content"] = self.content
        return fields


class RequestLogMiddleware:
    """Outermost middleware: times the request and writes its log line and metrics.

    An exception that escapes the app is logged once (`log_unexpected`) and answered by
    `unexpected`, if given, when no response has started: Starlette would re-raise it, and
    uvicorn and Mangum would print its whole traceback as text, its message (possibly OpenAI's
    text) included and no request id. Without `unexpected` it goes on to the server.
    """

    def __init__(self, app: ASGIApp, unexpected: Callable[[Scope], ASGIApp] | None = None) -> None:
        self.app = app
        self.unexpected = unexpected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        log = RequestLog.from_scope(scope)
        scope.setdefault("state", {})[STATE_KEY] = log
        current_request.set(log)
        # An exception that escapes the app becomes a 500.
        status = 500
        started = False

        async def send_noting_status(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, log.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except Exception as exc:
            log_unexpected(exc)
            if self.unexpected is None or started:
                raise
            await self.unexpected(scope)(scope, receive, send_noting_status)
        finally:
            _write(log.record(scope, status), log)


def log_unexpected(exc: BaseException) -> None:
    """One structured record of an error nothing expected, with its request and its frames.

    Never the exception's text: it may quote OpenAI's answer, a request body or a key.
    """
    log = current_request.get()
    if log is not None:
        log.error_class = log.error_class or type(exc).__name__
    frames = [
        f"{frame.filename}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
    ]
    get_logger().error(
        "unexpected error",
        extra={
            "request_id": log.request_id if log else None,
            "error_class": type(exc).__name__,
            "frames": frames,
        },
    )


def _metrics(fields: dict[str, Any], log: RequestLog) -> dict[str, tuple[str, float]]:
    """This request's CloudWatch metrics: name to unit and value."""
    metrics: dict[str, tuple[str, float]] = {"Latency": ("Milliseconds", fields["latency_ms"])}
    if fields["status"] >= 500:
        metrics["ServerErrors"] = ("Count", 1)
    if log.error_class == BudgetExceeded.__name__:
        metrics["BudgetExceeded"] = ("Count", 1)
    if log.upstream_attempts:
        metrics["UpstreamAttempts"] = ("Count", log.upstream_attempts)
        metrics["UpstreamErrors"] = ("Count", log.upstream_errors)
    if log.usage:
        metrics["PromptTokens"] = ("Count", log.usage.prompt_tokens)
        metrics["CompletionTokens"] = ("Count", log.usage.completion_tokens)
    return metrics


def _write(fields: dict[str, Any], log: RequestLog) -> None:
    logger = get_logger()
    service = get_settings().powertools_service_name
    now = time.time()
    # Below the log level (LOG_LEVEL=WARN) the line still carries the metrics, and only them.
    record: dict[str, Any] = {"service": service}
    if logger.log_level <= logging.INFO:
        record = {
            "level": "INFO",
            "message": "request",
            "timestamp": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "service": service,
            **{name: value for name, value in fields.items() if value is not None},
        }
    metrics = _metrics(fields, log)
    record["_aws"] = {
        "Timestamp": int(now * 1000),
        "CloudWatchMetrics": [
            {
                **metric_directive(),
                "Metrics": [{"Name": name, "Unit": unit} for name, (unit, _) in metrics.items()],
            }
        ],
    }
    record.update((name, value) for name, (_, value) in metrics.items())
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)  # Powertools' own: stdout
    handler.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
    handler.flush()  # as the Logger does: the line is out before the invocation ends
