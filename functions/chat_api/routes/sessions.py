"""`GET` and `DELETE /sessions/{session_id}`: read back or remove a stored conversation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from chat_api.deps import CallerDep, ClockDep, StoreDep, get_caller
from chat_api.errors import error_responses
from chat_api.schemas import SessionCursor, SessionId, SessionResponse
from chat_api.services.sessions import delete_session, read_session

# The caller is checked first: a session is only ever looked up for a known caller.
router = APIRouter(tags=["sessions"], dependencies=[Depends(get_caller)])

ERROR_RESPONSES = error_responses(400, 401, 404, 503)

SessionIdPath = Annotated[SessionId, Path(description="The id `POST /chat` returned.")]
CursorQuery = Annotated[
    SessionCursor | None, Query(description="The `next_cursor` of the previous page.")
]
LimitQuery = Annotated[int, Query(ge=1, le=100, description="Most messages in the page.")]


@router.get("/sessions/{session_id}", responses=ERROR_RESPONSES)
async def get_session(
    session_id: SessionIdPath,
    store: StoreDep,
    caller: CallerDep,
    clock: ClockDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
) -> SessionResponse:
    """Return a page of the stored conversation, oldest message first."""
    after = None if cursor is None else int(cursor)
    return await read_session(store, session_id, caller.id, clock(), after=after, limit=limit)


@router.delete("/sessions/{session_id}", status_code=204, responses=ERROR_RESPONSES)
async def remove_session(
    session_id: SessionIdPath, store: StoreDep, caller: CallerDep, clock: ClockDep
) -> Response:
    """Delete the conversation and its messages."""
    await delete_session(store, session_id, caller.id, clock())
    return Response(status_code=204)
