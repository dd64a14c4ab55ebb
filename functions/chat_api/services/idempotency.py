"""`Idempotency-Key`: a retried `POST /chat` gets the first answer instead of a second call."""

from __future__ import annotations

import hashlib
import secrets

from chat_api.exceptions import IdempotencyKeyInUse, IdempotencyKeyReused
from chat_api.schemas import ChatRequest, ChatResponse
from chat_api.store.base import IdempotencyClaim, IdempotencyRecord

# How long a key's answer is kept for retries (clients retry within minutes; a day is ample).
IDEMPOTENCY_TTL_SECONDS = 86_400


def new_claim(caller: str, key: str, request: ChatRequest, now: float) -> IdempotencyClaim:
    """This request's claim on `key`: keys are per caller, and stored only as digests."""
    return IdempotencyClaim(
        record_id=hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest(),
        fingerprint=hashlib.sha256(request.model_dump_json().encode()).hexdigest(),
        token=secrets.token_hex(16),
        claimed_at=now,
        expires_at=now + IDEMPOTENCY_TTL_SECONDS,
    )


def replay(record: IdempotencyRecord, claim: IdempotencyClaim) -> ChatResponse:
    """The earlier answer for the same key and body; raises if the body differs or it runs."""
    if record.fingerprint != claim.fingerprint:
        raise IdempotencyKeyReused
    if record.response is None:
        raise IdempotencyKeyInUse
    return ChatResponse.model_validate_json(record.response)
