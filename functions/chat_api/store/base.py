"""The conversation store: what both implementations (DynamoDB, SQLite) promise.

Times are epoch seconds passed in by the caller, so the stores read no clock of their own.
What decides (who owns a session, when it and an idempotency claim expire) is in `rules`.
The records here and across the app are `NamedTuple`s: immutable as frozen dataclasses, and a
quarter of their cost to create at cold start (bench/README.md, "Issue 15, fourth round").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

Role = Literal["user", "assistant"]


class Message(NamedTuple):
    """One stored message: who said it, what, and when."""

    role: Role
    content: str
    created_at: float


class Session(NamedTuple):
    """A conversation's header: its id, the caller that owns it, and its lifetime."""

    id: str
    owner: str
    created_at: float
    expires_at: float


class Conversation(NamedTuple):
    """A session and its messages, oldest first."""

    session: Session
    messages: list[Message]


class IdempotencyClaim(NamedTuple):
    """A request's hold on an idempotency key while it runs.

    `record_id` is a digest of the caller and the key, `fingerprint` one of the request body;
    `token` tells this request's claim from a later one that took over an abandoned claim.
    """

    record_id: str
    fingerprint: str
    token: str
    claimed_at: float
    expires_at: float


class IdempotencyRecord(NamedTuple):
    """An earlier request with the same key: its body digest and, once done, its answer."""

    fingerprint: str
    response: str | None
    token: str
    claimed_at: float
    expires_at: float


class ClaimedResponse(NamedTuple):
    """The answer of the request that holds `claim`, stored with its turn."""

    claim: IdempotencyClaim
    response: str


class NewMessages(NamedTuple):
    """Messages to add after every stored one of `session`, together and atomically."""

    session: Session
    messages: Sequence[Message]
    # The session is new: it is stored first, with these as its first messages.
    create: bool = False
    # The answer of the request that holds the turn's Idempotency-Key, kept in the same write.
    claimed_response: ClaimedResponse | None = None


class MessagePage(NamedTuple):
    """Some of a conversation's messages, oldest first, with the position of each."""

    session: Session
    messages: list[Message]
    positions: list[int]
    # Whether messages follow the last one here.
    more: bool


class OwnedResponse(NamedTuple):
    """A response stored at OpenAI (Responses API), and the caller that created it."""

    id: str
    owner: str
    expires_at: float


class SessionStore(Protocol):
    """Conversations and idempotency records, safe under concurrent requests."""

    def load(
        self, session_id: str, owner: str, now: float, newest: int | None = None
    ) -> Conversation | None:
        """The conversation (only its `newest` messages if given); None unless live and owned."""
        ...

    def append(self, added: NewMessages, now: float) -> None:
        """Add the messages after every stored one, together and atomically.

        `claimed_response` is recorded in the same write, so a retried request can never
        store its turn twice, and it is tied to the session (`answer_expiry`, and `delete`).
        Raises SessionNotFound if the session is gone, IdempotencyKeyInUse if the claim was
        lost.
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

    def complete(self, claimed: ClaimedResponse) -> None:
        """Store the answer of a request tied to no session (`/v1`) with its claim.

        Raises IdempotencyKeyInUse if the claim was lost (another request took the key over).
        """
        ...

    def record_response(self, response: OwnedResponse, now: float) -> None:
        """Remember who created a stored response (written once per id); drops expired ones."""
        ...

    def response_owner(self, response_id: str) -> OwnedResponse | None:
        """The record of a stored response, if the service created it."""
        ...

    def forget_response(self, response_id: str) -> None:
        """Drop the record (the response was deleted at OpenAI)."""
        ...


class BudgetAccount(NamedTuple):
    """One caller's tally for one budget period, and when its record may be forgotten."""

    caller: str
    period: str
    expires_at: float


class BudgetTally(NamedTuple):
    """What an account holds: tokens spent (settled), and reserved by calls still running."""

    spent: int = 0
    reserved: int = 0


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
