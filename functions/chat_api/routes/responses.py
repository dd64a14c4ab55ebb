"""`/v1/responses`: OpenAI's Responses API, stored responses readable only by their creator."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import Path, Query, Response
from openai.types.responses import Response as OpenAIResponse
from openai.types.responses import ResponseItemList, ResponseStreamEvent

from chat_api.compat_schemas import ResponseCreateRequest
from chat_api.deps import IdempotentDep, ResponsesDep, openai_compatible_router
from chat_api.errors import error_responses
from chat_api.exceptions import ServiceError
from chat_api.routes.chat import REPLAYED_HEADER, IdempotencyKeyHeader, json_answer
from chat_api.services.idempotency import Answered
from chat_api.services.streamed_answers import ResponseAnswer, replayed_events
from chat_api.sse import sse_event, sse_response, streamed_route

router = openai_compatible_router("/v1/responses", 401, 404, 405, 429, 502, 503, 504)

STREAM_DESCRIPTION = (
    'With `"stream": true`: OpenAI\'s events (`response.created` ... `response.completed`) as '
    "it sends them; if OpenAI fails midway, one `error` event, which OpenAI's SDKs raise as "
    "`APIError`."
)
ResponseId = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")]


def _json(model: OpenAIResponse | ResponseItemList) -> Response:
    # As OpenAI sent it: fields it left out stay out, and a newer shape than the SDK's
    # models is passed on rather than refused.
    return Response(model.to_json(indent=None, warnings=False), media_type="application/json")


@router.post(
    "",
    response_model=OpenAIResponse,
    **streamed_route(STREAM_DESCRIPTION, error_responses(400, 409, 413, 422, openai_shape=True)),
)
async def create_response(
    request: ResponseCreateRequest,
    responses: ResponsesDep,
    idempotent: IdempotentDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create a model response, as OpenAI's `POST /v1/responses` does."""
    if not request.stream:

        async def answer() -> str:
            # As `_json` sends it.
            return (await responses.create(request)).to_json(indent=None, warnings=False)

        return json_answer(await idempotent.run("/v1/responses", idempotency_key, request, answer))

    async def open_events() -> AsyncGenerator[ResponseStreamEvent]:
        return await responses.open_stream(request)

    events = await idempotent.stream(
        "/v1/responses", idempotency_key, request, open_events, ResponseAnswer()
    )
    tracker = _Sequence()
    if isinstance(events, Answered):
        replayed = sse_response(
            _events(replayed_events(events.answer), tracker), tracker.error_event
        )
        replayed.headers[REPLAYED_HEADER] = "true"
        return replayed
    return sse_response(_events(events, tracker), tracker.error_event)


@router.get("/{response_id}", response_model=OpenAIResponse)
async def get_response(response_id: ResponseId, responses: ResponsesDep) -> Response:
    """A stored response this caller created."""
    return _json(await responses.retrieve(response_id))


@router.delete("/{response_id}")
async def delete_response(response_id: ResponseId, responses: ResponsesDep) -> dict[str, Any]:
    """Delete a stored response this caller created."""
    await responses.delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@router.post("/{response_id}/cancel", response_model=OpenAIResponse)
async def cancel_response(response_id: ResponseId, responses: ResponsesDep) -> Response:
    """Cancel a background response this caller created."""
    return _json(await responses.cancel(response_id))


@router.get("/{response_id}/input_items", response_model=ResponseItemList)
async def list_input_items(
    response_id: ResponseId,
    responses: ResponsesDep,
    after: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
    order: Annotated[str | None, Query(pattern="^(asc|desc)$")] = None,
    include: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """The input items of a stored response this caller created, a page at a time."""
    query = {"after": after, "limit": limit, "order": order, "include": include}
    sent = {name: value for name, value in query.items() if value is not None}
    return _json(await responses.input_items(response_id, sent))


class _Sequence:
    """The last `sequence_number` relayed, so an error event can follow it."""

    def __init__(self) -> None:
        self.last = -1

    def error_event(self, error: ServiceError) -> str:
        """OpenAI's error event, with the error also in the shape OpenAI's SDKs raise."""
        details = {
            "message": error.message,
            "type": error.openai_type,
            "param": error.param,
            "code": error.code,
        }
        body = {
            "type": "error",
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "sequence_number": self.last + 1,
            "error": details,
        }
        return sse_event(json.dumps(body), event="error")


async def _events(
    events: AsyncIterator[ResponseStreamEvent], tracker: _Sequence
) -> AsyncGenerator[str]:
    async for event in events:
        tracker.last = event.sequence_number
        yield sse_event(event.to_json(indent=None), event=event.type)
