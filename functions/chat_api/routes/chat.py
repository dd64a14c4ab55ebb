"""`POST /chat`: the tutorial's contract, answered whole or streamed as Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Response

from chat_api.caller import get_caller
from chat_api.deps import SettingsDep, UpstreamDep
from chat_api.errors import Failure, error_body, error_responses
from chat_api.schemas import ChatRequest, ChatResponse
from chat_api.services.chat import complete_chat, open_chat_stream, stream_chat
from chat_api.sse import MEDIA_TYPE, sse_event, sse_response

if TYPE_CHECKING:
    from openai import AsyncStream
    from openai.types.chat import ChatCompletionChunk

    from chat_api.request_log import RequestLog

router = APIRouter(tags=["chat"], dependencies=[Depends(get_caller)])

STREAM_DESCRIPTION = (
    'With `"stream": true`: `delta` events (`{"text": ...}`) as the answer is written, then one '
    "`done` event with the whole answer and usage (the JSON body below), or one `error` event "
    '(`{"error": ...}`) if OpenAI fails midway.'
)


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses={
        200: {"content": {MEDIA_TYPE: {"schema": {"type": "string"}}}},
        **error_responses(400, 401, 413, 429, 502, 503, 504),
    },
    description=STREAM_DESCRIPTION,
)
async def chat(
    request: ChatRequest, upstream: UpstreamDep, settings: SettingsDep
) -> Response | ChatResponse:
    """Send a message (and optional earlier turns) and get the assistant's answer."""
    if not request.stream:
        return await complete_chat(upstream, settings, request)
    stream = await open_chat_stream(upstream, settings, request)
    return sse_response(_chat_events(stream, upstream.log), _error_event)


async def _chat_events(
    stream: AsyncStream[ChatCompletionChunk], log: RequestLog
) -> AsyncGenerator[str]:
    async for item in stream_chat(stream, log):
        event = "done" if isinstance(item, ChatResponse) else "delta"
        yield sse_event(item.model_dump_json(), event=event)


def _error_event(failure: Failure) -> str:
    return sse_event(json.dumps(error_body(failure, openai_shape=False)), event="error")
