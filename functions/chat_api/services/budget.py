"""Token budgets: every OpenAI call reserves what it can cost at most, then settles at its usage.

A caller's budget holds because admission is one atomic conditional write: a call is let
through only if `spent + reserved + its bound <= budget` (`store.rules.admission_ceiling`), and
the bound is an upper bound of what the call can cost, so the calls running at any moment can
never together spend more than what is left. After the call, the reservation is settled at
the usage OpenAI reported; with no report, at the whole reservation, unless the call failed
before OpenAI could bill anything. A store that cannot count refuses the call (503).

Any route that calls OpenAI uses it the same way:

    async with budget.spending(lambda: completion_bound(params)) as meter:
        answer = await upstream.call(...)
        meter.settle(usage_of(answer))
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import anyio

from chat_api.exceptions import (
    BudgetExceeded,
    DeadlineExceeded,
    InvalidRequest,
    ServiceError,
    StoreUnavailable,
    UpstreamBrokeOff,
    UpstreamUnreachable,
)
from chat_api.store.base import BudgetAccount, BudgetTally
from chat_api.store.rules import admission_ceiling

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from types import TracebackType

    from chat_api.schemas import Usage
    from chat_api.store.base import BudgetStore

PeriodKind = Literal["day", "month"]

logger = logging.getLogger(__name__)

# A period's record outlives its reset by this much: a call admitted just before midnight
# settles on the record it reserved on (calls end within API Gateway's 29 s).
PERIOD_GRACE_SECONDS = 3600.0
# Content parts whose cost is not bounded by their size in bytes (an image URL of 30 bytes
# can cost thousands of tokens): refused while a budget applies.
TEXT_PARTS = frozenset({"text", "refusal"})
RESPONSE_TEXT_PARTS = frozenset({"input_text", "output_text", "refusal"})
# Failures that may come after OpenAI received the call, and so may have been billed.
MAYBE_BILLED = (DeadlineExceeded, UpstreamUnreachable, UpstreamBrokeOff)


class Period(NamedTuple):
    """One budget period (a UTC day or month): its name and when it resets."""

    kind: PeriodKind
    label: str
    resets_at: float

    @classmethod
    def at(cls, now: float, kind: PeriodKind) -> Period:
        """The period that `now` (epoch seconds) falls in."""
        moment = datetime.fromtimestamp(now, UTC)
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if kind == "day":
            return cls(kind, start.strftime("%Y-%m-%d"), (start + timedelta(days=1)).timestamp())
        start = start.replace(day=1)
        following = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return cls(kind, start.strftime("%Y-%m"), following.timestamp())

    def resets_at_iso(self) -> str:
        """When the period resets, as ISO 8601 in UTC."""
        return datetime.fromtimestamp(self.resets_at, UTC).isoformat().replace("+00:00", "Z")


def completion_bound(params: Mapping[str, Any]) -> int:
    """The most tokens a chat completion with these parameters (as sent to OpenAI) can cost.

    Input: the UTF-8 size of the parameters' JSON. A token is at least one byte of text, and
    the JSON's own syntax (quotes, braces, `"role":"user"`, the model's name) outweighs the few
    tokens OpenAI adds to format each message and to prime the reply. Output: the cap sent,
    for each of `n` choices. `InvalidRequest` for input the size cannot bound (images, audio,
    files).
    """
    for message in params.get("messages", ()):
        content = message.get("content")
        parts = content if isinstance(content, list) else []
        if "audio" in message or any(part.get("type") not in TEXT_PARTS for part in parts):
            raise InvalidRequest(
                "This caller has a token budget, and only text input can be bounded before "
                "the call: image, audio and file content is not accepted.",
                param="messages",
                code="unbounded_input",
            )
    sent = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()
    output_cap = params.get("max_completion_tokens") or params.get("max_tokens") or 0
    return len(sent) + int(output_cap) * int(params.get("n") or 1)


def response_bound(params: Mapping[str, Any]) -> int:
    """The most tokens a Responses API call with these parameters (as sent) can cost.

    As `completion_bound`: the JSON's UTF-8 size, plus `max_output_tokens` (which counts the
    reasoning tokens too). What the size cannot bound is refused while a budget applies:
    image, audio and file input, and `previous_response_id`, which brings a whole earlier
    conversation the request does not carry.
    """
    if params.get("previous_response_id") is not None:
        raise _unbounded(
            "previous_response_id (send the earlier turns in `input` instead)",
            "previous_response_id",
        )
    items = params.get("input")
    for item in items if isinstance(items, list) else ():
        content = item.get("content") if isinstance(item, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") not in RESPONSE_TEXT_PARTS:
                raise _unbounded("image, audio and file content", "input")
    return _json_size(params) + int(params.get("max_output_tokens") or 0)


def embedding_bound(params: Mapping[str, Any]) -> int:
    """The most tokens an embeddings call can cost: its input's size (token ids included,
    each at least one character of JSON); embeddings have no output tokens."""
    return _json_size(params)


def _json_size(params: Mapping[str, Any]) -> int:
    return len(json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode())


def _unbounded(what: str, param: str) -> InvalidRequest:
    return InvalidRequest(
        f"This caller has a token budget, and the cost of {what} cannot be bounded before "
        "the call.",
        param=param,
        code="unbounded_input",
    )


class BudgetUsage(NamedTuple):
    """A caller's own view of its budget (`GET /usage`)."""

    period: str
    budget: int | None
    spent: int
    reserved: int
    resets_at: str


class Meter:
    """One admitted call's reservation: the usage noted as it comes, settled once at the end."""

    def __init__(self, budget: Budget | None, reserved: int) -> None:
        self._budget = budget
        self.reserved = reserved
        self._actual: int | None = None
        self._answering = False
        self._closed = False

    def answering(self) -> None:
        """OpenAI has started answering: from now on, a failure may have been billed."""
        self._answering = True

    def settle(self, usage: Usage | None) -> None:
        """Note the usage OpenAI reported; the call is settled at it when it ends."""
        if usage is not None:
            self._actual = usage.total_tokens

    def charge(self, failure: BaseException | None) -> int:
        """What the call is counted at: its reported usage, else its whole reservation, else 0.

        0 only for a call that failed with nothing billed: OpenAI refused it, or it never got
        there. A call cut off (the client hung up, OpenAI broke off, the deadline passed)
        without a usage report may have cost up to its reservation, and is counted at that.
        """
        if self._actual is not None:
            return self._actual
        if (
            failure is not None
            and not self._answering
            and isinstance(failure, ServiceError)
            and not isinstance(failure, MAYBE_BILLED)
        ):
            return 0
        return self.reserved

    async def close(self, failure: BaseException | None = None) -> None:
        """Settle the reservation (once); if the store fails, it stays counted in full."""
        if self._closed or self._budget is None:
            return
        self._closed = True
        charge = self.charge(failure)
        if charge > self.reserved:
            # The bound is meant to make this impossible: count the truth, and say so.
            logger.warning("A call cost %d tokens, over its reservation %d", charge, self.reserved)
        budget = self._budget
        # Shielded: a client that hangs up cancels the request, and the write with it.
        with anyio.CancelScope(shield=True):
            try:
                await asyncio.to_thread(budget.store.settle, budget.account, self.reserved, charge)
            except StoreUnavailable:
                logger.warning("A token budget settlement failed; its reservation stays counted")

    @asynccontextmanager
    async def settling_on_failure(self) -> AsyncIterator[Meter]:
        """Settle only if the block fails (a stream that opened is settled when it ends)."""
        try:
            yield self
        except BaseException as exc:
            await self.close(exc)
            raise

    async def __aenter__(self) -> Meter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close(exc)


class Budget(NamedTuple):
    """One caller's token budget in the current period, and the store that counts it."""

    caller: str
    # None: this caller has no budget, and its calls are not counted.
    limit: int | None
    period: Period
    now: float
    store: BudgetStore

    @classmethod
    def for_caller(
        cls,
        caller: str,
        *,
        default: int | None,
        overrides: Mapping[str, int],
        kind: PeriodKind,
        now: float,
        store: BudgetStore,
    ) -> Budget:
        """The caller's override if it has one, else the default budget."""
        limit = overrides.get(caller, default)
        return cls(caller, limit, Period.at(now, kind), now, store)

    @property
    def account(self) -> BudgetAccount:
        """Where this caller's tally for the period is kept."""
        return BudgetAccount(
            self.caller, self.period.label, self.period.resets_at + PERIOD_GRACE_SECONDS
        )

    async def admit(self, bound_of: Callable[[], int]) -> Meter:
        """Reserve what `bound_of()` says the call may cost, or raise `BudgetExceeded` (429).

        Without a budget nothing is computed or counted, so input the bound cannot cover (such
        as images) is refused only where a budget applies.
        """
        if self.limit is None:
            return Meter(None, 0)
        bound = bound_of()
        ceiling = admission_ceiling(self.limit, bound)
        if ceiling is None:
            raise self._exceeded(
                f"This request may cost up to {bound} tokens, more than this caller's whole "
                f"token budget of {self.limit} per {self.period.kind}: send less, or ask for "
                "fewer completion tokens."
            )
        if not await asyncio.to_thread(self.store.reserve, self.account, bound, ceiling):
            raise self._exceeded(
                f"This caller's token budget of {self.limit} per {self.period.kind} cannot "
                f"cover this request (up to {bound} tokens). It resets at "
                f"{self.period.resets_at_iso()}."
            )
        return Meter(self, bound)

    @asynccontextmanager
    async def spending(self, bound_of: Callable[[], int]) -> AsyncIterator[Meter]:
        """Admit a call costing at most `bound_of()`; settle it when the block ends, however."""
        meter = await self.admit(bound_of)
        async with meter:
            yield meter

    async def usage(self) -> BudgetUsage:
        """The caller's budget, spent and reserved tokens in the current period."""
        tally = (
            await asyncio.to_thread(self.store.tally, self.account)
            if self.limit is not None
            else BudgetTally()
        )
        return BudgetUsage(
            period=self.period.label,
            budget=self.limit,
            spent=tally.spent,
            reserved=tally.reserved,
            resets_at=self.period.resets_at_iso(),
        )

    def _exceeded(self, message: str) -> BudgetExceeded:
        return BudgetExceeded(message, retry_after=self.period.resets_at - self.now)
