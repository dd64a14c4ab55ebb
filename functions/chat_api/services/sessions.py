"""Stored conversations: new ids, reading one back, deleting one."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chat_api.exceptions import SessionNotFound
from chat_api.schemas import SessionResponse, StoredMessage

if TYPE_CHECKING:
    from chat_api.store.base import SessionStore


def new_session_id() -> str:
    """128 random bits, URL-safe: unguessable, and valid as `SessionId`."""
    return secrets.token_urlsafe(16)


# Lambda answers at most 6 MB: a page holds at most this much message text (4 MB of UTF-8
# at worst), however long its messages are; at least one message, whatever its length.
PAGE_MAX_CHARS = 1_000_000


async def read_session(
    store: SessionStore,
    session_id: str,
    caller: str,
    now: float,
    *,
    after: int | None = None,
    limit: int = 100,
) -> SessionResponse:
    """A page of the stored conversation; SessionNotFound unless it is live and the caller's."""
    page = await asyncio.to_thread(store.page, session_id, caller, now, after=after, limit=limit)
    if page is None:
        raise SessionNotFound
    kept, chars = 0, 0
    for message in page.messages:
        chars += len(message.content)
        if kept and chars > PAGE_MAX_CHARS:
            break
        kept += 1
    more = page.more or kept < len(page.messages)
    session = page.session
    return SessionResponse(
        session_id=session.id,
        created_at=_utc(session.created_at),
        expires_at=_utc(session.expires_at),
        messages=[
            StoredMessage(role=m.role, content=m.content, created_at=_utc(m.created_at))
            for m in page.messages[:kept]
        ],
        next_cursor=str(page.positions[kept - 1]) if more else None,
    )


async def delete_session(store: SessionStore, session_id: str, caller: str, now: float) -> None:
    """Remove the conversation; SessionNotFound unless it is live and the caller's."""
    if not await asyncio.to_thread(store.delete, session_id, caller, now):
        raise SessionNotFound


def _utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
