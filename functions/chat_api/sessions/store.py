"""The conversation store: what both implementations (DynamoDB, SQLite) promise.

Times are epoch seconds passed in by the caller, so the stores read no clock of their own.
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


class SessionNotFound(Exception):
    """No such session for this caller: never created, deleted, expired, or another caller's."""


class StoreUnavailable(Exception):
    """The store failed (throttled, unreachable, locked); the same request may succeed later."""


class IdempotencyKeyInUse(Exception):
    """Another request holds this idempotency key."""


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
        completes: tuple[IdempotencyClaim, str] | None = None,
    ) -> None:
        """Add messages after every stored one, together and atomically.

        `create` stores the session first. `completes` records the response for the claim in
        the same write, so a retried request can never store its turn twice. Raises
        SessionNotFound if the session is gone, IdempotencyKeyInUse if the claim was lost.
        """
        ...

    def delete(self, session_id: str, owner: str, now: float) -> bool:
        """Remove the session and its messages; False unless it was live and owned."""
        ...

    def claim(self, claim: IdempotencyClaim) -> IdempotencyRecord | None:
        """Take the key for this request (None), or return the live record that holds it."""
        ...

    def release(self, claim: IdempotencyClaim) -> None:
        """Give the key up (the request failed), unless another request has taken it over."""
        ...
