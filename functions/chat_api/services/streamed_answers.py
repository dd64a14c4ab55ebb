"""A streamed `/v1` answer kept whole for an `Idempotency-Key`, and told as a stream again."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from openai.types.chat import ChatCompletionChunk
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.responses import ResponseStreamEvent

# The event that ends a stream, by the status of its response.
_FINAL_EVENTS: dict[
    str, type[ResponseCompletedEvent] | type[ResponseFailedEvent] | type[ResponseIncompleteEvent]
] = {
    "response.completed": ResponseCompletedEvent,
    "response.failed": ResponseFailedEvent,
    "response.incomplete": ResponseIncompleteEvent,
}


class CompletionAnswer:
    """The chat completion a chunk stream adds up to, as the SDK's own accumulator builds it."""

    def __init__(self) -> None:
        self._state: ChatCompletionStreamState[None] | None = None

    def add(self, item: ChatCompletionChunk) -> None:
        """Take in one chunk."""
        if self._state is None:
            # Imported here, for kept streams only: at import it cost every cold start 13 ms.
            from openai.lib.streaming.chat import ChatCompletionStreamState

            self._state = ChatCompletionStreamState()
        self._state.handle_chunk(item)

    def answer(self) -> str | None:
        """The snapshot, not `get_final_completion()`: that raises on `"length"` answers."""
        if self._state is None:
            return None
        return self._state.current_completion_snapshot.to_json(indent=None, warnings=False)


async def replayed_chunks(stored: str) -> AsyncGenerator[ChatCompletionChunk]:
    """A stored completion as chunks: each choice's whole message, its finish, the usage.

    Built without validation, as the SDK reads OpenAI's answers: fields newer or older than
    its models are passed on rather than refused.
    """
    completion: dict[str, Any] = json.loads(stored)
    head = {
        name: completion[name]
        for name in ("id", "created", "model", "system_fingerprint", "service_tier")
        if completion.get(name) is not None
    }

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> ChatCompletionChunk:
        fields: dict[str, Any] = {**head, "object": "chat.completion.chunk", "choices": choices}
        return ChatCompletionChunk.model_construct(**fields, **extra)

    choices: list[dict[str, Any]] = completion.get("choices") or []
    for choice in choices:
        yield chunk([{"index": choice["index"], "delta": _delta(choice)}])
    for choice in choices:
        finish = {"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"]}
        yield chunk([finish])
    if completion.get("usage") is not None:
        yield chunk([], usage=completion["usage"])


def _delta(choice: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = choice.get("message") or {}
    delta = {"role": message.get("role") or "assistant", "content": message.get("content")}
    if message.get("refusal") is not None:
        delta["refusal"] = message["refusal"]
    if message.get("tool_calls"):
        delta["tool_calls"] = [
            {**call, "index": index} for index, call in enumerate(message["tool_calls"])
        ]
    return delta


class ResponseAnswer:
    """The response the last event of a Responses stream carries (completed, failed, ...)."""

    def __init__(self) -> None:
        self._final: Response | None = None

    def add(self, item: ResponseStreamEvent) -> None:
        """Take in one event: only a final one's response is kept."""
        response = getattr(item, "response", None)
        if item.type in _FINAL_EVENTS and isinstance(response, Response):
            self._final = response

    def answer(self) -> str | None:
        """None if the stream ended with an `error` event: nothing to keep."""
        if self._final is None:
            return None
        return self._final.to_json(indent=None, warnings=False)


async def replayed_events(stored: str) -> AsyncGenerator[ResponseStreamEvent]:
    """A stored response as OpenAI frames a stream: `response.created`, then its final event."""
    response: dict[str, Any] = json.loads(stored)
    final = f"response.{response.get('status')}"
    if final not in _FINAL_EVENTS:
        final = "response.completed"
    # As OpenAI's first event has it: running, nothing written yet.
    started: dict[str, Any] = {**response, "status": "in_progress", "output": [], "usage": None}
    created: dict[str, Any] = {
        "type": "response.created",
        "sequence_number": 0,
        "response": started,
    }
    yield ResponseCreatedEvent.model_construct(**created)
    ended: dict[str, Any] = {"type": final, "sequence_number": 1, "response": response}
    yield _FINAL_EVENTS[final].model_construct(**ended)
