"""The chat turn: build the conversation, ask OpenAI, shape the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_api.errors import UpstreamInvalidResponse
from chat_api.schemas import ChatDelta, ChatRequest, ChatResponse
from chat_api.services.completions import relay_chunks, to_usage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from openai import AsyncStream
    from openai.types import CompletionUsage
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

    from chat_api.config import Settings
    from chat_api.request_log import RequestLog
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
    usage = to_usage(completion.usage)
    upstream.log.model, upstream.log.usage = completion.model, usage
    if settings.log_message_content:
        upstream.log.content = {"messages": messages, "answer": content}
    return ChatResponse(response=content, model=completion.model, usage=usage)


async def open_chat_stream(
    upstream: Upstream, settings: Settings, request: ChatRequest
) -> AsyncStream[ChatCompletionChunk]:
    """Start a streamed turn: failures before the first byte raise here, as for `complete_chat`."""
    messages = build_messages(settings.system_prompt, request)
    upstream.log.model = settings.openai_model
    return await upstream.call(
        lambda client: client.chat.completions.create(
            model=settings.openai_model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )


async def stream_chat(
    stream: AsyncStream[ChatCompletionChunk], log: RequestLog
) -> AsyncIterator[ChatDelta | ChatResponse]:
    """Each piece of the answer as it arrives, then the whole answer with its usage."""
    parts: list[str] = []
    model = ""
    usage: CompletionUsage | None = None
    async for chunk in relay_chunks(stream, log):
        model = chunk.model or model
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.index == 0 and choice.delta.content:
                parts.append(choice.delta.content)
                yield ChatDelta(text=choice.delta.content)
    if not parts:
        raise UpstreamInvalidResponse("OpenAI returned no message content.")
    yield ChatResponse(response="".join(parts), model=model, usage=to_usage(usage))
