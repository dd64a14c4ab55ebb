"""`GET` and `DELETE /sessions/{session_id}`: read back or remove a stored conversation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from chat_api.deps import CallerDep, ClockDep, StoreDep, get_caller
from chat_api.errors import error_responses
from chat_api.schemas import SessionId, SessionResponse
from chat_api.services.sessions import delete_session, read_session

# The caller is checked first: a session is only ever looked up for a known caller.
router = APIRouter(tags=["sessions"], dependencies=[Depends(get_caller)])

ERROR_RESPONSES = error_responses(400, 401, 404, 503)

SessionIdPath = Annotated[SessionId, Path(description="The id `POST /chat` returned.")]


@router.get("/sessions/{session_id}", responses=ERROR_RESPONSES)
async def get_session(
    session_id: SessionIdPath, store: StoreDep, caller: CallerDep, clock: ClockDep
) -> SessionResponse:
    """Return the stored conversation, oldest message first."""
    return await read_session(store, session_id, caller.id, clock())


@router.delete("/sessions/{session_id}", status_code=204, responses=ERROR_RESPONSES)
async def remove_session(
    session_id: SessionIdPath, store: StoreDep, caller: CallerDep, clock: ClockDep
) -> Response:
    """Delete the conversation and its messages."""
    await delete_session(store, session_id, caller.id, clock())
    return Response(status_code=204)
