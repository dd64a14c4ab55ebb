"""`POST /chat`: the tutorial's contract."""

from __future__ import annotations

from fastapi import APIRouter

from chat_api.deps import SettingsDep, UpstreamDep
from chat_api.schemas import ChatRequest, ChatResponse, ErrorResponse
from chat_api.services.chat import complete_chat

router = APIRouter(tags=["chat"])

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "Unparseable JSON or an invalid field"},
    413: {"model": ErrorResponse, "description": "Request body over the configured limit"},
    429: {"model": ErrorResponse, "description": "OpenAI is rate-limiting; see Retry-After"},
    502: {"model": ErrorResponse, "description": "OpenAI failed or rejected the call"},
    503: {"model": ErrorResponse, "description": "No OpenAI key is configured or readable"},
    504: {"model": ErrorResponse, "description": "OpenAI did not answer in time"},
}


@router.post("/chat", responses=ERROR_RESPONSES)
async def chat(request: ChatRequest, upstream: UpstreamDep, settings: SettingsDep) -> ChatResponse:
    """Send a message (and optional earlier turns) and get the assistant's answer."""
    return await complete_chat(upstream, settings, request)
