"""Server-Sent Events: framing, and a stream that ends with an error event instead of hanging.

Under uvicorn each event is sent as soon as it is produced. Under Mangum on Lambda the whole
body is buffered and returned at the end: it is still a complete, parseable SSE body.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from fastapi.responses import StreamingResponse

from chat_api.errors import as_service_error
from chat_api.exceptions import ServiceError

MEDIA_TYPE = "text/event-stream"
# No proxy or browser cache may hold events back; nginx buffers unless told not to.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def streamed_route(description: str, errors: dict[int | str, Any]) -> dict[str, Any]:
    """A route's OpenAPI arguments when it answers JSON, or these events when asked to stream."""
    sse = {200: {"content": {MEDIA_TYPE: {"schema": {"type": "string"}}}}}
    return {"description": description, "responses": {**sse, **errors}}


def sse_event(data: str, event: str | None = None) -> str:
    """One event: an optional `event:` line, one `data:` line (JSON has no raw newlines)."""
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"


def sse_response(
    events: AsyncGenerator[str], on_failure: Callable[[ServiceError], str]
) -> StreamingResponse:
    """Stream `events`; a failure midway becomes one last event from `on_failure`."""

    async def guarded() -> AsyncIterator[str]:
        async with aclosing(events):
            try:
                async for event in events:
                    yield event
            # The status line is already sent: the failure can only be told in-band.
            except Exception as exc:
                yield on_failure(as_service_error(exc))

    return StreamingResponse(guarded(), media_type=MEDIA_TYPE, headers=HEADERS)
