"""The chat turn: build the conversation, ask OpenAI, shape the answer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from chat_api.errors import UpstreamInvalidResponse
from chat_api.schemas import ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

    from chat_api.config import Settings


def build_messages(system_prompt: str, request: ChatRequest) -> list[ChatCompletionMessageParam]:
    """System prompt first, then the client's earlier turns, then the new message."""
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": system_prompt}]
    for turn in request.history:
        if turn.role == "user":
            messages.append({"role": "user", "content": turn.content})
        else:
            messages.append({"role": "assistant", "content": turn.content})
    messages.append({"role": "user", "content": request.message})
    return messages


async def complete_chat(
    client: AsyncOpenAI, settings: Settings, request: ChatRequest
) -> ChatResponse:
    """Send one turn to OpenAI and return its answer."""
    try:
        completion = await client.chat.completions.create(
            model=settings.openai_model,
            messages=build_messages(settings.system_prompt, request),
        )
    except json.JSONDecodeError as exc:
        # The client parses a JSON body without wrapping parse errors in its own exceptions.
        raise UpstreamInvalidResponse("OpenAI returned malformed JSON.") from exc
    content = completion.choices[0].message.content if completion.choices else None
    if content is None:
        raise UpstreamInvalidResponse("OpenAI returned no message content.")
    usage = completion.usage
    return ChatResponse(
        response=content,
        model=completion.model,
        usage=Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )
        if usage
        else None,
    )
