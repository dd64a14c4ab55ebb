"""The chat turn: load the conversation, ask OpenAI, store both messages, shape the answer."""

from __future__ import annotations

import asyncio
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, NamedTuple

import anyio

from chat_api.exceptions import (
    InvalidRequest,
    SessionNotFound,
    StoreUnavailable,
    UpstreamInvalidResponse,
)
from chat_api.schemas import ChatDelta, ChatRequest, ChatResponse, Usage
from chat_api.services.budget import completion_bound
from chat_api.services.idempotency import Answered, new_claim, replay
from chat_api.services.relay import open_chunk_stream, relay_chunks, to_usage
from chat_api.services.sessions import new_session_id
from chat_api.store.base import ClaimedResponse, Message, NewMessages, Session

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

    from openai import AsyncStream
    from openai.types import CompletionUsage
    from openai.types.chat import ChatCompletionMessageParam

    from chat_api.config import Settings
    from chat_api.services.budget import Budget, Meter
    from chat_api.services.upstream import Upstream
    from chat_api.store.base import IdempotencyClaim, IdempotencyRecord, SessionStore


class Answer(NamedTuple):
    """What OpenAI said."""

    content: str
    model: str
    usage: Usage | None


class PendingTurn(NamedTuple):
    """A turn between loading its conversation and storing its answer."""

    # None when the client keeps the conversation and nothing is stored.
    session: Session | None
    # Whether the turn is added to the session (`store`).
    stored: bool
    # A session made for this turn, stored with its history and the turn.
    new_session: bool
    history: list[Message]
    # What is sent to OpenAI: the system prompt, the history that fits, the new message.
    messages: list[ChatCompletionMessageParam]
    started_at: float
    claim: IdempotencyClaim | None


def fit_context(
    system_prompt: str,
    earlier: Sequence[Message],
    message: str,
    *,
    max_messages: int,
    max_chars: int,
) -> list[ChatCompletionMessageParam]:
    """System prompt, the newest earlier messages the limits allow, then the new message.

    The limits count the messages after the system prompt, the new one included; the oldest
    are dropped first. The system prompt and the new message are always sent.
    """
    budget = max_chars - len(message)
    kept: list[Message] = []
    for turn in islice(reversed(earlier), max_messages - 1):
        budget -= len(turn.content)
        if budget < 0:
            break
        kept.append(turn)
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": system_prompt}]
    for turn in reversed(kept):
        if turn.role == "user":
            messages.append({"role": "user", "content": turn.content})
        else:
            messages.append({"role": "assistant", "content": turn.content})
    messages.append({"role": "user", "content": message})
    return messages


async def open_chat_stream(
    upstream: Upstream, settings: Settings, messages: list[ChatCompletionMessageParam]
) -> AsyncStream[object]:
    """Start the turn's answer; failures before OpenAI's first byte raise here.

    Always streamed, also for a client that wants the whole answer: an attempt's timeout then
    bounds the wait for the first byte and the gaps between chunks, never the generation, and
    an answer that has started is never asked for (and paid for) twice.
    """
    upstream.log.model = settings.openai_model
    params = {
        "model": settings.openai_model,
        "messages": messages,
        # Without a cap the model may write until its own maximum, at the owner's expense.
        "max_completion_tokens": settings.max_completion_tokens,
        "stream_options": {"include_usage": True},
    }
    return await upstream.call(lambda client: open_chunk_stream(client, params), streamed=True)


def chat_bound(settings: Settings, messages: list[ChatCompletionMessageParam]) -> int:
    """The most tokens the call `open_chat_stream` makes can cost (see `completion_bound`)."""
    return completion_bound(
        {
            "model": settings.openai_model,
            "messages": messages,
            "max_completion_tokens": settings.max_completion_tokens,
        }
    )


async def stream_chat(
    stream: AsyncStream[object],
    upstream: Upstream,
    settings: Settings,
    messages: list[ChatCompletionMessageParam],
    meter: Meter | None = None,
) -> AsyncIterator[ChatDelta | Answer]:
    """Each piece of the answer as it arrives, then the whole answer with its usage."""
    parts: list[str] = []
    model = ""
    usage: CompletionUsage | None = None
    async for chunk in relay_chunks(stream, upstream, meter):
        model = chunk.model or model
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.index == 0 and choice.delta.content:
                parts.append(choice.delta.content)
                yield ChatDelta(text=choice.delta.content)
    if not parts:
        raise UpstreamInvalidResponse("OpenAI returned no message content.")
    content = "".join(parts)
    if settings.log_message_content:
        upstream.log.content = {"messages": messages, "answer": content}
    yield Answer(content=content, model=model, usage=to_usage(usage))


def _keeps_conversation(request: ChatRequest, claim: IdempotencyClaim | None) -> bool:
    """`store` when given; else keep it unless the client sent its own history.

    An Idempotency-Key's answer must be kept to be replayed, so with one the turn is stored.
    """
    if request.store is not None:
        return request.store
    return not request.history or claim is not None


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """Everything a turn uses, injected: OpenAI's call path, store, settings, clock, budget."""

    upstream: Upstream
    store: SessionStore
    settings: Settings
    clock: Callable[[], float]
    budget: Budget

    async def run(
        self, request: ChatRequest, caller: str, idempotency_key: str | None = None
    ) -> Answered[ChatResponse]:
        """Answer one message; with an idempotency key, at most once per key and body."""
        streamed = await self.stream(request, caller, idempotency_key)
        if isinstance(streamed, Answered):
            return streamed
        async with aclosing(streamed):
            async for item in streamed:
                last = item
        # The stream ends with the stored answer, or raises.
        assert isinstance(last, ChatResponse)
        return Answered(last)

    async def stream(
        self, request: ChatRequest, caller: str, idempotency_key: str | None = None
    ) -> Answered[ChatResponse] | AsyncGenerator[ChatDelta | ChatResponse]:
        """Answer one message piece by piece, the stored answer last (or a replayed answer).

        Failures before the stream opens raise here; later ones end the generator.
        """
        now = self.clock()
        claim = None
        if idempotency_key is not None:
            claim = new_claim(caller, idempotency_key, request, now)
            held = await self._claim(request, claim)
            if held is not None:
                return Answered(replay(held, claim), replayed=True)
        try:
            pending = await self._open_conversation(request, caller, claim, now)
        except BaseException:
            await self._release(claim)
            raise
        async with self._releasing_on_failure(pending):
            # Admitted (or refused, 429) only now: the bound needs the messages sent.
            meter = await self.budget.admit(lambda: chat_bound(self.settings, pending.messages))
            async with meter.settling_on_failure():
                chunks = await open_chat_stream(self.upstream, self.settings, pending.messages)
        meter.answering()
        return self._relay(pending, request, chunks, meter)

    async def _claim(
        self, request: ChatRequest, claim: IdempotencyClaim
    ) -> IdempotencyRecord | None:
        """Take the idempotency key for this request, or the record of the one that holds it."""
        if request.store is False:
            raise InvalidRequest(
                "An Idempotency-Key needs its answer kept on the server: "
                'send it without "store": false.',
                param="store",
            )
        return await asyncio.to_thread(self.store.claim, claim)

    async def _open_conversation(
        self, request: ChatRequest, caller: str, claim: IdempotencyClaim | None, now: float
    ) -> PendingTurn:
        """Load the session (or make a new one, if kept) and fit the context sent to OpenAI."""
        settings = self.settings
        stored = _keeps_conversation(request, claim)
        session: Session | None = None
        if request.session_id is not None:
            conversation = await asyncio.to_thread(
                self.store.load, request.session_id, caller, now, settings.context_max_messages - 1
            )
            if conversation is None:
                raise SessionNotFound
            session, history = conversation.session, conversation.messages
        else:
            history = [Message(turn.role, turn.content, now) for turn in request.history]
            if stored:
                session = Session(
                    id=new_session_id(),
                    owner=caller,
                    created_at=now,
                    expires_at=now + settings.session_ttl_seconds,
                )
        messages = fit_context(
            settings.system_prompt,
            history,
            request.message,
            max_messages=settings.context_max_messages,
            max_chars=settings.context_max_chars,
        )
        return PendingTurn(
            session=session,
            stored=stored,
            new_session=request.session_id is None,
            history=history,
            messages=messages,
            started_at=now,
            claim=claim,
        )

    async def _relay(
        self,
        pending: PendingTurn,
        request: ChatRequest,
        chunks: AsyncStream[object],
        meter: Meter,
    ) -> AsyncGenerator[ChatDelta | ChatResponse]:
        # The meter settles however the stream ends: answered, broken off, or hung up on.
        async with meter, self._releasing_on_failure(pending):
            stream = stream_chat(chunks, self.upstream, self.settings, pending.messages, meter)
            async for item in stream:
                if isinstance(item, Answer):
                    yield await self._store(pending, request, item)
                else:
                    yield item

    async def _store(
        self, pending: PendingTurn, request: ChatRequest, answer: Answer
    ) -> ChatResponse:
        """Store the user's message and the answer (with the key's answer) if kept; return it."""
        answered_at = self.clock()
        session = pending.session
        response = ChatResponse(
            response=answer.content,
            model=answer.model,
            usage=answer.usage,
            session_id=session.id if session else None,
        )
        if session is None or not pending.stored:
            return response
        turn = [
            Message("user", request.message, pending.started_at),
            Message("assistant", answer.content, answered_at),
        ]
        claim = pending.claim
        added = NewMessages(
            session,
            [*pending.history, *turn] if pending.new_session else turn,
            create=pending.new_session,
            claimed_response=None
            if claim is None
            else ClaimedResponse(claim, response.model_dump_json()),
        )
        await asyncio.to_thread(self.store.append, added, answered_at)
        return response

    @asynccontextmanager
    async def _releasing_on_failure(self, pending: PendingTurn) -> AsyncIterator[None]:
        """Nothing is stored when the block fails: free the key so that a retry runs the turn.

        A client that hangs up arrives as CancelledError or GeneratorExit, not as Exception:
        those free the key too, or its retry would get 409 until the lease runs out.
        """
        try:
            yield
        except BaseException:
            await self._release(pending.claim)
            raise

    async def _release(self, claim: IdempotencyClaim | None) -> None:
        if claim is None:
            return
        # Shielded: a cancelled request's scope would cancel this write before it ran.
        with anyio.CancelScope(shield=True), suppress(StoreUnavailable):
            await asyncio.to_thread(self.store.release, claim)
