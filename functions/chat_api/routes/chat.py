"""`POST /chat`: the tutorial's contract with server-side sessions, whole or streamed as SSE."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from chat_api.deps import CallerDep, ChatTurnDep, get_caller
from chat_api.errors import error_body, error_responses
from chat_api.exceptions import ServiceError
from chat_api.schemas import ChatDelta, ChatRequest, ChatResponse, IdempotencyKey
from chat_api.services.idempotency import Answered
from chat_api.sse import sse_event, sse_response, streamed_route

# The caller is checked first, before the body or the store are looked at.
router = APIRouter(tags=["chat"], dependencies=[Depends(get_caller)])

REPLAYED_HEADER = "Idempotent-Replayed"
STREAM_DESCRIPTION = (
    'With `"stream": true`: `delta` events (`{"text": ...}`) as the answer is written, then one '
    "`done` event with the whole answer, usage and session id (the JSON body below), or one "
    '`error` event (`{"error": ...}`) if OpenAI fails midway; then nothing is stored.'
)

IdempotencyKeyHeader = Annotated[
    IdempotencyKey | None,
    Header(
        alias="Idempotency-Key",
        description="Repeat it on a retry to get the first answer without a second OpenAI call.",
    ),
]


@router.post(
    "/chat",
    response_model=ChatResponse,
    **streamed_route(
        STREAM_DESCRIPTION, error_responses(400, 401, 404, 409, 413, 422, 429, 502, 503, 504)
    ),
)
async def chat(
    request: ChatRequest,
    caller: CallerDep,
    turn: ChatTurnDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response | ChatResponse:
    """Send a message; continue the conversation by sending back the `session_id` it returned."""
    if not request.stream:
        result = await turn.run(request, caller.id, idempotency_key)
        if result.replayed:
            response.headers[REPLAYED_HEADER] = "true"
        return result.answer
    streamed = await turn.stream(request, caller.id, idempotency_key)
    if isinstance(streamed, Answered):
        replayed = sse_response(_replayed_events(streamed.answer), _error_event)
        replayed.headers[REPLAYED_HEADER] = "true"
        return replayed
    return sse_response(_chat_events(streamed), _error_event)


async def _chat_events(items: AsyncGenerator[ChatDelta | ChatResponse]) -> AsyncGenerator[str]:
    async for item in items:
        event = "done" if isinstance(item, ChatResponse) else "delta"
        yield sse_event(item.model_dump_json(), event=event)


async def _replayed_events(answer: ChatResponse) -> AsyncGenerator[str]:
    """A stored answer told as a stream: its whole text in one delta, then done."""
    yield sse_event(ChatDelta(text=answer.response).model_dump_json(), event="delta")
    yield sse_event(answer.model_dump_json(), event="done")


def json_answer(answered: Answered[str]) -> Response:
    """A `/v1` JSON answer, with `Idempotent-Replayed: true` when it is a stored one replayed."""
    response = Response(answered.answer, media_type="application/json")
    if answered.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


def _error_event(error: ServiceError) -> str:
    return sse_event(json.dumps(error_body(error, openai_shape=False)), event="error")
