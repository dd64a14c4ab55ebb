"""The headers the AWS Lambda Web Adapter adds to each request it relays to the app.

Their content is what the adapter serializes: the REST event's `requestContext` (here the
sample event's) and lambda_runtime's `Context` (snake_case, `deadline` in epoch ms).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"
API_KEY_ID = "k1l2m3n4o5"


def request_context(**overrides: Any) -> dict[str, Any]:
    """A REST API request context as API Gateway sends it, arriving now."""
    context: dict[str, Any] = json.loads((EVENTS_DIR / "chat.json").read_text())["requestContext"]
    context["requestTimeEpoch"] = int(time.time() * 1000)
    context.update(overrides)
    return context


def adapter_headers(
    api_key_id: str | None = API_KEY_ID,
    seconds_left: float = 300.0,
    **context_overrides: Any,
) -> dict[str, str]:
    """Both headers, for a request with this key id and this much of the invocation left."""
    context = request_context(**context_overrides)
    context["identity"] = {**context["identity"], "apiKeyId": api_key_id}
    lambda_context = {
        "request_id": "0f1e2d3c-lambda-request",
        "deadline": int((time.time() + seconds_left) * 1000),
        "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:chat:live",
        "xray_trace_id": None,
        "client_context": None,
        "identity": None,
        "env_config": {"function_name": "chat", "memory": 512, "version": "1"},
    }
    return {
        "x-amzn-request-context": json.dumps(context),
        "x-amzn-lambda-context": json.dumps(lambda_context),
    }
