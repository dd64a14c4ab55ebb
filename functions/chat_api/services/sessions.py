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


async def read_session(
    store: SessionStore, session_id: str, caller: str, now: float
) -> SessionResponse:
    """The whole stored conversation; SessionNotFound unless it is live and the caller's."""
    conversation = await asyncio.to_thread(store.load, session_id, caller, now)
    if conversation is None:
        raise SessionNotFound
    session = conversation.session
    return SessionResponse(
        session_id=session.id,
        created_at=_utc(session.created_at),
        expires_at=_utc(session.expires_at),
        messages=[
            StoredMessage(role=m.role, content=m.content, created_at=_utc(m.created_at))
            for m in conversation.messages
        ],
    )


async def delete_session(store: SessionStore, session_id: str, caller: str, now: float) -> None:
    """Remove the conversation; SessionNotFound unless it is live and the caller's."""
    if not await asyncio.to_thread(store.delete, session_id, caller, now):
        raise SessionNotFound


def _utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
