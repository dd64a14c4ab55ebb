"""`Idempotency-Key`: a retried request gets the first answer instead of a second call.

On `POST /chat` the answer is stored with its turn (`ChatTurn`); on `/v1` it is tied to no
session and stored on its own (`Idempotent`). Keys are per caller and per route.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

import anyio

from chat_api.exceptions import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    StoreUnavailable,
)
from chat_api.schemas import ChatResponse
from chat_api.store.base import ClaimedResponse, IdempotencyClaim, IdempotencyRecord

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from pydantic import BaseModel

    from chat_api.store.base import SessionStore

# How long a key's answer is kept for retries (clients retry within minutes; a day is ample).
IDEMPOTENCY_TTL_SECONDS = 86_400


def new_claim(
    caller: str, key: str, request: BaseModel, now: float, route: str = "/chat"
) -> IdempotencyClaim:
    """This request's claim on `key`: keys are per caller and route, stored only as digests."""
    return IdempotencyClaim(
        record_id=hashlib.sha256(f"{route}\n{caller}\n{key}".encode()).hexdigest(),
        fingerprint=hashlib.sha256(request.model_dump_json().encode()).hexdigest(),
        token=secrets.token_hex(16),
        claimed_at=now,
        expires_at=now + IDEMPOTENCY_TTL_SECONDS,
    )


def stored_answer(record: IdempotencyRecord, claim: IdempotencyClaim) -> str:
    """The earlier answer for the same key and body; raises if the body differs or it runs."""
    if record.fingerprint != claim.fingerprint:
        raise IdempotencyKeyReused
    if record.response is None:
        raise IdempotencyKeyInUse
    return record.response


def replay(record: IdempotencyRecord, claim: IdempotencyClaim) -> ChatResponse:
    """The earlier `/chat` answer for the same key and body (see `stored_answer`)."""
    return ChatResponse.model_validate_json(stored_answer(record, claim))


class Accumulator[T](Protocol):
    """Builds a streamed answer's JSON from its items, to be stored for a replay."""

    def add(self, item: T) -> None:
        """Take in one item as it is relayed."""

    def answer(self) -> str | None:
        """The whole answer as JSON once the stream has ended; None if it told of a failure."""


class Answered[T](NamedTuple):
    """An answer (`/chat`'s model, `/v1`'s JSON), and whether it is a stored one replayed."""

    answer: T
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Idempotent:
    """Runs a `/v1` request at most once per caller, route, key and body."""

    store: SessionStore
    caller: str
    clock: Callable[[], float]

    async def run(
        self,
        route: str,
        key: str | None,
        request: BaseModel,
        answer: Callable[[], Awaitable[str]],
    ) -> Answered[str]:
        """`answer()` once; a repeat gets its stored JSON, another body 422, one meanwhile 409."""
        begun = await self._begin(route, key, request, answer)
        if isinstance(begun, Answered):
            return begun
        claim, body = begun
        if claim is not None:
            await self._complete(claim, body)
        return Answered(body)

    async def stream[T](
        self,
        route: str,
        key: str | None,
        request: BaseModel,
        open_stream: Callable[[], Awaitable[AsyncGenerator[T]]],
        accumulator: Accumulator[T],
    ) -> Answered[str] | AsyncGenerator[T]:
        """As `run`, streamed: the items relayed, their answer stored when the stream ends.

        A repeat gets the stored JSON (`Answered`), for the route to tell as a stream again.
        """
        begun = await self._begin(route, key, request, open_stream)
        if isinstance(begun, Answered):
            return begun
        claim, items = begun
        return items if claim is None else self._kept(claim, items, accumulator)

    async def _begin[R](
        self, route: str, key: str | None, request: BaseModel, start: Callable[[], Awaitable[R]]
    ) -> Answered[str] | tuple[IdempotencyClaim | None, R]:
        """The stored answer of a repeat; else the claim taken (None without a key), started."""
        if key is None:
            return None, await start()
        claim = new_claim(self.caller, key, request, self.clock(), route)
        held = await asyncio.to_thread(self.store.claim, claim)
        if held is not None:
            return Answered(stored_answer(held, claim), replayed=True)
        try:
            return claim, await start()
        # A client that hangs up arrives as CancelledError, not as Exception: that frees the
        # key too, or its retry would get 409 until the lease runs out.
        except BaseException:
            await release(self.store, claim)
            raise

    async def _kept[T](
        self, claim: IdempotencyClaim, items: AsyncGenerator[T], accumulator: Accumulator[T]
    ) -> AsyncGenerator[T]:
        try:
            async with aclosing(items):
                async for item in items:
                    accumulator.add(item)
                    yield item
            body = accumulator.answer()
        # A failure midway, or a client that hangs up (GeneratorExit, CancelledError): nothing
        # is kept, and the key is freed so that the retry runs.
        except BaseException:
            await release(self.store, claim)
            raise
        if body is None:
            await release(self.store, claim)
        else:
            await self._complete(claim, body)

    async def _complete(self, claim: IdempotencyClaim, body: str) -> None:
        try:
            # Shielded: the answer is paid for, so it is kept even if the client has left.
            with anyio.CancelScope(shield=True):
                await asyncio.to_thread(self.store.complete, ClaimedResponse(claim, body))
        except (StoreUnavailable, IdempotencyKeyInUse):
            # Not kept (the store failed, the answer is over DynamoDB's 400 KB item, or the
            # lease ran out): the client still gets what it paid for, and the key is free,
            # rather than an error whose retry would pay again.
            await release(self.store, claim)


async def release(store: SessionStore, claim: IdempotencyClaim) -> None:
    """Give the key up after a failure, so that a retry runs the request."""
    # Shielded: a cancelled request's scope would cancel this write before it ran.
    with anyio.CancelScope(shield=True), suppress(StoreUnavailable):
        await asyncio.to_thread(store.release, claim)
