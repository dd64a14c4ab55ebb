"""What `/chat` and `/v1` share about OpenAI's answers: relaying a stream, reading its usage."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import httpx2
import openai
import pydantic
from openai import AsyncStream
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk

from chat_api.exceptions import DeadlineExceeded, UpstreamBrokeOff, UpstreamInvalidResponse
from chat_api.schemas import Usage
from chat_api.services.upstream import MIN_ATTEMPT_SECONDS, upstream_failure

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from openai import AsyncOpenAI
    from openai.types.responses import ResponseUsage

    from chat_api.services.budget import Meter
    from chat_api.services.upstream import Upstream

NOT_FINISHED = "OpenAI did not finish the answer in time."
MALFORMED_EVENT = "OpenAI sent a malformed stream event."


async def open_chunk_stream(
    client: AsyncOpenAI, params: Mapping[str, object]
) -> AsyncStream[object]:
    """Start a streamed chat completion whose events arrive as parsed JSON (see `to_chunk`).

    Sent with the SDK's public `post`, not `chat.completions.create`: `create` runs the
    parameters through the SDK's transform, which changes nothing in plain-JSON chat parameters
    (they have no aliases, files or dates), and builds every chunk with its pure-Python
    constructor: together over a third of a warm `/chat` (bench/README.md, third round).
    """
    return await client.post(
        "/chat/completions",
        cast_to=object,
        body={**params, "stream": True},
        options={"security": {"bearer_auth": True}},  # what `create` asks for: the API key
        stream=True,
        stream_cls=AsyncStream[object],
    )


def to_chunk(event: object) -> ChatCompletionChunk:
    """A stream event as the SDK's chunk model; `UpstreamInvalidResponse` if it is no object.

    Validated by pydantic-core, which is fast; built leniently, as the SDK builds every chunk,
    when OpenAI sends what the SDK's types do not know yet (a new finish reason, say).
    """
    if not isinstance(event, dict):
        raise UpstreamInvalidResponse(MALFORMED_EVENT)
    try:
        return ChatCompletionChunk.model_validate(event)
    except pydantic.ValidationError:
        return ChatCompletionChunk.model_construct(**event)


async def relay_chunks(
    stream: AsyncStream[object], upstream: Upstream, meter: Meter | None = None
) -> AsyncIterator[ChatCompletionChunk]:
    """The stream's chunks, each within the attempt timeout and the request's deadline.

    The usage OpenAI reports is noted in the request's log and on `meter` (the token budget).

    Raises a `ServiceError` if the stream breaks off, goes silent, runs past the deadline or
    ends unfinished; nothing is retried once OpenAI has started answering.
    """
    log = upstream.log
    finished = False
    async with stream:
        async for event in guarded_events(stream, upstream):
            chunk = to_chunk(event)
            finished = finished or any(choice.finish_reason for choice in chunk.choices)
            log.model = chunk.model or log.model
            log.usage = to_usage(chunk.usage) or log.usage
            if meter is not None:
                meter.settle(to_usage(chunk.usage))
            yield chunk
    if not finished:
        # A clean close before the last chunk: the answer is cut short, say so.
        raise UpstreamInvalidResponse("OpenAI's stream ended before the answer finished.")


async def guarded_events[T](stream: AsyncStream[T], upstream: Upstream) -> AsyncIterator[T]:
    """An OpenAI stream's events, each within the attempt timeout and the request's deadline.

    The one place a stream's failures become `ServiceError`s: the deadline passing, OpenAI
    going silent or breaking off, a malformed event. Nothing is retried once it has started.
    """
    events = aiter(stream)
    while True:
        try:
            async with asyncio.timeout(max(upstream.chunk_timeout(), 0)):
                event = await anext(events)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            if upstream.deadline.remaining() < MIN_ATTEMPT_SECONDS:
                raise DeadlineExceeded(NOT_FINISHED) from exc
            raise UpstreamBrokeOff from exc
        except json.JSONDecodeError as exc:
            raise UpstreamInvalidResponse(MALFORMED_EVENT) from exc
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            raise UpstreamBrokeOff from exc
        except openai.OpenAIError as exc:
            raise upstream_failure(exc) from exc
        yield event


def to_usage(usage: CompletionUsage | ResponseUsage | None) -> Usage | None:
    """OpenAI's token counts (as Chat Completions or Responses name them) in the service's shape."""
    if usage is None:
        return None
    if isinstance(usage, CompletionUsage):
        return Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )
    return Usage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )
