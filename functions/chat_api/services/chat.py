"""The chat turn: build the conversation, ask OpenAI, shape the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_api.errors import UpstreamInvalidResponse
from chat_api.schemas import ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

    from chat_api.config import Settings
    from chat_api.services.upstream import Upstream


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
    upstream: Upstream, settings: Settings, request: ChatRequest
) -> ChatResponse:
    """Send one turn to OpenAI and return its answer."""
    messages = build_messages(settings.system_prompt, request)
    upstream.log.model = settings.openai_model
    completion = await upstream.call(
        lambda client: client.chat.completions.create(
            model=settings.openai_model, messages=messages
        )
    )
    content = completion.choices[0].message.content if completion.choices else None
    if content is None:
        raise UpstreamInvalidResponse("OpenAI returned no message content.")
    usage = (
        Usage(
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            total_tokens=completion.usage.total_tokens,
        )
        if completion.usage
        else None
    )
    upstream.log.model, upstream.log.usage = completion.model, usage
    if settings.log_message_content:
        upstream.log.content = {"messages": messages, "answer": content}
    return ChatResponse(response=content, model=completion.model, usage=usage)
