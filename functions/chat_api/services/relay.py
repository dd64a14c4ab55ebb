"""What `/chat` and `/v1` share about OpenAI's answers: relaying a stream, reading its usage."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import openai

from chat_api.exceptions import UpstreamInvalidResponse
from chat_api.schemas import Usage
from chat_api.services.upstream import upstream_failure

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from openai import AsyncStream
    from openai.types import CompletionUsage
    from openai.types.chat import ChatCompletionChunk

    from chat_api.request_log import RequestLog


async def relay_chunks(
    stream: AsyncStream[ChatCompletionChunk], log: RequestLog
) -> AsyncIterator[ChatCompletionChunk]:
    """The stream's chunks; raises a `ServiceError` if it breaks off or ends unfinished."""
    finished = False
    async with stream:
        try:
            async for chunk in stream:
                finished = finished or any(choice.finish_reason for choice in chunk.choices)
                log.model = chunk.model or log.model
                log.usage = to_usage(chunk.usage) or log.usage
                yield chunk
        except json.JSONDecodeError as exc:
            raise UpstreamInvalidResponse("OpenAI sent a malformed stream chunk.") from exc
        except openai.OpenAIError as exc:
            raise upstream_failure(exc) from exc
    if not finished:
        # A clean close before the last chunk: the answer is cut short, say so.
        raise UpstreamInvalidResponse("OpenAI's stream ended before the answer finished.")


def to_usage(usage: CompletionUsage | None) -> Usage | None:
    """OpenAI's token counts in the service's own shape."""
    if usage is None:
        return None
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )
