"""`/v1/`: OpenAI's Chat Completions API, so OpenAI's SDKs work with `base_url=<service>/v1`."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from fastapi import Response
from openai.types import Model
from openai.types.chat import ChatCompletion

from chat_api.compat_schemas import ChatCompletionRequest, ModelList
from chat_api.deps import (
    BudgetDep,
    IdempotentDep,
    SettingsDep,
    UpstreamDep,
    openai_compatible_router,
)
from chat_api.errors import error_body, error_responses
from chat_api.exceptions import ServiceError
from chat_api.routes.chat import REPLAYED_HEADER, IdempotencyKeyHeader, json_answer
from chat_api.services import completions as services
from chat_api.services.completions import create_completion, list_models, open_completion_stream
from chat_api.services.idempotency import Answered
from chat_api.services.relay import relay_chunks
from chat_api.services.streamed_answers import CompletionAnswer, replayed_chunks
from chat_api.sse import sse_event, sse_response, streamed_route

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

    from openai import AsyncStream
    from openai.types.chat import ChatCompletionChunk

    from chat_api.services.budget import Meter
    from chat_api.services.upstream import Upstream

router = openai_compatible_router()

STREAM_DESCRIPTION = (
    'With `"stream": true`: `data: {chat.completion.chunk}` events as OpenAI sends them, then '
    '`data: [DONE]`; if OpenAI fails midway, one `data: {"error": {...}}` event instead of '
    "`[DONE]`, which OpenAI's SDKs raise as `APIError`."
)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    **streamed_route(
        STREAM_DESCRIPTION,
        error_responses(400, 401, 409, 413, 422, 429, 502, 503, 504, openai_shape=True),
    ),
)
async def chat_completions(
    request: ChatCompletionRequest,
    upstream: UpstreamDep,
    settings: SettingsDep,
    budget: BudgetDep,
    idempotent: IdempotentDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create a chat completion, as OpenAI's `POST /v1/chat/completions` does."""
    route = "/v1/chat/completions"
    if not request.stream:

        async def answer() -> str:
            # As OpenAI sent it: fields it left out stay out.
            completion = await create_completion(upstream, request, settings, budget)
            return completion.to_json(indent=None)

        return json_answer(await idempotent.run(route, idempotency_key, request, answer))

    async def open_chunks() -> AsyncGenerator[ChatCompletionChunk]:
        stream, meter = await open_completion_stream(upstream, request, settings, budget)
        return _chunks(stream, upstream, meter)

    wants_usage = bool(request.stream_options and request.stream_options.include_usage)
    chunks = await idempotent.stream(
        route, idempotency_key, request, open_chunks, CompletionAnswer()
    )
    if isinstance(chunks, Answered):
        replayed = sse_response(
            _chunk_events(replayed_chunks(chunks.answer), wants_usage), _error_event
        )
        replayed.headers[REPLAYED_HEADER] = "true"
        return replayed
    return sse_response(_chunk_events(chunks, wants_usage), _error_event)


@router.get(
    "/models", responses=error_responses(401, 503, openai_shape=True), response_model=ModelList
)
async def models(settings: SettingsDep) -> ModelList:
    """List the models clients may name, as OpenAI's `GET /v1/models` does."""
    return list_models(settings)


@router.get(
    "/models/{model}", responses=error_responses(401, 503, openai_shape=True), response_model=Model
)
async def retrieve_model(model: str, settings: SettingsDep) -> Model:
    """One model clients may name, as OpenAI's `GET /v1/models/{model}` answers; else 404."""
    return services.retrieve_model(model, settings)


async def _chunks(
    stream: AsyncStream[object], upstream: Upstream, meter: Meter
) -> AsyncGenerator[ChatCompletionChunk]:
    async with meter:
        async for chunk in relay_chunks(stream, upstream, meter):
            yield chunk


async def _chunk_events(
    chunks: AsyncIterable[ChatCompletionChunk], wants_usage: bool
) -> AsyncGenerator[str]:
    async for chunk in chunks:
        # The service always asks for the usage chunk; the client sees it only if it did.
        if chunk.usage is not None and not chunk.choices and not wants_usage:
            continue
        yield sse_event(chunk.to_json(indent=None))
    yield sse_event("[DONE]")


def _error_event(error: ServiceError) -> str:
    return sse_event(json.dumps(error_body(error, openai_shape=True)))
