"""Every route of the API, collected in one router for the app factory."""

from __future__ import annotations

from fastapi import APIRouter

from chat_api.routes import (
    chat,
    completions,
    embeddings,
    health,
    page,
    responses,
    sessions,
    usage,
)

api_router = APIRouter()
api_router.include_router(chat.router)
api_router.include_router(sessions.router)
api_router.include_router(usage.router)
api_router.include_router(completions.router)
api_router.include_router(embeddings.router)
api_router.include_router(responses.router)
api_router.include_router(health.router)
api_router.include_router(page.router)
