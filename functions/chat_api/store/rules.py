"""The store's rules, written once: the two stores only read and write, and apply these.

Who may use a session, when an idempotency claim still holds its key, and how long a stored
answer is kept. Times are epoch seconds passed in by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chat_api.store.base import IdempotencyClaim, IdempotencyRecord, OwnedResponse, Session

# A claim older than this belongs to a request that died (the function times out at 28 s):
# another request with the same key may take it over.
CLAIM_LEASE_SECONDS = 60.0
# How long the service remembers who created a stored response: OpenAI keeps one 30 days.
RESPONSE_OWNERSHIP_SECONDS = 30 * 86_400


def is_live(session: Session, owner: str, now: float) -> bool:
    """Whether `owner` may use the session at `now`: theirs, and not yet expired."""
    return session.owner == owner and now < session.expires_at


def answer_expiry(claim: IdempotencyClaim, session: Session | None) -> float:
    """When a stored answer is forgotten: with its claim, and never after its session (if any)."""
    if session is None:
        return claim.expires_at
    return min(claim.expires_at, session.expires_at)


def holds_key(record: IdempotencyRecord, now: float) -> bool:
    """Whether the record still holds its key at `now`: answered, or claimed within the lease.

    An expired record, or a claim whose request died without answering, frees the key.
    """
    if now >= record.expires_at:
        return False
    return record.response is not None or now - record.claimed_at < CLAIM_LEASE_SECONDS


def owns_response(record: OwnedResponse | None, owner: str, now: float) -> bool:
    """Whether `owner` may read, continue or delete the response: theirs, and not expired.

    OpenAI stores responses per organisation, shared by every caller of this service: a
    response the service has no record of is nobody's here.
    """
    return record is not None and record.owner == owner and now < record.expires_at


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
