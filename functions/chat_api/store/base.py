"""The conversation store: what both implementations (DynamoDB, SQLite) promise, and the rules.

Times are epoch seconds passed in by the caller, so the stores read no clock of their own. The
rules (who owns a session, when it and an idempotency claim expire) are written here once;
the two stores only read and write, and apply these functions to what they read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

Role = Literal["user", "assistant"]

# A claim older than this belongs to a request that died (the function times out at 28 s):
# another request with the same key may take it over.
CLAIM_LEASE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Message:
    """One stored message: who said it, what, and when."""

    role: Role
    content: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Session:
    """A conversation's header: its id, the caller that owns it, and its lifetime."""

    id: str
    owner: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Conversation:
    """A session and its messages, oldest first."""

    session: Session
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A request's hold on an idempotency key while it runs.

    `record_id` is a digest of the caller and the key, `fingerprint` one of the request body;
    `token` tells this request's claim from a later one that took over an abandoned claim.
    """

    record_id: str
    fingerprint: str
    token: str
    claimed_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """An earlier request with the same key: its body digest and, once done, its answer."""

    fingerprint: str
    response: str | None
    token: str
    claimed_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class ClaimedResponse:
    """The answer of the request that holds `claim`, stored with its turn."""

    claim: IdempotencyClaim
    response: str


@dataclass(frozen=True, slots=True)
class MessagePage:
    """Some of a conversation's messages, oldest first, with the position of each."""

    session: Session
    messages: list[Message]
    positions: list[int]
    # Whether messages follow the last one here.
    more: bool


def is_live(session: Session, owner: str, now: float) -> bool:
    """Whether `owner` may use the session at `now`: theirs, and not yet expired."""
    return session.owner == owner and now < session.expires_at


def answer_expiry(claim: IdempotencyClaim, session: Session) -> float:
    """When a stored answer is forgotten: with its claim, and never after its session."""
    return min(claim.expires_at, session.expires_at)


def holds_key(record: IdempotencyRecord, now: float) -> bool:
    """Whether the record still holds its key at `now`: answered, or claimed within the lease.

    An expired record, or a claim whose request died without answering, frees the key.
    """
    if now >= record.expires_at:
        return False
    return record.response is not None or now - record.claimed_at < CLAIM_LEASE_SECONDS


class SessionStore(Protocol):
    """Conversations and idempotency records, safe under concurrent requests."""

    def load(
        self, session_id: str, owner: str, now: float, newest: int | None = None
    ) -> Conversation | None:
        """The conversation (only its `newest` messages if given); None unless live and owned."""
        ...

    def append(
        self,
        session: Session,
        messages: Sequence[Message],
        *,
        now: float,
        create: bool,
        claimed_response: ClaimedResponse | None = None,
    ) -> None:
        """Add messages after every stored one, together and atomically.

        `create` stores the session first. `claimed_response` records the response for its
        claim in the same write, so a retried request can never store its turn twice, and ties
        the record to the session (`answer_expiry`, and `delete`). Raises
        SessionNotFound if the session is gone, IdempotencyKeyInUse if the claim was lost.
        """
        ...

    def page(
        self, session_id: str, owner: str, now: float, *, after: int | None, limit: int
    ) -> MessagePage | None:
        """A page of messages: up to `limit` after position `after`, oldest first.

        From the first message if `after` is None; None unless the session is live and owned.
        """
        ...

    def delete(self, session_id: str, owner: str, now: float) -> bool:
        """Remove the session, its messages and its turns' idempotency records.

        False unless it was live and owned. A replay of a deleted turn's Idempotency-Key
        finds nothing: the answer is gone with the session.
        """
        ...

    def claim(self, claim: IdempotencyClaim) -> IdempotencyRecord | None:
        """Take the key for this request (None), or return the live record that holds it."""
        ...

    def release(self, claim: IdempotencyClaim) -> None:
        """Give the key up (the request failed), unless another request has taken it over."""
        ...


@dataclass(frozen=True, slots=True)
class BudgetAccount:
    """One caller's tally for one budget period, and when its record may be forgotten."""

    caller: str
    period: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class BudgetTally:
    """What an account holds: tokens spent (settled), and reserved by calls still running."""

    spent: int = 0
    reserved: int = 0


def admission_ceiling(budget: int, amount: int) -> int | None:
    """The highest `committed` (spent + reserved) at which `amount` more still fits the budget.

    The rule is `committed + amount <= budget`, turned around so that a store can check it in
    one conditional write without arithmetic (DynamoDB's conditions cannot add). None when
    `amount` alone is over the budget: it never fits.
    """
    ceiling = budget - amount
    return ceiling if ceiling >= 0 else None


def fits(committed: int, ceiling: int) -> bool:
    """Whether a reservation is admitted, for a store that reads `committed` in its transaction."""
    return committed <= ceiling


class BudgetStore(Protocol):
    """Token tallies per caller and period; every change one atomic write."""

    def reserve(self, account: BudgetAccount, amount: int, ceiling: int) -> bool:
        """Add `amount` to reserved and committed if `fits(committed, ceiling)`; whether it did."""
        ...

    def settle(self, account: BudgetAccount, reserved: int, actual: int) -> None:
        """Turn a reservation into `actual` spent tokens (0 releases it)."""
        ...

    def tally(self, account: BudgetAccount) -> BudgetTally:
        """The account's spent and reserved tokens (zeros if it has none yet)."""
        ...
